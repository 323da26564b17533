"""SFT examples → token ids + a loss mask that is 1 on the tokens the model must learn to write.

Formats accepted (one JSON object per line in `--data` files; all three may be mixed):

- chat: `{"messages": [...], "tools": [...]?}` in the OpenAI shape the chat template renders —
  assistant `reasoning_content` goes inside `<think>…</think>`, `tool_calls` become
  `<tool_call>{json}</tool_call>` blocks, `tool` messages become `<tool_response>` blocks. Loss is
  on every assistant turn (reasoning, content, tool calls, and the closing `<|im_end|>`), never on
  system/user/tool text or the template's role headers.
- fim: `{"fim": {"prefix": str, "middle": str, "suffix": str}}` → the PSM prompt
  (`<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>`) with loss on `M<|endoftext|>` only, so IDE
  completion learns where to stop.
- text: `{"text": str}` → plain LM loss on every token (+ `<|endoftext|>`).

Why segments are tokenized separately: the template is rendered for each conversation prefix and
the assistant spans are the differences; each span is tokenized on its own. This is exactly the
tokenization the model sees at inference (the prompt ends with `<|im_start|>assistant\n` and the
model continues from there), and the mask is exact — no character-offset alignment heuristics.

Built-in sources: `problem_examples()` turns `hillclimb.problems` generator instances (worked
solutions written by our code, never by a model) into chat records; `fim_from_corpus()` cuts FIM
examples out of code documents of our licensed corpus at line boundaries.

Batches (`SFTBatches`) pack whole examples greedily into rows of `seq_len + 1` tokens (padding
masked out); the order is a permutation seeded by (seed, epoch), so the batch of step `s` is a pure
function of (seed, s) — the same stateless resume contract as pre-training.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hillclimb.errors import HillclimbError
from hillclimb.io import json_lines
from hillclimb.tokenizer.specials import (
    BUDGET_NOTE,
    ENDOFTEXT,
    FIM_PAD,
    with_budget_note,
)
from hillclimb.train.data import step_rng

if TYPE_CHECKING:
    from hillclimb.tokenizer.io import Tokenizer

NON_CODE_LANGUAGES = {"text", "markdown", "reasoning", "unknown", "json", "yaml", "toml"}


@dataclass
class Example:
    ids: list[int]
    mask: list[int]  # mask[i] = 1: ids[i] is a target the loss trains on
    kind: str = "chat"

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_targets(self) -> int:
        return int(sum(self.mask))


# ---- chat records as users write them ---------------------------------------------------------
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")


def normalize_chat(rec: dict[str, Any], where: str) -> dict[str, Any]:
    """A chat record in any shape the OpenAI API accepts, as the chat template renders it: content
    given as text parts joined, `developer` read as `system` (as the server does), an assistant
    turn's `null` content (tool calls only) as "". Anything else the template cannot render is
    one error naming the record (`where`: file:line), not a template traceback mid-build."""
    msgs, tools = rec.get("messages"), rec.get("tools")
    if not isinstance(msgs, list) or not msgs:
        raise HillclimbError(f"{where}: messages must be a non-empty list of message objects")
    if tools is not None and (
        not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)
    ):
        raise HillclimbError(f"{where}: tools must be a list of tool objects")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise HillclimbError(f"{where}: messages[{i}] is not an object")
        role = m.get("role")
        if role not in CHAT_ROLES:
            raise HillclimbError(f"{where}: messages[{i}].role {role!r}: expected one of "
                                 f"{list(CHAT_ROLES)}")  # fmt: skip
        c = m.get("content")
        if isinstance(c, list):
            if not all(
                isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                for p in c
            ):
                raise HillclimbError(f"{where}: messages[{i}].content: only text parts "
                                     '({"type": "text", "text": ...}) are supported')  # fmt: skip
            c = "".join(p["text"] for p in c)
        elif c is None and role == "assistant":
            c = ""
        elif not isinstance(c, str):
            raise HillclimbError(f"{where}: messages[{i}].content must be a string or a list of "
                                 "text parts")  # fmt: skip
        rc = m.get("reasoning_content")
        if rc is not None and not isinstance(rc, str):
            raise HillclimbError(f"{where}: messages[{i}].reasoning_content must be a string")
        tc = m.get("tool_calls")
        if tc is not None and (not isinstance(tc, list) or not all(_is_call(t) for t in tc)):
            # the template writes `name` and `arguments` into the turn: a missing or non-string
            # name failed there as a TypeError traceback
            raise HillclimbError(f"{where}: messages[{i}].tool_calls must be a list of "
                                 '{"function": {"name": non-empty string, "arguments": JSON '
                                 "string or object}} objects")  # fmt: skip
        extra = {"tool_calls": _checked_calls(tc, f"{where}: messages[{i}]")} if tc else {}
        out.append({**m, "role": "system" if role == "developer" else role, "content": c, **extra})
    if not any(m["role"] == "assistant" for m in out):
        # found here with its file:line; the encoder found it after the model was loaded, and
        # could not say which record it was
        raise HillclimbError(f"{where}: no assistant message to learn from (SFT trains on "
                             "assistant turns only)")  # fmt: skip
    return {**rec, "messages": out}


def _checked_calls(calls: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Tool calls whose `arguments` are a JSON object (an object, or a string holding one; an
    empty string is `{}`). The template writes a string verbatim into `<tool_call>`, so a string
    that is not a JSON object taught the model malformed calls (and "" left `"arguments": }`)."""
    from hillclimb.tokenizer.toolcalls import parse_arguments

    out = []
    for j, t in enumerate(calls):
        fn = t["function"]
        _, raw, err = parse_arguments(fn["name"], fn["arguments"])
        if err:
            raise HillclimbError(f"{where}.tool_calls[{j}]: {err}")
        if isinstance(fn["arguments"], str) and fn["arguments"] != raw:  # "" -> "{}"
            t = {**t, "function": {**fn, "arguments": raw}}
        out.append(t)
    return out


