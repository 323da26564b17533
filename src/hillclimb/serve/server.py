"""`hillclimb serve`: the OpenAI-compatible HTTP server over the generation engine — run it.

The server is split as vLLM's entrypoints are; this module runs it and keeps the names other
code imports (`build_state`, `load_state`, `create_app`, `ServerThread`, `serve_forever`):

- `state.py` — `ServerState` (models, keys, prices, usage db, metrics), `build_state`,
  `load_state`
- `app.py` — the FastAPI app: routes, error handlers, the engines' lifespan
- `serving.py` — the request flow both endpoints share (auth → parse → route → budget →
  reserve → submit → answer → settle), `Endpoint`
- `serving_chat.py`, `serving_completion.py` — what each endpoint adds (prompts, answers)
- `streaming.py` — the one SSE loop and tail behind both endpoints
- `job.py` — one request in flight: engine requests, usage, settlement exactly once

Why it is built this way:
- The engine runs its own loop thread (or process) with continuous batching; the server only
  `submit`s and consumes each request's async token stream, so any number of HTTP requests share
  the batch and the asyncio loop never runs a forward pass (router scoring goes to a worker
  thread).
- Every request has one `Job` whose `finalize()` is idempotent and is reached on every exit path,
  so batch slots are freed and credits settled exactly once (job.py).
- Nothing a client sends can take the server down (serving.py).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.serve.app import create_app
from hillclimb.serve.state import (
    AUTO,
    MODEL_IDS,
    ModelEntry,
    ServerState,
    build_state,
    load_prices,
    load_state,
    parse_prices,
)

__all__ = [
    "AUTO",
    "MODEL_IDS",
    "ModelEntry",
    "ServerState",
    "ServerThread",
    "banner",
    "build_state",
    "create_app",
    "free_port",
    "load_prices",
    "load_state",
    "parse_prices",
    "serve_forever",
]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerThread:
    """Run the app with uvicorn in a background thread (tests, `hillclimb chat`, benchmarks).

    A socket is bound before the thread starts, so the port is known and cannot be taken."""

    def __init__(
        self, state: ServerState, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ):
        import uvicorn

        self.state = state
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn.Config(
            create_app(state), log_level=log_level, access_log=False, timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="hillclimb-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 60.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise HillclimbError("the server thread exited during start-up")
            if time.monotonic() > deadline:
                raise HillclimbError("the server did not start in time")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def banner(state: ServerState, url: str) -> str:
    lines = [f"hillclimb serve: {url}/v1  (models: {', '.join(state.model_ids())})"]
    for mid, m in state.models.items():
        lines.append(
            f"  {mid}: {m.checkpoint or '(in memory)'}; context {m.engine.max_context}; "
            f"price/1M tokens prompt {m.price.prompt:.6g}, completion "
            f"{m.price.completion:.6g} credits"
        )
    if state.speculative:
        lines.append("  speculative decoding: code-flash drafts, thinking verifies")
    lines.append(f"  usage database: {state.db.path}")
    if state.open_mode:
        bar = "!" * 78
        lines += [
            bar,
            "!!  OPEN MODE: no API keys are configured. ANYONE who can reach this port can",
            "!!  use the models, without authentication, credits or rate limits.",
            "!!  For anything but local use, pass --keys FILE, set HILLCLIMB_API_KEYS, or",
            "!!  create keys with `hillclimb keys create --db DB --name NAME --credits C`.",
            bar,
        ]
    else:
        n = state.db.count_accounts()
        lines.append(f"  auth: API keys required ({n} account{'' if n == 1 else 's'})")
    return "\n".join(lines)


def serve_forever(state: ServerState, host: str, port: int, log_level: str = "info") -> None:
    import uvicorn

    url = f"http://{host}:{port}"
    print(banner(state, url), flush=True)
    uvicorn.run(
        create_app(state),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
