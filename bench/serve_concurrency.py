"""Serving benchmark: aggregate throughput and latency at 1, 8 and 32 concurrent streaming clients.

A real `hillclimb serve` runs in its own process on loopback (so the load generator does not share
the server's interpreter); this script drives it with asyncio + httpx streaming clients. Each
client sends `--requests-per-client` streaming requests back to back with `ignore_eos` and a
fixed `max_tokens`, so every request generates exactly that many tokens and levels are
comparable. Per level it reports aggregate completion tokens/s (total tokens / wall time), request
latency p50/p99, time-to-first-token p50/p99, per-stream tokens/s and the error count (expected
0). Bounded: levels × clients × requests, then it stops by itself. JSON on stdout (and --out).

    PYTHONPATH=src python bench/serve_concurrency.py --preset micro
    PYTHONPATH=src python bench/serve_concurrency.py --flash DIR --thinking DIR --model thinking
    PYTHONPATH=src python bench/serve_concurrency.py --url http://127.0.0.1:8000 --model code-flash

Without checkpoints, `--preset micro|tiny` writes random-weight checkpoints to a temp dir (the
server's speed does not depend on what the weights learned).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def percentile(xs: list[float], q: float) -> float | None:
    """Linear-interpolated quantile, rounded to 0.1 ms; None (JSON null, not the NaN that strict
    JSON readers reject) when no request succeeded."""
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (k - lo), 4)


def make_checkpoints(preset: str, out: Path) -> dict[str, Path]:
    sys.path.insert(0, str(ROOT / "src"))
    from hillclimb.model.checkpoint import save_checkpoint
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model

    paths = {}
    for mid, name in (("thinking", f"thinking-{preset}"), ("code-flash", f"code-flash-{preset}")):
        d = out / mid
        save_checkpoint(build_model(get_preset(name), seed=0), d)
        paths[mid] = d
    return paths


def start_server(thinking: Path | None, flash: Path | None, max_batch: int, port: int,
                 db: Path, speculative: bool, no_compile: bool = False,
                 threads: int | None = None,
                 engine_process: bool = True) -> subprocess.Popen:  # fmt: skip
    cmd = [sys.executable, "-m", "hillclimb", "serve", "--port", str(port), "--db", str(db),
           "--max-batch", str(max_batch), "--log-level", "warning", "--device", "cpu"]  # fmt: skip
    if thinking:
        cmd += ["--thinking", str(thinking)]
    if flash:
        cmd += ["--flash", str(flash)]
    if no_compile:
        cmd += ["--no-compile"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if not engine_process:
        cmd += ["--no-engine-process"]
    if not speculative:
        cmd.append("--no-speculative")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HILLCLIMB_API_KEYS": ""}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(proc: subprocess.Popen | None) -> tuple[float, float] | None:
    """(server process, its child processes = the engine process) user + system CPU seconds
    (Linux /proc), None if unknown."""
    if proc is None:
        return None
    try:
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        return _cpu_s(proc.pid), sum(_cpu_s(int(k)) for k in kids)
    except (OSError, IndexError, ValueError):
        return None


def wait_up(url: str, proc: subprocess.Popen | None, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not come up")


async def one_request(client: httpx.AsyncClient, body: dict, path: str) -> dict:
    t0 = time.perf_counter()
    ttft = None
    tokens = 0
    async with client.stream("POST", path, json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return {"error": f"HTTP {r.status_code}: {r.text[:200]}"}
        done = False
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            obj = json.loads(data)
            if "error" in obj:
                return {"error": obj["error"]["message"]}
            if obj.get("usage"):
                tokens = obj["usage"]["completion_tokens"]
            if ttft is None and obj.get("choices"):
                ch = obj["choices"][0]
                piece = ch.get("text") if "text" in ch else (ch.get("delta") or {}).get("content")
                if piece or (ch.get("delta") or {}).get("reasoning_content"):
                    ttft = time.perf_counter() - t0
        if not done:
            return {"error": "stream ended without [DONE]"}
    total = time.perf_counter() - t0
    return {"latency": total, "ttft": ttft if ttft is not None else total, "tokens": tokens}


async def run_level(url: str, headers: dict, concurrency: int, per_client: int, body: dict,
                    path: str) -> dict:  # fmt: skip
    limits = httpx.Limits(
        max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4
    )
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600, limits=limits) as c:
        results: list[dict] = []

        async def client_task(k: int) -> None:
            for i in range(per_client):
                b = dict(body, seed=k * 1000 + i)
                try:
                    results.append(await one_request(c, b, path))
                except Exception as exc:  # noqa: BLE001 - counted as an error
                    results.append({"error": f"{type(exc).__name__}: {exc}"})

        t0 = time.perf_counter()
        await asyncio.gather(*(client_task(k) for k in range(concurrency)))
        wall = time.perf_counter() - t0
    ok = [r for r in results if "error" not in r]
    errors = [r["error"] for r in results if "error" in r]
    tokens = sum(r["tokens"] for r in ok)
    lat = [r["latency"] for r in ok]
    ttft = [r["ttft"] for r in ok]
    per_stream = [r["tokens"] / (r["latency"] - r["ttft"]) for r in ok
                  if r["latency"] > r["ttft"] and r["tokens"] > 1]  # fmt: skip
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_s": round(wall, 3),
        "completion_tokens": tokens,
        "agg_tokens_per_s": round(tokens / wall, 2) if wall > 0 else 0.0,
        "latency_p50_s": percentile(lat, 0.5),
        "latency_p99_s": percentile(lat, 0.99),
        "ttft_p50_s": percentile(ttft, 0.5),
        "ttft_p99_s": percentile(ttft, 0.99),
        "per_stream_tokens_per_s_p50": round(statistics.median(per_stream), 2)
        if per_stream
        else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--url", default=None, help="an already running server")
    src.add_argument(
        "--preset",
        choices=["micro", "tiny", "small"],
        default=None,
        help="random-weight checkpoints of this scale (default: micro)",
    )
    ap.add_argument("--thinking", type=Path, default=None)
    ap.add_argument("--flash", type=Path, default=None)
    ap.add_argument("--model", default="code-flash", help="thinking | code-flash | auto")
    ap.add_argument("--endpoint", choices=["chat", "completions"], default="chat")
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--requests-per-client", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--no-speculative", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="serve with eager decode steps (A/B)")
    ap.add_argument("--threads", type=int, default=None, help="server --threads (A/B)")
    ap.add_argument("--no-engine-process", action="store_true",
                    help="engines in the server's own process (A/B)")  # fmt: skip
    ap.add_argument("--api-key", default=os.environ.get("HILLCLIMB_API_KEY"))
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    try:
        levels = [int(x) for x in args.levels.split(",")]
    except ValueError:
        ap.error(f"--levels must be comma-separated integers, got {args.levels!r}")
    if min(levels) < 1 or args.requests_per_client < 1 or args.max_tokens < 1:
        ap.error("--levels, --requests-per-client and --max-tokens must be >= 1")
    load0 = [round(x, 2) for x in os.getloadavg()]  # the machine may be shared: say how busy

    proc = None
    tmp = None
    url = args.url
    if url is None:
        tmp = tempfile.TemporaryDirectory(prefix="hc-bench-serve-")
        thinking, flash = args.thinking, args.flash
        if thinking is None and flash is None:
            ck = make_checkpoints(args.preset or "micro", Path(tmp.name))
            thinking, flash = ck["thinking"], ck["code-flash"]
        sys.path.insert(0, str(ROOT / "src"))
        from hillclimb.serve.server import free_port

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(thinking, flash, max(args.max_batch, max(levels)), port,
                            Path(tmp.name) / "usage.sqlite", not args.no_speculative,
                            args.no_compile, args.threads,
                            not args.no_engine_process)  # fmt: skip
    try:
        wait_up(url, proc)
        headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        if args.endpoint == "chat":
            path = "/v1/chat/completions"
            body = {"model": args.model, "stream": True, "max_tokens": args.max_tokens,
                    "messages": [{"role": "user", "content": "Write a function that adds two "
                                  "numbers and explain it."}]}  # fmt: skip
        else:
            path = "/v1/completions"
            body = {"model": args.model, "stream": True, "max_tokens": args.max_tokens,
                    "prompt": "def add(a, b):\n    "}  # fmt: skip
        body.update(ignore_eos=True, temperature=1.0, stream_options={"include_usage": True})
        asyncio.run(run_level(url, headers, 2, 1, body, path))  # warm-up
        results = []
        for c in levels:
            # CPU seconds per level: the server process, its engine process and this load
            # generator (on a small machine they compete for the same cores)
            s0, g0 = proc_cpu_s(proc), time.process_time()
            res = asyncio.run(run_level(url, headers, c, args.requests_per_client, body, path))
            s1, g1 = proc_cpu_s(proc), time.process_time()
            ok = s0 is not None and s1 is not None
            res["server_cpu_s"] = round(s1[0] - s0[0], 3) if ok else None
            res["engine_process_cpu_s"] = round(s1[1] - s0[1], 3) if ok else None
            res["client_cpu_s"] = round(g1 - g0, 3)
            results.append(res)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tmp is not None:
            tmp.cleanup()
    base = results[0]["agg_tokens_per_s"] if results else 0
    report = {
        "benchmark": "serve_concurrency",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_start": load0,
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        },  # fmt: skip
        "config": {
            "url": args.url,
            "preset": None
            if args.url
            else (args.preset or "micro")
            if not (args.thinking or args.flash)
            else "checkpoints",
            "model": args.model,
            "endpoint": args.endpoint,
            "max_tokens": args.max_tokens,
            "requests_per_client": args.requests_per_client,
            "max_batch": max(args.max_batch, max(levels)),
            "speculative": not args.no_speculative,
            "compiled_decode": not args.no_compile,
            "threads": args.threads,
            "engine_process": not args.no_engine_process,
        },  # fmt: skip
        "levels": results,
        "speedup_vs_1": {
            str(r["concurrency"]): round(r["agg_tokens_per_s"] / base, 2) for r in results
        }
        if base
        else {},  # fmt: skip
        "total_errors": sum(r["errors"] for r in results),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if report["total_errors"] == 0 else 1


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
