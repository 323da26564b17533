"""Check `hillclimb export --format gguf` against real llama.cpp: same token ids, same logits?

Why: the GGUF export (src/hillclimb/model/gguf.py) targets llama.cpp's `qwen3moe` graph. The test
suite pins the file layout with gguf-py and a numpy re-implementation of that graph, but llama.cpp
itself is not a dependency, so the only check against the real runtime used to be a one-off by
hand. This script makes it repeatable. It needs `llama-cpp-python` (which vendors llama.cpp) built
from its sdist, ideally in a venv of its own so the project venv never gets llama_cpp:

    python3 -m venv /tmp/llama-venv && /tmp/llama-venv/bin/pip install numpy
    CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF \
      -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
      -DLLAMA_BUILD_SERVER=OFF" /tmp/llama-venv/bin/pip install --no-binary :all: llama-cpp-python

    python bench/export_gguf_llamacpp.py --python /tmp/llama-venv/bin/python            # micro
    python bench/export_gguf_llamacpp.py --python /tmp/llama-venv/bin/python --model CKPT

What it does, per `--dtype` (default f32 and f16):
1. Checkpoint: `--model CKPT`, or a fresh `hillclimb init --preset P --seed S` whose weights are
   then scaled (matrices x`--scale`, default 3; norm weights + N(0, 0.1)) so logits are O(1-4):
   at init they are nearly uniform, so argmax and greedy agreement would mean little, and norm
   weights of exactly 1 would not catch a swapped or misplaced norm.
2. `export_gguf(CKPT, model-DTYPE.gguf, dtype)`.
3. llama.cpp half (the `--python` interpreter re-runs this file with `--llama-worker REQ.json`;
   that half imports only numpy + llama_cpp): `Llama(logits_all=True, n_threads, F32 KV cache,
   flash attention off)`, `eval(ids)` -> per-position logits; then, from the first
   `--prompt-tokens` ids, greedy decoding one token at a time through the KV cache (argmax of
   llama.cpp's own logits). Logits come back as .npy files. Token ids are fed, never text:
   llama.cpp's built-in pre-tokenizer differs from ours (docs/areas/export.md), which would make a
   text comparison measure the tokenizer, not the export. The tokenizer is reported separately
   (`tokenizer`: llama.cpp's encoding of the sample text vs ours, and its detokenization).
4. Reference: our own forward in fp32 on the same ids, with the matrices rounded to DTYPE the way
   the exporter rounds them (norms and router stay fp32), so the gap measures llama.cpp's compute,
   not the storage precision; `vs_unrounded_fp32` gives the gap to the fp32 model as a user sees
   it. Greedy decoding is done by our model too (full re-forward per token), and llama.cpp's
   incremental (KV-cache) logits are compared with ours on llama.cpp's own generated sequence.

Output: one JSON object on stdout (and `--out FILE`). Gate (exit 1, failures listed): for f32 the
max relative logit gap must be <= `--tol-f32` and argmax + greedy tokens must agree 100 %; f16 is
gated on `--tol-f16` only; bf16 is reported, never gated (llama.cpp's CPU bf16 matmul rounds
activations to bf16). Positions where our router's k-th and (k+1)-th expert probabilities are
within `--near-tie` are left out of the gated figures and listed (`near_tie_positions`): there a
rounding-level change of the hidden state legitimately picks another expert and moves the logits
by O(1) (seen with top-1 routing at f16: one position, router margin 5e-5). Exit 2 when llama_cpp
cannot be imported (with the build recipe above) or llama.cpp refuses the file.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:  # the --python interpreter may lack numpy: worker_main then says how to set it up
    import numpy as np
except ImportError:
    np = None  # type: ignore[assignment]

BUILD_HINT = (
    "llama_cpp (llama-cpp-python) is not importable by {python}. Build it from the sdist in a "
    "separate venv and pass --python:\n"
    "  python3 -m venv /tmp/llama-venv && /tmp/llama-venv/bin/pip install numpy\n"
    "  CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_BLAS=OFF "
    "-DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "
    "-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF' /tmp/llama-venv/bin/pip install "
    "--no-binary :all: llama-cpp-python\n"
    "  python bench/export_gguf_llamacpp.py --python /tmp/llama-venv/bin/python"
)
EXIT_GATE, EXIT_SETUP = 1, 2
KV_TYPES = {"f32": 0, "f16": 1}  # GGML_TYPE_F32 / GGML_TYPE_F16

# Prompt text: encoded with the checkpoint's tokenizer (repeated as needed) to get the token ids.
SAMPLE = '''def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping closed intervals; returns them sorted by start."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


class LRUCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.data: dict[str, int] = {}

    def get(self, key: str) -> int | None:
        if key not in self.data:
            return None
        value = self.data.pop(key)
        self.data[key] = value  # most recent last
        return value
'''


class LoadError(RuntimeError):
    """llama.cpp refused the file (llama half)."""


class SetupError(Exception):
    """No llama_cpp, or the llama half failed: exit 2, not a gate failure."""


# ---- llama.cpp half: stdlib + numpy + llama_cpp only (runs in the --python interpreter) -------
def llama_versions() -> dict[str, Any]:
    """llama-cpp-python's version, the vendored ggml's version/commit, the library's features."""
    import llama_cpp

    lib_dir = Path(os.environ.get("LLAMA_CPP_LIB_PATH") or Path(llama_cpp.__file__).parent / "lib")
    info: dict[str, Any] = {"llama_cpp_python": llama_cpp.__version__, "lib_dir": str(lib_dir)}
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll"):
        if (lib_dir / name).exists():
            lib = ctypes.CDLL(str(lib_dir / name))
            for fn in ("ggml_version", "ggml_commit"):
                if hasattr(lib, fn):
                    getattr(lib, fn).restype = ctypes.c_char_p
                    info[fn] = getattr(lib, fn)().decode()
            break
    info["system_info"] = llama_cpp.llama_print_system_info().decode().strip()
    return info


