"""The flywheel store (`serve/flywheel.py`): content only with consent, feedback only on one's own
requests, and an export that keeps accepted + consented answers with their provenance."""

from __future__ import annotations

import sqlite3

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.serve.flywheel import FeedbackError, FlywheelStore

CHAT_REQ = {
    "messages": [{"role": "user", "content": "Fix the bug in add."}],
    "tools": [{"type": "function", "function": {"name": "edit", "parameters": {}}}],
}
CHAT_RESP = {"choices": [{"content": "def add(a, b):\n    return a + b\n"}]}


@pytest.fixture()
def store(tmp_path):
    with FlywheelStore(tmp_path / "flywheel.sqlite") as s:
        yield s


def test_content_only_with_consent_and_never_in_open_mode(store):
    assert (
        store.record_served(
            "r1", account="alice", endpoint="chat", model="m", request=CHAT_REQ, response=CHAT_RESP
        )
        is False
    )
    store.set_consent("alice", True)
    assert (
        store.record_served(
            "r2", account="alice", endpoint="chat", model="m", request=CHAT_REQ, response=CHAT_RESP
        )
        is True
    )
    assert store.record_served(
        "r3", account="alice", endpoint="chat", model="m", request=CHAT_REQ,
        response=CHAT_RESP, open_mode=True,
    ) is False  # fmt: skip
    rows = dict(store.query("SELECT request_id, request IS NOT NULL FROM served"))
    assert rows == {"r1": 0, "r2": 1, "r3": 0}


def test_feedback_owner_only_and_unknown_request(store):
    store.record_served(
        "r1", account="alice", endpoint="chat", model="m", request=CHAT_REQ, response=CHAT_RESP
    )
    with pytest.raises(FeedbackError) as e:
        store.record_feedback("r1", account="mallory", accepted=True)
    assert e.value.status == 403
    with pytest.raises(FeedbackError) as e:
        store.record_feedback("nope", account="alice", accepted=True)
    assert e.value.status == 404
    with pytest.raises(FeedbackError) as e:
        store.record_feedback("r1", account="alice", accepted=True, edit={"applied": "yes"})
    assert e.value.status == 400
    out = store.record_feedback(
        "r1", account="alice", accepted=True, edit={"path": "src/a.py", "applied": True}
    )
    assert out["accepted"] is True and out["training_use"] is False  # served without consent
    assert store.stats()["edits_applied"] == 1


def test_export_accepted_consented_latest_verdict_with_provenance(store):
    store.set_consent("alice", True)
    for rid in ("c1", "c2", "c3"):
        store.record_served(
            rid, account="alice", endpoint="chat", model="m", request=CHAT_REQ, response=CHAT_RESP
        )
    store.record_served(
        "f1", account="alice", endpoint="completions", model="m",
        request={"prompt": "def f(x):\n    ", "suffix": "\n\nprint(f(2))\n"},
        response={"choices": [{"text": "return x * 2"}]},
    )  # fmt: skip
    store.record_served(
        "b1", account="bob", endpoint="chat", model="m", request=CHAT_REQ, response=CHAT_RESP
    )  # bob never opted in
    store.record_feedback("c1", account="alice", accepted=True)
    store.record_feedback("c2", account="alice", accepted=True)
    store.record_feedback("c2", account="alice", accepted=False)  # changed their mind
    fb = store.record_feedback("f1", account="alice", accepted=True)
    store.record_feedback("b1", account="bob", accepted=True)
    recs, counts = store.training_records()
    assert counts == {"accepted": 3, "rejected": 1, "no_consent": 1, "exported": 2}
    chat = next(r for r in recs if "messages" in r)
    assert chat["messages"][-1] == {
        "role": "assistant",
        "content": CHAT_RESP["choices"][0]["content"],
    }
    assert chat["tools"] == CHAT_REQ["tools"] and chat["meta"]["request_id"] == "c1"
    fim = next(r for r in recs if "fim" in r)
    assert fim["fim"] == {"prefix": "def f(x):\n    ", "middle": "return x * 2",
                          "suffix": "\n\nprint(f(2))\n"}  # fmt: skip
    assert fim["meta"] == {"source": "api", "account": "alice", "request_id": "f1",
                           "feedback_id": fb["id"], "model": "m", "consent": True}  # fmt: skip
    # revoking consent keeps everything alice sent out of later exports
    store.set_consent("alice", False)
    recs, counts = store.training_records()
    assert recs == [] and counts["no_consent"] == 3


def test_not_a_flywheel_database(tmp_path):
    bad = tmp_path / "x.sqlite"
    bad.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(HillclimbError, match="not a flywheel database"):
        FlywheelStore(bad)
    other = tmp_path / "y.sqlite"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        c.execute("INSERT INTO meta VALUES ('schema', '99')")
    with pytest.raises(HillclimbError, match="schema v99"):
        FlywheelStore(other)


