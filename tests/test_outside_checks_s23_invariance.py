"""Outside checks (session 23, invariance): an evaluation number must not depend on settings that
are not what is measured — here, whether a checkpoint is scored in-process or through our own
server (`hillclimb serve`, the URL backend). Each test failed on the code before its fix.

A small trained BPE tokenizer is used (the byte-level test tokenizer has no merges), so token
healing really changes a prompt and token counts really differ from UTF-8 bytes — as with the
climb's tokenizer, where the checks found the differences."""

from __future__ import annotations

import dataclasses

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.eval.backends import EngineBackend, HTTPBackend
from hillclimb.eval.suite_common import SuiteConfig

CODE = (
    "def add(a, b):\n    return a + b\n\n"
    "def total(items):\n    result = 0\n    for item in items:\n        result += item\n"
    "    return result\n\n"
    'class Point:\n    """A point."""\n\n    def __init__(self, x, y):\n        self.x = x\n'
    "        self.y = y\n"
)
# reasoning-like text too, so the problems' reference solutions have merged tokens
TEXT = "Add 3 and 4. The answer is 7.\nCompute 12 times 5: 12 * 5 = 60. The answer is 60.\n"


@pytest.fixture(scope="module")
def tok():
    from hillclimb.tokenizer.train import train_tokenizer

    return train_tokenizer([CODE, TEXT] * 40, vocab_size=512)


@pytest.fixture(scope="module")
def served(tok, tmp_path_factory):
    """A server with both models (code-flash heals completions by default, as `hillclimb serve`
    sets it up) and the very engines it serves, for the in-process side."""
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.serve.engine import Engine
    from hillclimb.serve.server import ServerThread, build_state

    engines = {}
    for name, preset, heal in (("code-flash", "code-flash-micro", True),
                               ("thinking", "thinking-micro", False)):  # fmt: skip
        cfg = dataclasses.replace(get_preset(preset), vocab_size=512)
        engines[name] = Engine(build_model(cfg, seed=0), tok, device="cpu", max_batch=4,
                               name=name, seed=0, token_healing=heal)  # fmt: skip
    state = build_state(dict(engines), db=tmp_path_factory.mktemp("inv") / "u.sqlite")
    with ServerThread(state) as srv:
        yield srv.url + "/v1", engines


def _items() -> list[dict]:
    prompts = ["def add(a, b):\n", "def total(items):\n    result", "class Point:\n    def ",
               "def scale(x, y):\n    return x *", "def area(self):\n    "]  # fmt: skip
    return [{"task_id": f"t{i}", "prompt": p, "test": "assert add(1, 2) == 3",
             "entry_point": "add", "asserts": True} for i, p in enumerate(prompts)]  # fmt: skip


def test_completion_suites_score_the_same_answers_in_process_and_through_our_server(served):
    """The served code-flash heals the prompt's last token by default; the in-process backend
    does not (unless $HILLCLIMB_EVAL_TOKEN_HEALING=on). The same checkpoint got other HumanEval
    completions through `hillclimb serve` than in-process — 11 of 12 differed on the climb's
    code-flash — under the same recorded settings. Now the URL backend asks our server for the
    evaluation's setting, and the result says which it was."""
    from hillclimb.eval.humaneval import run_completion_items

    url, engines = served
    cfg = SuiteConfig(max_tokens=8)
    local = EngineBackend("code-flash", engine=engines["code-flash"])
    remote = HTTPBackend(url, model="code-flash")
    try:
        a = run_completion_items(local, cfg, _items())
        b = run_completion_items(remote, cfg, _items())
    finally:
        remote.close()
    assert [i["completion"] for i in b["items"]] == [i["completion"] for i in a["items"]]
    assert a["token_healing"] is False and b["token_healing"] is False


def test_token_healing_on_is_asked_of_the_server_too(served, monkeypatch):
    """`on` measures what an IDE client gets: both backends heal, and agree."""
    from hillclimb.eval.humaneval import run_completion_items

    url, engines = served
    monkeypatch.setenv("HILLCLIMB_EVAL_TOKEN_HEALING", "on")
    local = EngineBackend("code-flash", engine=engines["code-flash"])
    remote = HTTPBackend(url, model="code-flash")
    try:
        a = run_completion_items(local, SuiteConfig(max_tokens=8), _items())
        b = run_completion_items(remote, SuiteConfig(max_tokens=8), _items())
    finally:
        remote.close()
    assert [i["completion"] for i in b["items"]] == [i["completion"] for i in a["items"]]
    assert a["token_healing"] is True and b["token_healing"] is True


@pytest.mark.parametrize(("raw", "want"), [("on", True), ("1", True), ("TRUE", True),
                                           ("off", False), ("0", False), ("", False)])  # fmt: skip
