"""Where a suite's completions come from: a checkpoint (through the engine) or any
OpenAI-compatible base URL (our server, vLLM, a hosted model), behind one interface.

Why both: comparing our checkpoint with another model is only fair on the same items, the same
prompts, the same stop rules and the same checker. A suite asks a `Backend` for completions of
raw prompts (`complete`, the `/v1/completions` form) or of one user turn (`chat`, the
`/v1/chat/completions` form); everything after that — truncation at stop strings, checking,
statistics — is shared.

- `EngineBackend` loads `serve.engine.Engine` from a checkpoint. `max_tokens` is clamped to the
  room the context leaves; a prompt that leaves none is `finish_reason == "prompt_too_long"`.
- `HTTPBackend` talks plain HTTP (httpx) to `BASE/completions` and `BASE/chat/completions` with
  `--api-key` as a bearer token, a few requests in flight. It sends at most 4 stop strings (the
  OpenAI API's limit); stop strings are always applied again on the client, so the text checked is
  the same whichever backend produced it. An unreachable URL, a refused key or an unknown model
  fails at once with a one-line `HillclimbError` naming the URL; a per-item "context exceeded"
  answer becomes `prompt_too_long` for that item. A busy or restarting server (429, 408, 5xx
  gateway answers, a dropped connection, a read timeout) is retried with backoff before the run
  fails: nothing of a suite run is written unless it all succeeded.
- Sample `i` of item `id` is drawn with a seed derived from (seed, id, i) on both backends (a
  hosted API may treat `seed` as best effort).
- Token healing of the completion form is the evaluation's choice (`eval_token_healing`), not
  the server's: a hillclimb server heals code-flash's completions by default, so the same
  checkpoint scored through `hillclimb serve` got other completions than in-process (11 of 12
  HumanEval answers differed, session 23). Both backends now ask for the same setting and say
  which (`token_healing`).
- `count_tokens` counts texts in the model's own tokens (a URL: our server's
  `usage.prompt_tokens`; another server's count is not asked for), so token budgets sized from
  reference solutions are the same whether a checkpoint runs in-process or behind our server.
- `drafter` (`EVAL_DRAFTERS`): the model-free draft source of a checkpoint's engine (prompt
  lookup or suffix drafting, `serve/drafters.py`). Drafts are verified against the model's own
  greedy choice, so they change how fast answers come, not which: it is recorded in the
  settings but is no like-for-like key of the registry. A URL's server chooses its own.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from hillclimb.errors import HillclimbError
from hillclimb.serve.drafter_choice import MODEL_FREE_DRAFTERS, check_drafter  # noqa: F401

MAX_HTTP_STOPS = 4
HEALING_ENV = "HILLCLIMB_EVAL_TOKEN_HEALING"
# the draft sources an evaluation or harness engine may use: model-free ones only (no draft
# model is loaded beside the checkpoint); "none" is today's plain decoding
# the model-free drafters an evaluation engine may use (checked before any model loads)
EVAL_DRAFTERS = MODEL_FREE_DRAFTERS


def eval_token_healing() -> bool:
    """Whether completion-form suites heal the prompt's last token (`serve/healing.py`):
    `$HILLCLIMB_EVAL_TOKEN_HEALING` on/off (default off, so scores stay comparable with earlier
    runs; `on` measures what an IDE client of the server gets).

    Why strict: anything but the exact word `on` (`1`, `true`, `ON `) meant off without a word,
    and the run was recorded as if healing had been asked for."""
    raw = os.environ.get(HEALING_ENV, "off").strip().lower()
    if raw in ("on", "1", "true", "yes"):
        return True
    if raw in ("off", "0", "false", "no", ""):
        return False
    raise HillclimbError(f"${HEALING_ENV} must be on or off, got {raw!r}")


@dataclass
class Request:
    """One generation: `prompt` is raw text (complete) or the user turn (chat)."""

    item_id: str
    prompt: str
    sample: int = 0
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass
class Completion:
    text: str  # the answer (chat: content after any think block), cut at the first stop string
    finish_reason: str  # stop | length | prompt_too_long | error
    completion_tokens: int = 0
    reasoning_text: str = ""


class Backend(Protocol):
    name: str  # what the report calls the model
    kind: str  # "engine" | "http"

    def complete(self, reqs: list[Request]) -> list[Completion]: ...

    def chat(self, reqs: list[Request]) -> list[Completion]: ...

    def count_tokens(self, texts: list[str]) -> list[int] | None: ...

    def close(self) -> None: ...


def sample_seed(seed: int, item_id: str, i: int) -> int:
    h = hashlib.sha256(f"hillclimb.suite/{seed}/{item_id}/{i}".encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def cut_at_stop(text: str, stop: tuple[str, ...] | list[str]) -> tuple[str, bool]:
    """`text` up to the earliest stop string, and whether one was found."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _finish(text: str, reason: str, stop: tuple[str, ...], tokens: int, reasoning: str = ""):
    cut, hit = cut_at_stop(text, stop)
    return Completion(cut, "stop" if hit else reason, tokens, reasoning)