def test_telemetry_export_takes_the_served_database(tmp_path, capsys):
    import json

    from hillclimb.cli import main
    from hillclimb.harness.telemetry import Telemetry

    Telemetry(tmp_path / "telemetry.db").close()
    with FlywheelStore(tmp_path / "flywheel.sqlite") as s:
        s.set_consent("alice", True)
        s.record_served(
            "c1", account="alice", endpoint="chat", model="m", request=CHAT_REQ, response=CHAT_RESP
        )
        s.record_feedback("c1", account="alice", accepted=True)
    out = tmp_path / "export"
    argv = ["telemetry", "export", "--db", str(tmp_path / "telemetry.db"), "--out", str(out)]
    assert main([*argv, "--served", str(tmp_path / "flywheel.sqlite"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sft_by_source"] == {"harness": 0, "api": 1}
    assert summary["api"]["exported"] == 1
    lines = (out / "sft.jsonl").read_text().splitlines()
    assert [json.loads(x)["meta"]["source"] for x in lines] == ["api"]
    # a missing served database is a clear error, and the earlier export is untouched
    assert main([*argv, "--served", str(tmp_path / "missing.sqlite")]) != 0
    assert "flywheel database" in capsys.readouterr().err
    assert (out / "sft.jsonl").read_text().splitlines() == lines


def test_flywheel_tasks_feedback_export_become_training_data(tmp_path, capsys):
    """Run tasks → a user rejects one episode → export: the accepted episodes are SFT examples
    (source harness), the rejected task is an RL prompt that `rl --harness EXPORT` loads."""
    import json

    from hillclimb.cli import main
    from hillclimb.harness.telemetry import Telemetry
    from hillclimb.rl.harness import load_tasks

    tasks, run, exp = tmp_path / "tasks", tmp_path / "run", tmp_path / "export"
    assert main(["harness", "generate", "--out", str(tasks), "--n", "2", "--seed", "5",
                 "--kinds", "bugfix"]) == 0  # fmt: skip
    assert main(["harness", "run", "--tasks", str(tasks), "--model", "reference", "--out", str(run),
                 "--json"]) == 0  # fmt: skip
    db = run / "telemetry.db"
    with Telemetry(db) as tel:
        eps = tel.query("SELECT id, task_id, resolved FROM episodes ORDER BY task_id")
    assert len(eps) == 2 and all(r for _, _, r in eps)  # the reference agent solves both
    rejected_ep, rejected_task = eps[0][0], eps[0][1]
    assert main(["telemetry", "feedback", "--db", str(db), "--episode", rejected_ep,
                 "--reject"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["telemetry", "export", "--db", str(db), "--out", str(exp), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sft_by_source"] == {"harness": 1, "api": 0} and summary["rl_prompts"] == 1
    sft = [json.loads(x) for x in (exp / "sft.jsonl").read_text().splitlines()]
    assert sft[0]["meta"]["task_id"] == eps[1][1] and sft[0]["meta"]["source"] == "harness"
    assert [t.id for t in load_tasks(exp)] == [rejected_task]
    assert [t.id for t in load_tasks(exp / "rl_prompts.jsonl")] == [rejected_task]


def test_climb_admits_only_harness_and_consented_api_records(tmp_path):
    """A hand-edited export cannot smuggle a user's answer into training: API records need
    `meta.consent` true; a directory that is not an export is a clear error."""
    import json

    from hillclimb.climb.flywheel import fingerprint, flywheel_records
    from hillclimb.errors import ConfigError

    exp = tmp_path / "export"
    exp.mkdir()
    (exp / "export.json").write_text('{"consent_attested_by": "test fixture"}')
    train_task = {"projects": ["strutil"], "module": "strutil/text.py", "split": "train"}
    lines = [
        {
            "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "ok"}],
            "meta": {"source": "harness", "task": train_task},
        },  # fmt: skip
        {
            "messages": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "ok"}],
            "meta": {"source": "api", "consent": True},
        },
        {
            "messages": [{"role": "user", "content": "c"}, {"role": "assistant", "content": "ok"}],
            "meta": {"source": "api"},
        },
        {
            "messages": [{"role": "user", "content": "d"}, {"role": "assistant", "content": "ok"}],
            "meta": {"source": "api", "consent": "yes"},
        },
        {"messages": [{"role": "user", "content": "e"}, {"role": "assistant", "content": "ok"}]},
        # episodes on a held-out task, and on a task the record does not describe
        {
            "messages": [{"role": "user", "content": "f"}, {"role": "assistant", "content": "ok"}],
            "meta": {"source": "harness", "task": {"projects": ["textstats"]}},
        },  # fmt: skip
        {
            "messages": [{"role": "user", "content": "g"}, {"role": "assistant", "content": "ok"}],
            "meta": {"source": "harness"},
        },
    ]
    (exp / "sft.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (exp / "rl_prompts.jsonl").write_text('{"task_id": "t", "task_dir": "x"}\n')
    recs, counts = flywheel_records([str(exp)])
    assert [r["messages"][0]["content"] for r in recs] == ["a", "b"]
    assert all(r["kind"] == "flywheel" for r in recs)
    assert counts["refused_no_consent"] == 3 and counts["rl_prompts_available"] == 1
    assert counts["refused"] == {"no_consent": 3, "evaluation_only_task": 1, "task_unknown": 1}
    assert counts["decontamination"].startswith("off") and counts["decontaminated"] == 0
    before = fingerprint([str(exp)])
    (exp / "rl_prompts.jsonl").write_text("")
    assert fingerprint([str(exp)]) != before  # a changed export re-runs the stage
    with pytest.raises(ConfigError, match="not a `hillclimb telemetry export` output"):
        flywheel_records([str(tmp_path)])
    (exp / "sft.jsonl").write_text("{not json\n")
    with pytest.raises(ConfigError, match="not JSON"):
        flywheel_records([str(exp)])


def test_export_leaves_out_episodes_on_evaluation_only_tasks(tmp_path, capsys):
    """An evaluation run recorded in telemetry (the reference agent on held-out tasks here)
    must not become the next climb's SFT data or RL prompts: episodes on held-out tasks — and
    on tasks whose task.toml is gone — are left out and counted."""
    import json
    import shutil

    from hillclimb.cli import main

    tasks, run, exp = tmp_path / "tasks", tmp_path / "run", tmp_path / "export"
    for split in ("train", "heldout"):  # both into one directory
        assert main(["harness", "generate", "--out", str(tasks), "--n", "1",
                     "--seed", "3", "--kinds", "bugfix", "--split", split]) == 0  # fmt: skip
    assert main(["harness", "run", "--tasks", str(tasks), "--model", "reference", "--out", str(run),
                 "--json"]) == 0  # fmt: skip
    capsys.readouterr()
    argv = ["telemetry", "export", "--db", str(run / "telemetry.db"), "--out", str(exp), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes_considered"] == 2 and summary["sft_examples"] == 1
    assert summary["evaluation_only_tasks_excluded"] == 1
    (why,) = summary["evaluation_only_examples"].values()
    assert "--split heldout" in why
    sft = [json.loads(x) for x in (exp / "sft.jsonl").read_text().splitlines()]
    assert ["-train-" in r["meta"]["task_id"] for r in sft] == [True]
    assert sft[0]["meta"]["task"]["split"] == "train"  # what the climb checks again
    # the training task's directory removed: it can no longer be shown to be a training task
    (train_dir,) = [d for d in tasks.iterdir() if "-train-" in d.name]
    shutil.rmtree(train_dir)
    assert main([*argv[:-1], "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sft_examples"] == 0 and summary["evaluation_only_tasks_excluded"] == 2


def test_climb_drops_flywheel_records_that_contain_an_evaluation_item(tmp_path):
    """A consenting API user ran HumanEval through the endpoint and accepted the answers: with
    the data build's probes those records are dropped and counted, the others kept."""
    import json

    from hillclimb.climb.flywheel import flywheel_records
    from hillclimb.data.config import DecontaminateConfig
    from hillclimb.data.decontam import build_index
    from hillclimb.eval.humaneval import load_problems

    he = load_problems()[5]
    exp = tmp_path / "export"
    exp.mkdir()
    (exp / "export.json").write_text('{"consent_attested_by": "test fixture"}')
    api = {"source": "api", "consent": True}
    lines = [
        {"messages": [{"role": "user", "content": he["prompt"]},
                      {"role": "assistant", "content": he["canonical_solution"]}], "meta": api},
        {"messages": [{"role": "user", "content": "Write a function that adds two numbers."},
                      {"role": "assistant", "content": "def add(a, b):\n    return a + b\n"}],
         "meta": api},
    ]  # fmt: skip
    (exp / "sft.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    probes = build_index(DecontaminateConfig(problems_n_per_tier=0, suites=["humaneval"]))
    recs, counts = flywheel_records([str(exp)], probes)
    assert [r["messages"][0]["content"] for r in recs] == [lines[1]["messages"][0]["content"]]
    assert counts["decontaminated"] == 1 and counts["refused"] == {"contaminated": 1}
    (ex,) = counts["contaminated_examples"]
    assert ex["probe"] == f"humaneval/{he['task_id']}" and ex["line"] == 1
    recs, counts = flywheel_records([str(exp)])  # no probes: decontamination off, said so
    assert len(recs) == 2 and counts["decontamination"].startswith("off")
