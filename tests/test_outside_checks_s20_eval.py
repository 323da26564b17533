"""Outside checks (session 20) of the answer checkers and evaluation suites: hedged answers
wrapped in markup, TeX fractions, completion-suite programs that game a shared interpreter, and
the other edges found while probing whether a score means what it says."""

from __future__ import annotations

import pytest

from hillclimb.problems import check_many_details
from hillclimb.problems.base import Problem


def _reasoning(answer: str, choices: list[str] | None = None) -> Problem:
    meta = {"choices": choices} if choices else {}
    return Problem(id="t/1", family="logic" if choices else "arith", kind="reasoning", tier=1,
                   prompt="q", reasoning="", answer=answer, meta=meta)  # fmt: skip


def _status(p: Problem, completion: str) -> str:
    return check_many_details([p], [completion])[0]["status"]


# ---- reasoning answers --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "completion",
    ["The answer is **5** or **6**.", "The answer is `5` or `6`.", "The answer is $5$ or $6$.",
     'The answer is "5" or "6".', "The answer is \\(5\\) or \\(6\\).", "The answer is 5 *or* 6.",
     "The answer is **5**, **6**", "The answer is \\boxed{5} or \\boxed{6}.",
     "The answer is 5. Or 6.", "The answer is 5. Maybe 6."],
)  # fmt: skip
def test_a_hedge_wrapped_in_markup_is_not_a_correct_answer(completion):
    """Two candidates each in bold, code, quotes or TeX math ("**5** or **6**") passed for 5:
    the markup between them hid the "or" from the hedge rule, so listing candidates paid again."""
    assert _status(_reasoning("5"), completion) == "ambiguous"


@pytest.mark.parametrize(
    "completion",
    ["The answer is **Ann** or **Eli**.", 'The answer is "Ann" or "Eli".', "The answer is `Eli` or `Ann`."],
)  # fmt: skip
def test_a_hedge_between_names_wrapped_in_markup_is_not_a_correct_answer(completion):
    p = _reasoning("Ann", ["Ann", "Eli", "Ivo"])
    assert _status(p, completion) == "ambiguous"


@pytest.mark.parametrize(
    "completion",
    ["The answer is **5**.", "The answer is `5` (the count).", "The answer is $\\boxed{5}$.",
     "The answer is 5. 6 of them are red.", "The answer is 12 (3 × 4).".replace("12", "5"),
     "The answer is $5$; see above.", "**The answer is 5.** 6 is not."],
)  # fmt: skip
def test_a_single_answer_in_markup_still_passes(completion):
    assert _status(_reasoning("5"), completion) == "pass"


@pytest.mark.parametrize(
    ("answer", "completion"),
    [("1/2", "The answer is \\frac{1}{2}."), ("-1/6", "The answer is \\dfrac{-1}{6}."),
     ("-1/6", "\\boxed{-\\frac{1}{6}}"), ("7/12", "The answer is $\\tfrac{7}{12}$.")],
)  # fmt: skip
def test_a_tex_fraction_is_read_as_its_value(answer, completion):
    """`\\frac{1}{2}` was read as the numbers 1 and 2: a correct 1/2 scored "fail" (the first
    number) and, once markup is ignored in hedges, would read as a hedge."""
    assert _status(_reasoning(answer), completion) == "pass"


def test_two_different_tex_fractions_are_a_hedge():
    assert _status(_reasoning("1/2"), "The answer is \\frac{1}{2} or \\frac{1}{3}.") == "ambiguous"


