"""Where the server's engines live: in the server's process, or in an engine process of their own.

Why an engine process: in one Python process the HTTP event loop and the engine's loop threads
share one interpreter lock, so a server under load runs on about one core however many it has
(measured: the process at 1.0 CPU-seconds per second at 32 clients on 2 cores, the event loop's
samples waiting for the lock on trivial lines). With the engines in a child process the HTTP
side (parsing, validation, accounting, SSE) and the decode steps run in parallel — the layout
of vLLM's engine core. `hillclimb serve` uses it by default (`--no-engine-process` keeps one
process); `Engine` users (evaluation, RL, the chat CLI's local server) are unaffected.

Protocol (one `multiprocessing` pipe, pickled tuples; the child is started with "spawn"):

- parent → child: `("submit", model, request_id, prompt_ids, params)`, `("cancel", request_id)`,
  `("call", call_id, model, method, args)` for `stats` / `score_stats`, `("stop",)`;
- child → parent: `("ready", info)` or `("failed", message)` once at start-up, then
  `("events", [(request_id, TokenEvent | None, GenerationOutput | None), ...])` — all events of
  one engine step in one message, sent by the engine's loop thread after the step — and
  `("reply", call_id, ok, value)`.

Requests are validated in the parent (`check_request`: the same function the engine calls), so
bad input is refused at once and a submit never waits for the child. A `RemoteEngine` per model
offers the part of `Engine`'s interface the server uses (`submit` → `RequestHandle`, `stats`,
`score_stats`, `running_count`, `tokenizer`, `cfg`, `max_context`, `compiled`). If the child
dies, every open request finishes with an error, `stats()` raises (so `/health` says 503), and
the server keeps answering. The child exits when the pipe closes (the server is gone) and
ignores SIGINT (the server's shutdown stops it).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.serve.engine import RequestHandle

log = logging.getLogger("hillclimb.serve")


class EngineUnavailable(HillclimbError):
    """The engine process is gone or does not answer: the server's failure, not the request's
    (the HTTP API answers 503, not 400)."""


# ---- loading the engines (either process) -------------------------------------------------------
@dataclass
class EngineOptions:
    """How the server's engines are built (`hillclimb serve` flags of the same names)."""

    max_batch: int = 16  # batch slots per model
    device: str | None = None  # default: cuda if available
    # thinking verifies code-flash's drafts when both are loaded: True attaches the draft
    # (`--draft`), False never (`--no-speculative`), None measures the pair's step costs at
    # start-up and attaches only when speculation can pay (`speculative.decide_draft`; the
    # `hillclimb serve` default). True here keeps library callers' behaviour unchanged.
    speculative: bool | None = True
    # code-flash's default draft source: prompt lookup (model-free; code answers quote their
    # prompts); "none" turns it off. A request's `prediction` always drafts with lookup.
    flash_drafter: str = "lookup"
    # thinking's default draft source: "auto" chooses per request (`drafter_choice`): prompts
    # holding code, a FIM middle or tool observations draft by lookup/suffix, the others with
    # the draft model when the start-up decision kept it, else decode plainly
    thinking_drafter: str = "auto"
    # token healing for code-flash completions whose request leaves `token_healing` null
    # (`serve/healing.py`); thinking never heals by default
    flash_token_healing: bool = True
    compile: bool | None = None  # compiled decode steps; None = on for CPU
    # the prefix cache over the KV slots (`serve/prefix_cache.py`); None = the engine's
    # default (on, unless HILLCLIMB_PREFIX_CACHE=0)
    prefix_cache: bool | None = None
    threads: int | None = None  # torch intra-op threads; None = auto


