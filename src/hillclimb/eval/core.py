"""`run_eval`: what a checkpoint can do so far — bits per byte and held-out task accuracy.

Two measurements, both reproducible from a checkpoint directory and a data directory:

- **Validation bits per byte** on the val split of tokenized shards (the same fixed windows the
  trainer validates on: `hillclimb.train.data.val_windows`), next to the **unigram baseline** (a
  smoothed unigram model of the train split, `unigram_bpb`) — the number a model must beat to
  have learned anything beyond token frequencies. bpb is tokenizer-independent, so models with
  different vocabularies compare.
- **Held-out accuracy per family and tier**: `problems.problem_suite(split="heldout")` instances
  (disjoint from anything the generators put into pre-training or SFT), prompted with the chat
  template (`add_generation_prompt`), answered greedily by the generation engine in batches
  (`Engine.generate_batch` — the one place tokens are generated), and verified by
  `problems.check_many` (exact match for reasoning; the sandbox for code). A few sample
  generations are kept for the report.

Why greedy: accuracy at temperature 0 is a deterministic function of the weights, so two runs of
the same checkpoint give the same table. Bad input (not a checkpoint, shards from another
tokenizer, an unknown family) fails before any generation with a one-line `HillclimbError`.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from hillclimb.errors import ConfigError, HillclimbError

EVAL_FORMAT = "hillclimb-eval-v1"


def _check_checkpoint(path: Path) -> None:
    if not path.exists():
        raise HillclimbError(f"checkpoint not found: {path}")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise HillclimbError(f"{path} is not a checkpoint directory (no config.json)")
    if not (path / "tokenizer.json").is_file():
        raise HillclimbError(f"checkpoint {path} has no tokenizer.json")


def bits_per_byte(
    model: Any,
    tok: Any,
    data: str | Path,
    *,
    seq_len: int,
    val_tokens: int,
    batch_size: int = 8,
    tokenizer_path: Path | None = None,
) -> dict[str, Any]:
    """Val bpb of `model` and the unigram baseline on the shards under `data`."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from hillclimb.data.shards import ShardReader
    from hillclimb.train.data import unigram_bpb, val_windows
    from hillclimb.train.pretrain import check_shards_match

    reader = ShardReader(data)
    if tokenizer_path is not None:
        check_shards_match(reader, tok, tokenizer_path, allow_mismatch=False)
    if "val" not in reader.splits() or reader.split("val").n_tokens <= seq_len + 1:
        raise HillclimbError(
            f"shards at {reader.dir} have no val split longer than seq_len={seq_len}"
        )
    val = val_windows(reader.split("val"), seq_len, val_tokens)
    vocab = model.cfg.vocab_size
    tb = np.asarray(tok.token_bytes + [0] * (vocab - tok.vocab_size), dtype=np.float64)
    uni = unigram_bpb(reader.split("train"), val[:, 1:], tb, vocab)
    tb_t = torch.from_numpy(tb)
    device = next(model.parameters()).device
    nll_sum, nbytes, ntok = 0.0, 0.0, 0
    with torch.inference_mode():
        for s in range(0, val.shape[0], batch_size):
            x = torch.from_numpy(np.ascontiguousarray(val[s : s + batch_size])).to(device)
            logits = model(x[:, :-1]).float()
            nll = (
                F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="none")
                .double()
                .cpu()
            )
            nll_sum += float(nll.sum())
            nbytes += float(tb_t[x[:, 1:].flatten().cpu()].sum())
            ntok += int(nll.numel())
    return {
        "val_bpb": nll_sum / (math.log(2) * nbytes) if nbytes else float("nan"),
        "val_loss": nll_sum / max(ntok, 1),
        "unigram_bpb": uni,
        "val_tokens": ntok,
        "val_bytes": int(nbytes),
        "seq_len": seq_len,
        "shards": str(reader.dir),
    }