@pytest.mark.parametrize(
    "completion",
    ["The answer is 1e" + "9" * 5000 + ".", "The answer is 5e-" + "0" * 6000 + "1.",
     "\\boxed{1e" + "7" * 4400 + "}", "It is 2E+" + "1" * 9000, "The answer is 1e4300.",
     "\\boxed{1e-4300}", "The answer is 123e4298.", "It is 7e4300"],
)  # fmt: skip
def test_an_exponent_with_thousands_of_digits_is_no_number_not_a_crash(completion):
    """`parse_number` ran `int()` on the exponent before bounding it (over 4300 digits that
    raises ValueError), and the bound let 10**4300 through, which `fmt` cannot print (4301
    digits: ValueError): the 21 characters "The answer is 1e4300." ended an evaluation (or an
    RL step) in a traceback."""
    d = check_many_details([_reasoning("5")], [completion])[0]
    assert d["passed"] is False and d["status"] in ("no_answer", "fail")


# ---- generated problems -------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["train", "heldout", "heldout_phrasing"])
def test_sharing_stories_have_the_arithmetic_of_equal_sharing(split):
    """ "Zoe shares 44 books equally among 5 friends and keeps what is left over. Then she gives
    7 of the leftover books to Rosa." was worked as "each friend gets 7, 9 left, keeps 2": the
    leftover was drawn up to 9 whatever the number of friends, so 3 in 4 of these stories
    trained a wrong answer and scored a right one (44 = 5 × 8 + 4) as wrong. An independent
    solution from the story's own numbers (the key) must equal the reference."""
    from hillclimb.problems import generate

    seen = 0
    for seed in range(2):
        for p in generate("word_problem", 3, 200, seed, split):
            if not p.key.startswith("sharing:"):
                continue
            total, friends, given = (int(x) for x in p.key.split(":")[1].split(","))
            left = total % friends  # what equal sharing leaves
            assert given <= left, p.prompt
            assert int(p.answer) == left - given, (p.prompt, p.reasoning)
            seen += 1
    assert seen >= 20


def test_held_out_savings_stories_are_grammatical():
    """The held-out wording of the savings story said "A present then costs he 91 euros"
    (a subject pronoun as the object) in every story about a boy."""
    import re

    from hillclimb.problems import generate

    prompts = [p.prompt for p in generate("word_problem", 4, 200, 0, "heldout_phrasing")]
    assert any("A present then costs" in q for q in prompts)
    assert not [q for q in prompts if re.search(r"costs (he|she) ", q)]


# ---- the completion and FIM suites --------------------------------------------------------------
_ALWAYS_EQUAL = "    class A:\n        def __eq__(s, o):\n            return True\n    return A()\n"
_FORGED_MARKER = (
    "    pass\nimport sys as _s, os as _o\n"
    "_m = [c for c in _s._getframe().f_code.co_consts if isinstance(c, str) and"
    " c.startswith('__hillclimb_program_done')]\n"
    "_s.stdout.write((_m[0] if _m else 'x') + chr(10)); _s.stdout.flush(); _o._exit(0)\n"
)


class _Scripted:
    """A backend answering from a function of the request (the suites' own test pattern)."""

    kind = "scripted"
    name = "scripted"

    def __init__(self, fn) -> None:  # noqa: ANN001
        self.fn = fn

    def complete(self, reqs):  # noqa: ANN001, ANN201
        from hillclimb.eval.backends import Completion

        return [Completion(self.fn(r), "stop", 5) for r in reqs]

    chat = complete

    def close(self) -> None:
        pass


def _run(suite: str, fn, **cfg):  # noqa: ANN001, ANN202
    from hillclimb.eval.suite_common import SuiteConfig
    from hillclimb.eval.suites import run_suite

    return run_suite(suite, "scripted", SuiteConfig(**cfg), backend=_Scripted(fn))


@pytest.mark.parametrize("hack", [_ALWAYS_EQUAL, _FORGED_MARKER], ids=["always_equal", "marker"])
def test_the_completion_suite_is_not_passed_by_gaming_its_interpreter(hack):
    """`--suite completion` ran prompt + continuation + `assert f(x) == y` in ONE interpreter:
    a body returning an object equal to everything, or top-level code that printed the end
    marker (it is in its own code object) and `os._exit(0)`, passed every held-out function
    (pass@1 1.0). Our own items now go through the RL reward's checker."""
    res = _run("completion", lambda r: hack, n_items=1)
    assert res["metrics"]["pass@1"]["value"] == 0.0