def is_url(model: str) -> bool:
    return model.startswith(("http://", "https://"))


class EngineBackend:
    kind = "engine"

    def __init__(
        self,
        path: str,
        *,
        device: str | None = None,
        batch_size: int = 16,
        engine: Any = None,
        drafter: str = "none",
    ) -> None:
        from pathlib import Path

        from hillclimb.serve.engine import Engine

        check_drafter(drafter)
        if engine is None:
            p = Path(path)
            if not p.exists():
                raise HillclimbError(f"checkpoint not found: {path}")
            if not (p / "config.json").is_file() or not (p / "tokenizer.json").is_file():
                from hillclimb.model.checkpoint import run_dir_hint

                raise HillclimbError(
                    f"{path} is not a checkpoint directory (needs config.json and "
                    f"tokenizer.json){run_dir_hint(p)}"
                )
            engine = Engine.from_checkpoint(p, device=device, max_batch=batch_size, drafter=drafter)
        self.engine = engine
        # what the engine drafts with (a given engine: its own default), for the settings
        self.drafter = str(getattr(engine, "default_drafter", drafter))
        self.batch_size = batch_size
        self.name = str(path)
        # the completion form's token healing (`eval_token_healing`), asked of the server alike
        self.token_healing = eval_token_healing()

    def _run(self, reqs: list[Request], ids: list[list[int]], chat: bool) -> list[Completion]:
        from hillclimb.serve.engine import SamplingParams

        out: list[Completion | None] = [None] * len(reqs)
        jobs = []
        heal = not chat and self.token_healing  # the chat form is never healed (as the server)
        for j, (r, pid) in enumerate(zip(reqs, ids, strict=True)):
            room = self.engine.max_context - len(pid)
            if room < 2:
                out[j] = Completion("", "prompt_too_long")
                continue
            sp = SamplingParams(
                max_tokens=max(1, min(r.max_tokens, room)),
                temperature=r.temperature,
                top_p=r.top_p,
                stop=list(r.stop),
                seed=r.seed,
                token_healing=heal,
            )
            jobs.append((j, pid, sp))
        for s in range(0, len(jobs), self.batch_size):
            chunk = jobs[s : s + self.batch_size]
            res = self.engine.generate_batch([p for _, p, _ in chunk], [sp for _, _, sp in chunk])
            for (j, _, _), o in zip(chunk, res, strict=True):
                if o.finish_reason == "error":
                    raise HillclimbError(f"generation failed: {o.error}")
                text = o.content_text if chat else o.text
                out[j] = _finish(
                    text, o.finish_reason, reqs[j].stop, o.completion_tokens, o.reasoning_text
                )
        return [c for c in out if c is not None]

    def complete(self, reqs: list[Request]) -> list[Completion]:
        tok = self.engine.tokenizer
        return self._run(reqs, [tok.encode(r.prompt) for r in reqs], chat=False)

    def chat(self, reqs: list[Request]) -> list[Completion]:
        tok = self.engine.tokenizer
        ids = [
            tok.encode_chat([{"role": "user", "content": r.prompt}], add_generation_prompt=True)
            for r in reqs
        ]
        return self._run(reqs, ids, chat=True)

    def count_tokens(self, texts: list[str]) -> list[int] | None:
        """Each text's length in the model's tokens (as a raw prompt is encoded)."""
        tok = self.engine.tokenizer
        return [len(ids) for ids in tok.encode_batch(texts)] if texts else []

    def close(self) -> None:
        pass


_CONTEXT = re.compile(r"context|maximum.*length|too long", re.I)
# OpenAI / vLLM / our server: "maximum context length is 512 tokens ... (506 in the prompt, ..."
_ROOM = re.compile(r"maximum context length is (\d+) tokens.*?\((\d+) in the (?:prompt|messages)")


