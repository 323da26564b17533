"""Session 27 (problems helper): the altimeter audit's two problems-area findings.

1. Code twins across forms: a string pipeline whose every part only compares, collects, counts
   or tallies elements (`count_blocks_chars(s)`) is the list pipeline's function renamed
   (`count_blocks_values(xs)`); it now carries the list key, so the pair splits together.
2. Held-out word problems may repeat a training story's arithmetic (keyed by template): each
   evaluated word problem carries `arith_seen_in_train`, and the evaluation prints the accuracy
   without the flagged items beside the plain one.
"""

from __future__ import annotations

import ast
import random

import pytest

from hillclimb import problems as P
from hillclimb.problems import codegen
from hillclimb.problems import codegen_pipeline as pipe
from hillclimb.problems.base import make_problem
from hillclimb.problems.codegen_ends import AGG_BY_KEY, AGGS, SOURCES
from hillclimb.problems.codegen_ops import CHAR, INT, OPS
from hillclimb.problems.codetasks import TASKS, instance

# ---------------------------------------------------------------- 1. code twins across forms


def test_count_blocks_chars_carries_the_list_key():
    """The audit's pair: the same body after renaming, so one key (and one bucket)."""
    chars = pipe.key_of(SOURCES["chars"], (), AGG_BY_KEY[(CHAR, "runs_count")])
    values = pipe.key_of(SOURCES["list"], (), AGG_BY_KEY[(INT, "runs_count")])
    assert chars == values == "gen:list|runs_count"
    same = OPS[(CHAR, "same")]
    assert (
        pipe.key_of(SOURCES["chars"], (same,), AGG_BY_KEY[(CHAR, "count")])
        == "gen:list|filter_equal|count"
    )
    # a string pipeline with a character-only part keeps its own key
    vowel = OPS[(CHAR, "vowel")]
    assert pipe.key_of(SOURCES["chars"], (vowel,), AGG_BY_KEY[(CHAR, "count")]).startswith(
        "gen:chars|"
    )


def test_catalogue_string_tasks_share_their_list_twin_key():
    """`count_char` and `char_counts` are generated string pipelines' twins: they follow them."""
    index = {t.name: i for i, t in enumerate(TASKS)}
    assert instance(index["count_char"], (("c", "a"),)).key == "gen:list|filter_equal|count"
    assert instance(index["char_counts"], ()).key == "gen:list|tally"


def test_generic_aggregate_table_matches_the_vocabulary():
    """`CHAR_AS_INT_AGGS` names exactly the aggregates defined for both ints and characters
    (one body for both), plus the character run of `other` (the int run of `unequal`)."""
    from hillclimb.problems.codegen_spec import CHAR_AS_INT_AGGS

    both = {a.token for a in AGGS if {INT, CHAR} <= a.types}
    assert set(CHAR_AS_INT_AGGS) - {"run_other"} == both
    assert {"run_other", "run_unequal"} <= {a.token for a in AGGS}