def test_the_completion_suite_still_passes_right_answers_in_both_forms():
    from hillclimb.eval.completion_suite import items

    its = {it["task_id"]: it for it in items(1, 0)}
    res = _run("completion", lambda r: its[r.item_id]["canonical_solution"], n_items=1)
    assert res["metrics"]["pass@1"]["value"] == 1.0
    chat = _run("completion", lambda r: f"```python\n{its[r.item_id]['prompt']}{_ALWAYS_EQUAL}```",
                n_items=1, form="chat")  # fmt: skip
    assert chat["metrics"]["pass@1"]["value"] == 0.0


def test_fim_test_items_are_not_passed_by_an_always_equal_line():
    """FIM's `test_pass` ran prefix + answer line + suffix + asserts in one interpreter: the
    one-line answer `return <object equal to everything>` passed every test item (1.0); the
    right lines still pass."""
    from hillclimb.eval.fim_suite import make_test_items

    tests = {it["id"]: it for it in make_test_items(1, 0)}
    assert tests

    def answer(hack: bool):  # noqa: ANN202
        def fn(r):  # noqa: ANN001, ANN202
            it = tests.get(r.item_id)
            if it is None:
                return ""
            indent = it["middle"][: len(it["middle"]) - len(it["middle"].lstrip())]
            return indent + "return type('A', (), {'__eq__': lambda s, o: True})()" if hack \
                else it["middle"]  # fmt: skip

        return fn

    assert _run("fim", answer(True), n_items=10)["metrics"]["test_pass"]["value"] == 0.0
    assert _run("fim", answer(False), n_items=10)["metrics"]["test_pass"]["value"] == 1.0


# ---- selections of families and tiers -----------------------------------------------------------
@pytest.mark.parametrize(
    "flags", [["--tiers", "1,1", "--families", "arith"], ["--families", "arith,arith", "--tiers", "1"],
              ["--families", "arith", "arith", "--tiers", "1"]],
)  # fmt: skip
def test_problems_export_refuses_a_repeated_family_or_tier(tmp_path, capsys, flags):
    """`problems export --tiers 1,1` wrote every tier-1 item twice (32 records of 16 problems):
    a frozen evaluation set that counts each item double. The eval commands refuse repeats;
    `problem_suite`, which export and the router fit read, now does too."""
    from hillclimb.cli import main

    out = tmp_path / "set.jsonl"
    assert main(["problems", "export", "--out", str(out), *flags]) != 0
    assert "more than once" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("flags", [["--families", ","], ["--tiers"], ["--tiers", ","]])
def test_problems_export_refuses_an_empty_selection(tmp_path, capsys, flags):
    """`--families ,` (or a bare `--tiers`) selected nothing, read as "everything" and exported
    all 8 families."""
    from hillclimb.cli import main

    out = tmp_path / "set.jsonl"
    assert main(["problems", "export", "--out", str(out), *flags]) != 0
    assert "names nothing" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--families", "--tiers"])
def test_eval_refuses_an_empty_selection(capsys, flag):
    from hillclimb.cli import main

    with pytest.raises(SystemExit) as e:
        main(["eval", "--model", "nowhere", flag, ","])
    assert e.value.code == 2
    assert "at least one" in capsys.readouterr().err


def test_router_fit_refuses_a_repeated_family_or_tier():
    """`router fit --families arith,arith` put every prompt in the fit and the val report twice."""
    from hillclimb.errors import ConfigError
    from hillclimb.eval.routing import RouterFitConfig

    for kw in ({"families": ["arith", "arith"]}, {"tiers": [2, 2]}):
        with pytest.raises(ConfigError, match="more than once"):
            RouterFitConfig(thinking="a", code_flash="b", out="r.json", **kw).validate()


