"""Server state: the served models (engine, price, checkpoint facts), keys, usage database,
metrics and settings, and the two ways to assemble it (`build_state` from loaded engines,
`load_state` from checkpoint directories).

Why a module of its own: everything a request needs besides its body lives in one
`ServerState`, built once at start-up; the request flow (`serving.py`), the routes (`app.py`)
and the process runner (`server.py`) only read it, so tests build it from in-memory engines and
the CLI from checkpoints through the same `build_state`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hillclimb.errors import HillclimbError
from hillclimb.serve.auth import Authenticator, KeySpec
from hillclimb.serve.billing import Price, UsageDB, default_price
from hillclimb.serve.flywheel import FlywheelStore
from hillclimb.serve.metrics import ServerMetrics, engine_collector

if TYPE_CHECKING:
    from typing import TypeAlias

    from hillclimb.serve.engine import Engine
    from hillclimb.serve.host import RemoteEngine
    from hillclimb.serve.router import Router
    from hillclimb.tokenizer.io import Tokenizer

    # an engine in this process, or its proxy in the engine process (`serve/host.py`)
    ServedEngine: TypeAlias = Engine | RemoteEngine

log = logging.getLogger("hillclimb.serve")

MODEL_IDS = ("thinking", "code-flash")
AUTO = "auto"


@dataclass
class ModelEntry:
    id: str
    engine: ServedEngine
    price: Price
    checkpoint: str | None = None
    active_params: int | None = None
    total_params: int | None = None
    # trained to read its budget (SFT on budget-noted data or `hillclimb rl
    # --budget-conditioning`; its checkpoint's hillclimb.json says so): a request's thinking
    # budget also goes into the prompt, as the note it was trained with (`with_budget_note`)
    budget_note: bool = False


@dataclass
class ServerState:
    models: dict[str, ModelEntry]
    db: UsageDB
    auth: Authenticator
    router: Router | None = None
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    default_max_tokens: int = 1024  # chat default when the client sends no max_tokens
    owns_engines: bool = True
    speculative: bool = False
    # seconds between two SSE writes of one stream; None = auto (see `flush_interval`)
    stream_interval: float | None = None
    started: float = field(default_factory=time.time)
    # the data flywheel's API half (`serve/flywheel.py`): who was served what, consent,
    # feedback; None = not recorded (no POST /v1/feedback)
    flywheel: FlywheelStore | None = None

    def flush_interval(self, entry: ModelEntry) -> float:
        """How long a stream lets tokens gather before its next SSE write. Auto: none while
        the model runs ≤ 4 requests (every token is written at once), 15 ms above: under load
        each write then carries a few tokens, which cuts the per-token HTTP/JSON work that
        shares the interpreter with the engine (the first token is never held back)."""
        if self.stream_interval is not None:
            return self.stream_interval
        return 0.0 if entry.engine.running_count <= 4 else 0.015

    @property
    def tokenizer(self) -> Tokenizer:
        return next(iter(self.models.values())).engine.tokenizer

    @property
    def open_mode(self) -> bool:
        return self.auth.open_mode

    def model_ids(self) -> list[str]:
        ids = [m for m in MODEL_IDS if m in self.models]
        return ids + [AUTO] if ids else ids

    def start_engines(self) -> None:
        for m in self.models.values():
            m.engine.start()

    def stop_engines(self) -> None:
        for m in self.models.values():
            try:
                m.engine.stop()
            except Exception:  # pragma: no cover - best effort at shutdown
                log.exception("stopping engine %s", m.id)


def checkpoint_accounting(path: str | Path) -> tuple[int, int]:
    """(active, total) parameters of a checkpoint, from its config (meta device, no weights)."""
    from hillclimb.model.accounting import account
    from hillclimb.model.checkpoint import load_config

    cfg, _ = load_config(path)
    acc = account(cfg)
    return acc.active_params, acc.total_params


def load_prices(path: str | Path) -> dict[str, Price]:
    """A prices file (JSON or TOML): `{model: {prompt: credits/1M tokens, completion: ...}}`."""
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise HillclimbError(f"prices file {p} does not exist")
    try:
        data = tomllib.loads(p.read_text()) if p.suffix == ".toml" else json.loads(p.read_text())
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise HillclimbError(f"malformed prices file {p}: {exc}") from exc
    return parse_prices(data, str(p))


def parse_prices(data: Any, where: str = "prices") -> dict[str, Price]:
    out = {}
    if not isinstance(data, dict):
        raise HillclimbError(f"{where}: expected {{model: {{prompt, completion}}}}")
    for model, v in data.items():
        if model not in MODEL_IDS:
            raise HillclimbError(f"{where}: unknown model {model!r} (expected one of {MODEL_IDS})")
        if not isinstance(v, dict) or set(v) - {"prompt", "completion"}:
            raise HillclimbError(
                f"{where}: {model} needs {{prompt, completion}} (credits per million tokens)"
            )
        try:
            price = Price(float(v.get("prompt", 0.0)), float(v.get("completion", 0.0)))
        except (TypeError, ValueError) as exc:
            raise HillclimbError(f"{where}: {model}: prices must be numbers") from exc
        # NaN passed `< 0` (TOML has `nan` and `inf`) and every request then failed billing
        if not all(math.isfinite(x) and x >= 0 for x in (price.prompt, price.completion)):
            raise HillclimbError(f"{where}: {model}: prices must be finite numbers >= 0")
        out[model] = price
    return out


def build_state(
    engines: dict[str, ServedEngine],
    *,
    db: UsageDB | str | Path = ":memory:",
    keys: list[KeySpec] | None = None,
    prices: dict[str, Price] | None = None,
    checkpoints: dict[str, str | Path] | None = None,
    router: Router | None = None,
    default_max_tokens: int = 1024,
    owns_engines: bool = True,
    speculative: bool = False,
    stream_interval: float | None = None,
    flywheel: FlywheelStore | str | Path | None = None,
) -> ServerState:
    """Assemble a server from loaded engines (ids `thinking` / `code-flash`).

    Prices default to `default_price(active parameters)` read from each checkpoint's config; when
    no checkpoint path is known and no price is given the model is free (price 0)."""
    if not engines:
        raise HillclimbError("serve needs at least one model (--thinking and/or --flash)")
    for name in engines:
        if name not in MODEL_IDS:
            raise HillclimbError(f"unknown model id {name!r}; expected {MODEL_IDS}")
    toks = [e.tokenizer for e in engines.values()]
    if len(toks) == 2 and toks[0].hf.to_str() != toks[1].hf.to_str():
        raise HillclimbError("thinking and code-flash must share one tokenizer")
    usage_db = db if isinstance(db, UsageDB) else UsageDB(db)
    released = usage_db.release_stale()
    if released:
        log.warning("refunded %d reservations left by a previous run", released)
    models = {}
    for name, eng in engines.items():
        ckpt = (checkpoints or {}).get(name)
        active = total = None
        if ckpt is not None:
            active, total = checkpoint_accounting(ckpt)
        if prices and name in prices:
            price = prices[name]
        elif active is not None:
            price = default_price(active)
        else:
            price = Price(0.0, 0.0)
        models[name] = ModelEntry(
            name,
            eng,
            price,
            str(ckpt) if ckpt else None,
            active,
            total,
            budget_note=budget_conditioned(ckpt),
        )
    state = ServerState(
        models=models,
        db=usage_db,
        auth=Authenticator(usage_db, keys),
        router=router,
        default_max_tokens=default_max_tokens,
        owns_engines=owns_engines,
        speculative=speculative,
        stream_interval=stream_interval,
        flywheel=(
            flywheel
            if flywheel is None or isinstance(flywheel, FlywheelStore)
            else FlywheelStore(flywheel)
        ),
    )
    state.metrics.add_collector(engine_collector({k: m.engine for k, m in models.items()}))
    return state


def load_state(
    thinking: str | Path | None,
    flash: str | Path | None,
    *,
    db: str | Path = "hillclimb_usage.sqlite",
    keys_file: str | Path | None = None,
    env_keys: str | None = None,
    prices_file: str | Path | None = None,
    router_file: str | Path | None = None,
    max_batch: int = 16,
    device: str | None = None,
    speculative: bool = True,
    default_max_tokens: int = 1024,
    compile: bool | None = None,
    stream_interval: float | None = None,
    threads: int | None = None,
    engine_process: bool = False,
    prefix_cache: bool | None = None,
    flywheel: str | Path | None = None,
    log_level: str = "warning",
) -> ServerState:
    """Load checkpoints into engines (thinking verifies code-flash's drafts when both are given
    and `speculative`), then `build_state`. `engine_process`: the engines run in a child
    process (`hillclimb.serve.host`), so HTTP work and decode steps use separate cores."""
    from hillclimb.serve.auth import load_env_keys, load_keys_file
    from hillclimb.serve.host import EngineOptions, load_engines, start_engine_process

    if thinking is None and flash is None:
        raise HillclimbError("give --thinking DIR and/or --flash DIR")
    from hillclimb.model.checkpoint import load_config

    for flag, path, role in (
        ("--thinking", thinking, "thinking"),
        ("--flash", flash, "code-flash"),
    ):
        if path is not None:  # both named before either model loads or compiles (minutes)
            try:
                cfg, _ = load_config(path)
            except HillclimbError as exc:
                raise HillclimbError(f"{flag}: {exc}") from None
            family = getattr(cfg, "family", None)
            if family in ("thinking", "code-flash") and family != role:
                # allowed (any model can fill either role), but rarely meant: say so loudly
                log.warning("%s %s holds a %s model; serving it as %s", flag, path, family, role)
    specs = load_keys_file(keys_file) if keys_file else []
    specs += load_env_keys(env_keys)
    prices = load_prices(prices_file) if prices_file else None
    opts = EngineOptions(
        max_batch=max_batch,
        device=device,
        speculative=speculative,
        compile=compile,
        threads=threads,
        prefix_cache=prefix_cache,
    )
    if engine_process:
        import torch

        engines, spec_on = start_engine_process(thinking, flash, opts, log_level=log_level)
        torch.set_num_threads(1)  # this process only tokenizes and serves HTTP
    else:
        engines, spec_on = load_engines(thinking, flash, opts)
    router = None
    if "code-flash" in engines and "thinking" in engines:
        from hillclimb.serve.router import Router

        flash_engine = engines["code-flash"]
        router = Router.load(router_file, flash_engine) if router_file else Router(flash_engine)
    ckpts = {k: v for k, v in (("thinking", thinking), ("code-flash", flash)) if v is not None}
    try:
        return build_state(
            engines,
            db=db,
            keys=specs,
            prices=prices,
            checkpoints=ckpts,
            router=router,
            default_max_tokens=default_max_tokens,
            speculative=spec_on,
            stream_interval=stream_interval,
            flywheel=flywheel,
        )
    except BaseException:
        for eng in engines.values():  # an engine process must not outlive a failed start
            eng.stop()
        raise


def budget_conditioned(ckpt: str | Path | None) -> bool:
    """Whether a checkpoint was trained to read the budget note (SFT on budget-noted data or
    budget-conditioned RL: `budget_conditioning` in its `hillclimb.json`)."""
    if ckpt is None:
        return False
    from hillclimb.model.checkpoint import read_info

    try:
        return bool(read_info(ckpt).get("budget_conditioning"))
    except (OSError, HillclimbError):
        return False
