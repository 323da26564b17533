"""`run_eval`: what a checkpoint can do so far — bits per byte and held-out task accuracy.

Two measurements, both reproducible from a checkpoint directory and a data directory:

- **Validation bits per byte** on the val split of tokenized shards (the same fixed windows the
  trainer validates on: `hillclimb.data.shard_eval.val_windows`, shared by both), next to the
  **unigram baseline** (a smoothed unigram model of the train split, `unigram_bpb`) — the number
  a model must beat to have learned anything beyond token frequencies. bpb is tokenizer-independent, so models with
  different vocabularies compare.
- **Task accuracy per family × tier × split** (`eval.tasks.evaluate_tasks`): new problems (code:
  new functions), the same problems in new phrasings, held-out families; greedy accuracy beside
  the no-training baseline, sampled pass@k, truncation share and tokens per correct answer.

Greedy accuracy is a deterministic function of the weights, so two runs of the same checkpoint
give the same table. Bad input (not a checkpoint, shards from another tokenizer, an unknown
family) fails before any generation with a one-line `HillclimbError`.
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.eval.tasks import TaskEvalConfig, evaluate_tasks

if TYPE_CHECKING:
    from hillclimb.model.transformer import Transformer
    from hillclimb.tokenizer.io import Tokenizer

EVAL_FORMAT = "hillclimb-eval-v2"


def _check_checkpoint(path: Path) -> None:
    if not path.exists():
        raise HillclimbError(f"checkpoint not found: {path}")
    from hillclimb.model.checkpoint import run_dir_hint

    if not path.is_dir() or not (path / "config.json").is_file():
        raise HillclimbError(f"{path} is not a checkpoint directory (no config.json)")
    if not (path / "tokenizer.json").is_file():
        raise HillclimbError(f"checkpoint {path} has no tokenizer.json{run_dir_hint(path)}")


def model_identity(path: Path) -> dict[str, Any]:
    """What the numbers were measured on, recorded in the result: the weights' content hash
    (`model.identity.weights_sha256`, the registry's key too), the tokenizer file's SHA-256
    and this code's version.

    Why: the result named its checkpoint by path only, and a path outlives its weights (a
    climb run again with `--restart` writes new ones there) — an `eval.json` of the old weights
    then read as the new ones', and two results could not be told to be of one model."""
    import hashlib

    import hillclimb
    from hillclimb.model.identity import weights_sha256

    tok = hashlib.sha256((path / "tokenizer.json").read_bytes()).hexdigest()
    return {
        "weights_sha256": weights_sha256(path),
        "tokenizer_sha256": tok,
        "hillclimb_version": hillclimb.__version__,
        "scorer_sha256": scorer_sha256(),
    }


# The code that makes evaluation items and decides pass/fail, hashed into every result as
# `scorer_sha256` (relative to src/hillclimb): every problem generator and checker, the
# evaluation package but its reporting/routing/arena/CLI parts, and the harness's grading.
_SCORER_TREES = ("problems", "eval")
_SCORER_LEFT_OUT = ("eval/arena/", "eval/cli.py", "eval/routing.py", "eval/routing_cli.py")
_SCORER_FILES = ("harness/grading.py", "harness/testparse.py", "harness/pytest_reporter.py")


@functools.cache
def scorer_sha256() -> str:
    """SHA-256 over the scoring code's sources (path and bytes of each, sorted).

    Why: every session made a checker stricter (hedges, hidden cases, held-out twins), and a
    result scored by the old code compared with one scored by the new as like for like — a
    candidate evaluated today against an incumbent evaluated months ago lost points to the
    checker, not to the model. `hillclimb_version` cannot tell them apart (it changes only at a
    release). The registry's gate calls results of different scorers not comparable; it is
    over-cautious on purpose (an edit to a report line of a suite changes it too)."""
    import hashlib

    root = Path(__file__).resolve().parent.parent
    files = [
        f
        for tree in _SCORER_TREES
        for f in (root / tree).rglob("*.py")
        if not f.relative_to(root).as_posix().startswith(_SCORER_LEFT_OUT)
    ]
    files += [root / rel for rel in _SCORER_FILES]
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.relative_to(root).as_posix()):
        rel = f.relative_to(root).as_posix().encode()
        data = f.read_bytes()
        h.update(rel + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()


def bits_per_byte(
    model: Transformer,
    tok: Tokenizer,
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

    from hillclimb.data.shard_eval import check_shards_match, unigram_bpb, val_windows
    from hillclimb.data.shards import ShardReader

    reader = ShardReader(data)
    if tokenizer_path is not None:
        # eval has no override: bpb over another tokenizer's ids would not measure this model
        check_shards_match(reader, tok, tokenizer_path, allow_mismatch=False, override_flag=None)
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


def run_eval(
    model: str | Path,
    data: str | Path | None = None,
    *,
    tasks: TaskEvalConfig | None = None,
    val_tokens: int = 32768,
    seq_len: int | None = None,
    accuracy: bool = True,
    device: str | None = None,
    drafter: str = "none",
) -> dict[str, Any]:
    """Evaluate checkpoint `model`: bpb on `data`'s val shards (when given) and task accuracy.

    Returns a JSON-able dict `{"format", "model", "name", "preset", "weights_sha256",
    "tokenizer_sha256", "hillclimb_version", "bpb": {...}|None, "tasks": {...}|None, "seconds"}`. `seq_len` defaults to the training seq_len recorded in the checkpoint (else 256).

    `drafter` (`backends.EVAL_DRAFTERS`): the engine's model-free draft source, recorded in
    `tasks.settings.drafter`. Drafts are verified against the greedy choice, so the table is the
    same with any of them; only the time differs."""
    from hillclimb.eval.backends import check_drafter
    from hillclimb.model.checkpoint import read_info
    from hillclimb.serve.engine import Engine

    cfg = tasks or TaskEvalConfig()
    path = Path(model)
    _check_checkpoint(path)
    if data is not None and not Path(data).exists():
        raise HillclimbError(f"data directory not found: {data}")
    if val_tokens < 1:
        raise ConfigError("val_tokens must be >= 1")
    # `--seq-len 0` divided by zero cutting the val windows (a negative one cut nonsense)
    if seq_len is not None and seq_len < 1:
        raise ConfigError(f"seq_len must be >= 1, got {seq_len}")
    if not accuracy and data is None:  # `--no-tasks` alone printed a header and exited 0
        raise ConfigError("nothing to evaluate: --no-tasks skips accuracy and no --data is given")
    check_drafter(drafter)
    if accuracy:
        cfg.validate()
    t0 = time.perf_counter()
    engine = Engine.from_checkpoint(path, device=device, max_batch=cfg.batch_size, drafter=drafter)
    info = read_info(path)
    if seq_len is None:
        seq_len = int((info.get("train") or {}).get("seq_len") or 256)
    seq_len = min(seq_len, engine.cfg.max_seq_len)
    result: dict[str, Any] = {
        "format": EVAL_FORMAT,
        "model": str(path),
        "name": engine.name,
        "preset": engine.cfg.name,
        **model_identity(path),
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
            batch_size=max(1, min(cfg.batch_size, 8)),
            tokenizer_path=path,
        )
    if accuracy:
        result["tasks"] = evaluate_tasks(engine, cfg)
        result["tasks"]["settings"]["drafter"] = drafter
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result