def test_problem_suite_refuses_repeats():
    from hillclimb.errors import HillclimbError
    from hillclimb.problems import problem_suite

    with pytest.raises(HillclimbError, match="more than once"):
        problem_suite(0, "heldout", 2, ["arith", "arith"], [1])
    assert len(problem_suite(0, "heldout", 2, ["arith"], [1])) == 2


# ---- the harness suite --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def harness_tasks(tmp_path_factory):
    from hillclimb.cli import main

    root = tmp_path_factory.mktemp("s20h")
    assert main(["harness", "generate", "--out", str(root / "a"), "--n", "2", "--seed", "5",
                 "--kinds", "bugfix"]) == 0  # fmt: skip
    return root


@pytest.mark.parametrize("second", ["same", "link", "copy"])
def test_harness_suite_refuses_a_task_in_two_groups(harness_tasks, second):
    """`--tasks x=DIR --tasks y=DIR` (or a link to DIR, or a copy of it) ran every task twice
    and counted each twice in the pooled `resolve_rate`: n doubled and the interval narrowed
    for nothing. Found before any episode runs."""
    import shutil

    from hillclimb.errors import HillclimbError
    from hillclimb.eval.harness_suite import run_harness
    from hillclimb.eval.suite_common import SuiteConfig

    a = harness_tasks / "a"
    other = {"same": a, "link": harness_tasks / "link", "copy": harness_tasks / "copy"}[second]
    if second == "link" and not other.exists():
        other.symlink_to(a, target_is_directory=True)
    if second == "copy" and not other.exists():
        shutil.copytree(a, other, symlinks=True)
    cfg = SuiteConfig(tasks=[f"x={a}", f"y={other}"])
    with pytest.raises(HillclimbError, match="in both group 'x' and 'y'"):
        run_harness(object(), cfg)  # type: ignore[arg-type]


