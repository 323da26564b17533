"""The arena's contenders and prompts: `--models` entries turned into answer generators.

Why through `eval.backends`: a checkpoint answers through `serve.engine.Engine` and a URL through
the OpenAI-compatible HTTP API exactly as in `hillclimb eval --suite`, so the arena compares the
same generation the suites score, and an unreachable URL or a missing checkpoint fails at start-up
with the one-line messages those backends give. Registry aliases (`thinking@prod`) are not
resolved here: the registry is a layer above eval.

An entry is `[NAME=]CHECKPOINT_DIR` or `[NAME=]URL[#SERVED_MODEL]` (the fragment picks one model
of a server that serves several; fragments are never sent over HTTP). Without NAME a checkpoint is
named by the shortest tail of its path that is unique among the entries (`run/final`), a URL by
`host:port` and its served model. Names are what the results page shows after a vote.

The answer shown is the chat answer (content after any think block), never the reasoning: a
visible reasoning trace would tell the voter which model is the thinking one.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hillclimb.errors import HillclimbError
from hillclimb.eval.backends import Backend, Request, is_url, open_backend
from hillclimb.io import json_lines

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
MAX_PROMPT_CHARS = 8000


@dataclass(frozen=True)
class ModelSpec:
    name: str
    target: str  # checkpoint directory or base URL
    served_model: str | None = None  # URL only: the fragment


@dataclass(frozen=True)
class GenerationConfig:
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise HillclimbError(f"--max-tokens must be >= 1, got {self.max_tokens}")
        # `not >= 0` rather than `< 0`: NaN compares false both ways and would slip through
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise HillclimbError(
                f"--temperature must be a finite number >= 0, got {self.temperature}"
            )
        if not 0 < self.top_p <= 1:
            raise HillclimbError(f"--top-p must be in (0, 1], got {self.top_p}")


def parse_models(text: str) -> list[ModelSpec]:
    """`A,B,...` → specs with unique names; fewer than two models is an error."""
    entries = [e.strip() for e in text.split(",") if e.strip()]
    if len(entries) < 2:
        raise HillclimbError(
            f"the arena needs at least 2 models, got {len(entries)}: pass --models A,B[,...] "
            "(checkpoint directories or OpenAI-compatible URLs, optionally NAME=...)"
        )
    raw: list[tuple[str | None, str]] = []
    for e in entries:
        name, sep, rest = e.partition("=")
        if sep and _NAME.match(name) and not is_url(e):
            raw.append((name, rest.strip()))
        else:
            raw.append((None, e))
    unnamed = [t for n, t in raw if n is None and not is_url(t)]
    specs = []
    for name, target in raw:
        served = None
        if is_url(target):
            target, _, frag = target.partition("#")
            served = frag or None
            if name is None:
                u = urlsplit(target)
                name = u.netloc + (f"/{served}" if served else "")
        elif name is None:
            name = _path_name(target, unnamed)
        specs.append(ModelSpec(name, target, served))
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise HillclimbError(
            f"two --models entries are both named {', '.join(dup)}; name them (NAME=...)"
        )
    return specs


def _path_name(target: str, others: list[str]) -> str:
    parts = Path(target).resolve().parts
    all_parts = [Path(o).resolve().parts for o in others]
    for k in range(1, len(parts) + 1):
        tail = parts[-k:]
        if sum(1 for p in all_parts if p[-k:] == tail) <= 1:
            return "/".join(tail)
    return target


class Contender:
    """One model of the arena: a name and a backend that answers one user turn."""

    def __init__(self, spec: ModelSpec, backend: Backend) -> None:
        self.spec = spec
        self.name = spec.name
        self.backend = backend

    def answer(self, prompt: str, gen: GenerationConfig, seed: int) -> tuple[str, str]:
        """(answer text, finish_reason) for one user turn."""
        req = Request(
            item_id=f"arena/{seed}",
            prompt=prompt,
            max_tokens=gen.max_tokens,
            temperature=gen.temperature,
            top_p=gen.top_p,
            seed=seed,
        )
        try:
            out = self.backend.chat([req])[0]
        except HillclimbError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            # A URL model whose server answers 200 with something that is not a chat completion
            # (not JSON, no `choices`, ...): the backend's parsing fails. It is that model failing
            # to answer (the battle page's 502), not a fault of the arena (a 500).
            raise HillclimbError(
                f"its answer was not a chat completion ({type(exc).__name__}: {exc})"
            ) from None
        return str(out.text), str(out.finish_reason)

    def close(self) -> None:
        self.backend.close()


def check_targets(specs: list[ModelSpec]) -> None:
    """Fail fast on a local entry that does not exist (before anything slow is opened)."""
    for s in specs:
        if not is_url(s.target) and not Path(s.target).exists():
            raise HillclimbError(
                f"--models: {s.target!r} is neither a checkpoint directory that exists nor an "
                "http(s):// URL"
            )


def open_contenders(
    specs: list[ModelSpec], *, api_key: str | None = None, device: str | None = None
) -> list[Contender]:
    """Open every backend (checkpoints load, URLs are asked for /models); all or none."""
    check_targets(specs)
    out: list[Contender] = []
    try:
        for s in specs:
            backend = open_backend(
                s.target, api_key=api_key, served_model=s.served_model, device=device, batch_size=2
            )
            out.append(Contender(s, backend))
    except BaseException:
        for c in out:
            c.close()
        raise
    return out


def load_prompts(path: str | Path | None) -> list[str]:
    """The prompt set to draw from: a `.jsonl` file of `{"prompt": ...}` records, a text file
    (one prompt per non-empty line), or by default a seeded sample of held-out problems (two per
    family and tier 1–2) from our generators."""
    if path is None:
        from hillclimb.problems import problem_suite

        return [
            p.prompt for p in problem_suite(seed=0, split="heldout", n_per_tier=2, tiers=(1, 2))
        ]
    p = Path(path)
    if not p.is_file():
        raise HillclimbError(f"prompt set {p} does not exist")
    prompts: list[str] = []
    lines: list[str] = []  # `file:line` of each prompt, for messages
    if p.suffix == ".jsonl":
        # the shared reader: a byte-order mark skipped, records end at LF/CRLF/CR only (a JSON
        # string may hold U+2028, U+2029 or U+0085 unescaped), errors name the line
        for where, rec in json_lines(p, "prompt set"):
            if not isinstance(rec, dict) or not isinstance(rec.get("prompt"), str):
                raise HillclimbError(f"{where}: expected an object with a string 'prompt'")
            if rec["prompt"].strip():
                prompts.append(rec["prompt"])
                lines.append(where)
    else:
        try:
            # utf-8-sig: a file saved with a byte-order mark (Notepad) is legal UTF-8; the
            # first prompt began with an invisible U+FEFF (another prompt than the same text)
            text = p.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise HillclimbError(f"cannot read prompt set {p}: {exc}") from None
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                prompts.append(line.strip())
                lines.append(f"{p}:{i}")
    for q, where in zip(prompts, lines, strict=True):
        try:
            q.encode("utf-8")
        except UnicodeEncodeError:
            # JSON may escape a lone surrogate ("\ud800"): it decodes to a str that no UTF-8
            # store can hold — the arena started, and drawing that prompt was a 500 traceback
            raise HillclimbError(
                f"{where}: the prompt is not valid Unicode text (a lone surrogate such as "
                "\\ud800); fix or remove it"
            ) from None
    if not prompts:
        raise HillclimbError(f"prompt set {p} holds no prompts")
    too_long = [i for i, q in enumerate(prompts) if len(q) > MAX_PROMPT_CHARS]
    if too_long:
        raise HillclimbError(
            f"prompt set {p}: prompt #{too_long[0] + 1} is longer than {MAX_PROMPT_CHARS} characters"
        )
    return prompts


def battle_seed() -> int:
    return secrets.randbits(62)
