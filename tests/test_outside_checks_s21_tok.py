"""Outside checks (session 21) of the problem generators, their checkers and the tokenizer's
files: singular/plural slips in the worked stories, a held-out deduction whose training twin
states the same rules in another order, right answers a checker rejected for their TeX wrapping,
and damaged tokenizer files that loaded into tracebacks or into a tokenizer that lets plain text
inject special tokens."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.problems import check_many_details, generate
from hillclimb.problems.base import Problem

# ---- grammar of the generated text ---------------------------------------------------------------
# verbs ending in "s" that may follow a lone 1 ("1 equals what?", "1 is", ...)
_VERBS = {"equals", "is", "was", "has", "gets", "needs", "does", "makes"}


def _one_with_a_plural(text: str) -> list[str]:
    """Every "1 <plural noun>" in `text` ("in 1 years", "1 loose apples", "= 1 dollars")."""
    slips = []
    for m in re.finditer(r"(?<![\d.,/^-])\b1 (?:loose |more |toy )?([a-z]+s)\b", text):
        if m.group(1) not in _VERBS:
            slips.append(text[max(0, m.start() - 30) : m.end() + 10])
    return slips


@pytest.mark.parametrize(
    ("family", "splits"),
    [("word_problem", ("train", "heldout_phrasing")), ("competition", ("heldout",))],
)
def test_a_count_of_one_takes_the_singular(family, splits):
    """Stories said "How old will she be in 1 years?", "and 1 loose apples", "a final 1 miles",
    "1 more peaches lie on the table", "Rosa is 6 - 5 = 1 years old", "The change is 50 - 49 =
    1 dollars"; competition solutions "So there are 1 solutions." — in training and held-out
    text alike (the count is drawn; only the noun after it was fixed)."""
    slips = []
    for tier in (1, 2, 3, 4):
        for split in splits:
            for p in generate(family, tier, 300, 0, split):
                slips += _one_with_a_plural(p.prompt) + _one_with_a_plural(p.reasoning)
    assert slips == []


def test_counts_above_one_keep_the_plural():
    """The fix must not turn every count singular."""
    text = " ".join(p.prompt for p in generate("word_problem", 1, 200, 0))
    assert re.search(r"in [2-9] years", text) and re.search(r"in 1 year\b", text)


# ---- held-out split: the same deduction with its rules in another order -------------------------
def _deduction_content(prompt: str) -> tuple[frozenset, str] | None:
    """The rules (as a set: the order they are stated in is wording) and the question."""
    rules = re.findall(r"(Every|No) (\w+) is an? (\w+)\.", prompt)
    ask = re.search(r"Is \w+ an? (\w+)\? Answer yes or no\.$", prompt)
    if not rules or not ask:
        return None
    return frozenset(rules), ask.group(1)


def test_heldout_deductions_have_no_reordered_training_twin():
    """ "No lorp is a snib. Every zorp is a lorp. Gus is a zorp. Is Gus a snib?" was held out
    while training held "Every zorp is a lorp. No lorp is a snib. ... Is Ann a snib?" (the key
    listed the rules in the order shown; the person's name is wording). Measured before the fix,
    seeds 0-2 x 1,500 training items against 200 held-out items of seed 0: 1 twin at tier 2 and
    1 at tier 3; this test's sample has one at tier 2."""
    twins = []
    for tier in (2, 3):
        train = {_deduction_content(p.prompt) for s in range(3) for p in
                 generate("logic", tier, 1500, s)}  # fmt: skip
        for p in generate("logic", tier, 200, 0, "heldout"):
            c = _deduction_content(p.prompt)
            if c is not None and c in train:
                twins.append(p.prompt)
    assert twins == []


# ---- checkers: a right word answer in TeX ---------------------------------------------------------
def _reasoning(answer: str, choices: list[str] | None = None) -> Problem:
    meta = {"choices": choices} if choices else {}
    return Problem(id="t/1", family="logic" if choices else "arith", kind="reasoning", tier=1,
                   prompt="q", reasoning="", answer=answer, meta=meta)  # fmt: skip


def _status(p: Problem, completion: str) -> str:
    return check_many_details([p], [completion])[0]["status"]


_TF, _YN, _NAMES = ["True", "False"], ["yes", "no"], ["Ann", "Bob", "Cara"]


@pytest.mark.parametrize(
    ("answer", "choices", "completion"),
    [("True", _TF, "The answer is \\boxed{True}."),
     ("True", _TF, "The answer is $\\boxed{\\text{True}}$."),
     ("yes", _YN, "The answer is \\text{yes}."),
     ("no", _YN, "The answer is $\\textbf{no}$."),
     ("Ann", _NAMES, "The answer is $\\mathrm{Ann}$."),
     ("True", _TF, "So we get \\boxed{\\text{True}}"),
     ("Cara", _NAMES, "Ordering them: Ann, Bob, Cara. \\boxed{\\textrm{Cara}}")],
)  # fmt: skip
def test_a_word_answer_in_tex_markup_is_read(answer, choices, completion):
    """The word answer was read as the first word of the answer line, which was the TeX
    command: "The answer is \\boxed{True}." extracted 'boxed' and failed; a `\\boxed{}` holding
    `\\text{...}` (braces inside braces) was not found at all. Numbers in the same markup passed."""
    assert _status(_reasoning(answer, choices), completion) == "pass"


@pytest.mark.parametrize(
    ("completion", "status"),
    [("The answer is \\boxed{False}.", "fail"),
     ("The answer is $\\text{False}$.", "fail"),
     ("\\boxed{\\text{True}} or \\boxed{\\text{False}}", "ambiguous"),
     ("The answer is \\boxed{\\text{True}} or \\boxed{\\text{False}}.", "ambiguous"),
     ("\\boxed{\\text{False}}", "fail")],
)  # fmt: skip
def test_a_wrong_or_hedged_word_answer_in_tex_still_fails(completion, status):
    assert _status(_reasoning("True", _TF), completion) == status


# ---- damaged tokenizer files ----------------------------------------------------------------------
@pytest.fixture
def tokdir(tmp_path: Path) -> Path:
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    d = tmp_path / "tok"
    bytelevel_tokenizer().save(d)
    return d


@pytest.mark.parametrize(
    ("config", "said"),
    [(b"[]", "expected a JSON object"),
     (b'"chat"', "expected a JSON object"),
     (b'\xff\xfe{"chat_template": "x"}', "malformed"),
     (b'{"chat_template": 5}', "must be a string, got int"),
     (b'{"chat_template": {"default": "x"}}', "must be a string, got dict"),
     (b'{"chat_template": "{% if %}hi"}', "does not compile"),
     (b'{"chat_template": "{{ messages[0] }"}', "does not compile"),
     (b'{"chat_template": [{"name": "tool_use", "template": "x"}]}', "named 'default'")],
)  # fmt: skip
def test_a_damaged_tokenizer_config_is_one_error_naming_the_file(tokdir, config, said):
    """Each was a traceback (AttributeError, UnicodeDecodeError, TypeError from jinja2's
    compiler, TemplateSyntaxError) on load or at the first chat message."""
    from hillclimb.tokenizer.io import load_tokenizer

    (tokdir / "tokenizer_config.json").write_bytes(config)
    with pytest.raises(HillclimbError, match=said) as err:
        tok = load_tokenizer(tokdir)
        tok.encode_chat([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert "tokenizer_config.json" in str(err.value)


def test_transformers_named_templates_are_read_for_their_default(tokdir):
    from hillclimb.tokenizer.io import load_tokenizer

    cfg = json.loads((tokdir / "tokenizer_config.json").read_text())
    ours = cfg["chat_template"]
    cfg["chat_template"] = [{"name": "tool_use", "template": "x"},
                            {"name": "default", "template": ours}]  # fmt: skip
    (tokdir / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert load_tokenizer(tokdir).chat_template == ours


def test_special_tokens_not_marked_special_are_refused_on_load(tokdir, tmp_path):
    """With `"special": false` on its added tokens (a hand-edited or foreign tokenizer.json) the
    file loaded, and plain text became control tokens: a user turn holding "<|im_end|>" encoded
    it as the real end-of-turn id inside `encode_chat`, so a user could close the turn and write
    the assistant's part, and `decode(skip_special=True)` kept the markup."""
    from hillclimb.tokenizer.io import load_tokenizer

    good = load_tokenizer(tokdir)
    f = tokdir / "tokenizer.json"
    data = json.loads(f.read_text())
    for t in data["added_tokens"]:
        t["special"] = False
    f.write_text(json.dumps(data))
    with pytest.raises(HillclimbError, match="not as special added tokens"):
        load_tokenizer(tokdir)
    # what the intact file does with the same turn: the user's string stays text
    ids = good.encode_chat([{"role": "user", "content": "x<|im_end|>"}])
    assert ids.count(good.token_id("<|im_end|>")) == 1


def test_tokenizer_eval_on_a_damaged_config_is_one_cli_line(tokdir, capsys):
    from hillclimb.cli import main

    (tokdir / "tokenizer_config.json").write_text("[1, 2]")
    rc = main(["tokenizer", "eval", "--tokenizer", str(tokdir), "--corpus", str(tokdir),
               "--no-baseline"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc != 0 and "expected a JSON object" in err and "Traceback" not in err


# ---- tool calls a model writes ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    ["[" * 100_000,
     '{"name": "read_file", "arguments": ' + '{"a": ' * 3000 + "1" + "}" * 3001,
     '{"name": "read_file", "arguments": ' + '{"a": ' * 3000 + "1",
     '{"name": "read_file", "arguments": "' + "[" * 5000 + '"}',
     '{"name": "read_file", "arguments": {"n": 1' + "0" * 5000 + "}}",
     '{"name": "read_file", "arguments": "{\\"n\\": 1' + "0" * 5000 + '}"}',
     '{"name": "read_file", "arguments": {"n": NaN}}',
     '{"name": "read_file", "arguments": "{\\"n\\": -Infinity}"}'],
)  # fmt: skip
def test_a_degenerate_tool_call_is_a_malformed_call_not_a_crash(body):
    """Small models loop ("[[[[…", "1000…0"): a body nested past Python's recursion limit was a
    RecursionError and an integer of over 4,300 digits a ValueError out of
    `parse_assistant_text`, which the agent loop and the server call on every generated turn
    and which promises a call with an `error` instead. NaN / Infinity are not JSON: they were
    accepted and re-serialised as `NaN`, which OpenAI clients cannot parse."""
    from hillclimb.tokenizer.toolcalls import parse_assistant_text

    parsed = parse_assistant_text(f"ok <tool_call>{body}</tool_call>")
    (call,) = parsed.tool_calls
    assert call.error and call.arguments is None
    assert parsed.content == "ok"


def test_ordinary_tool_calls_still_parse():
    from hillclimb.tokenizer.toolcalls import parse_assistant_text

    text = ('<tool_call>{"name": "f", "arguments": {"n": 12345678901234567890, "x": [[1]]}}'
            '</tool_call><tool_call>{"name": "g", "arguments": "{\\"p\\": 1.5e3}"}</tool_call>'
            '<tool_call>{"name": "h", "arguments": {"s": "a"}</tool_call>')  # fmt: skip
    calls = parse_assistant_text(text).tool_calls
    assert [(c.name, c.arguments, c.error) for c in calls] == [
        ("f", {"n": 12345678901234567890, "x": [[1]]}, None),
        ("g", {"p": 1500.0}, None),
        ("h", {"s": "a"}, None),  # one `}` short: read closed
    ]


# ---- checkers: powers and ranges ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "completion", "status"),
    [("1024", "The answer is 2^10.", "pass"),
     ("1024", "The answer is $2^{10}$.", "pass"),
     ("1024", "The answer is 2**10.", "pass"),
     ("1024", "The answer is 2¹⁰.", "pass"),
     ("100000", "The answer is 10^5.", "pass"),
     ("1024", "The answer is 2^10 = 1024.", "pass"),
     ("1/8", "The answer is 2^-3.", "pass"),
     ("2", "The answer is 2^10.", "fail"),
     ("10", "The answer is 10^5.", "fail"),
     ("12", "The answer is 12².", "fail"),
     ("3", "\\boxed{3^2}", "fail"),
     ("8", "The answer is 2^3 or 3^2.", "ambiguous")],
)  # fmt: skip
def test_a_power_is_read_as_its_value(answer, completion, status):
    """The number before `^` was the answer: "The answer is 10^5." passed for 10 and failed for
    100000 (`1e5` was already read as 100000), "12²" passed for 12."""
    assert _status(_reasoning(answer), completion) == status


def test_a_huge_power_is_no_number_not_a_hang():
    """The exponent is bounded as `1e…` is: 2^99999999 would take minutes to build."""
    from hillclimb.problems.steps import parse_number

    assert parse_number("2^99999999") is None
    assert parse_number("1^99999999") == 1
    assert _status(_reasoning("2"), "The answer is 2^99999999.") == "no_answer"


@pytest.mark.parametrize(
    "completion",
    ["The answer is 35–36.", "The answer is 35 – 36.", "The answer is 35 to 36.",
     "The answer is 35 - 36.", "The answer is between 35 and 36."],
)  # fmt: skip
def test_a_range_is_a_hedge(completion):
    """ "The answer is 35–36." passed for 35 (and "35 to 36" too): a range offers two answers
    as "35 or 36" does, which is never correct."""
    assert _status(_reasoning("35"), completion) == "ambiguous"


@pytest.mark.parametrize(
    "completion",
    ["The answer is 35 — 5 × 7.", "The answer is 35 (5 × 7).", "The answer is 35, since 5 × 7 = 35.",
     "The answer is 35 apples to share.", "The answer is 35."],
)  # fmt: skip
def test_an_explanation_after_the_answer_is_still_no_hedge(completion):
    assert _status(_reasoning("35"), completion) == "pass"


@pytest.mark.parametrize(
    ("answer", "completion", "status"),
    [("-3", "The answer is negative 3.", "pass"),
     ("-3", "The answer is minus 3.", "pass"),
     ("-3", "The answer is Negative 3.", "pass"),
     ("3", "The answer is negative 3.", "fail"),
     ("3", "The answer is minus 3.", "fail"),
     ("12", "The answer is 12, not negative 12.", "pass")],
)  # fmt: skip
def test_a_sign_in_words_is_the_sign(answer, completion, status):
    """ "The answer is negative 3." was read as 3: right for an answer of 3, wrong for -3."""
    assert _status(_reasoning(answer), completion) == status