class _Names(ast.NodeTransformer):
    """Names renamed in order of appearance, constants masked: the code's shape."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _n(self, x: str) -> str:
        return self.names.setdefault(x, f"v{len(self.names)}")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = "f"
        self.generic_visit(node)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._n(node.arg)
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id not in ("len", "set", "sorted", "max", "min", "sum", "list"):
            node.id = self._n(node.id)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, int | str) and not isinstance(node.value, bool) and node.value:
            return ast.copy_location(ast.Name(id="C", ctx=ast.Load()), node)
        return node


def _shapes(structure: tuple, builds: int = 12) -> set[str]:
    out = set()
    for b in range(builds):
        spec = codegen._build(random.Random(b), "pipe", structure)
        if spec is not None:
            out.add(ast.dump(_Names().visit(ast.parse(spec.code))))
    return out


def _pipelines(budget: int, source: str) -> list[tuple]:
    out: list[tuple] = []

    def walk(stages: tuple, r: int) -> None:
        st = pipe._state(source, stages)
        if r <= 1:
            out.extend((SOURCES[source], st.stages, a) for a in st.aggs(r))
        if r > 0:
            for o in st.ops():
                walk(stages + (pipe._key(o),), r - 1)

    walk((), budget)
    return out


@pytest.mark.parametrize("budget", [1, 2])
def test_string_and_list_pipelines_of_one_shape_share_a_key(budget):
    """Tiers 2 and 3: every string pipeline whose code has the shape of a list pipeline's
    (names renamed, constants masked) carries that pipeline's key, and every string pipeline
    renamed to a list key has such a shape (so the renaming table neither misses nor invents
    a twin). Before: 12 + 3 pairs keyed apart, 3 of them on both sides of the held-out split."""
    lists: dict[str, set[str]] = {}
    for s in _pipelines(budget, "list"):
        lists.setdefault(pipe.key_of(*s), set()).update(_shapes(s, 4))
    renamed = 0
    for s in _pipelines(budget, "chars"):
        key = pipe.key_of(*s)
        if key.startswith("gen:list|"):
            renamed += 1
            assert key in lists, key
            assert _shapes(s) & lists[key], key
        else:
            shapes = _shapes(s, 4)
            twins = [k for k, v in lists.items() if shapes & v]
            assert not twins, (key, twins)
    assert renamed == {1: 12, 2: 3}[budget]


def test_twins_split_together_in_the_evaluation():
    """At the tiny climb's evaluation settings (seed 0, 20 per cell) no held-out code item is
    a string twin of a training list function any more (before: `gen:chars|tally` 3 times, the
    list tally being in training), and the cells stay full."""
    for split in ("heldout", "heldout_phrasing"):
        items = P.problem_suite(0, split, 20, ["code_function", "code_bugfix"], [2, 3])
        assert len(items) == 80
        assert all(not p.key.startswith("gen:chars|tally") for p in items)
        assert all(P.key_bucket("code", p.key) == "test" for p in items)


# ---------------------------------------------------------------- 2. word-problem arithmetic


def _story(prompt: str, reasoning: str, answer: str, split: str) -> P.Problem:
    built = {"reasoning": reasoning, "answer": answer, "meta": {"template": "t", "steps": 1}}
    return make_problem("word_problem", "reasoning", 1, prompt, built, prompt, split)


def test_flag_marks_a_held_out_story_with_training_arithmetic():
    from hillclimb.problems.baselines import flag_seen_arithmetic, worked_arithmetic

    train = [_story("Mia has 3 apples. She gets 5 more.", "3 + 5 = 8.", "8", "train")]
    same = _story("Noah has 5 pens and Ava has 3 pens. Together?", "5 + 3 = 8.", "8", "heldout")
    other = _story("Mia has 3 apples. She gives 1 away.", "3 - 1 = 2.", "2", "heldout")
    arith = make_problem("arith", "reasoning", 1, "3 + 5 = ?", {"reasoning": "", "answer": "8"})
    assert worked_arithmetic(same) == (("3", "+", "5"),)
    assert flag_seen_arithmetic([same, other, arith], train) == 1
    assert same.meta["arith_seen_in_train"] is True
    assert other.meta["arith_seen_in_train"] is False
    assert "arith_seen_in_train" not in arith.meta  # other families keep their own keys
    # nothing to compare with: nothing flagged
    assert flag_seen_arithmetic([same], []) == 0 and same.meta["arith_seen_in_train"] is False


def test_tier1_held_out_word_problems_mostly_repeat_training_arithmetic():
    """The audit's figure at the tiny climb's settings: 14 of 20 held-out tier-1 stories work
    a training story's arithmetic (the lookup baseline's 500 training items, seed 0)."""
    from hillclimb.problems.baselines import flag_seen_arithmetic

    train = P.generate("word_problem", 1, 500, 0, "train")
    held = P.generate("word_problem", 1, 20, 0, "heldout")
    assert flag_seen_arithmetic(held, train) == 14


class _ReferenceBackend:
    """Answers every word problem with its reference answer, others with a wrong one (a real
    answer source for `eval.problems_suite.backend_rollouts`: its answers are checked as any)."""

    name, kind = "reference", "http"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def chat(self, reqs):
        from hillclimb.eval.backends import Completion

        return [
            Completion(f"The answer is {self.answers.get(r.prompt, '-12345')}.", "stop", 8)
            for r in reqs
        ]

    complete = chat

    def count_tokens(self, texts):
        return None

    def close(self) -> None:
        pass


@pytest.mark.parametrize("baseline_train_n", [0, 500])
def test_evaluation_prints_accuracy_without_flagged_items_beside_the_plain_one(baseline_train_n):
    """The flag does not depend on the baseline knob: with the baselines off (0) it still
    compares with 500 training stories."""
    from hillclimb.climb.report import seen_arith_lines
    from hillclimb.eval.problems_suite import backend_rollouts
    from hillclimb.eval.tasks import TaskEvalConfig, evaluate_tasks

    cfg = TaskEvalConfig(
        n_per_tier=20,
        families=["word_problem", "arith"],
        tiers=[1],
        splits=["heldout"],
        baseline_train_n=baseline_train_n,
        examples=0,
    )
    held = P.generate("word_problem", 1, 20, 0, "heldout")
    backend = _ReferenceBackend({p.prompt: p.answer for p in held})
    res = evaluate_tasks(None, cfg, rollout=backend_rollouts(backend), tokenizer=None)
    split = res["splits"]["heldout"]
    n_arith = split["n"] - 20
    assert split["correct"] == 20
    w = split["without_seen_arith"]
    assert w == {"n": 6 + n_arith, "correct": 6, "accuracy": 6 / (6 + n_arith), "flagged": 14}
    flags = [i.get("arith_seen_in_train") for i in res["items"]]
    assert flags.count(True) == 14 and flags.count(False) == 6 and flags.count(None) == n_arith
    line = " ".join(seen_arith_lines(res))
    assert f"heldout {6 / (6 + n_arith):.1%} (6/{6 + n_arith}; 14 left out)" in line
    # a result written before the flag (no field) prints no breakout
    old = {"splits": {"heldout": {k: v for k, v in split.items() if k != "without_seen_arith"}}}
    assert seen_arith_lines(old) == []
