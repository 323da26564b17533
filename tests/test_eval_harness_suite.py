"""`--suite harness`: resolve rate per task group (held-out mutations vs unseen projects) with
intervals, through the agent loop; a solver that resolves everything scores 1.0 in every group,
a micro checkpoint runs end to end on one shared engine; bad --tasks specs are clear errors."""

from __future__ import annotations

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.eval import harness_suite as HS
from hillclimb.eval.suite_common import SuiteConfig
from hillclimb.eval.suites import run_suite


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    root = tmp_path_factory.mktemp("hsuite")
    for name, seed, split in (("a", 5, "train"), ("b", 7, "heldout")):
        assert main(["harness", "generate", "--out", str(root / name), "--n", "2",
                     "--seed", str(seed), "--kinds", "bugfix", "--split", split]) == 0  # fmt: skip
    return root


def test_reference_solver_resolves_every_group(groups, monkeypatch):
    """The programmatic reference agent (a real solver, not a model) stands in for the model:
    every task resolved, so each group's rate and the pooled rate are exactly 1."""
    from hillclimb.harness.clients import ReferenceClient

    monkeypatch.setattr(HS, "_client_factory", lambda backend, *_: (ReferenceClient, None))

    class NoModel:
        kind, name = "reference", "reference"

        def close(self) -> None:
            pass

    cfg = SuiteConfig(tasks=[f"seen={groups / 'a'}", f"unseen={groups / 'b'}"], bootstrap=200)
    res = run_suite("harness", "reference", cfg, backend=NoModel())
    m = res["metrics"]
    assert m["resolve_rate"]["value"] == 1.0 and m["resolve_rate"]["n"] == 4
    assert m["resolve_rate/seen"]["n"] == 2 and m["resolve_rate/unseen"]["value"] == 1.0
    assert {i["group"] for i in res["items"]} == {"seen", "unseen"}
    # tasks say which projects they came from: trained-on vs never-trained-on projects
    assert {(i["group"], i["project_split"]) for i in res["items"]} == {
        ("seen", "train"),
        ("unseen", "heldout"),
    }
    assert m["resolve_rate/projects:heldout"]["n"] == m["resolve_rate/projects:train"]["n"] == 2
    assert res["truncated_share"] == 0.0 and res["finish_reasons"] == {"submitted": 4}


def test_micro_checkpoint_runs_episodes_on_one_engine(groups, tmp_path):
    ck = tmp_path / "ck"
    assert main(["init", "--preset", "code-flash-micro", "--out", str(ck), "--seed", "0"]) == 0
    cfg = SuiteConfig(tasks=[str(groups / "a")], harness_max_steps=2, harness_concurrency=2)
    res = run_suite("harness", str(ck), cfg, batch_size=2)
    assert res["suite"] == "harness" and res["backend"] == "engine"
    assert len(res["items"]) == 2 and all(i["group"] == "a" for i in res["items"])
    m = res["metrics"]["resolve_rate"]
    assert 0.0 <= m["ci95"][0] <= m["value"] <= m["ci95"][1] <= 1.0
    ends = res["finish_reasons"]
    assert sum(ends.values()) == 2
    assert res["truncated_share"] == sum(ends.get(t, 0) for t in HS.TRUNCATED) / 2