def run_llama(req: dict[str, Any]) -> dict[str, Any]:
    """Evaluate `req["ids"]` and greedy-decode in llama.cpp; logits go to .npy files in out_dir."""
    import llama_cpp

    ids: list[int] = req["ids"]
    prompt = ids[: req["prompt_len"]]
    n_decode: int = req["n_decode"]
    n_ctx = max(len(ids), len(prompt) + n_decode) + 8
    out = Path(req["out_dir"])
    t0 = time.perf_counter()
    try:
        llm = llama_cpp.Llama(
            model_path=req["gguf"],
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_ubatch=n_ctx,
            n_threads=req["n_threads"],
            n_threads_batch=req["n_threads"],
            logits_all=True,
            vocab_only=False,
            flash_attn=False,
            type_k=KV_TYPES[req["kv_type"]],
            type_v=KV_TYPES[req["kv_type"]],
            n_gpu_layers=0,
            seed=0,
            verbose=req["verbose"],
        )
    except (ValueError, RuntimeError) as exc:
        raise LoadError(
            f"llama.cpp could not load {req['gguf']}: {exc} (rerun with --verbose for its log)"
        ) from exc
    t_load = time.perf_counter() - t0

    t0 = time.perf_counter()
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
    t_eval = time.perf_counter() - t0

    llm.reset()
    llm.eval(prompt)
    gen: list[int] = []
    rows = []
    for _ in range(n_decode):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        rows.append(row)
        gen.append(int(row.argmax()))
        llm.eval([gen[-1]])
    np.save(out / "logits.npy", logits)
    np.save(out / "decode_logits.npy", np.stack(rows) if rows else np.zeros((0, logits.shape[1])))

    text = req.get("text") or ""
    return {
        "versions": llama_versions(),
        "n_vocab": int(llm.n_vocab()),
        "n_ctx": n_ctx,
        "generated": gen,
        "tokenize": llm.tokenize(text.encode("utf-8"), add_bos=False, special=False),
        "detokenize_hex": llm.detokenize(ids).hex(),
        "seconds": {"load": round(t_load, 3), "eval": round(t_eval, 3)},
    }


def worker_main(request: Path) -> int:
    try:
        import llama_cpp  # noqa: F401
        import numpy  # noqa: F401
    except ImportError as exc:
        print(BUILD_HINT.format(python=sys.executable) + f"\n({exc})", file=sys.stderr)
        return EXIT_SETUP
    req = json.loads(request.read_text())
    try:
        resp = {"versions": llama_versions()} if req.get("check_only") else run_llama(req)
    except LoadError as exc:
        print(exc, file=sys.stderr)
        return EXIT_SETUP
    (Path(req["out_dir"]) / "response.json").write_text(json.dumps(resp))
    return 0