# ---- answers of an OpenAI-compatible server ----------------------------------------------------
@pytest.fixture
def odd_server():
    """A real HTTP server on localhost that serves /v1/models and answers every POST with the
    body the test sets (standing in for a third-party endpoint)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = {"body": b"{}", "models": json.dumps({"data": [{"id": "m"}]}).encode()}

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):  # noqa: ANN002, ANN201
            pass

        def _send(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: ANN201, N802
            self._send(state["models"])

        def do_POST(self):  # noqa: ANN201, N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._send(state["body"])

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", state
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize(
    ("body", "forms"),
    [(b"{}", "chat,complete"), (b'{"choices": []}', "chat,complete"), (b"[]", "chat,complete"),
     (b"not json", "chat,complete"), (b'{"choices": [null]}', "chat,complete"),
     (b'{"choices": [{"message": {"content": 5}}]}', "chat"),
     (b'{"choices": [{"text": {"a": 1}}]}', "complete")],
)  # fmt: skip
def test_a_malformed_server_answer_is_a_clear_error(odd_server, body, forms):
    """A 200 answer without choices (`{}`, `[]`, `{"choices": []}`), not JSON, or with a
    non-text content ended `eval --suite ... --model URL` in a KeyError / IndexError /
    JSONDecodeError / AttributeError traceback."""
    from hillclimb.errors import HillclimbError
    from hillclimb.eval.backends import HTTPBackend, Request

    url, state = odd_server
    state["body"] = body
    be = HTTPBackend(url, concurrency=1)
    try:
        for form in forms.split(","):
            with pytest.raises(HillclimbError, match=url.replace(".", r"\.")):
                getattr(be, form)([Request("a", "q")])
    finally:
        be.close()


def test_odd_but_legal_server_answers_are_read(odd_server):
    """Content as a list of text parts, `null` content, a missing or non-numeric usage."""
    import json

    from hillclimb.eval.backends import HTTPBackend, Request

    url, state = odd_server
    be = HTTPBackend(url, concurrency=1)
    try:
        parts = {
            "content": [{"type": "text", "text": "The answer"}, {"type": "text", "text": " is 5."}]
        }
        state["body"] = json.dumps({"choices": [{"message": parts, "finish_reason": "stop"}],
                                    "usage": {"completion_tokens": 4}}).encode()  # fmt: skip
        c = be.chat([Request("a", "q")])[0]
        assert (c.text, c.finish_reason, c.completion_tokens) == ("The answer is 5.", "stop", 4)
        state["body"] = json.dumps({"choices": [{"message": {"content": None}}],
                                    "usage": {"completion_tokens": "x"}}).encode()  # fmt: skip
        c = be.chat([Request("a", "q")])[0]
        assert (c.text, c.finish_reason, c.completion_tokens) == ("", "stop", 0)
    finally:
        be.close()


@pytest.mark.parametrize("models", [b"[]", b'{"data": 5}', b'"x"'])
def test_a_malformed_model_list_is_a_clear_error(odd_server, models):
    """`/models` answering a list or a string ended the run in an AttributeError traceback."""
    from hillclimb.errors import HillclimbError
    from hillclimb.eval.backends import HTTPBackend

    url, state = odd_server
    state["models"] = models
    with pytest.raises(HillclimbError, match="lists no model"):
        HTTPBackend(url)


# ---- hillclimb eval (no suite) ------------------------------------------------------------------
@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from hillclimb.cli import main

    d = tmp_path_factory.mktemp("s20m") / "init"
    assert main(["init", "--preset", "thinking-micro", "--out", str(d), "--seed", "0"]) == 0
    return d


@pytest.mark.parametrize(
    ("flags", "says"),
    [(["--no-tasks"], "nothing to evaluate"),
     (["--no-tasks", "--data", ".", "--seq-len", "0"], "seq_len must be >= 1"),
     (["--no-tasks", "--data", ".", "--seq-len", "-4"], "seq_len must be >= 1")],
)  # fmt: skip
def test_eval_refuses_to_measure_nothing(micro, capsys, flags, says):
    """`eval --no-tasks` without `--data` loaded the model, printed a header and exited 0 (no
    number at all); `--seq-len 0` divided by zero cutting the val windows."""
    from hillclimb.cli import main

    assert main(["eval", "--model", str(micro), "--device", "cpu", *flags]) != 0
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("suite", [[], ["--suite", "problems"]])
def test_pass_k_zero_is_named_as_the_error(capsys, suite):
    """`--pass-k 0` said "add --samples-per-item >= 0", advice that fixes nothing."""
    from hillclimb.cli import main

    assert main(["eval", "--model", "nowhere", *suite, "--pass-k", "0"]) != 0
    err = capsys.readouterr().err
    assert "--pass-k values must be >= 1" in err and ">= 0" not in err


def test_humaneval_chat_body_with_a_prefixed_helper_gets_the_signature():
    """A chat answer that is the function's body with a nested helper `def NAME_inner` was
    taken as defining NAME (a substring test), so the prompt's signature was not added and a
    correct body failed with an IndentationError."""
    from hillclimb.eval.humaneval import load_problems, score

    it = load_problems(1)[0]
    assert it["entry_point"] == "has_close_elements"
    body = (
        "```python\n    def has_close_elements_inner(a, b):\n        return abs(a - b) < threshold\n"
        "    s = sorted(numbers)\n"
        "    return any(has_close_elements_inner(a, b) for a, b in zip(s, s[1:]))\n```"
    )
    whole = f"```python\n{it['prompt']}    return False\n```"  # a whole (wrong) function
    got = score([it, it], [body, whole], "chat", 10.0)
    assert [r.passed for r in got] == [True, False]


def test_ifeval_quotation_needs_an_answer_inside_the_quotes():
    """`""` (nothing, quoted) obeyed "Wrap your entire answer in double quotation marks." —
    the one instruction an empty answer passed (every other one needs some text)."""
    from hillclimb.eval.ifeval import Instruction

    q = Instruction("quotation")
    assert not q.check('""') and not q.check('"  "') and not q.check_loose('""\n')
    assert q.check('"A short story."') and q.check('  "yes"\n')