def test_bad_task_specs(tmp_path, groups):
    with pytest.raises(HillclimbError, match="is not a directory"):
        HS.parse_task_groups([f"x={tmp_path / 'missing'}"])
    with pytest.raises(HillclimbError, match="given twice"):
        HS.parse_task_groups([f"x={groups / 'a'}", f"x={groups / 'b'}"])
    with pytest.raises(HillclimbError, match="expected \\[NAME=\\]DIR"):
        HS.parse_task_groups(["=" + str(groups)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(HillclimbError, match="no task directories"):
        HS.run_harness(object(), SuiteConfig(tasks=[str(tmp_path / "empty")]))  # type: ignore[arg-type]
    with pytest.raises(HillclimbError, match="needs --tasks"):
        HS.run_harness(object(), SuiteConfig())  # type: ignore[arg-type]


def test_cli_runs_the_harness_suite(groups, tmp_path, capsys):
    import json

    ck = tmp_path / "ck"
    assert main(["init", "--preset", "code-flash-micro", "--out", str(ck), "--seed", "0"]) == 0
    capsys.readouterr()
    argv = ["eval", "--model", str(ck), "--suite", "harness", "--tasks", f"heldout={groups / 'a'}",
            "--max-steps", "1", "--concurrency", "1", "--out", str(tmp_path / "o"), "--json"]  # fmt: skip
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["metrics"]) == {
        "resolve_rate",
        "resolve_rate/heldout",
        "resolve_rate/projects:train",
    }
    assert json.loads((tmp_path / "o" / "harness.json").read_text())["suite"] == "harness"
    assert main(["eval", "--model", str(ck), "--suite", "harness"]) != 0
    assert "needs --tasks" in capsys.readouterr().err


def test_table_output_and_cost_per_solved(groups, tmp_path, capsys, monkeypatch):
    """Without --json the harness suite prints its table; --prices adds the cost per solved
    item (the reference solver stands in for the model, as above)."""
    from hillclimb.harness.clients import ReferenceClient

    monkeypatch.setattr(HS, "_client_factory", lambda backend, *_: (ReferenceClient, None))
    ck = tmp_path / "ck"
    assert main(["init", "--preset", "code-flash-micro", "--out", str(ck), "--seed", "0"]) == 0
    prices = tmp_path / "prices.json"
    prices.write_text('{"code-flash": {"prompt": 1.0, "completion": 2000000.0}}')
    capsys.readouterr()
    argv = ["eval", "--model", str(ck), "--suite", "harness", "--tasks", f"x={groups / 'a'}",
            "--prices", str(prices)]  # fmt: skip
    assert main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "resolve_rate/x" in out and "solved 2/2" in out and "credits per solved item" in out
    assert main([*argv, "--price-model", "thinking"]) != 0
    assert "no price for 'thinking'" in capsys.readouterr().err


def test_efficiency_counts_and_prices():
    from hillclimb.eval.suites import efficiency

    body = {"items": [{"passed": True}, {"passed": False}, {"passed": True}],
            "n_generations": 3, "mean_completion_tokens": 10.0}  # fmt: skip
    e = efficiency(body, (1.0, 2e6))
    assert e["solved"] == 2 and e["completion_tokens"] == 30 and e["tokens_per_solved"] == 15.0
    assert e["completion_cost"] == 60.0 and e["cost_per_solved"] == 30.0
    assert efficiency({"items": [{"passed": False}]}, None)["tokens_per_solved"] is None


def test_max_tokens_reaches_every_turn_and_context_exhaustion_is_named(groups, monkeypatch, capsys):
    """`--max-tokens` (and the climb's `[eval] suite_max_tokens`) caps each agent turn; an
    episode ended by a full context is reported as such, not as "truncated (max_tokens)"."""
    from hillclimb.eval.cli import print_suite
    from hillclimb.harness.clients import ContextExhausted

    asked: list[int | None] = []

    class Full:
        name = "full"

        def chat(self, messages, tools, *, max_tokens=None, **kw):  # noqa: ANN001, ANN003, ANN202
            asked.append(max_tokens)
            raise ContextExhausted("no room left in the context")

    monkeypatch.setattr(HS, "_client_factory", lambda backend, *_: (Full, None))

    class NoModel:
        kind, name = "fake", "fake"

        def close(self) -> None:
            pass

    cfg = SuiteConfig(tasks=[str(groups / "a")], max_tokens=96, bootstrap=50)
    res = run_suite("harness", "fake", cfg, backend=NoModel())
    assert asked and set(asked) == {96}
    assert res["truncated_share"] == 1.0 and res["truncated_by"] == {"context_exhausted": 1.0}
    print_suite(res)
    out = " ".join(capsys.readouterr().out.split())
    assert "context exhausted 100.0%" in out and "max_tokens" not in out.split("finish reasons")[1]


def test_limit_runs_only_the_first_tasks_by_id(groups, monkeypatch):
    """`--limit N` runs N tasks per group (the first by id); it ran every task and then kept N,
    so a quick look cost the whole suite."""
    from hillclimb.harness.clients import ReferenceClient

    started: list[str] = []

    class Counting(ReferenceClient):
        def for_task(self, task):  # one call per episode
            started.append(task.id)
            return super().for_task(task)

    monkeypatch.setattr(HS, "_client_factory", lambda backend, *_: (Counting, None))

    class NoModel:
        kind, name = "reference", "reference"

        def close(self) -> None:
            pass

    from hillclimb.harness.task import find_task_dirs, load_task

    ids = sorted(load_task(d).id for d in find_task_dirs(groups / "a"))
    cfg = SuiteConfig(tasks=[f"seen={groups / 'a'}"], bootstrap=50, limit=1)
    res = run_suite("harness", "reference", cfg, backend=NoModel())
    assert [i["id"] for i in res["items"]] == ids[:1]
    assert res["metrics"]["resolve_rate"]["n"] == 1
    assert started == ids[:1]  # one task's episode ran, not two


def test_keep_episodes_keeps_trajectories_and_refuses_a_used_directory(
    groups, monkeypatch, tmp_path
):
    """`--keep-episodes DIR`: the suite's episodes (trajectories, results.jsonl) stay in DIR per
    task group (they went to a temporary directory and were lost: no figure about the calls could
    be checked afterwards); a directory that already holds episodes is refused before any work,
    since the runner would resume them instead of running the tasks again."""
    from hillclimb.harness.clients import ReferenceClient

    monkeypatch.setattr(HS, "_client_factory", lambda backend, *_: (ReferenceClient, None))

    class NoModel:
        kind, name = "reference", "reference"

        def close(self) -> None:
            pass

    keep = tmp_path / "episodes"
    cfg = SuiteConfig(tasks=[f"seen={groups / 'a'}"], bootstrap=50, harness_keep=str(keep))
    run_suite("harness", "reference", cfg, backend=NoModel())
    assert len(list((keep / "seen" / "trajectories").glob("*.json"))) == 2
    assert (keep / "seen" / "results.jsonl").is_file()
    with pytest.raises(HillclimbError, match="new or empty directory"):
        SuiteConfig(tasks=[f"seen={groups / 'a'}"], harness_keep=str(keep)).validate()
