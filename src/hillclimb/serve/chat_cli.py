"""`hillclimb chat`: a terminal chat over any OpenAI-compatible endpoint.

Why it talks HTTP even for local checkpoints: with `--thinking/--flash` it starts our server in a
background thread on a free loopback port and then uses the very same client code as for a remote
`--url`, so the chat exercises the public API (and works against vLLM, llama.cpp or OpenAI just
as well). It streams with `httpx` (SSE parsed by hand: no `openai` dependency at run time).

Reasoning (`reasoning_content` deltas, or `<think>` text from servers that do not split it) is
shown dimmed; by default it is collapsed to its latest line while streaming and to a one-line
summary afterwards (`/think` toggles the full view). The conversation history is kept (reasoning
is not sent back, as the chat template expects); `/reset`, `/model NAME`, `/models`, `/think`,
`/help`, `/exit` are commands.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from hillclimb.errors import HillclimbError
from hillclimb.tokenizer.specials import THINK_END, THINK_START


def normalize_url(url: str) -> str:
    """Base URL ending in /v1 (accepts with or without it). A URL the HTTP client cannot use is
    a `HillclimbError` here, before the chat starts: `localhost:8000` (no scheme) started the
    chat and failed every turn with "unsupported protocol 'localhost://'", and a malformed one
    (`http://[::1`, a bad port) ended in httpx's traceback."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise HillclimbError(f"--url {url!r} is not a valid URL: {exc}") from None
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise HillclimbError(f"--url {url!r}: port {parsed.port} is outside 1-65535")
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise HillclimbError(
            f"--url must be an http:// or https:// URL with a host (e.g. "
            f"http://127.0.0.1:8000), got {url!r}"
        )
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


@dataclass
class Reply:
    reasoning: str = ""
    content: str = ""
    usage: dict[str, Any] | None = None
    routed_to: str | None = None
    finish_reason: str | None = None


@dataclass
class ChatSession:
    url: str
    model: str = "auto"
    api_key: str | None = None
    system: str | None = None
    max_tokens: int | None = None  # None: the server's default, capped by the context
    temperature: float = 0.7
    reasoning_effort: str | None = None
    timeout: float = 600.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        import httpx

        self.url = normalize_url(self.url)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout)
        self.reset()

    def reset(self) -> None:
        self.history = [{"role": "system", "content": self.system}] if self.system else []

    def models(self) -> list[str]:
        r = self.client.get("/models")
        self._check(r)
        return [m["id"] for m in r.json().get("data", [])]

    def check_access(self) -> None:
        """Stop before the first message when the server refuses this client's key.

        Why: against a server with keys, a missing or wrong key was only reported after the
        user had typed a message, in the server's words for curl users ("Authorization:
        Bearer YOUR_KEY"); the chat's own ways to pass a key are what helps. `/v1/models` takes
        the same Bearer key as the chat endpoint. Anything other than 401/403 (a server
        without the route, a network error) is left to the first message, as before."""
        import httpx

        try:
            r = self.client.get("/models", timeout=min(self.timeout, 30.0))
        except httpx.HTTPError:
            return
        if r.status_code not in (401, 403):
            return
        how = "pass --api-key KEY or set $HILLCLIMB_API_KEY (or $OPENAI_API_KEY)"
        if not self.api_key:
            raise HillclimbError(f"{self.url} needs an API key: {how}")
        try:  # which key and why (incorrect, revoked), in the server's words
            said = str(r.json()["error"]["message"]).strip()
        except Exception:
            said = r.text[:200].strip()
        raise HillclimbError(
            f"{self.url} rejected the API key given (HTTP {r.status_code}: {said}): {how}"
        )

    def _check(self, r: Any) -> None:
        if r.status_code >= 400:
            try:
                msg = r.json()["error"]["message"]
            except Exception:
                msg = r.text[:500]
            raise HillclimbError(f"server answered {r.status_code}: {msg}")

    def stream(self, text: str, reply: Reply) -> Iterator[tuple[str, str]]:
        """Send a user turn; yield ("reasoning" | "content", delta) while filling `reply`.
        The turn joins the history only when the answer completes."""
        messages = self.history + [{"role": "user", "content": text}]
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True,
                                "temperature": self.temperature,
                                "stream_options": {"include_usage": True}}  # fmt: skip
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.reasoning_effort:
            body["reasoning_effort"] = self.reasoning_effort
        in_think = False  # for servers that stream <think> inside content
        with self.client.stream("POST", "/chat/completions", json=body) as r:
            if r.status_code >= 400:
                r.read()
                self._check(r)
            reply.routed_to = r.headers.get("x-hillclimb-routed-to")
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                obj = json.loads(data)
                if "error" in obj:
                    raise HillclimbError(f"stream error: {obj['error'].get('message')}")
                if obj.get("usage"):
                    reply.usage = obj["usage"]
                for ch in obj.get("choices") or []:
                    delta = ch.get("delta") or {}
                    if ch.get("finish_reason"):
                        reply.finish_reason = ch["finish_reason"]
                    rc = delta.get("reasoning_content") or delta.get("reasoning")
                    if rc:
                        reply.reasoning += rc
                        yield "reasoning", rc
                    c = delta.get("content")
                    if c:
                        parts = _split_think(c, in_think)
                        if parts:
                            in_think = parts[-1][2]
                        for kind, piece, _ in parts:
                            if kind == "reasoning":
                                reply.reasoning += piece
                            else:
                                reply.content += piece
                            yield kind, piece
        self.history = messages + [{"role": "assistant", "content": reply.content.strip()}]

    def send(self, text: str) -> Reply:
        reply = Reply()
        for _ in self.stream(text, reply):
            pass
        return reply