def call_llama(python: str | None, req: dict[str, Any]) -> dict[str, Any]:
    """Run the llama.cpp half in `python` (a subprocess) or, without it, in this interpreter."""
    out = Path(req["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "request.json").write_text(json.dumps(req))
    if python is None:
        rc = worker_main(out / "request.json")
    else:
        cmd = [python, str(Path(__file__).resolve()), "--llama-worker", str(out / "request.json")]
        rc = subprocess.run(cmd, env={**os.environ, "PYTHONNOUSERSITE": "1"}).returncode
    if rc != 0:
        raise SetupError(f"llama.cpp half failed (exit {rc}; message above)")
    return json.loads((out / "response.json").read_text())


# ---- hillclimb half ---------------------------------------------------------------------------
def make_checkpoint(preset: str, seed: int, scale: float, work: Path) -> Path:
    """`hillclimb init`, then matrices x scale and norm weights + N(0, 0.1) (see module doc)."""
    import torch

    from hillclimb.model.checkpoint import load_model, save_checkpoint
    from hillclimb.tokenizer.io import load_tokenizer

    init = work / f"{preset}-init"
    cmd = [sys.executable, "-m", "hillclimb", "init", "--preset", preset, "--out", str(init)]
    subprocess.run([*cmd, "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)
    if scale == 1.0:
        return init
    model = load_model(init)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.mul_(scale)
            else:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return save_checkpoint(model, work / f"{preset}-scaled", tokenizer=load_tokenizer(init))


def round_like_export(model: Any, dtype: str) -> None:
    """Round the matrices the exporter writes in `dtype`; 1-D weights and the router stay fp32."""
    import torch

    if dtype == "f32":
        return
    tdt = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 and not name.endswith("mlp.gate.weight"):
                p.copy_(p.to(tdt).float())


def forward(model: Any, ids: list[int], n_vocab: int | None = None) -> np.ndarray:
    """Our logits over the first `n_vocab` ids (the GGUF's: padded rows are not exported)."""
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids]))[0, :, :n_vocab].float().numpy()


def router_margins(model: Any, ids: list[int]) -> np.ndarray:
    """Per position, the smallest gap over MoE layers between the k-th and (k+1)-th router
    probability: where it is tiny, a rounding-level change of the hidden state may pick another
    expert, a legitimate O(1) logit jump that says nothing about the export."""
    from hillclimb.model.moe import Router

    gaps: list[np.ndarray] = []

    def hook(mod: Any, _inp: Any, out: Any) -> None:
        p = out.probs.detach().float().reshape(-1, out.probs.shape[-1]).sort(-1, descending=True)
        v = p.values.numpy()
        k = mod.top_k
        gaps.append(v[:, k - 1] - v[:, k] if k < v.shape[1] else np.full(v.shape[0], np.inf))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, Router)]
    try:
        forward(model, ids)
    finally:
        for h in handles:
            h.remove()
    return np.min(np.stack(gaps), 0) if gaps else np.full(len(ids), np.inf)


def greedy(model: Any, prompt: list[int], n: int, n_vocab: int | None = None) -> list[int]:
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(forward(model, seq, n_vocab)[-1].argmax()))
    return seq[len(prompt) :]


def compare(ref: np.ndarray, got: np.ndarray, route: np.ndarray, near_tie: float) -> dict[str, Any]:
    """Per-position logit gaps (rel = max|diff| / max|our logit| at that position). `route` is
    our per-position router margin (`router_margins`); positions below `near_tie` may route to
    another expert on rounding noise alone, so the gated figures (`*_clear_routes`) leave them
    out and `near_tie_positions` lists them with their own gap."""
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    scale = np.abs(ref).max(-1)
    rel = diff.max(-1) / np.maximum(scale, 1e-12)
    top2 = np.sort(ref, -1)[:, -2:]
    agree = ref.argmax(-1) == got.argmax(-1)
    clear = route >= near_tie
    worst = int(rel.argmax()) if len(rel) else 0
    return {
        "positions": int(ref.shape[0]),
        "max_abs_diff": float(diff.max(initial=0.0)),
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "max_rel_diff": float(rel.max(initial=0.0)),
        "max_abs_logit": float(scale.max(initial=0.0)),
        "argmax_agree_pct": round(100.0 * float(agree.mean()), 2) if len(agree) else 100.0,
        "max_rel_diff_clear_routes": float(rel[clear].max(initial=0.0)),
        "argmax_agree_pct_clear_routes": round(100.0 * float(agree[clear].mean()), 2)
        if clear.any()
        else 100.0,
        "worst_position": {
            "index": worst,
            "rel_diff": float(rel[worst]) if len(rel) else 0.0,
            "router_margin": float(route[worst]) if len(rel) else None,
        },
        "near_tie_positions": [
            {"index": int(i), "router_margin": float(route[i]), "rel_diff": float(rel[i])}
            for i in np.flatnonzero(~clear)[:10]
        ],
        "argmax_disagreements": [
            {
                "index": int(i),
                "ref_top2_margin": float(top2[i, 1] - top2[i, 0]),
                "router_margin": float(route[i]),
            }
            for i in np.flatnonzero(~agree)[:10]
        ],
    }