# answers of a server that is busy or restarting, not of a bad request: retried (`_send`)
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})  # no key, or one the server refuses: `_auth_error`
RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)  # seconds before retry 1, 2, ...
MAX_RETRY_AFTER_S = 60.0


def _retry_after(header: str | None, default: float) -> float:
    """Seconds to wait from a `Retry-After` header (delta seconds; an HTTP date or nonsense
    falls back to `default`), never negative and at most `MAX_RETRY_AFTER_S`."""
    try:
        wait = float(header) if header is not None else default
    except ValueError:
        wait = default
    return min(MAX_RETRY_AFTER_S, wait) if wait >= 0 else default


def _reason(choice: dict[str, Any]) -> str:
    """A choice's finish reason ("stop" when the server gives none or something odd)."""
    reason = choice.get("finish_reason")
    return reason if isinstance(reason, str) and reason else "stop"


def _room(msg: str) -> int | None:
    """Completion tokens that fit, read off a context-exceeded error message (None: unknown)."""
    m = _ROOM.search(msg)
    if m:
        return int(m.group(1)) - int(m.group(2))
    m = re.search(r"at most (\d+)", msg)
    return int(m.group(1)) if m else None


class HTTPBackend:
    kind = "http"

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        concurrency: int = 4,
        timeout_s: float = 600.0,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.api_key = api_key  # the harness suite's agent client authenticates with it too
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout_s, headers=headers)
        self.concurrency = max(1, concurrency)
        self.retry_delays = RETRY_DELAYS
        # answers whose server reported no (or no usable) `usage.completion_tokens`: counted as
        # 0 tokens in the items, so the run's token figures are unknown, not measured (`run_suite`)
        self.usage_unknown = 0
        self._lock = threading.Lock()
        models = self._get("/models")
        data = models.get("data") if isinstance(models, dict) else None  # `[]`: no model listed
        cards = [m for m in (data if isinstance(data, list) else []) if isinstance(m, dict)]
        ids = [m.get("id") for m in cards]
        # a hillclimb server (its model cards say so) takes the `token_healing` extension; it
        # heals code-flash's completions unless asked not to, other servers heal nothing
        self.hillclimb = bool(cards) and all(m.get("owned_by") == "hillclimb" for m in cards)
        self.token_healing: bool | None = eval_token_healing() if self.hillclimb else None
        if model is None:
            if not ids:
                raise HillclimbError(f"{self.url}/models lists no model; pass --served-model NAME")
            # the first listed was scored silently (ours lists thinking first)
            from hillclimb.io import pick_served_model

            try:
                model = pick_served_model(self.url, ids)
            except HillclimbError as exc:
                raise HillclimbError(f"{exc} (--served-model NAME)") from None
        elif ids and model not in ids:
            raise HillclimbError(
                f"model {model!r} is not served at {self.url} (it serves: {', '.join(ids)})"
            )
        self.model = model
        self.name = f"{self.url} ({model})"

    def _error(self, path: str, exc: Exception) -> HillclimbError:
        return HillclimbError(f"cannot reach {self.url}{path}: {type(exc).__name__}: {exc}")

    def _auth_error(self, path: str, r: Any) -> HillclimbError:
        """A 401/403: what to do about it, not the server's own advice.

        Why: without a key our server (and OpenAI's) answers with curl-style text ("Authorization:
        Bearer YOUR_KEY"), which names no flag of ours. A refused key is quoted from the server
        (which masks it), as it says which key was refused."""
        how = "pass --api-key KEY or set $HILLCLIMB_API_KEY"
        head = f"{self.url}{path} answered HTTP {r.status_code}:"
        if not self.api_key:
            return HillclimbError(f"{head} it needs an API key; {how}")
        try:
            err = r.json().get("error")
            msg = err.get("message") if isinstance(err, dict) else err
        except (ValueError, AttributeError):
            msg = None
        said = f" ({str(msg)[:200]})" if isinstance(msg, str) and msg else ""
        return HillclimbError(f"{head} it refused the API key{said}; {how} with a key it "
                              "accepts")  # fmt: skip

    def _get(self, path: str) -> dict[str, Any]:
        import httpx

        try:
            r = self.client.get(self.url + path)
        except httpx.HTTPError as exc:
            raise self._error(path, exc) from None
        if r.status_code in AUTH_STATUS:
            raise self._auth_error(path, r)
        if r.status_code == 404 and not self.url.endswith("/v1"):
            # `--model http://host:8000` (the server, not its API base) is a common slip
            raise HillclimbError(
                f"{self.url}{path} answered HTTP 404; --model takes the API base URL, which "
                f"usually ends in /v1 (e.g. {self.url}/v1)"
            )
        if r.status_code != 200:
            raise HillclimbError(f"{self.url}{path} answered HTTP {r.status_code}: {r.text[:300]}")
        try:
            return r.json()
        except ValueError:
            raise HillclimbError(f"{self.url}{path} did not answer JSON: {r.text[:200]}") from None

    def _send(self, path: str, body: dict[str, Any]) -> Any:
        """POST `body`, retrying what a busy or restarting server answers — 429, 408, 500, 502,
        503, 504, a dropped connection or a read timeout — up to `len(RETRY_DELAYS)` times,
        waiting `Retry-After` (capped) or the next delay. Why: a suite's answers are kept only
        when the whole run succeeds, so one rate-limited request of a hosted API ended an
        hour of HumanEval samples with nothing written. Other answers return at once."""
        import httpx

        for attempt in range(len(self.retry_delays) + 1):
            last = attempt == len(self.retry_delays)
            try:
                r = self.client.post(self.url + path, json=body)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if last:  # said, as for a status: the server went away, not one blip
                    err = self._error(path, exc)
                    raise HillclimbError(f"{err} (after {attempt} retries)") from None
                time.sleep(self.retry_delays[attempt])
                continue
            except httpx.HTTPError as exc:
                raise self._error(path, exc) from None
            if r.status_code not in RETRY_STATUS or last:
                return r
            time.sleep(_retry_after(r.headers.get("retry-after"), self.retry_delays[attempt]))
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The JSON answer, or None when the server says the prompt does not fit its context."""
        for _ in range(2):
            r = self._send(path, body)
            if r.status_code == 200:
                try:
                    ans = r.json()
                except ValueError:
                    raise HillclimbError(
                        f"{self.url}{path} answered HTTP 200 that is not JSON: {r.text[:200]!r}"
                    ) from None
                return ans
            if r.status_code in AUTH_STATUS:
                raise self._auth_error(path, r)
            msg = r.text[:400]
            if r.status_code == 400 and _CONTEXT.search(msg):
                room = _room(msg)
                if room is not None and 2 <= room < body["max_tokens"]:
                    body = {**body, "max_tokens": room}  # what fits, as the engine backend does
                    continue
                return None
            retried = (
                f" (after {len(self.retry_delays)} retries)"
                if r.status_code in RETRY_STATUS
                else ""
            )
            raise HillclimbError(f"{self.url}{path} answered HTTP {r.status_code}{retried}: {msg}")
        return None

    def _body(self, r: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": r.max_tokens,
            "temperature": r.temperature,
            "top_p": r.top_p,
            "seed": r.seed,
        }
        if r.stop:
            body["stop"] = list(r.stop[:MAX_HTTP_STOPS])
        return body

    def _choice(self, path: str, ans: Any) -> tuple[dict[str, Any], int]:
        """(the first choice, its completion tokens) of a 200 answer, or a `HillclimbError`
        quoting it: a server that answers `{}`, `{"choices": []}` or a list ended the whole
        suite in a KeyError traceback."""
        choices = ans.get("choices") if isinstance(ans, dict) else None
        ch = choices[0] if isinstance(choices, list) and choices else None
        if not isinstance(ch, dict):
            raise HillclimbError(
                f"{self.url}{path} answered without a choice to read: {str(ans)[:300]}"
            )
        usage = ans.get("usage")
        toks = usage.get("completion_tokens") if isinstance(usage, dict) else None
        ok = isinstance(toks, int) and not isinstance(toks, bool) and toks >= 0
        if not ok:
            with self._lock:  # answers arrive on `concurrency` threads
                self.usage_unknown += 1
        return ch, toks if ok else 0

    def _text(self, path: str, value: Any, what: str) -> str:
        """A text field of a choice: a string, null (nothing), or a list of content parts
        (`[{"type": "text", "text": ...}]`, which some servers send) joined."""
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(
            isinstance(x, str) or (isinstance(x, dict) and isinstance(x.get("text", ""), str))
            for x in value
        ):
            return "".join(x if isinstance(x, str) else x.get("text", "") for x in value)
        raise HillclimbError(f"{self.url}{path} answered a {what} that is not text: {value!r:.200}")

    def _one_complete(self, r: Request) -> Completion:
        body = {**self._body(r), "prompt": r.prompt}
        if self.token_healing is not None:  # the evaluation's setting, not the model's default
            body["token_healing"] = self.token_healing
        ans = self._post("/completions", body)
        if ans is None:
            return Completion("", "prompt_too_long")
        ch, toks = self._choice("/completions", ans)
        text = self._text("/completions", ch.get("text"), "text")
        return _finish(text, _reason(ch), r.stop, toks)

    def _one_chat(self, r: Request) -> Completion:
        msgs = [{"role": "user", "content": r.prompt}]
        path = "/chat/completions"
        ans = self._post(path, {**self._body(r), "messages": msgs})
        if ans is None:
            return Completion("", "prompt_too_long")
        ch, toks = self._choice(path, ans)
        msg = ch.get("message")
        if msg is not None and not isinstance(msg, dict):  # e.g. `"message": 5`: no answer
            raise HillclimbError(f"{self.url}{path} answered a message that is not an object: "
                                 f"{msg!r:.200}")  # fmt: skip
        msg = msg or {}
        text = self._text(path, msg.get("content"), "content")
        reasoning = self._text(path, msg.get("reasoning_content"), "reasoning_content")
        return _finish(text, _reason(ch), r.stop, toks, reasoning)

    def _map(self, fn: Any, reqs: list[Any]) -> list[Any]:
        with concurrent.futures.ThreadPoolExecutor(self.concurrency) as ex:
            return list(ex.map(fn, reqs))

    def _one_count(self, text: str) -> int | None:
        """`text`'s length in the served model's tokens: `usage.prompt_tokens` of a one-token
        completion with `text` as its raw prompt (unhealed); None when the server cannot say
        (no `/completions`, no usage, a text longer than its context)."""
        body: dict[str, Any] = {"model": self.model, "prompt": text, "max_tokens": 1,
                                "temperature": 0.0}  # fmt: skip
        if self.hillclimb:
            body["token_healing"] = False  # healing cuts a prompt token: the count would be short
        r = self._send("/completions", body)
        if r.status_code in AUTH_STATUS:
            raise self._auth_error("/completions", r)
        try:
            usage = r.json().get("usage") if r.status_code == 200 else None
        except (ValueError, AttributeError):
            return None
        n = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None

    def count_tokens(self, texts: list[str]) -> list[int] | None:
        """Each text's length in the served model's tokens when the server is ours, else None
        (then a caller falls back to a bound, e.g. UTF-8 bytes).

        Why: the problems suite sizes each cell's `max_tokens` from its reference solutions in
        the model's tokens; over a URL it used their UTF-8 bytes, 2-3x the tokens of our
        tokenizer, so the same checkpoint got other budgets (and another truncation share)
        through `hillclimb serve` than in-process, under the same recorded settings."""
        if not self.hillclimb:
            # another server's count may hold its own template or BOS tokens, and asking costs
            # a request per text: such a URL keeps the documented UTF-8 byte bound
            return None
        if not texts:
            return []
        # one probe first: a server without `/completions` (or one that retries every answer
        # with backoff) is found once, not once per text
        first = self._one_count(texts[0])
        if first is None:
            return None
        counts = [first, *self._map(self._one_count, list(texts[1:]))]
        return None if any(n is None for n in counts) else counts

    def complete(self, reqs: list[Request]) -> list[Completion]:
        return self._map(self._one_complete, reqs)

    def chat(self, reqs: list[Request]) -> list[Completion]:
        return self._map(self._one_chat, reqs)

    def close(self) -> None:
        self.client.close()


def open_backend(
    model: str,
    *,
    api_key: str | None = None,
    served_model: str | None = None,
    device: str | None = None,
    batch_size: int = 16,
    concurrency: int = 4,
    drafter: str = "none",
) -> Backend:
    """A checkpoint directory → `EngineBackend`; an http(s) base URL → `HTTPBackend`.

    `drafter` is the engine's draft source; a URL takes only "none" (its server decides, and a
    silently ignored flag would record a drafter that never ran)."""
    check_drafter(drafter)
    if is_url(model):
        if drafter != "none":
            raise HillclimbError(
                f"--drafter {drafter} applies to a checkpoint, not to a URL ({model}): the "
                "server chooses its own draft source"
            )
        return HTTPBackend(model, api_key=api_key, model=served_model, concurrency=concurrency)
    return EngineBackend(model, device=device, batch_size=batch_size, drafter=drafter)
