"""Instruction following with verifiable instructions — our own IFEval-style suite.

Why: "does the model do what the prompt says" is a different skill from solving problems, and
it can be checked by code rather than by a judge model, following the idea of Zhou et al. 2023
("Instruction-Following Evaluation for Large Language Models"). The instruction types, their
wording, the base tasks, the generator and the checkers here are written by us; no data or code
comes from Google's IFEval, so scores are comparable between models on this suite but NOT with
published IFEval numbers.

- `INSTRUCTIONS`: 17 types (length in words and sentences, keywords to include / avoid / repeat,
  no commas, all lowercase / uppercase, JSON, N bullets, N paragraphs split by `***`, an ending
  phrase, a `<<title>>`, quotation-wrapped, `[placeholders]`, a postscript), each with a
  parameter sampler, the sentence the prompt shows and a checker. Checks are language-agnostic
  string tests: no model, no judgement.
- `generate_items(n, seed)`: a deterministic list of prompts, each a base task plus 1–3
  instructions that cannot contradict each other (`conflicts`), with seeded parameters.
- Strict: the instruction holds on the response as given. Loose (the published definition):
  it holds on any of the response, the response without its first line, without its last line,
  without both, each also with markdown `*` removed — so a "Sure, here it is:" line or bold
  markup does not fail an otherwise obeyed instruction. Loose ≥ strict by construction.
- Reported: prompt-level accuracy (all instructions of a prompt followed) and instruction-level
  accuracy (share of all instructions followed; its interval resamples prompts, keeping a
  prompt's instructions together), strict and loose, plus per-instruction-type accuracy.

What the numbers do not show: whether the answer is any good as an answer to the base task —
"at least 60 words" of nonsense passes.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hillclimb.eval.backends import Backend, Request
from hillclimb.eval.suite_common import SuiteConfig, generation_stats, metric

DEFAULT_N_ITEMS = 120
DEFAULT_MAX_TOKENS = 512

BASE_TASKS = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a bicycle gear system works.",
    "Describe your ideal weekend in the mountains.",
    "Write a product description for a reusable water bottle.",
    "Give advice to someone learning to cook for the first time.",
    "Summarise why people keep houseplants.",
    "Write a letter to a neighbour asking them to water your garden while you travel.",
    "Explain what a compiler does to someone who has never programmed.",
    "Describe a busy market on a Saturday morning.",
    "Write a short review of an imaginary restaurant called The Blue Fern.",
    "Explain why the sky looks blue during the day.",
    "Write an announcement for a community book swap.",
    "Give tips for staying focused while studying.",
    "Describe how bread is made, from flour to loaf.",
    "Write a short poem about autumn rain.",
    "Explain the rules of a game you invent that uses a single die.",
    "Write a thank-you note to a teacher.",
    "Describe the life cycle of a butterfly.",
    "Write a pitch for a mobile app that helps people share tools with neighbours.",
    "Explain how to plan a budget for a month.",
    "Describe what a day on a sailing ship might have been like two hundred years ago.",
    "Write a short speech welcoming new members to a chess club.",
    "Explain why regular sleep matters.",
    "Write a travel guide entry for a small imaginary island called Velmora.",
    "Describe how a library decides which books to buy.",
    "Write a short dialogue between a robot and a gardener.",
    "Explain how recycling paper works.",
    "Give instructions for building a simple bird feeder.",
    "Write a job advertisement for a bakery assistant.",
    "Describe the sounds of a city at night.",
)

INCLUDE_WORDS = (
    "river", "lantern", "harvest", "orbit", "velvet", "compass", "meadow", "signal",
    "copper", "horizon", "puzzle", "anchor", "ember", "canyon", "whistle", "marble",
)  # fmt: skip
FORBIDDEN_WORDS = (
    "very", "really", "thing", "good", "nice", "just", "many", "also", "simple", "great",
)  # fmt: skip
END_PHRASES = (
    "Is there anything else I can help with?",
    "That is all for today.",
    "Let me know what you think.",
    "Thank you for reading.",
)
WORD_RE = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


# ---- text measures ---------------------------------------------------------------------------
def words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    return [p for p in parts if WORD_RE.search(p)]


def has_word(text: str, word: str) -> int:
    return len(re.findall(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", text, re.IGNORECASE))


def _strip_fence(text: str) -> str:
    t = text.strip()
    m = re.fullmatch(r"```[a-zA-Z]*\s*\n?(.*?)\n?```", t, re.S)
    return m.group(1).strip() if m else t


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _is_json(text: str) -> bool:
    """The answer (out of a Markdown fence) parses as JSON. Python's reader also takes `NaN`,
    `Infinity` and `-Infinity`, which JSON has not: "NaN" passed "it must parse as JSON"."""
    try:
        json.loads(_strip_fence(text), parse_constant=_refuse_constant)
    except ValueError:
        return False
    return True


def _bullets(text: str) -> int:
    return len(re.findall(r"^\s*[*-][ \t]+\S", text, re.M))


def _paragraphs_ok(text: str, n: int) -> bool:
    parts = [p.strip() for p in re.split(r"\n?\s*\*\*\*\s*\n?", text.strip())]
    return len(parts) == n and all(parts)


def _ends_with(text: str, phrase: str) -> bool:
    return text.strip().lower().endswith(phrase.lower())


def _title(text: str) -> bool:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return bool(lines) and re.match(r"^\s*<<[^<>\n]+>>", lines[0]) is not None


def _quoted(text: str) -> bool:
    """Wrapped in double quotes around something: `""` (an empty answer in quotes) passed."""
    t = text.strip()
    return len(t) >= 2 and t[0] == '"' and t[-1] == '"' and _has_letters(t[1:-1])


def _postscript(text: str, marker: str) -> bool:
    return re.search(rf"^\s*{re.escape(marker)}(?=\s|$)", text, re.M | re.IGNORECASE) is not None


def _has_letters(text: str) -> bool:
    return any(c.isalpha() for c in text)


# ---- instruction types -----------------------------------------------------------------------
@dataclass(frozen=True)
class InstructionType:
    name: str
    sample: Callable[[random.Random], dict[str, Any]]
    describe: Callable[[dict[str, Any]], str]
    check: Callable[[str, dict[str, Any]], bool]
    conflicts: frozenset[str] = frozenset()


def _two(pool: tuple[str, ...]) -> Callable[[random.Random], dict[str, Any]]:
    return lambda rng: {"words": rng.sample(pool, 2)}


_JSON_OK = {"lowercase", "uppercase", "keywords_include", "keywords_forbidden", "keyword_frequency"}
_ALL = (
    "min_words", "max_words", "max_sentences", "keywords_include", "keywords_forbidden",
    "keyword_frequency", "no_commas", "lowercase", "uppercase", "json", "bullets", "paragraphs",
    "end_phrase", "title", "quotation", "placeholders", "postscript",
)  # fmt: skip
_CONFLICTS: dict[str, set[str]] = {
    "min_words": {"max_words", "max_sentences"},
    "lowercase": {"uppercase", "postscript"},
    "json": set(_ALL) - _JSON_OK - {"json"},
    "quotation": {"title", "end_phrase", "postscript"},
    "end_phrase": {"postscript"},
    "paragraphs": {"bullets", "max_sentences"},
    "max_sentences": {"bullets", "postscript"},
}

INSTRUCTIONS: dict[str, InstructionType] = {
    t.name: t
    for t in (
        InstructionType(
            "min_words",
            lambda rng: {"n": rng.choice([40, 60, 80, 120])},
            lambda a: f"Answer with at least {a['n']} words.",
            lambda r, a: len(words(r)) >= a["n"],
        ),
        InstructionType(
            "max_words",
            lambda rng: {"n": rng.choice([20, 30, 50, 80])},
            lambda a: f"Use no more than {a['n']} words.",
            lambda r, a: 0 < len(words(r)) <= a["n"],
        ),
        InstructionType(
            "max_sentences",
            lambda rng: {"n": rng.choice([2, 3, 4, 5])},
            lambda a: f"Answer in at most {a['n']} sentences.",
            lambda r, a: 0 < len(sentences(r)) <= a["n"],
        ),
        InstructionType(
            "keywords_include",
            _two(INCLUDE_WORDS),
            lambda a: f'Include the keywords "{a["words"][0]}" and "{a["words"][1]}".',
            lambda r, a: all(has_word(r, w) for w in a["words"]),
        ),
        InstructionType(
            "keywords_forbidden",
            _two(FORBIDDEN_WORDS),
            lambda a: f'Do not use the words "{a["words"][0]}" or "{a["words"][1]}".',
            lambda r, a: _has_letters(r) and not any(has_word(r, w) for w in a["words"]),
        ),
        InstructionType(
            "keyword_frequency",
            lambda rng: {"word": rng.choice(INCLUDE_WORDS), "n": rng.choice([2, 3, 4])},
            lambda a: f'Use the word "{a["word"]}" at least {a["n"]} times.',
            lambda r, a: has_word(r, a["word"]) >= a["n"],
        ),
        InstructionType(
            "no_commas",
            lambda rng: {},
            lambda a: "Do not use any commas in your answer.",
            lambda r, a: _has_letters(r) and "," not in r and "，" not in r,
        ),
        InstructionType(
            "lowercase",
            lambda rng: {},
            lambda a: "Write your entire answer in lowercase letters; no capital letters at all.",
            lambda r, a: _has_letters(r) and r == r.lower(),
        ),
        InstructionType(
            "uppercase",
            lambda rng: {},
            lambda a: "Write your entire answer in capital letters only.",
            lambda r, a: _has_letters(r) and r == r.upper(),
        ),
        InstructionType(
            "json",
            lambda rng: {},
            lambda a: "Format your entire output as JSON; it must parse as JSON.",
            lambda r, a: _is_json(r),
        ),
        InstructionType(
            "bullets",
            lambda rng: {"n": rng.choice([2, 3, 4, 5])},
            lambda a: (
                f"Your answer must contain exactly {a['n']} bullet points, each on its "
                'own line starting with "* " (a markdown bullet).'
            ),
            lambda r, a: _bullets(r) == a["n"],
        ),
        InstructionType(
            "paragraphs",
            lambda rng: {"n": rng.choice([2, 3, 4])},
            lambda a: (
                f"Write exactly {a['n']} paragraphs, separated from each other by the "
                "markdown divider ***."
            ),
            lambda r, a: _paragraphs_ok(r, a["n"]),
        ),
        InstructionType(
            "end_phrase",
            lambda rng: {"phrase": rng.choice(END_PHRASES)},
            lambda a: (
                f'Finish your answer with the exact phrase "{a["phrase"]}"; nothing may follow it.'
            ),
            lambda r, a: _ends_with(r, a["phrase"]),
        ),
        InstructionType(
            "title",
            lambda rng: {},
            lambda a: (
                "Start your answer with a title wrapped in double angular brackets, such "
                "as <<a title>>."
            ),
            lambda r, a: _title(r),
        ),
        InstructionType(
            "quotation",
            lambda rng: {},
            lambda a: "Wrap your entire answer in double quotation marks.",
            lambda r, a: _quoted(r),
        ),
        InstructionType(
            "placeholders",
            lambda rng: {"n": rng.choice([1, 2, 3])},
            lambda a: (
                f"Include at least {a['n']} placeholder"
                f"{'s' if a['n'] > 1 else ''} in square brackets, such as [name]."
            ),
            lambda r, a: len(re.findall(r"\[[^\[\]\n]+\]", r)) >= a["n"],
        ),
        InstructionType(
            "postscript",
            lambda rng: {"marker": rng.choice(["P.S.", "P.P.S."])},
            lambda a: f"At the end of your answer, add a postscript starting with {a['marker']}",
            lambda r, a: _postscript(r, a["marker"]),
        ),
    )
}
assert tuple(INSTRUCTIONS) == _ALL


def conflicts(a: str, b: str) -> bool:
    return a == b or b in _CONFLICTS.get(a, set()) or a in _CONFLICTS.get(b, set())


# ---- items -----------------------------------------------------------------------------------
@dataclass
class Instruction:
    kind: str
    args: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        return INSTRUCTIONS[self.kind].describe(self.args)

    def check(self, response: str) -> bool:
        return bool(INSTRUCTIONS[self.kind].check(response, self.args))

    def check_loose(self, response: str) -> bool:
        return any(self.check(v) for v in loose_variants(response))


@dataclass
class IFItem:
    id: str
    prompt: str
    instructions: list[Instruction]


def loose_variants(response: str) -> list[str]:
    """The response, without its first line, without its last line, without both — each as is
    and with markdown asterisks removed (empty variants dropped)."""
    lines = response.split("\n")
    bases = [response, "\n".join(lines[1:]), "\n".join(lines[:-1]), "\n".join(lines[1:-1])]
    out = []
    for b in bases:
        for v in (b, b.replace("*", "")):
            if v.strip() and v not in out:
                out.append(v)
    return out


def generate_items(n: int = DEFAULT_N_ITEMS, seed: int = 0) -> list[IFItem]:
    """`n` prompts, each a base task + 1–3 compatible instructions; a function of (n, seed)."""
    rng = random.Random(f"hillclimb.ifeval/{seed}")
    kinds = list(INSTRUCTIONS)
    items = []
    for i in range(n):
        base = BASE_TASKS[i % len(BASE_TASKS)] if i < len(BASE_TASKS) else rng.choice(BASE_TASKS)
        want = rng.choice([1, 2, 2, 3])
        # every type leads some prompt: the first len(kinds) prompts cycle through them
        chosen = [kinds[i % len(kinds)]] if i < len(kinds) else [rng.choice(kinds)]
        while len(chosen) < want:
            ok = [k for k in kinds if not any(conflicts(k, c) for c in chosen)]
            if not ok:
                break
            chosen.append(rng.choice(ok))
        ins = [Instruction(k, INSTRUCTIONS[k].sample(rng)) for k in chosen]
        used = [w for x in ins for w in x.args.get("words", [])]
        for x in ins:  # a frequency word never also appears as a keyword to include
            if x.kind == "keyword_frequency" and x.args["word"] in used:
                x.args["word"] = next(w for w in INCLUDE_WORDS if w not in used)
        prompt = base + " " + " ".join(x.text() for x in ins)
        items.append(IFItem(f"ifeval-{i:03d}", prompt, ins))
    return items


def score_response(item: IFItem, response: str) -> dict[str, Any]:
    strict = [x.check(response) for x in item.instructions]
    loose = [s or x.check_loose(response) for s, x in zip(strict, item.instructions, strict=True)]
    return {
        "strict": strict,
        "loose": loose,
        "passed": all(strict),
        "passed_loose": all(loose),
    }


# answers that are not whole: stopped by max_tokens, or no room for one in the context
CUT_OFF = ("length", "prompt_too_long")


def cut_off(item: IFItem) -> dict[str, Any]:
    """The score of an answer that was cut off: every instruction not followed.

    Why not score the text: most instructions are limits ("no more than 50 words", "no
    commas", "all lower case") that the first few tokens of any answer obey, so a run with a
    small `--max-tokens` scored a model higher the more of its answers were cut off. What the
    rest of the answer would have done is unknown; the item's `status` says it was cut."""
    no = [False] * len(item.instructions)
    return {"strict": no, "loose": list(no), "passed": False, "passed_loose": False}


def _status(finish_reason: str, passed: bool) -> str:
    """An item's status as the code suites name it: truncated | prompt_too_long | pass | fail."""
    if finish_reason == "length":
        return "truncated"
    if finish_reason == "prompt_too_long":
        return "prompt_too_long"
    return "pass" if passed else "fail"


# The no-training baseline: a "model" that answers with the prompt itself (as is, in lower or in
# upper case) or says nothing. Echoing already obeys some instructions — the prompt holds the
# keywords it asks for, upper case satisfies "all capitals" — so a score near it says nothing
# about instruction following. Seed 0, 120 prompts: echo 10.8% prompt-level strict, upper-case
# echo 15.0% (instruction level 21% / 29%); empty 0%.
ECHOES: dict[str, Callable[[str], str]] = {
    "the prompt echoed": lambda p: p,
    "the prompt echoed in lower case": str.lower,
    "the prompt echoed in upper case": str.upper,
    "an empty answer": lambda p: "",
}


def _metrics(items: list[IFItem], scored: list[dict[str, Any]], cfg: SuiteConfig) -> dict:
    n_ins = [float(len(it.instructions)) for it in items]
    return {
        "prompt_strict": metric([float(r["passed"]) for r in scored], cfg, salt=1),
        "instruction_strict": metric([float(sum(r["strict"])) for r in scored], cfg, n_ins, 2),
        "prompt_loose": metric([float(r["passed_loose"]) for r in scored], cfg, salt=3),
        "instruction_loose": metric([float(sum(r["loose"])) for r in scored], cfg, n_ins, 4),
    }


def _best_echo(items: list[IFItem]) -> tuple[str, list[dict[str, Any]]]:
    """The name and the scored answers of the best of `ECHOES` by prompt-level strict accuracy."""
    best: tuple[float, str, list[dict[str, Any]]] | None = None
    for name, answer in ECHOES.items():
        scored = [score_response(it, answer(it.prompt)) for it in items]
        share = sum(r["passed"] for r in scored) / max(1, len(scored))
        if best is None or share > best[0]:
            best = (share, name, scored)
    assert best is not None
    return best[1], best[2]


def echo_baseline(items: list[IFItem], cfg: SuiteConfig) -> dict[str, Any]:
    """The best of `ECHOES` by prompt-level strict accuracy, all four metrics of that one."""
    name, scored = _best_echo(items)
    return {"what": f"{name} (the best of {len(ECHOES)} no-model answers)",
            **_metrics(items, scored, cfg)}  # fmt: skip


def _strict_by_type(items: list[IFItem], scored: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Strict pass/fail marks per instruction type, in `INSTRUCTIONS` order."""
    per_type: dict[str, list[float]] = {k: [] for k in INSTRUCTIONS}
    for it, s in zip(items, scored, strict=True):
        for x, ok in zip(it.instructions, s["strict"], strict=True):
            per_type[x.kind].append(float(ok))
    return per_type


def by_instruction(
    items: list[IFItem], scored: list[dict[str, Any]], cfg: SuiteConfig
) -> dict[str, dict[str, Any]]:
    """Strict accuracy per instruction type with n, its 95% interval (Wilson: pass/fail marks,
    `metrics.bootstrap_ci`) and the echo baseline's accuracy on the same instructions.

    Why: these rows printed "40%" with n and nothing else, and a type has 6-24 instructions in
    the default 120 prompts (seed 0), where a 50% rate's interval is ±19-31 points; and echoing
    the prompt already follows some types (keywords to include, all capitals) far above 0%."""
    _, echoed = _best_echo(items)
    base = _strict_by_type(items, echoed)
    out = {}
    for salt, (k, v) in enumerate(_strict_by_type(items, scored).items(), 10):
        if v:
            out[k] = {**metric(v, cfg, salt=salt), "baseline": sum(base[k]) / len(base[k])}
    return out


def run_ifeval(backend: Backend, cfg: SuiteConfig) -> dict[str, Any]:
    items = generate_items(cfg.n_items or DEFAULT_N_ITEMS, cfg.seed)
    if cfg.limit:
        items = items[: cfg.limit]
    max_tokens = cfg.max_tokens or DEFAULT_MAX_TOKENS
    comps = backend.chat(
        [Request(it.id, it.prompt, 0, max_tokens, 0.0, 1.0, (), cfg.seed) for it in items]
    )
    rows = []
    for it, c in zip(items, comps, strict=True):
        s = score_response(it, c.text)
        if c.finish_reason in CUT_OFF:
            s = cut_off(it)
        rows.append(
            {
                "id": it.id,
                "prompt": it.prompt,
                "instructions": [{"kind": x.kind, **x.args} for x in it.instructions],
                **s,
                "status": _status(c.finish_reason, s["passed"]),
                "finish_reason": c.finish_reason,
                "completion_tokens": c.completion_tokens,
                "response": c.text,
            }
        )
    return {
        "n_items": len(items),
        "metrics": _metrics(items, rows, cfg),
        "baseline": echo_baseline(items, cfg),
        "by_instruction": by_instruction(items, rows, cfg),  # strict, per instruction
        **generation_stats(comps),
        "items": rows,
    }
