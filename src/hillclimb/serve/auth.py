"""API keys (Bearer), where they come from, and per-key rate limits.

Why the usage database is the one source of truth for accounts: balances change with every
request, so they must live where the reservations are made (billing.py). A keys file or the
`HILLCLIMB_API_KEYS` environment variable only *registers* keys into it at start-up — a key's
`credits` there is its initial grant, applied the first time the key is seen (restarting the
server never refills a balance; `hillclimb keys credit` does). `hillclimb keys create` writes a
key straight into the database.

Auth is on when the database holds at least one account (a revoked one counts: revoking every
key must not reopen the server); otherwise the server runs in open mode (local use), and says so
loudly at start-up.

Rate limits are token buckets per key, in memory: capacity `rate_limit_rpm` requests, refilled at
`rpm / 60` per second. A refused request gets 429 with `Retry-After` (seconds until one token is
back). In memory is deliberate: a limit protects this process's engine, and is cheap to check.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.serve.billing import MIN_RPM, Account, UsageDB

ENV_KEYS = "HILLCLIMB_API_KEYS"


@dataclass
class KeySpec:
    key: str
    name: str
    credits: float | None = None  # None: unlimited
    rate_limit_rpm: float | None = None  # None: unlimited


def _spec(key: str, value: Any, where: str, i: int) -> KeySpec:
    if not isinstance(key, str) or len(key) < 8:
        raise HillclimbError(f"{where}: API keys must be strings of at least 8 characters")
    if not all("!" <= ch <= "~" for ch in key):
        # a key with a space, a newline or a non-ASCII character can never match: the header is
        # stripped and split at the first space, and HTTP headers carry ASCII — such a key was
        # registered (turning auth on) and then refused as "Incorrect API key" on every request
        shown = key[:4] + "…" if len(key) > 4 else key
        raise HillclimbError(
            f"{where}: API key {shown!r} must be printable ASCII without spaces or line breaks"
        )
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise HillclimbError(
            f"{where}: the value of a key must be a table {{name, credits, rate_limit_rpm}}"
        )
    unknown = set(value) - {"name", "credits", "rate_limit_rpm"}
    if unknown:
        raise HillclimbError(f"{where}: unknown fields for a key: {sorted(unknown)}")
    credits = value.get("credits")
    rpm = value.get("rate_limit_rpm")
    for label, v in (("credits", credits), ("rate_limit_rpm", rpm)):
        # NaN passed `v < 0` and was stored as NULL: a rate limit read as "no limit"
        if v is not None and (
            not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or v < 0
        ):
            raise HillclimbError(
                f"{where}: {label} must be a finite number >= 0 (or absent), got {v!r}"
            )
    if rpm is not None and rpm < MIN_RPM:
        raise HillclimbError(
            f"{where}: rate_limit_rpm must be >= {MIN_RPM:g} (omit it for no limit), got {rpm!r}"
        )
    name = value.get("name") or f"key{i}"
    return KeySpec(
        key,
        str(name),
        None if credits is None else float(credits),
        None if rpm is None else float(rpm),
    )


def parse_keys(data: Any, where: str) -> list[KeySpec]:
    """`{key: {name, credits, rate_limit_rpm}}` (or `{"keys": {...}}`) → specs."""
    if isinstance(data, dict) and set(data) == {"keys"}:
        data = data["keys"]
    if not isinstance(data, dict):
        raise HillclimbError(
            f"{where}: expected a table mapping key -> {{name, credits, rate_limit_rpm}}"
        )
    specs = [_spec(k, v, where, i) for i, (k, v) in enumerate(data.items())]
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise HillclimbError(f"{where}: duplicate key names {sorted(dup)}")
    return specs


def load_keys_file(path: str | os.PathLike[str]) -> list[KeySpec]:
    p = Path(path)
    if not p.is_file():
        raise HillclimbError(f"keys file {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
        data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise HillclimbError(f"malformed keys file {p}: {exc}") from exc
    return parse_keys(data, str(p))


def load_env_keys(value: str | None) -> list[KeySpec]:
    """`HILLCLIMB_API_KEYS`: a JSON object like a keys file, or comma-separated keys
    (unlimited credits, no rate limit)."""
    if not value or not value.strip():
        return []
    value = value.strip()
    if value.startswith("{"):
        try:
            return parse_keys(json.loads(value), ENV_KEYS)
        except json.JSONDecodeError as exc:
            raise HillclimbError(f"malformed {ENV_KEYS}: {exc}") from exc
    keys = [k.strip() for k in value.split(",") if k.strip()]
    return parse_keys({k: {"name": f"env{i}"} for i, k in enumerate(keys)}, ENV_KEYS)


class TokenBucket:
    def __init__(self, rpm: float):
        self.rpm = rpm
        self.capacity = max(1.0, rpm)
        self.rate = max(rpm, MIN_RPM) / 60.0  # a smaller stored limit (an older database)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0.0 when a request may proceed (a token is taken); otherwise seconds to wait."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[int, TokenBucket] = {}
        self._lock = threading.Lock()

    def check(self, account: Account) -> float:
        """0.0 if allowed, else the seconds until the next request would be."""
        if account.rate_limit_rpm is None:
            return 0.0
        with self._lock:
            b = self._buckets.get(account.id)
            if b is None or b.rpm != account.rate_limit_rpm:
                b = self._buckets[account.id] = TokenBucket(account.rate_limit_rpm)
            return b.take()


class AuthError(HillclimbError):
    pass


class Authenticator:
    """Resolves `Authorization: Bearer KEY` to an account (None in open mode)."""

    def __init__(self, db: UsageDB, specs: list[KeySpec] | None = None):
        self.db = db
        for s in specs or []:
            db.sync_key(s.key, s.name, s.credits, s.rate_limit_rpm)
        # every account counts, revoked ones too: revoking the last key must leave a server that
        # refuses everyone, not one that restarts in open mode and serves anyone
        self.open_mode = db.count_accounts(include_revoked=True) == 0
        self.limiter = RateLimiter()

    def authenticate(self, authorization: str | None) -> Account | None:
        if self.open_mode:
            return None
        if not authorization:
            raise AuthError(
                "You didn't provide an API key. You need to provide your API key in "
                "an Authorization header using Bearer auth (Authorization: Bearer "
                "YOUR_KEY)."
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("Malformed Authorization header; expected 'Bearer YOUR_KEY'.")
        acc = self.db.account_by_key(token)
        if acc is None or acc.disabled:
            shown = token[:4] + "*" * 4 + token[-4:] if len(token) > 8 else "****"
            if acc is not None:
                raise AuthError(f"This API key has been revoked: {shown}.")
            raise AuthError(f"Incorrect API key provided: {shown}.")
        return acc

    def retry_after(self, account: Account | None) -> float:
        return 0.0 if account is None else self.limiter.check(account)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
