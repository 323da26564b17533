"""Which model-free draft sources an engine built for evaluation or the harness may use, and
which draft source a request gets when its engine chooses per request ("auto").

Why a module of its own, without torch: `hillclimb eval` and `hillclimb harness run` check
`--drafter` before any model loads (a typo said so only after the load), and the harness sits
below eval, so the check lives here, beside the drafters, for both. "model" is not offered: an
evaluation or harness engine loads no draft model. Drafts are verified against the model's own
greedy choice, so a drafter changes how fast answers come, not which.
"""

from __future__ import annotations

from dataclasses import dataclass

from hillclimb.errors import HillclimbError

MODEL_FREE_DRAFTERS = ("none", "lookup", "suffix")


def check_drafter(drafter: str) -> str:
    """`drafter` when it is one of `MODEL_FREE_DRAFTERS`, else a one-line `HillclimbError`."""
    if drafter not in MODEL_FREE_DRAFTERS:
        raise HillclimbError(
            f"drafter must be one of {', '.join(MODEL_FREE_DRAFTERS)}, got {drafter!r}"
        )
    return drafter


# ---- the per-request choice of an engine whose default drafter is "auto" ---------------------------
# An engine built with drafter="auto" picks a draft source per request from what the prompt says
# about the answer (issue 15 §1): answers that copy their prompt (edits and rewrites of code it
# holds, FIM middles, agent turns quoting tool observations) draft by lookup, whose wrong guesses
# cost one verification forward and whose right ones come in long runs; open answers have nothing
# to copy, so a lookup would mostly probe and lose — they get the draft model when the start-up
# decision kept one (`host.choose_draft`), else plain decoding. Greedy output never depends on
# the choice: every draft is verified against the target's own choice.
AUTO = "auto"
CHOICES = ("none", "lookup", "suffix", "model")  # what "auto" resolves to
# prompt lines that look like code before a prompt counts as holding file content (a sentence
# ending in ":" or a single indented quote is not a file)
CODE_LINES_MIN = 4
_CODE_STARTS = ("def ", "class ", "import ", "from ", "return ", "#include", "function ",
                "const ", "let ", "fn ", "pub ", "public ", "private ", "if (", "for (",
                "while (", "}")  # fmt: skip
_CODE_ENDS = ("{", "}", ";", ":")


@dataclass(frozen=True)
class DrafterChoice:
    """One request's draft source under "auto" and why (`reason`: the per-request stats' and
    /metrics' label)."""

    drafter: str
    reason: str


def code_lines(text: str) -> int:
    """How many lines of `text` look like code: indented by 4+ spaces or a tab, starting with a
    keyword of a common language, or ending in punctuation that ends code lines."""
    n = 0
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if line.startswith(("    ", "\t")) or s.startswith(_CODE_STARTS) or s.endswith(_CODE_ENDS):
            n += 1
    return n


def choose_drafter(
    text: str, *, fim: bool, tool_observation: bool, has_model: bool, forced: bool = False
) -> DrafterChoice:
    """The draft source for a prompt (see the block comment above). `fim`: the prompt holds the
    FIM middle marker; `tool_observation`: it holds a tool response (an agent turn);
    `has_model`: the engine kept a draft model; `forced`: the request asked for speculation
    (`speculative=True`), so it drafts by lookup rather than not at all."""
    if fim:
        return DrafterChoice("lookup", "fim")
    if tool_observation:
        # agent loops repeat their own earlier outputs too: the suffix drafter's history
        return DrafterChoice("suffix", "tool_observation")
    if "```" in text:
        return DrafterChoice("lookup", "code_block")
    if code_lines(text) >= CODE_LINES_MIN:
        return DrafterChoice("lookup", "file_content")
    if has_model:
        return DrafterChoice("model", "open_model")
    if forced:
        return DrafterChoice("lookup", "open_forced")
    return DrafterChoice("none", "open")