def load_engines(
    thinking: str | Path | None, flash: str | Path | None, opts: EngineOptions
) -> tuple[dict[str, Any], bool]:
    """Engines for the given checkpoints, in this process → ({model id: Engine}, speculative
    on)."""
    import torch

    from hillclimb.serve.engine import Engine, small_cpu_model

    if thinking is None and flash is None:
        raise HillclimbError("give --thinking DIR and/or --flash DIR")
    engines: dict[str, Any] = {}
    dev = opts.device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads, compile = opts.threads, opts.compile
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    # compiled decode steps: on by default on CPU (`Engine(compile=...)`)
    comp = (torch.device(dev).type == "cpu") if compile is None else bool(compile)
    if comp:
        log.info("compiling the decode steps (three graphs per model, ≈10–15 s each on "
                 "2 idle cores, longer on a busy machine, cached on disk for later starts; a "
                 "line per graph follows; --no-compile skips)")  # fmt: skip
    kw = {
        "device": dev,
        "max_batch": opts.max_batch,
        "compile": comp,
        "prefix_cache": opts.prefix_cache,
    }
    if flash is not None:
        engines["code-flash"] = Engine.from_checkpoint(
            flash,
            name="code-flash",
            drafter=opts.flash_drafter,
            token_healing=opts.flash_token_healing,
            **kw,
        )
    both = flash is not None and thinking is not None
    spec_on = bool(both and opts.speculative is not False)
    if thinking is not None:
        draft = engines["code-flash"] if spec_on else None
        engines["thinking"] = Engine.from_checkpoint(
            thinking, draft=draft, name="thinking", drafter=opts.thinking_drafter, **kw
        )
    if both:
        decision = choose_draft(engines["thinking"], opts.speculative)
        spec_on = decision.attach
        engines["thinking"].draft_decision = decision.as_dict()
        log.info("speculative decoding: %s", describe_decision(decision))
    # Auto threads: one intra-op thread for small models. On 2 cores the single-process
    # server was faster with 1 at 1, 8 and 32 clients (the event loop wants the other core):
    # `bench/serve_concurrency.py --preset tiny --threads 1|2`, BENCHMARKS.md.
    small = all(small_cpu_model(e.cfg, dev) for e in engines.values())
    if threads is None and small:
        torch.set_num_threads(1)
    for name, eng in engines.items():
        if comp and not eng.compiled:
            log.warning("%s: compiled decode step unavailable, eager steps (%s)", name,
                        eng.compile_error)  # fmt: skip
    return engines, spec_on


# ---- whether code-flash drafts for thinking ------------------------------------------------------
def choose_draft(target: Any, speculative: bool | None, measure: Any = None) -> Any:
    """Decide on the draft model of `target` (an `Engine` built with its draft attached unless
    `speculative` is False) and detach it when the measured rule says no.

    Why at start-up: whether a draft pays is mostly the pair and the machine (the cost of a
    draft step next to a target step and a verification), and those are known in a few ms; the
    runtime back-off can only find out by losing (0.95× measured with the tiny pair).
    `measure(target) → StepCosts` is injectable for tests."""
    from hillclimb.serve.speculative import DraftDecision, decide_draft

    if speculative is False:
        return DraftDecision(False, "off", "turned off (--no-speculative)")
    if target.draft is None:
        return DraftDecision(False, "auto", "no draft model")
    if speculative is True:
        return DraftDecision(
            True, "forced", "attached without measuring (--draft / speculative=True)"
        )
    t0 = time.perf_counter()
    try:
        costs = (measure or measure_step_costs)(target)
    except Exception as exc:  # noqa: BLE001 - a failed timing must not stop the server
        log.warning("measuring the draft's step costs failed (%s): no draft model", exc)
        decision = DraftDecision(False, "auto", f"step costs could not be measured: {exc}")
    else:
        decision = decide_draft(costs, range(1, target.gamma_max + 1))
    decision.measure_ms = (time.perf_counter() - t0) * 1e3
    if not decision.attach:
        detach_draft(target)
    return decision


def detach_draft(engine: Any) -> None:
    """Serve `engine` without its draft model (`Engine.detach_draft`)."""
    engine.detach_draft()