def token_agreement(ours: list[int], theirs: list[int]) -> dict[str, Any]:
    same = [a == b for a, b in zip(ours, theirs, strict=True)]
    first = same.index(False) if False in same else None
    return {
        "n": len(ours),
        "agree_pct": round(100.0 * sum(same) / max(len(same), 1), 2),
        "first_divergence": first,
        "ours": ours,
        "llama_cpp": theirs,
    }


def prompt_ids(tok: Any, n: int) -> tuple[list[int], str]:
    ids: list[int] = []
    while len(ids) < n:
        ids += tok.encode(SAMPLE)
    return ids[:n], SAMPLE


def check_dtype(
    args: argparse.Namespace, ck: Path, dtype: str, ids: list[int], work: Path
) -> dict[str, Any]:
    from hillclimb.model.checkpoint import load_model
    from hillclimb.model.gguf import export_gguf
    from hillclimb.tokenizer.io import load_tokenizer

    tok = load_tokenizer(ck)
    t0 = time.perf_counter()
    rep = export_gguf(ck, work / f"model-{dtype}.gguf", dtype=dtype)
    t_export = time.perf_counter() - t0
    P = min(args.prompt_tokens, len(ids))
    req = {
        "gguf": str(rep.path),
        "ids": ids,
        "prompt_len": P,
        "n_decode": args.decode,
        "n_threads": args.threads,
        "kv_type": args.kv_type,
        "verbose": args.verbose,
        "text": SAMPLE,
        "out_dir": str(work / f"llama-{dtype}"),
    }
    resp = call_llama(args.python, req)
    got = np.load(work / f"llama-{dtype}" / "logits.npy")
    got_dec = np.load(work / f"llama-{dtype}" / "decode_logits.npy")

    fp32 = load_model(ck, dtype=None)
    model = load_model(ck, dtype=None)
    round_like_export(model, dtype)
    ref = forward(model, ids, rep.n_vocab)
    if ref.shape != got.shape:
        raise SetupError(f"logits shape: ours {ref.shape}, llama.cpp {got.shape}")
    ours_gen = greedy(model, ids[:P], args.decode, rep.n_vocab)
    theirs_gen = resp["generated"]
    # llama.cpp's incremental (KV-cache) logits vs our full forward on llama.cpp's own sequence
    seq = ids[:P] + theirs_gen[:-1]
    ref_dec = forward(model, seq, rep.n_vocab)[P - 1 :] if args.decode else ref[:0]
    route = router_margins(model, ids)
    route_dec = router_margins(model, seq)[P - 1 :] if args.decode else route[:0]
    ours_text_ids = tok.encode(SAMPLE)
    return {
        "dtype": dtype,
        "gguf_bytes": rep.path.stat().st_size,
        "tokenizer_pre": rep.tokenizer_pre,
        "tokenizer_exact": rep.tokenizer_exact,
        "replicated_dense_layers": rep.replicated_dense_layers,
        "llama_cpp_n_vocab": resp["n_vocab"],
        "prompt_logits": compare(ref, got, route, args.near_tie),
        "vs_unrounded_fp32": compare(forward(fp32, ids, rep.n_vocab), got, route, args.near_tie),
        "decode_logits_kv_cache": compare(ref_dec, got_dec, route_dec, args.near_tie),
        "greedy": {"prompt_tokens": P, **token_agreement(ours_gen, theirs_gen)},
        "tokenizer": {
            "sample_chars": len(SAMPLE),
            "ours_tokens": len(ours_text_ids),
            "llama_cpp_tokens": len(resp["tokenize"]),
            "encode_equal": resp["tokenize"] == ours_text_ids,
            "detokenize_equal": bytes.fromhex(resp["detokenize_hex"]).decode("utf-8", "replace")
            == tok.decode(ids),
        },
        "seconds": {"export": round(t_export, 3), **resp["seconds"]},
    }