def _is_call(t: Any) -> bool:
    fn = t.get("function") if isinstance(t, dict) else None
    return (
        isinstance(fn, dict)
        and isinstance(fn.get("name"), str)
        and bool(fn["name"])
        and isinstance(fn.get("arguments"), str | dict)
    )


def check_record(rec: dict[str, Any], where: str) -> dict[str, Any]:
    """A record as `encode_record` reads it: chat records normalized (`normalize_chat`), `fim`
    an object of three strings, `text` a string. Anything else is one error naming `where`
    (file:line) rather than a TypeError from the tokenizer mid-build."""
    try:
        json.dumps(rec, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON allows "\ud800"; the tokenizer cannot take it
        raise HillclimbError(
            f"{where}: holds a lone surrogate (U+{ord(exc.object[exc.start]):04X}): not Unicode text"
        ) from None
    if "messages" in rec:
        return normalize_chat(rec, where)
    if "fim" in rec:
        f = rec["fim"]
        if not isinstance(f, dict) or not all(
            isinstance(f.get(k), str) for k in ("prefix", "middle", "suffix")
        ):
            raise HillclimbError(f'{where}: fim must be {{"prefix", "middle", "suffix"}}, '
                                 "each a string")  # fmt: skip
    elif "text" in rec and not isinstance(rec["text"], str):
        raise HillclimbError(f"{where}: text must be a string")
    return rec


# ---- encoding ------------------------------------------------------------------------------
def encode_chat(
    tok: Tokenizer, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> Example:
    if not messages or not any(m.get("role") == "assistant" for m in messages):
        raise HillclimbError("chat example has no assistant message to learn from")
    # Rendered with system/user/tool text marked (`Tokenizer.render_marked`) and that text
    # encoded as data, as the server encodes a request (`Tokenizer.encode_chat`): a user turn
    # quoting `<|im_end|>` trains on the same ids the server will feed the model. Without such
    # strings the ids are those of the plain rendering.
    marker = tok.marker_for(messages, tools)  # one for the conversation and its prefixes
    full, texts = tok.render_marked(messages, tools, False, marker=marker)
    ids: list[int] = []
    mask: list[int] = []
    done = 0  # characters of `full` already tokenized
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        head, _ = tok.render_marked(messages[:i], tools, True, marker=marker)
        turn, _ = tok.render_marked(messages[: i + 1], tools, False, marker=marker)
        if not full.startswith(head) or not full.startswith(turn) or len(head) < done:
            raise HillclimbError("chat template is not prefix-stable for this conversation")
        body = turn[len(head) :]
        end = body.rfind("<|im_end|>")
        if end < 0:
            raise HillclimbError("rendered assistant turn lacks <|im_end|>")
        learn = body[: end + len("<|im_end|>")]
        ctx = full[done : len(head)]
        if ctx:
            t = tok.encode_marked(ctx, texts, marker)
            ids += t
            mask += [0] * len(t)
        t = tok.encode(learn)
        ids += t
        mask += [1] * len(t)
        done = len(head) + len(learn)
    rest = full[done:]
    if rest:
        t = tok.encode_marked(rest, texts, marker)
        ids += t
        mask += [0] * len(t)
    return Example(ids, mask, "chat")


def encode_fim(tok: Tokenizer, prefix: str, middle: str, suffix: str) -> Example:
    """Code is data: special-token strings in prefix, middle or suffix are text (as the server
    encodes a `suffix` request, `Tokenizer.encode_fim`)."""
    p = tok.encode_fim(prefix, suffix)
    m = tok.encode(middle, allow_special=False) + [tok.token_id(ENDOFTEXT)]
    return Example(p + m, [0] * len(p) + [1] * len(m), "fim")


def encode_text(tok: Tokenizer, text: str) -> Example:
    """Plain text is data, as corpus documents are (`data.tokenize`)."""
    t = tok.encode(text, allow_special=False) + [tok.token_id(ENDOFTEXT)]
    return Example(t, [1] * len(t), "text")


def encode_record(tok: Tokenizer, rec: dict[str, Any]) -> Example:
    if "messages" in rec:
        return encode_chat(tok, rec["messages"], rec.get("tools"))
    if "fim" in rec:
        f = rec["fim"]
        try:
            return encode_fim(tok, f["prefix"], f["middle"], f["suffix"])
        except KeyError as exc:
            raise HillclimbError(f"fim record lacks {exc}") from exc
    if "text" in rec:
        return encode_text(tok, rec["text"])
    raise HillclimbError(f"SFT record has none of messages/fim/text: keys {sorted(rec)[:8]}")


# ---- sources ---------------------------------------------------------------------------------
def read_jsonl(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in paths:
        p = Path(p)
        files = sorted(p.glob("*.jsonl")) + sorted(p.glob("*.jsonl.gz")) if p.is_dir() else [p]
        if not files or not all(f.is_file() for f in files):
            raise HillclimbError(f"SFT data not found: {p}")
        for f in files:
            for where, rec in json_lines(f, "SFT data"):
                if not isinstance(rec, dict):
                    raise HillclimbError(f"{where}: expected a JSON object per line")
                out.append(check_record(rec, where))
    return out


def _verbose(problem_id: str, seed: int, fraction: float) -> bool:
    """Whether this problem's SFT reasoning is written the long way: a fixed hash of (seed, id),
    so a rebuild writes the same data."""
    if fraction <= 0.0:
        return False
    h = hashlib.sha256(f"verbose\0{seed}\0{problem_id}".encode()).digest()
    return int.from_bytes(h[:8], "little") / 2**64 < fraction


def _budget(problem_id: str, seed: int, fraction: float, lo: int, hi: int) -> int | None:
    """The thinking budget this problem's SFT example carries (None: no note): a fixed hash of
    (seed, id) decides whether it carries one and draws it log-uniformly from [lo, hi]."""
    if fraction <= 0.0:
        return None
    h = hashlib.sha256(f"budget\0{seed}\0{problem_id}".encode()).digest()
    if int.from_bytes(h[:8], "little") / 2**64 >= fraction:
        return None
    u = int.from_bytes(h[8:16], "little") / 2**64
    return max(lo, min(hi, int(round(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))))))


def problem_examples(
    spec: dict[str, Any], seed: int, count_tokens: Callable[[str], int] | None = None
) -> list[dict[str, Any]]:
    """Chat records from `hillclimb.problems`, train split only: spec = {"families": [...]|None,
    "tiers": [...]|None, "n": per (family, tier) — an int, or a list aligned with `tiers` —,
    "kinds": ["reasoning"]|None, "verbose_fraction": share of reasoning problems whose worked
    solution is written the long way, `problems.render.verbose_reasoning`, "budget_fraction":
    share of reasoning problems that carry a thinking budget, "budget_range": [lo, hi] tokens}.

    Budget notes (SFT half of budget conditioning, docs/areas/rl.md): a noted problem gets the
    system note the server renders for a budget-conditioned model (`tokenizer.specials.budget_note`),
    with b drawn log-uniformly from `budget_range`, and its worked solution is the longest of our
    two forms whose reasoning fits b tokens (`count_tokens`, the model's tokenizer): the long
    form when it fits, the minimal one otherwise (even when that exceeds b: it is the shortest
    correct solution we have). So a larger budget buys more thinking, the behaviour L1's reward
    asks for, and the mapping is in the data rather than left for RL to discover.

    Each record says its `kind` ("chat"), `source` (problem id), `family` and `tier` (and
    `verbose` / `budget` when it has them), so the climb's SFT mixture can count them."""
    from hillclimb import problems as P
    from hillclimb.problems.base import derive_seed
    from hillclimb.problems.render import verbose_reasoning

    check_problem_spec(spec)
    kinds = spec.get("kinds")
    verbose_fraction = float(spec.get("verbose_fraction", 0.0))
    if not 0.0 <= verbose_fraction <= 1.0:
        raise HillclimbError(f"verbose_fraction must be in [0, 1], got {verbose_fraction}")
    budget_fraction = float(spec.get("budget_fraction", 0.0))
    if not 0.0 <= budget_fraction <= 1.0:
        raise HillclimbError(f"budget_fraction must be in [0, 1], got {budget_fraction}")
    lo, hi = budget_range(spec.get("budget_range", DEFAULT_BUDGET_RANGE))
    if budget_fraction > 0 and count_tokens is None:
        raise HillclimbError("budget_fraction needs the model's tokenizer to count thinking tokens")
    families = spec.get("families") or [
        f for f in P.TRAIN_FAMILIES if kinds is None or P.FAMILIES[f] in kinds
    ]
    tiers = [int(t) for t in spec.get("tiers") or P.TIERS]
    n = spec.get("n", 100)
    ns = [int(k) for k in n] if isinstance(n, list) else [int(n)] * len(tiers)
    out = []
    for fam in families:
        if fam not in P.FAMILIES:
            raise HillclimbError(f"unknown problem family {fam!r}; known: {sorted(P.FAMILIES)}")
        for tier, k in zip(tiers, ns, strict=True):
            if k <= 0:
                continue
            # seeded by the family's name, not its place in the list: adding or reordering a
            # family changed every later family's examples (session 23)
            fam_seed = derive_seed("sft", seed, fam)
            for prob in P.generate(fam, tier, k, seed=fam_seed, split="train"):
                b = _budget(prob.id, seed, budget_fraction, lo, hi)
                if b is not None and prob.kind == "reasoning":
                    assert count_tokens is not None
                    verbose = count_tokens(verbose_reasoning(prob)) <= b
                    msgs = with_budget_note(P.to_messages(prob, verbose), b)
                else:
                    b = None
                    verbose = _verbose(prob.id, seed, verbose_fraction)
                    msgs = P.to_messages(prob, verbose)
                out.append({"messages": msgs, "kind": "chat", "source": prob.id, "family": fam,
                            "tier": tier, **({"verbose": True} if verbose else {}),
                            **({"budget": b} if b is not None else {})})  # fmt: skip
    return out


DEFAULT_BUDGET_RANGE = (8, 256)
# the keys of a problems spec (`hillclimb sft --problems`, the climb's `[sft_data]`) and their types
PROBLEM_SPEC_TYPES = {
    "families": "list[str] | None", "tiers": "list[int] | None", "n": "int | list[int]",
    "kinds": "list[str] | None", "verbose_fraction": "float", "budget_fraction": "float",
    "budget_range": "list[int]",
}  # fmt: skip


def check_problem_spec(spec: Any, *, only_known_keys: bool = False) -> None:
    """A problems spec of the right shape, or a HillclimbError naming the key (`{"n": "x"}`
    or `[1, 2]` would otherwise fail as a ValueError / AttributeError traceback).

    `n` as a list needs one count per tier (the `tiers` given, else every tier): a shorter list
    was a `zip()` ValueError traceback after the model was loaded. `only_known_keys` (a user's
    spec, `SFTConfig.problems`; the climb adds its own keys) refuses keys it does not know: a
    typo (`teirs`) silently fell back to the default, training on every tier."""
    from hillclimb import problems as P
    from hillclimb.config_types import check_values

    if not isinstance(spec, dict):
        raise HillclimbError(f"problems spec must be a JSON object, got {spec!r}")
    if only_known_keys:
        unknown = sorted(set(spec) - set(PROBLEM_SPEC_TYPES))
        if unknown:
            raise HillclimbError(
                f"problems spec: unknown key(s) {unknown}; known: {sorted(PROBLEM_SPEC_TYPES)}"
            )
    check_values(PROBLEM_SPEC_TYPES, spec, "problems spec")
    kinds = sorted(set(P.FAMILIES.values()))
    bad = [k for k in spec.get("kinds") or [] if k not in kinds]
    if bad:
        raise HillclimbError(f"problems spec: unknown kinds {bad}; kinds are {kinds}")
    n, tiers = spec.get("n"), spec.get("tiers") or list(P.TIERS)
    if isinstance(n, list) and len(n) != len(tiers):
        raise HillclimbError(
            f"problems spec: n {n} must give one count per tier {tiers} (or be one number)"
        )


def budget_range(value: Any) -> tuple[int, int]:
    """`[lo, hi]` thinking-token budgets, 1 ≤ lo ≤ hi, or a clear error."""
    bad = HillclimbError(f"budget_range must be two integers [lo, hi], got {value!r}")
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise bad
    if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise bad
    lo, hi = value
    if not 1 <= lo <= hi:
        raise HillclimbError(f"budget_range must satisfy 1 <= lo <= hi, got {value!r}")
    return lo, hi


def budget_noted(records: Iterable[dict[str, Any]]) -> int:
    """How many chat records open with the budget note a budget-conditioned model is served with
    (`tokenizer.specials.budget_note`), whoever wrote them: SFT on them makes the note a trained input,
    so the checkpoint says so (`budget_conditioning` in `hillclimb.json`) and the server renders it."""
    import re

    head, tail = BUDGET_NOTE.split("{n}")
    pattern = re.compile(re.escape(head) + r"\d+" + re.escape(tail))
    count = 0
    for r in records:
        msgs = r.get("messages") or []
        first = msgs[0] if msgs and isinstance(msgs[0], dict) else {}
        if first.get("role") == "system" and pattern.match(str(first.get("content", ""))):
            count += 1
    return count


def _iter_corpus(corpus: Path) -> Iterable[dict[str, Any]]:
    docs = corpus / "documents" if (corpus / "documents").is_dir() else corpus
    files = sorted(docs.glob("*.jsonl")) + sorted(docs.glob("*.jsonl.gz"))
    if not files:
        raise HillclimbError(f"no documents/*.jsonl(.gz) under {corpus}")
    for f in files:
        for where, rec in json_lines(f, "corpus documents"):
            # a corpus document is `{"text": str, ...}` (`hillclimb data build`); other shapes
            # were a KeyError / AttributeError traceback in fim_from_corpus
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                raise HillclimbError(f"{where}: expected a document object with a string `text`")
            check_record({"text": rec["text"]}, where)  # no lone surrogates
            yield rec


def fim_split(text: str, rng: random.Random, max_chars: int) -> tuple[str, str, str] | None:
    """Cut a line-aligned window of ≤ max_chars into (prefix, middle, suffix); middle = 1–6 lines
    or, one time in four, a span inside a single line (mid-line completion)."""
    lines = text.splitlines(keepends=True)
    if len(lines) < 3:
        return None
    start = rng.randrange(len(lines))
    window: list[str] = []
    size = 0
    for ln in lines[start:]:
        if size + len(ln) > max_chars and window:
            break
        window.append(ln)
        size += len(ln)
    if len(window) < 3:
        return None
    if rng.random() < 0.25:
        i = rng.randrange(len(window))
        ln = window[i]
        if len(ln.rstrip("\n")) < 4:
            return None
        a = rng.randrange(1, len(ln.rstrip("\n")) - 1)
        return "".join(window[:i]) + ln[:a], ln[a:], "".join(window[i + 1 :])
    k = rng.randint(1, min(6, len(window) - 2))
    i = rng.randint(1, len(window) - k - 1)
    return "".join(window[:i]), "".join(window[i : i + k]), "".join(window[i + k :])


def fim_from_corpus(
    corpus: str | os.PathLike[str],
    n: int,
    seed: int,
    max_chars: int,
    languages: list[str] | None = None,
    split: str = "train",
) -> list[dict[str, Any]]:
    """`n` FIM records from code documents of a corpus dir (deterministic for a seed)."""
    docs = [
        d["text"]
        for d in _iter_corpus(Path(corpus))
        if d.get("split", "train") == split
        and (
            (d.get("language") in languages)
            if languages
            else d.get("language") not in NON_CODE_LANGUAGES
        )
    ]
    if not docs:
        raise HillclimbError(f"no code documents in {corpus} for FIM examples")
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    tries = 0
    while len(out) < n and tries < 20 * n:
        tries += 1
        cut = fim_split(docs[rng.randrange(len(docs))], rng, max_chars)
        if cut is not None:
            out.append({"fim": {"prefix": cut[0], "middle": cut[1], "suffix": cut[2]}})
    return out


# ---- batches ---------------------------------------------------------------------------------
def pack(
    examples: list[Example], order: Iterable[int], row_len: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy packing of whole examples into rows of `row_len` tokens (ids, mask)."""
    rows_i: list[list[int]] = []
    rows_m: list[list[int]] = []
    cur_i: list[int] = []
    cur_m: list[int] = []
    for j in order:
        ex = examples[j]
        if cur_i and len(cur_i) + len(ex) > row_len:
            rows_i.append(cur_i)
            rows_m.append(cur_m)
            cur_i, cur_m = [], []
        cur_i.extend(ex.ids[:row_len])
        cur_m.extend(ex.mask[:row_len])
    if cur_i:
        rows_i.append(cur_i)
        rows_m.append(cur_m)
    ids = np.full((len(rows_i), row_len), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows_i), row_len), dtype=np.int64)
    for r, (a, b) in enumerate(zip(rows_i, rows_m, strict=True)):
        ids[r, : len(a)] = a
        mask[r, : len(b)] = b
    return ids, mask


class SFTBatches:
    """`batch(step) -> (ids, mask)`, each [batch_size, seq_len + 1]; epochs reshuffle by seed."""

    def __init__(
        self, examples: list[Example], seq_len: int, batch_size: int, seed: int, pad_id: int
    ):
        if not examples:
            raise HillclimbError("no SFT examples to train on")
        self.examples = examples
        self.row_len = seq_len + 1
        self.batch_size = batch_size
        self.seed = seed
        self.pad_id = pad_id
        self._packed: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._counts: list[int] = []

    def _order(self, e: int) -> list[int]:
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, e, 0x736674])
        return rng.permutation(len(self.examples)).tolist()

    def _epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        if e not in self._packed:
            self._packed[e] = pack(self.examples, self._order(e), self.row_len, self.pad_id)
            for old in [k for k in self._packed if k < e - 1]:  # keep memory flat
                del self._packed[old]
        return self._packed[e]

    def _rows_in(self, e: int) -> int:
        while len(self._counts) <= e:
            self._counts.append(
                _count_rows(self.examples, self._order(len(self._counts)), self.row_len)
            )
        return self._counts[e]

    def rows_per_epoch(self) -> int:
        return self._rows_in(0)

    def epochs(self, steps: int) -> float:
        """Passes over the examples in `steps` steps (by the first epoch's row count)."""
        return steps * self.batch_size / max(1, self.rows_per_epoch())

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        # Epochs may differ slightly in row count (packing depends on order): walk the counts.
        pos = step * self.batch_size
        e = 0
        while pos >= self._rows_in(e):
            pos -= self._rows_in(e)
            e += 1
        ids_out, mask_out = [], []
        need = self.batch_size
        while need > 0:
            ids, mask = self._epoch(e)
            take = min(need, ids.shape[0] - pos)
            ids_out.append(ids[pos : pos + take])
            mask_out.append(mask[pos : pos + take])
            need -= take
            pos = 0
            e += 1
        return np.concatenate(ids_out), np.concatenate(mask_out)


class BucketedSFTBatches:
    """Short examples in short rows, long ones in long rows: `batch(step)` is either
    `batch_size * seq_len // short_seq_len` rows of `short_seq_len + 1` tokens (examples that
    fit one) or `batch_size` rows of `seq_len + 1` (the rest), so a step has about the same
    tokens either way. Each step draws its bucket (seeded by (seed, step)) with odds equal to the
    bucket's share of the target tokens, so an epoch of each bucket takes about the same number
    of steps.

    Why: agent episodes need rows as long as the context, and packing the short chat problems
    into those rows puts almost all of them deep into a row, after unrelated examples they can
    attend to — while a user's prompt starts at position 0 with nothing before it. Measured on
    code-flash-tiny: the same code SFT in 4096-token rows scored 12.5% on held-out code_bugfix
    tier 1 against 30% in 256-token rows (LOG.md, session 12)."""

    def __init__(
        self,
        examples: list[Example],
        seq_len: int,
        batch_size: int,
        seed: int,
        pad_id: int,
        short_seq_len: int,
    ):
        if not 0 < short_seq_len < seq_len:
            raise HillclimbError(
                f"short_seq_len must be in (0, seq_len={seq_len}), got {short_seq_len}"
            )
        if not examples:
            raise HillclimbError("no SFT examples to train on")
        short = [e for e in examples if len(e) <= short_seq_len + 1]
        long = [e for e in examples if len(e) > short_seq_len + 1]
        rows = max(1, batch_size * seq_len // short_seq_len)
        self.short_rows = rows if short else None  # rows of a short step (None: no short bucket)
        self.buckets: list[SFTBatches] = []
        weights: list[float] = []
        for k, (exs, sl, b) in enumerate(
            ((short, short_seq_len, rows), (long, seq_len, batch_size))
        ):
            if exs:
                self.buckets.append(SFTBatches(exs, sl, b, seed + k, pad_id))
                weights.append(float(sum(e.n_targets for e in exs)))
        self.p_first = weights[0] / sum(weights)
        self.seed = seed
        self._steps: list[tuple[int, int]] = []  # (bucket, that bucket's own step) per step
        self._served = [0] * len(self.buckets)

    def _pick(self, step: int) -> int:
        if len(self.buckets) == 1:
            return 0
        return int(step_rng(self.seed, step, stream=2).random() >= self.p_first)

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        while len(self._steps) <= step:
            b = self._pick(len(self._steps))
            self._steps.append((b, self._served[b]))
            self._served[b] += 1
        b, own_step = self._steps[step]
        return self.buckets[b].batch(own_step)

    def rows_per_epoch(self) -> int:
        return sum(x.rows_per_epoch() for x in self.buckets)

    def epochs(self, steps: int) -> float:
        """Passes over the examples in `steps` steps: each bucket's passes (the steps that drew
        it, times its rows a step, over its rows an epoch), averaged over the examples.

        Why not `steps * batch_size / rows_per_epoch()`: a short bucket's step is
        `seq_len // short_seq_len` times as many rows, so that undercounted the passes over
        short examples by that factor (4x at 128 / 32)."""
        drawn = [0] * len(self.buckets)
        for step in range(steps):
            drawn[self._pick(step)] += 1
        n = [len(b.examples) for b in self.buckets]
        passes = [b.epochs(k) for b, k in zip(self.buckets, drawn, strict=True)]
        return sum(k * e for k, e in zip(n, passes, strict=True)) / sum(n)


def _count_rows(examples: list[Example], order: list[int], row_len: int) -> int:
    rows, cur = 0, 0
    for j in order:
        n = min(len(examples[j]), row_len)
        if cur and cur + n > row_len:
            rows += 1
            cur = 0
        cur += n
    return rows + (1 if cur else 0)


def pad_id(tok: Tokenizer) -> int:
    return tok.token_id(FIM_PAD)