def task_accuracy(
    engine: Any,
    *,
    n_per_tier: int,
    families: list[str] | None,
    tiers: list[int] | None,
    max_tokens: int,
    batch_size: int,
    seed: int,
    samples: int,
) -> dict[str, Any]:
    """Greedy held-out accuracy per (family, tier) + a few sample generations."""
    from hillclimb import problems as P
    from hillclimb.serve.engine import SamplingParams

    fams = list(families or P.FAMILIES)
    for f in fams:
        if f not in P.FAMILIES:
            raise ConfigError(f"unknown problem family {f!r}; known: {sorted(P.FAMILIES)}")
    tiers_ = list(tiers or P.TIERS)
    for t in tiers_:
        if t not in P.TIERS:
            raise ConfigError(f"tier {t} not in {list(P.TIERS)}")
    if n_per_tier < 1:
        raise ConfigError("n_per_tier must be >= 1")
    suite = P.problem_suite(
        seed=seed, split="heldout", n_per_tier=n_per_tier, families=fams, tiers=tiers_
    )
    tok = engine.tokenizer
    prompts = [
        tok.encode_chat([{"role": "user", "content": p.prompt}], add_generation_prompt=True)
        for p in suite
    ]
    completions: list[str] = [""] * len(suite)
    outs: list[Any] = [None] * len(suite)
    runnable = []
    for i, ids in enumerate(prompts):
        room = engine.max_context - len(ids)
        if room >= 2:
            runnable.append((i, SamplingParams(max_tokens=min(max_tokens, room), temperature=0.0)))
    t0 = time.perf_counter()
    gen_tokens = 0
    for s in range(0, len(runnable), batch_size):
        chunk = runnable[s : s + batch_size]
        res = engine.generate_batch([prompts[i] for i, _ in chunk], [sp for _, sp in chunk])
        for (i, _), o in zip(chunk, res, strict=True):
            outs[i] = o
            completions[i] = o.text
            gen_tokens += o.completion_tokens
    gen_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    ok = P.check_many(suite, completions)
    check_s = time.perf_counter() - t1
    cells: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for p, good in zip(suite, ok, strict=True):
        c = cells[p.family][str(p.tier)]
        c[0] += int(good)
        c[1] += 1
    by_cell = {f: {t: {"correct": v[0], "n": v[1], "accuracy": v[0] / v[1]} for t, v in sorted(ts.items())}
               for f, ts in cells.items()}  # fmt: skip
    by_tier: dict[str, dict[str, Any]] = {}
    for kind in ("reasoning", "code"):
        for t in tiers_:
            sel = [g for p, g in zip(suite, ok, strict=True) if p.tier == t and p.kind == kind]
            if sel:
                by_tier.setdefault(kind, {})[str(t)] = {
                    "correct": sum(sel),
                    "n": len(sel),
                    "accuracy": sum(sel) / len(sel),
                }
    # Samples: spread over families, easiest tier first.
    picked: list[int] = []
    order = sorted(range(len(suite)), key=lambda i: (suite[i].tier, fams.index(suite[i].family), i))
    seen_fam: set[str] = set()
    for i in order:
        if len(picked) >= samples:
            break
        if suite[i].family not in seen_fam and outs[i] is not None:
            picked.append(i)
            seen_fam.add(suite[i].family)
    sample_recs = [{
        "id": suite[i].id, "family": suite[i].family, "tier": suite[i].tier, "prompt": suite[i].prompt,
        "expected": suite[i].answer, "reasoning": outs[i].reasoning_text, "content": outs[i].content_text,
        "finish_reason": outs[i].finish_reason, "correct": bool(ok[i]),
    } for i in picked]  # fmt: skip
    finish: dict[str, int] = defaultdict(int)
    for o in outs:
        finish["prompt_too_long" if o is None else o.finish_reason] += 1
    return {
        "n": len(suite),
        "correct": int(sum(ok)),
        "accuracy": sum(ok) / len(suite) if suite else 0.0,
        "by_family_tier": by_cell,
        "by_kind_tier": by_tier,
        "finish_reasons": dict(finish),
        "mean_completion_tokens": gen_tokens / max(1, len(runnable)),
        "generate_s": round(gen_s, 3),
        "check_s": round(check_s, 3),
        "gen_tokens_per_s": gen_tokens / gen_s if gen_s > 0 else 0.0,
        "settings": {
            "n_per_tier": n_per_tier,
            "families": fams,
            "tiers": tiers_,
            "max_tokens": max_tokens,
            "seed": seed,
            "split": "heldout",
            "temperature": 0.0,
        },
        "samples": sample_recs,
    }


def run_eval(
    model: str | Path,
    data: str | Path | None = None,
    *,
    n_per_tier: int = 10,
    families: list[str] | None = None,
    tiers: list[int] | None = None,
    max_tokens: int = 256,
    batch_size: int = 16,
    samples: int = 4,
    seed: int = 0,
    val_tokens: int = 32768,
    seq_len: int | None = None,
    accuracy: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """Evaluate checkpoint `model`: bpb on `data`'s val shards (when given) and held-out accuracy.

    Returns a JSON-able dict `{"format", "model", "name", "bpb": {...}|None, "tasks": {...}|None,
    "seconds"}`. `seq_len` defaults to the training seq_len recorded in the checkpoint (else 256)."""
    from hillclimb.model.checkpoint import read_info
    from hillclimb.serve.engine import Engine

    path = Path(model)
    _check_checkpoint(path)
    if data is not None and not Path(data).exists():
        raise HillclimbError(f"data directory not found: {data}")
    if batch_size < 1 or max_tokens < 1 or val_tokens < 1:
        raise ConfigError("batch_size, max_tokens and val_tokens must be >= 1")
    t0 = time.perf_counter()
    engine = Engine.from_checkpoint(path, device=device, max_batch=batch_size)
    info = read_info(path)
    if seq_len is None:
        seq_len = int((info.get("train") or {}).get("seq_len") or 256)
    seq_len = min(seq_len, engine.cfg.max_seq_len)
    result: dict[str, Any] = {
        "format": EVAL_FORMAT,
        "model": str(path),
        "name": engine.name,
        "preset": engine.cfg.name,
        "bpb": None,
        "tasks": None,
    }
    if data is not None:
        result["bpb"] = bits_per_byte(
            engine.model,
            engine.tokenizer,
            data,
            seq_len=seq_len,
            val_tokens=val_tokens,
            batch_size=max(1, min(batch_size, 8)),
            tokenizer_path=path,
        )
    if accuracy:
        result["tasks"] = task_accuracy(
            engine,
            n_per_tier=n_per_tier,
            families=families,
            tiers=tiers,
            max_tokens=max_tokens,
            batch_size=batch_size,
            seed=seed,
            samples=samples,
        )
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result