def describe_decision(decision: Any) -> str:
    """One start-up line: attached or not, and why."""
    what = "code-flash drafts for thinking" if decision.attach else "no draft model for thinking"
    hint = "" if decision.policy != "auto" else (
        " (--draft forces it)" if not decision.attach else " (--no-speculative turns it off)"
    )  # fmt: skip
    return f"{what}: {decision.reason}{hint}"


def measure_step_costs(target: Any, reps: int = 9, context: int = 64) -> Any:
    """The target's decode step, its draft's decode step and its verification of T = 2 …
    γ_max + 1 tokens, timed on the engines' own (compiled) steps and caches, slot 0 of each,
    after `context` tokens (a short prompt). Both caches are reset afterwards. ≈0.1 s for the
    tiny pair on CPU."""
    import torch

    from hillclimb.serve.speculative import time_step_costs

    d = target.draft
    vocab = int(target.cfg.vocab_size)
    n = max(1, min(context, target.max_context - target.gamma_max - 4))
    ctx = [(31 * i + 7) % vocab for i in range(n)]
    step_t = _slot_step(target.fast, target.model, target.cache, target.device)
    step_d = _slot_step(d.fast, d.model, d.cache, target.device)
    with torch.inference_mode():
        step_t(ctx, True)
        step_d(ctx, True)

        def one(step: Any, cache: Any) -> Any:
            def run() -> None:
                step([11], True)
                cache.truncate(0, n)

            return run

        def verify(T: int) -> None:
            step_t([(13 * j + 5) % vocab for j in range(T)], False)
            target.cache.truncate(0, n)

        sync = torch.cuda.synchronize if target.device.type == "cuda" else None
        lens = list(range(2, target.gamma_max + 2))
        try:
            return time_step_costs(one(step_t, target.cache), one(step_d, d.cache), verify,
                                   lens, reps=reps, sync=sync)  # fmt: skip
        finally:
            target.cache.reset([0])
            d.cache.reset([0])


def _slot_step(fast: Any, model: Any, cache: Any, device: Any) -> Any:
    """step(tokens, last_only) on slot 0 of `cache` the way the engine runs a single stream:
    the compiled/lean single-slot steps on CPU fp32, the fast path or the model elsewhere."""
    import torch

    if fast is not None and fast.lean:

        def lean(tokens: list[int], last_only: bool) -> Any:
            if len(tokens) == 1:
                return fast.decode_one(tokens[0], cache, 0)
            return fast.extend_one(tokens, cache, 0, last_only=last_only)

        return lean
    slot = torch.tensor([0], device=device)

    def general(tokens: list[int], last_only: bool) -> Any:
        x = torch.tensor([tokens], device=device)
        if fast is not None:
            return fast(x, cache, slot, last_only=last_only, single_slot=0, dense=True)
        return model(x, cache=cache, slot_ids=slot, last_only=last_only)

    return general