def _split_think(text: str, in_think: bool) -> list[tuple[str, str, bool]]:
    """Split content that carries literal <think> tags into (kind, piece, in_think_after)."""
    out = []
    while text:
        tag = THINK_END if in_think else THINK_START
        i = text.find(tag)
        if i < 0:
            out.append(("reasoning" if in_think else "content", text, in_think))
            break
        if i:
            out.append(("reasoning" if in_think else "content", text[:i], in_think))
        text = text[i + len(tag) :]
        in_think = not in_think
    if out:
        kind, piece, _ = out[-1]
        out[-1] = (kind, piece, in_think)
    return out


HELP = """commands: /reset (new conversation)  /model NAME  /models  /think (toggle full reasoning)
          /help  /exit   (Ctrl-D exits too)"""


def handle_command(session: ChatSession, line: str, ui: dict[str, Any]) -> str | None:
    """Run a /command; returns a message to show, or None for /exit."""
    cmd, _, arg = line.strip().partition(" ")
    arg = arg.strip()
    if cmd in ("/exit", "/quit"):
        return None
    if cmd == "/reset":
        session.reset()
        return "conversation reset"
    if cmd == "/model":
        if not arg:
            return f"model: {session.model}"
        session.model = arg
        return f"model set to {arg}"
    if cmd == "/models":
        return "models: " + ", ".join(session.models())
    if cmd == "/think":
        ui["show_thinking"] = not ui["show_thinking"]
        return "reasoning: " + ("shown in full" if ui["show_thinking"] else "collapsed")
    if cmd == "/help":
        return HELP
    return f"unknown command {cmd}; /help lists them"


def chat_loop(session: ChatSession, console: Any, lines: TextIO, show_thinking: bool = False,
              prompt: str = "you> ") -> int:  # fmt: skip
    """Read user lines from `lines`, stream answers to the rich `console`."""
    from rich.live import Live
    from rich.text import Text

    ui = {"show_thinking": show_thinking}
    console.print(f"[bold]hillclimb chat[/bold] — {session.url}, model [cyan]{session.model}[/]. "
                  "/help for commands.")  # fmt: skip
    while True:
        if lines is sys.stdin and console.is_terminal:
            try:
                line = console.input(f"[bold green]{prompt}[/]")
            except EOFError:
                break
        else:
            console.print(f"[bold green]{prompt}[/]", end="")
            line = lines.readline()
            if not line:
                break
            console.print(line.rstrip("\n"), highlight=False)
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            try:
                msg = handle_command(session, line, ui)
            except HillclimbError as exc:
                console.print(f"[red]{exc}[/]")
                continue
            if msg is None:
                break
            console.print(f"[yellow]{msg}[/]")
            continue
        reply = Reply()

        def render(reply: Reply = reply) -> Text:
            t = Text()
            if reply.reasoning:
                if ui["show_thinking"]:
                    t.append(reply.reasoning.strip() + "\n", style="dim italic")
                else:
                    last = reply.reasoning.strip().splitlines()[-1:] or [""]
                    t.append(f"▸ thinking… {last[0][-100:]}\n", style="dim italic")
            t.append(reply.content.lstrip())
            return t

        try:
            with Live(render(), console=console, refresh_per_second=12, transient=True) as live:
                for _ in session.stream(line, reply):
                    live.update(render())
        except HillclimbError as exc:
            console.print(f"[red]{exc}[/]")
            continue
        except KeyboardInterrupt:
            console.print("[yellow](interrupted)[/]")
            continue
        except Exception as exc:  # network errors: keep the chat alive
            console.print(f"[red]request failed: {type(exc).__name__}: {exc}[/]")
            continue
        if reply.reasoning:
            if ui["show_thinking"]:
                console.print(Text(reply.reasoning.strip(), style="dim italic"))
            else:
                n = (reply.usage or {}).get("completion_tokens_details", {}) or {}
                toks = n.get("reasoning_tokens")
                extra = f" ({toks} tokens)" if toks else ""
                console.print(Text(f"▸ thought{extra} — /think to show", style="dim italic"))
        console.print(Text(reply.content.strip()))
        meta = []
        if reply.routed_to:
            meta.append(f"auto → {reply.routed_to}")
        if reply.usage:
            meta.append(f"{reply.usage.get('completion_tokens')} tokens")
        if reply.finish_reason and reply.finish_reason != "stop":
            meta.append(f"finish: {reply.finish_reason}")
        if meta:
            console.print(Text(" · ".join(meta), style="dim"))
    return 0


def run_chat(*, url: str | None, thinking: Path | None, flash: Path | None, model: str,
             api_key: str | None, system: str | None, max_tokens: int | None, temperature: float,
             reasoning_effort: str | None, show_thinking: bool) -> int:  # fmt: skip
    from rich.console import Console

    console = Console()
    server = None
    if url is None:
        from hillclimb.serve.server import ServerThread, load_state

        console.print(
            "[dim]loading checkpoints, compiling their decode steps (the first time "
            "on CPU up to a minute) and starting a local server…[/]"
        )
        state = load_state(thinking, flash, db=":memory:")
        server = ServerThread(state).start()
        url = server.url
        if model == "auto" and len(state.models) == 1:
            model = next(iter(state.models))
    try:
        session = ChatSession(url, model=model, api_key=api_key, system=system,
                              max_tokens=max_tokens, temperature=temperature,
                              reasoning_effort=reasoning_effort)  # fmt: skip
        session.check_access()
        return chat_loop(session, console, sys.stdin, show_thinking=show_thinking)
    finally:
        if server is not None:
            server.stop()