def gate(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """f32: relative gap <= tol_f32 and argmax agreement 100 % (positions with a clear routing
    decision), greedy tokens identical. f16: relative gap <= tol_f16. bf16: not gated."""
    failures = []
    d = result["dtype"]
    tol = {"f32": args.tol_f32, "f16": args.tol_f16}.get(d)
    if tol is not None:
        for key in ("prompt_logits", "decode_logits_kv_cache"):
            r = result[key]["max_rel_diff_clear_routes"]
            if r > tol:
                failures.append(f"{d} {key}: max_rel_diff_clear_routes {r:.3g} > {tol:g}")
    if d == "f32":
        pct = result["prompt_logits"]["argmax_agree_pct_clear_routes"]
        if pct != 100.0:
            failures.append(f"f32 argmax agreement {pct} %")
        if result["greedy"]["agree_pct"] != 100.0:
            failures.append(f"f32 greedy tokens diverge at {result['greedy']['first_divergence']}")
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, help="checkpoint dir (default: fresh --preset init)")
    src.add_argument("--preset", default="thinking-micro")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=3.0, help="init weights only (1 = as init)")
    ap.add_argument("--dtype", nargs="+", choices=["f32", "f16", "bf16"], default=["f32", "f16"])
    ap.add_argument("--tokens", type=int, default=128, help="ids evaluated in one pass")
    ap.add_argument("--prompt-tokens", type=int, default=32, help="greedy prompt (first ids)")
    ap.add_argument("--decode", type=int, default=20, help="greedy tokens generated")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv-type", choices=list(KV_TYPES), default="f32")
    ap.add_argument("--tol-f32", type=float, default=1e-4, help="max rel logit gap, f32")
    ap.add_argument("--tol-f16", type=float, default=2e-2, help="max rel logit gap, f16")
    ap.add_argument(
        "--near-tie",
        type=float,
        default=1e-3,
        help="router margin below which a position is ungated",
    )
    ap.add_argument("--python", help="interpreter with llama_cpp (default: this one)")
    ap.add_argument("--work", type=Path, help="keep GGUFs/logits here (default: temp dir)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--verbose", action="store_true", help="llama.cpp's own log on stderr")
    ap.add_argument("--llama-worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.llama_worker is not None:
        return worker_main(args.llama_worker)

    import torch

    from hillclimb.model.checkpoint import load_config
    from hillclimb.tokenizer.io import load_tokenizer

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="gguf-llamacpp-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            versions = call_llama(
                args.python, {"check_only": True, "out_dir": str(work / "check")}
            )["versions"]
            if args.model is not None:
                ck, source = args.model, {"checkpoint": str(args.model)}
            else:
                ck = make_checkpoint(args.preset, args.seed, args.scale, work)
                source = {"init_preset": args.preset, "seed": args.seed, "scale": args.scale}
            cfg, _ = load_config(ck)
            tok = load_tokenizer(ck)
            n = min(args.tokens, cfg.max_seq_len - args.decode)
            ids, _ = prompt_ids(tok, n)
            results = [check_dtype(args, ck, d, ids, work) for d in args.dtype]
        except SetupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_SETUP
    failures = [f for r in results for f in gate(r, args)]
    import hillclimb

    report = {
        "bench": "export_gguf_llamacpp",
        "source": source,
        "model": {
            "preset": cfg.name,
            "vocab_size": cfg.vocab_size,
            "tokenizer_vocab": tok.vocab_size,
            "d_model": cfg.d_model,
            "n_layers": cfg.n_layers,
            "n_experts": cfg.n_experts,
            "top_k": cfg.top_k,
            "n_dense_layers": cfg.n_dense_layers,
            "tie_embeddings": cfg.tie_embeddings,
        },
        "ids": {"n": len(ids), "from": "checkpoint tokenizer on the built-in code sample"},
        "settings": {
            "kv_type": args.kv_type,
            "flash_attn": False,
            "n_threads": args.threads,
            "reference": "our forward in fp32, matrices rounded to the GGUF dtype",
            "max_rel_diff": "max over positions of max|diff| / max|our logit| at that position",
            "router_margin": "min over MoE layers of p_k - p_(k+1) (our router, sorted probs)",
            "near_tie": args.near_tie,
        },
        "versions": {
            "llama_cpp": versions,
            "hillclimb": getattr(hillclimb, "__version__", None),
            "torch": torch.__version__,
            "gguf": _version("gguf"),
            "python": platform.python_version(),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        },
        "results": results,
        "ok": not failures,
        "failures": failures,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if failures:
        print("FAIL: " + "; ".join(failures), file=sys.stderr)
        return EXIT_GATE
    return 0


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