# ---- the child ------------------------------------------------------------------------------------
def _host_main(conn: Any, spec: dict[str, Any]) -> None:
    """Engine process: load the engines, then serve the pipe until "stop" or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's shutdown stops us
    send_lock = threading.Lock()

    def send(msg: Any) -> None:
        with send_lock:
            conn.send(msg)

    try:  # everything before "ready" reports its failure (a bad log level included)
        logging.basicConfig(level=spec.get("log_level", "WARNING"),
                            format="%(levelname)s %(name)s[engine]: %(message)s")  # fmt: skip
        engines, spec_on = load_engines(spec["thinking"], spec["flash"], spec["opts"])
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    outbox: list[tuple[str, Any, Any]] = []
    out_lock = threading.Lock()

    def flush() -> None:
        with out_lock:
            if not outbox:
                return
            items = outbox[:]
            outbox.clear()
        # the server gone: the command loop below exits on EOF
        with contextlib.suppress(OSError, EOFError):
            send(("events", items))

    class _Forward(RequestHandle):
        """The engine's handle in the child: events go to the outbox, sent after the step."""

        def _push(self, ev: Any) -> None:
            with out_lock:
                outbox.append((self.request_id, ev, None))

        def _finish(self, out: Any) -> None:
            self._done = True
            with out_lock:
                outbox.append((self.request_id, None, out))

    handles: dict[str, RequestHandle] = {}
    for eng in engines.values():
        eng.after_step = flush
        eng.start()
    info = {
        name: {
            "max_context": eng.max_context,
            "compiled": eng.compiled,
            "compiled_batch": eng.compiled_batch,
            "compile_error": eng.compile_error,
            "has_draft": eng.draft is not None,
            "default_drafter": eng.default_drafter,
            "draft_decision": getattr(eng, "draft_decision", None),
        }
        for name, eng in engines.items()
    }
    send(("ready", {"models": info, "speculative": spec_on, "pid": os.getpid()}))
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            kind = msg[0]
            if kind == "submit":
                _, model, rid, ids, params = msg
                for done in [k for k, h in handles.items() if h.done()]:
                    del handles[done]
                h = _Forward(rid)
                handles[rid] = h
                try:
                    engines[model].submit(ids, params, request_id=rid, handle=h)
                except Exception as exc:  # noqa: BLE001 - the parent validated; report anyway
                    with out_lock:
                        outbox.append((rid, None, _error_output(rid, len(ids), exc)))
                    flush()
            elif kind == "cancel":
                h = handles.get(msg[1])
                if h is not None:
                    h.cancel()
            elif kind == "call":
                _, call_id, model, method, args = msg
                try:
                    value = _call(engines[model], method, args)
                    send(("reply", call_id, True, value))
                except Exception as exc:  # noqa: BLE001 - the caller raises it
                    send(("reply", call_id, False, f"{type(exc).__name__}: {exc}"))
            elif kind == "stop":
                break
    finally:
        for eng in engines.values():
            eng.stop()
        flush()


def _call(engine: Any, method: str, args: tuple) -> Any:
    if method == "stats":
        return engine.stats()
    if method == "score_stats":
        st = engine.score_stats(*args)
        return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in st.items()}
    if method == "prompt_logprobs":
        return engine.prompt_logprobs(*args)
    raise HillclimbError(f"unknown engine call {method!r}")


def _error_output(rid: str, prompt_tokens: int, exc: BaseException | str) -> Any:
    from hillclimb.serve.engine import GenerationOutput

    msg = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return GenerationOutput(
        request_id=rid, prompt_tokens=prompt_tokens, token_ids=[], text="", reasoning_text="",
        content_text="", completion_tokens=0, reasoning_tokens=0, finish_reason="error",
        logprobs=None, spec=None, timings={}, error=msg,
    )  # fmt: skip