def test_the_healing_switch_reads_the_usual_spellings(monkeypatch, raw, want):
    """`HILLCLIMB_EVAL_TOKEN_HEALING=1` meant off without a word (only the exact `on` counted)."""
    from hillclimb.eval.backends import eval_token_healing

    monkeypatch.setenv("HILLCLIMB_EVAL_TOKEN_HEALING", raw)
    assert eval_token_healing() is want


def test_an_unreadable_healing_switch_is_an_error(monkeypatch):
    from hillclimb.eval.backends import eval_token_healing

    monkeypatch.setenv("HILLCLIMB_EVAL_TOKEN_HEALING", "maybe")
    with pytest.raises(HillclimbError, match="HILLCLIMB_EVAL_TOKEN_HEALING"):
        eval_token_healing()


def test_problems_suite_budgets_are_the_same_in_process_and_through_our_server(served):
    """Each cell's `max_tokens` is sized from its reference solutions in the model's tokens; over
    a URL there was no tokenizer and the UTF-8 bytes were used — 2-3x the tokens of the climb's
    tokenizer (arith tier 1: 96 instead of 48) — so a checkpoint scored through our server ran
    under other budgets and truncated other answers, with the same recorded settings. Now the
    server counts the tokens (`usage.prompt_tokens`) and the budgets, the reference token
    counts and every item's outcome agree."""
    from hillclimb.eval.problems_suite import run_problems

    url, engines = served
    cfg = SuiteConfig(n_items=2, families=["arith", "code_function"], tiers=[1],
                      splits=["heldout"])  # fmt: skip
    local = EngineBackend("thinking", engine=engines["thinking"])
    remote = HTTPBackend(url, model="thinking")
    try:
        a = run_problems(local, cfg)
        b = run_problems(remote, cfg)
    finally:
        remote.close()
    budgets = [(c["family"], c["max_tokens"], c["reference_tokens"]) for c in a["cells"]]
    assert [(c["family"], c["max_tokens"], c["reference_tokens"]) for c in b["cells"]] == budgets
    assert [(i["id"], i["status"]) for i in b["items"]] == [
        (i["id"], i["status"]) for i in a["items"]
    ]
    assert "served model's tokens" in b["max_tokens_rule"]
    assert "model's tokens" in a["max_tokens_rule"]


def test_an_eval_result_names_the_weights_and_tokenizer_it_measured(tmp_path):
    """`eval.json` named its checkpoint by path only; a path outlives its weights (a climb run
    again writes new ones there), so a result could not be told to be of these weights. Now it
    carries the registry's content hash of the weights, the tokenizer's hash and the version."""
    import hashlib
    import shutil

    from hillclimb.cli import main
    from hillclimb.eval.core import run_eval
    from hillclimb.eval.tasks import TaskEvalConfig
    from hillclimb.registry.db import content_hash

    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["init", "--preset", "thinking-micro", "--out", str(a), "--seed", "0"]) == 0
    assert main(["init", "--preset", "thinking-micro", "--out", str(b), "--seed", "1"]) == 0
    cfg = TaskEvalConfig(n_per_tier=1, families=["arith"], tiers=[1], splits=["heldout"],
                         max_tokens=2, baseline_train_n=0, examples=0)  # fmt: skip
    ra = run_eval(a, tasks=cfg)
    assert ra["weights_sha256"] == content_hash(a)
    tok = hashlib.sha256((a / "tokenizer.json").read_bytes()).hexdigest()
    assert ra["tokenizer_sha256"] == tok and ra["hillclimb_version"]
    # other weights at the same path: another identity
    shutil.copy(b / "model.safetensors", a / "model.safetensors")
    assert run_eval(a, tasks=cfg)["weights_sha256"] == content_hash(b) != ra["weights_sha256"]


def test_each_item_records_the_budget_it_was_given(served):
    """A cell's `max_tokens` is sized from the longest reference among the items drawn, so the
    same problem gets another budget under another `--n-per-tier` (on the climb's tokenizer,
    code_function tier 2: 168 tokens with 3 items, 208 with 20) — and the items' records did not
    say so: two results shared the item but not its setting. Now each item carries its budget."""
    from hillclimb.eval.tasks import TaskEvalConfig, evaluate_tasks

    _, engines = served
    runs = []
    for n in (1, 3):
        cfg = TaskEvalConfig(n_per_tier=n, families=["arith"], tiers=[2], splits=["heldout"],
                             baseline_train_n=0, examples=0)  # fmt: skip
        runs.append(evaluate_tasks(engines["thinking"], cfg))
    for res in runs:
        cap = res["cells"][0]["max_tokens"]
        assert [i["max_tokens"] for i in res["items"]] == [cap] * len(res["items"])
    first = runs[0]["items"][0]
    again = next(i for i in runs[1]["items"] if i["id"] == first["id"])
    assert (first["max_tokens"], again["max_tokens"]) == (
        runs[0]["cells"][0]["max_tokens"],
        runs[1]["cells"][0]["max_tokens"],
    )