# ---- the parent -----------------------------------------------------------------------------------
class EngineProcess:
    """The child process and its pipe: starts it, routes its messages, stops it."""

    def __init__(self, spec: dict[str, Any], start_timeout: float | None = None):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_host_main, args=(child, spec), name="hillclimb-engines",
                                daemon=True)  # fmt: skip
        self.proc.start()
        child.close()
        self._send_lock = threading.Lock()
        self._handles: dict[str, Any] = {}
        self._counts: dict[str, int] = {}
        self._calls: dict[int, list[Any]] = {}
        self._call_ids = itertools.count()
        self._lock = threading.Lock()
        self.dead: str | None = None
        self._stopping = False
        t0 = time.monotonic()
        while not self._conn.poll(0.5):
            if not self.proc.is_alive():
                raise HillclimbError(
                    f"the engine process exited while loading (exit code {self.proc.exitcode})"
                )
            if start_timeout is not None and time.monotonic() - t0 > start_timeout:
                self.proc.kill()
                raise HillclimbError(f"the engine process did not start in {start_timeout} s")
        try:
            msg = self._conn.recv()
        except (EOFError, OSError):
            # the child died before a word (killed, crashed in native code, or gone before its
            # own error reporting ran): the pipe closed, which is what `poll` saw
            self.proc.join(timeout=10)
            raise HillclimbError(
                f"the engine process exited while loading (exit code {self.proc.exitcode}); "
                "run with --no-engine-process to see the error in this process"
            ) from None
        if msg[0] == "failed":
            self.proc.join(timeout=10)
            raise HillclimbError(f"loading the engines failed: {msg[1]}")
        self.info: dict[str, Any] = msg[1]
        self._reader = threading.Thread(target=self._read, name="engine-process-reader",
                                        daemon=True)  # fmt: skip
        self._reader.start()

    def send(self, msg: Any) -> None:
        if self.dead is not None:
            raise EngineUnavailable(f"the engine process is not running: {self.dead}")
        try:
            with self._send_lock:
                self._conn.send(msg)
        except (OSError, EOFError, BrokenPipeError) as exc:
            raise EngineUnavailable(f"the engine process is not running: {exc}") from None

    def submit(self, model: str, rid: str, ids: list[int], params: Any) -> Any:
        h = _RemoteHandle(rid, self)
        with self._lock:
            self._handles[rid] = (model, h)
            self._counts[model] = self._counts.get(model, 0) + 1
        try:
            self.send(("submit", model, rid, ids, params))
        except HillclimbError:
            self._drop(rid)
            raise
        return h

    def running(self, model: str) -> int:
        return self._counts.get(model, 0)

    def call(self, model: str, method: str, *args: Any, timeout: float = 30.0) -> Any:
        call_id = next(self._call_ids)
        slot: list[Any] = [threading.Event(), None, None]
        with self._lock:
            self._calls[call_id] = slot
        try:
            self.send(("call", call_id, model, method, args))
            if not slot[0].wait(timeout):
                raise EngineUnavailable(
                    f"the engine process did not answer {method} in {timeout} s"
                )
        finally:
            with self._lock:
                self._calls.pop(call_id, None)
        ok, value = slot[1], slot[2]
        if not ok:
            if self.dead is not None:  # failed by `_die`: the process is gone
                raise EngineUnavailable(f"the engine process is not running: {value}")
            raise HillclimbError(str(value))
        return value

    def _drop(self, rid: str) -> None:
        with self._lock:
            entry = self._handles.pop(rid, None)
            if entry is not None:
                self._counts[entry[0]] -= 1

    def _read(self) -> None:
        from hillclimb.serve.engine import _batched_wakeups

        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError) as exc:
                self._die(f"engine process ended ({type(exc).__name__}; exit code "
                          f"{self.proc.exitcode})")  # fmt: skip
                return
            if msg[0] == "events":
                with _batched_wakeups():  # one asyncio wake-up per message, not per event
                    for rid, ev, out in msg[1]:
                        entry = self._handles.get(rid)
                        if entry is None:
                            continue
                        if ev is not None:
                            entry[1]._push(ev)
                        if out is not None:
                            self._drop(rid)
                            entry[1]._finish(out)
            elif msg[0] == "reply":
                _, call_id, ok, value = msg
                with self._lock:
                    slot = self._calls.get(call_id)
                if slot is not None:
                    slot[1], slot[2] = ok, value
                    slot[0].set()

    def _die(self, why: str) -> None:
        self.dead = why
        if not self._stopping:
            log.error("%s: open requests fail", why)
        with self._lock:
            entries = list(self._handles.items())
            self._handles.clear()
            self._counts = dict.fromkeys(self._counts, 0)
            calls = list(self._calls.values())
        for rid, (_, h) in entries:
            if not h.done():
                h._finish(_error_output(rid, 0, why))
        for slot in calls:
            slot[1], slot[2] = False, why
            slot[0].set()

    def stop(self) -> None:
        self._stopping = True
        if self.proc.is_alive():
            with contextlib.suppress(HillclimbError):
                self.send(("stop",))
            self.proc.join(timeout=30)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(timeout=5)
        self._conn.close()


class _RemoteHandle(RequestHandle):
    """A `RequestHandle` fed by the reader thread; `cancel` also tells the engine process."""

    def __init__(self, request_id: str, host: EngineProcess):
        super().__init__(request_id)
        self._host = host

    def cancel(self) -> None:
        first = not self.cancelled
        super().cancel()
        if first and not self.done():
            # the process gone: the handle is (being) finished with an error
            with contextlib.suppress(HillclimbError):
                self._host.send(("cancel", self.request_id))

    def never_admitted(self) -> bool:
        """Unknown here (the engine process admits, and says so only in the final output):
        taken as admitted, so a request settled without its output is charged as before."""
        return False


class RemoteEngine:
    """One model of an `EngineProcess`, with the part of `Engine`'s interface the server uses."""

    def __init__(self, host: EngineProcess, name: str, checkpoint: str | Path):
        from hillclimb.model.checkpoint import load_config
        from hillclimb.serve.budget import checkpoint_profile
        from hillclimb.tokenizer.io import load_tokenizer

        self.host, self.name = host, name
        info = host.info["models"][name]
        self.cfg = load_config(checkpoint)[0]
        self.tokenizer = load_tokenizer(checkpoint)
        self.max_context: int = info["max_context"]
        self.compiled: bool = info["compiled"]
        self.compiled_batch: bool = info["compiled_batch"]
        self.compile_error: str | None = info["compile_error"]
        self.has_draft: bool = info["has_draft"]
        self.default_drafter: str = info["default_drafter"]
        # why thinking has (or has not) a draft model (`choose_draft`); None for code-flash
        self.draft_decision: dict[str, Any] | None = info.get("draft_decision")
        # the engine process resolves budgets with the same profile (Engine.from_checkpoint)
        self.thinking_profile = checkpoint_profile(checkpoint)

    def submit(self, prompt: Any, params: Any, request_id: str | None = None) -> Any:
        import uuid

        from hillclimb.serve.engine import check_request

        ids = check_request(prompt, params, tokenizer=self.tokenizer,
                            vocab_size=self.cfg.vocab_size, max_context=self.max_context,
                            name=self.name, has_draft=self.has_draft,
                            default_drafter=self.default_drafter)  # fmt: skip
        rid = request_id or f"req-{uuid.uuid4().hex[:16]}"
        return self.host.submit(self.name, rid, ids, params)

    @property
    def running_count(self) -> int:
        """Requests submitted and not finished (queued ones included)."""
        return self.host.running(self.name)

    def stats(self) -> dict[str, Any]:
        st = self.host.call(self.name, "stats", timeout=10.0)
        return {**st, "engine_process": True, "engine_pid": self.host.proc.pid}

    def score_stats(self, prompt_ids: list[int]) -> dict[str, Any]:
        import torch

        st = self.host.call(self.name, "score_stats", list(prompt_ids))
        return {k: torch.tensor(v) if isinstance(v, list) else v for k, v in st.items()}

    def prompt_logprobs(self, prompt_ids: list[int], n_top: int) -> list[dict[str, Any]]:
        return self.host.call(self.name, "prompt_logprobs", list(prompt_ids), n_top)

    def start(self) -> None:
        """The engines run from the moment the process is ready."""

    def stop(self) -> None:
        self.host.stop()


def start_engine_process(
    thinking: str | Path | None,
    flash: str | Path | None,
    opts: EngineOptions,
    log_level: str = "WARNING",
) -> tuple[dict[str, RemoteEngine], bool]:
    """Start the engine process for these checkpoints → ({model id: RemoteEngine}, speculative
    on). Blocks until the engines are loaded (and compiled); raises `HillclimbError` with the
    child's message when loading fails."""
    spec = {
        "thinking": str(thinking) if thinking is not None else None,
        "flash": str(flash) if flash is not None else None,
        "opts": opts,
        "log_level": log_level.upper(),
    }
    host = EngineProcess(spec)
    paths = {"thinking": thinking, "code-flash": flash}
    engines = {name: RemoteEngine(host, name, paths[name]) for name in host.info["models"]}
    return engines, bool(host.info["speculative"])
