"""The real climb, end to end, with the smoke recipe: kill -9 mid-way, resume, every artifact,
skip-on-rerun, a deleted marker, a changed recipe, --restart-from.

One climb is shared by the module: it is started in a subprocess that SIGKILLs itself in the
middle of saving a pre-training checkpoint (`HILLCLIMB_TEST_KILL_IN_SAVE`), then resumed here,
so the artifacts every other test inspects are those of an interrupted-and-resumed climb.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "smoke.toml"
KILL_STEP = 16  # smoke pre-training saves at 8 (periodic) and 16 (final); die inside the 16 save


def _events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "climb.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def climb(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from hillclimb.climb.runner import run_climb

    run = tmp_path_factory.mktemp("climb") / "smoke"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "HILLCLIMB_TEST_KILL_IN_SAVE": str(KILL_STEP),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "hillclimb", "climb", "--recipe", str(RECIPE), "--out", str(run)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    killed_events = _events(run)
    summary = run_climb(RECIPE, run, print_summary=False)
    return {"run": run, "summary": summary, "killed_events": killed_events, "events": _events(run)}


def test_kill_then_resume_continues_where_it_stopped(climb: dict) -> None:
    run, killed = climb["run"], climb["killed_events"]
    # The killed invocation finished data/tokenizer/shards and died inside pre-training.
    assert [e["stage"] for e in killed if e["event"] == "end"] == ["data", "tokenizer", "shards"]
    assert killed[-1] == {**killed[-1], "event": "start", "stage": "pretrain-code-flash"}
    resumed = climb["events"][len(killed) :]
    assert [e["stage"] for e in resumed if e["event"] == "skip"] == ["data", "tokenizer", "shards"]
    start = next(e for e in resumed if e["event"] == "start")
    assert start["stage"] == "pretrain-code-flash" and start["resumed"] is True
    # The training stage resumed from its own last complete checkpoint (step 8), not from scratch.
    res = json.loads((run / "04-pretrain-code-flash" / "run" / "run.json").read_text())
    assert res["resumed_from"] == 8 and res["steps"] == KILL_STEP
    steps = [
        json.loads(x)["step"]
        for x in (run / "04-pretrain-code-flash" / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(1, KILL_STEP + 1))  # no duplicated or missing steps in the curve


def test_every_artifact(climb: dict) -> None:
    run, s = climb["run"], climb["summary"]
    stages = [
        "01-data",
        "02-tokenizer",
        "03-shards",
        "04-pretrain-code-flash",
        "05-pretrain-thinking",
        "06-sft-data",
        "07-sft-code-flash",
        "08-sft-thinking",
        "09-rl-code-flash",
        "10-rl-thinking",
        "11-rl-harness-code-flash",
        "12-eval",
        "13-registry",
        "report",
    ]
    for d in stages:
        marker = json.loads((run / d / "_stage.json").read_text())
        assert marker["format"] == "hillclimb-climb-stage-v1" and len(marker["hash"]) == 64
    assert (run / "01-data" / "corpus" / "build.json").is_file()
    assert (run / "02-tokenizer" / "tokenizer" / "tokenizer.json").is_file()
    assert (
        json.loads((run / "03-shards" / "shards" / "meta.json").read_text())["splits"]["val"][
            "tokens"
        ]
        > 0
    )
    assert json.loads((run / "03-shards" / "data_card.json").read_text())["totals"]["tokens"] > 0
    for m in ("code-flash", "thinking"):
        for st in (f"pretrain-{m}", f"sft-{m}"):
            final = run / next(d for d in stages if d.endswith(st)) / "run" / "final"
            assert (final / "model.safetensors").is_file() and (final / "tokenizer.json").is_file()
        lines = (run / "06-sft-data" / f"{m}.jsonl").read_text().splitlines()
        kinds = {json.loads(x)["kind"] for x in lines}
        assert "chat" in kinds and (m != "code-flash" or {"fim", "tool", "text"} <= kinds)
        ev = json.loads((run / "12-eval" / f"{m}.json").read_text())
        rl = run / ("09-rl-code-flash" if m == "code-flash" else "10-rl-thinking") / "run"
        assert (rl / "final" / "model.safetensors").is_file() and (rl / "report.md").is_file()
        steps = [json.loads(x) for x in (rl / "metrics.jsonl").read_text().splitlines()]
        assert [x["step"] for x in steps] == [1, 2] and all("time" in x for x in steps)
        assert ev["rl"]["tasks"]["settings"] == ev["sft"]["tasks"]["settings"]  # like for like
        assert s["models"][m]["eval"]["final_stage"] == "rl"
        # summary.json names the checkpoint eval and the registry used (harness RL's if any)
        assert s["models"][m]["final"].endswith(
            "11-rl-harness-code-flash/run/final"
            if m == "code-flash"
            else "10-rl-thinking/run/final"
        )
        assert ev["rl_stage"] == ("rl-harness-code-flash" if m == "code-flash" else "rl-thinking")
        b = ev["pretrain"]["bpb"]
        assert 0 < b["val_bpb"] < 20 and 0 < b["unigram_bpb"] < 20
        t = ev["sft"]["tasks"]
        assert t["n"] == 8 * 2 and len(t["by_family_tier"]) == 8  # 6 trained + 2 held-out families
        assert set(t["splits"]) == {"heldout", "heldout_phrasing"} and len(t["cells"]) == 32
        assert all(c["baseline"]["best"] is not None for c in t["cells"])
        assert all(c["pass_at_k"] is not None for c in t["cells"])  # smoke samples 2 per item
        sm = s["models"][m]
        assert sm["eval"]["corpus_val_bpb_pretrained"] == pytest.approx(b["val_bpb"])
        assert sm["eval"]["corpus_val_bpb_sft"] == pytest.approx(ev["sft"]["bpb"]["val_bpb"])
        assert sm["eval"]["corpus_unigram_bpb"] == pytest.approx(b["unigram_bpb"])
        # `[eval] suites` (smoke: code-flash only, 4 items) on the final checkpoint
        if m == "code-flash":
            res = json.loads((run / "12-eval" / "suite-code-flash-completion.json").read_text())
            assert res["suite"] == "completion" and res["n_items"] == 4
            assert res["model"].endswith("11-rl-harness-code-flash/run/final")
            assert set(sm["eval"]["suites"]["completion"]) >= {"pass@1"}
            # the harness suite on held-out tasks the eval stage generated (one per group)
            hs = json.loads((run / "12-eval" / "suite-code-flash-harness.json").read_text())
            assert hs["n_items"] == 2 and set(hs["groups"]) == {"new-mutations", "unseen-projects"}
            assert {i["project_split"] for i in hs["items"]} == {"heldout_mutations", "heldout"}
            assert "resolve_rate" in sm["eval"]["suites"]["harness"]
            # the same suites on the SFT model beside the RL final, same items (issue 13)
            hs_sft = json.loads((run / "12-eval" / "suite-code-flash-harness-sft.json").read_text())
            assert hs_sft["model"].endswith("07-sft-code-flash/run/final")
            assert [i["id"] for i in hs_sft["items"]] == [i["id"] for i in hs["items"]]
            assert set(sm["eval"]["suites_sft"]) == {"completion", "harness"}
        else:
            assert "suites" not in ev and sm["eval"]["suites"] == {}
        assert sm["sft"]["sft_examples_val_bpb"] is not None and "val_bpb" not in sm["sft"]
        assert sm["pretrain"]["corpus_val_bpb"] is not None and "val_bpb" not in sm["pretrain"]
    # Both models share the one tokenizer.
    tok = (run / "02-tokenizer" / "tokenizer" / "tokenizer.json").read_bytes()
    assert (run / "07-sft-code-flash" / "run" / "final" / "tokenizer.json").read_bytes() == tok
    assert (run / "08-sft-thinking" / "run" / "final" / "tokenizer.json").read_bytes() == tok
    # Report: Markdown with every section, real PNGs.
    md = (run / "report" / "report.md").read_text()
    # each suite metric beside its no-training baseline (trivial bodies pass no completion item)
    assert "| code-flash | completion | pass@1 | " in md
    assert "| code-flash (SFT) | harness | resolve_rate | " in md
    row = next(x for x in md.splitlines() if x.startswith("| code-flash | completion | pass@1 |"))
    assert row.split("|")[7].strip() == "0%", row
    # the headline's accuracies beside their pooled no-training baseline
    head = next(x for x in md.splitlines() if x.startswith("| thinking | "))
    assert head.split("|")[-2].strip().endswith("%"), head
    assert s["models"]["thinking"]["eval"]["baseline"] is not None
    for section in (
        "## Headline",
        "## Standard suites (final models)",
        "## Accuracy on problems never trained on",
        "new phrasing acc",
        "baseline",
        "## Training curves",
        "## Expert load",
        "## Sample generations",
        "## Data card",
        "## Stage timings",
        "## RL: ",
        "SFT vs RL",
    ):
        assert section in md
    # the RL section's title is the measured result, never a fixed claim (session 25)
    assert "## RL: the climb" not in md
    assert "greedy pass rate on the **val** split" in md and "- held-out new problems" in md
    pngs = sorted(p.name for p in (run / "report").glob("*.png"))
    for name in (
        "expert_load.png",
        "stage_times.png",
        "accuracy_thinking.png",
        "rl_thinking.png",
        "loss_pretrain-thinking.png",
        "loss_sft-code-flash.png",
    ):
        assert name in pngs
    for p in (run / "report").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same report as one self-contained HTML file (images embedded, nothing fetched)
    html = (run / "report" / "report.html").read_text()
    assert "<img" in html and "data:image/png;base64," in html and 'src="http' not in html
    assert set(s["stage_seconds"]) == {
        "data",
        "tokenizer",
        "shards",
        "pretrain-code-flash",
        "pretrain-thinking",
        "sft-data",
        "sft-code-flash",
        "sft-thinking",
        "rl-code-flash",
        "rl-thinking",
        "rl-harness-code-flash",
        "eval",
        "registry",
        "report",
    }
    # agentic RL in the harness: generated tasks, episodes through the agent loop, a checkpoint
    hr = run / "11-rl-harness-code-flash"
    assert (hr / "run" / "final" / "model.safetensors").is_file()
    assert json.loads((hr / "_stage.json").read_text())["result"]["tasks"] == 1
    steps = [json.loads(x) for x in (hr / "run" / "metrics.jsonl").read_text().splitlines()]
    # groups of 2 episodes; a group whose rewards are all equal is dropped and refilled
    assert steps and steps[0]["harness"]["episodes"] in (2, 4, 6)
    assert "### rl-harness-code-flash" in (run / "report" / "report.md").read_text()
    assert json.loads((run / "summary.json").read_text())["report"].endswith("report/report.md")
    # `val_tasks = 1`: a held-out val curve (new mutation sites), at the start and the end
    assert json.loads((hr / "_stage.json").read_text())["result"]["val_tasks"] == 1
    curve = [json.loads(x) for x in (hr / "run" / "curve.jsonl").read_text().splitlines()]
    val = [c for c in curve if c.get("split") == "harness_val"]
    assert [c["step"] for c in val] == [0, 1] and val[0]["harness_val"]["tasks"] == 1
    assert "Held-out harness tasks" in (hr / "run" / "report.md").read_text()


def test_registry_stage_registers_lineage_and_runs_the_gate(climb: dict) -> None:
    from hillclimb.registry.db import Registry

    run, reg_res = climb["run"], climb["summary"]["registry"]
    assert "error" not in reg_res, reg_res
    assert Path(reg_res["registry"]).parent == Path(os.environ["XDG_STATE_HOME"]) / "hillclimb"
    with Registry(reg_res["registry"], create=False) as reg:
        for m in ("code-flash", "thinking"):
            rec = reg_res["models"][m]
            ids = rec["checkpoints"]
            assert set(ids) == {"pretrain", "sft", "rl"}
            chain = reg.lineage(ids["rl"])
            if ids["rl"] == ids["sft"]:  # smoke RL can leave the weights as they were: one ckpt
                assert [c.stage for c in chain] == ["sft", "pretrain"]
                assert rec["decision"] == "skipped" and "identical" in rec["reasons"][0]
            else:
                # code-flash: problem RL then harness RL (one checkpoint when harness RL left
                # the weights as they were)
                got = [c.stage for c in chain]
                n_rl = 2 if m == "code-flash" else 1
                assert got[-2:] == ["sft", "pretrain"] and 1 <= len(got) - 2 <= n_rl
                assert set(got[:-2]) == {"rl"}
                finals = {
                    str((run / d / "run" / "final").resolve())
                    for d in ("09-rl-code-flash", "11-rl-harness-code-flash", "10-rl-thinking")
                }
                assert chain[0].path in finals
            assert chain[0].recipe_hash and chain[0].data_card_hash and chain[0].run_id
            # item-level results of the real eval output: 16 items per split, like the totals
            ev, items = reg.items(ids["rl"], "heldout")
            assert ev.n == len(items) == 16
            assert set(rec["evals"]["sft"]) == {"heldout", "heldout_phrasing"}
            assert rec["decision"] in ("promoted", "refused", "skipped"), rec
            if rec["decision"] != "skipped":
                assert [c["suite"] for c in rec["checks"]] == ["heldout", "heldout_phrasing"]
            # a first climb leaves a servable `<model>@prod` whatever the gate decided (README's
            # `serve --thinking thinking@prod` failed after a refusal: "unknown alias")
            stands = rec["candidate"] if rec["decision"] == "promoted" else rec["incumbent"]
            assert reg.alias(f"{m}@prod").checkpoint_id == stands
    md = (run / "report" / "report.md").read_text()
    assert "## Registry and promotion gate" in md and "thinking@prod" in md
    assert (run / "13-registry" / "gate.md").is_file()


def test_rerun_skips_every_stage(climb: dict) -> None:
    from hillclimb.climb.runner import run_climb

    n = len(_events(climb["run"]))
    s = run_climb(RECIPE, climb["run"], print_summary=False)
    assert s["stages_run"] == []
    new = _events(climb["run"])[n:]
    assert len(new) == 14 and all(e["event"] == "skip" and e["status"] == "skipped" for e in new)


def test_deleted_final_marker_reruns_only_the_report(
    climb: dict, capsys: pytest.CaptureFixture
) -> None:
    run = climb["run"]
    (run / "report" / "_stage.json").unlink()
    assert main(["climb", "--recipe", str(RECIPE), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "stages run now: report" in out and "val bpb" in out
    assert (run / "report" / "_stage.json").is_file()
    # --restart-from redoes the named stage and everything after it.
    assert (
        main(
            [
                "climb",
                "--recipe",
                str(RECIPE),
                "--out",
                str(run),
                "--restart-from",
                "report",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["stages_run"] == ["report"]


def test_changed_recipe_is_refused_with_a_hint(climb: dict, tmp_path: Path) -> None:
    from hillclimb.climb.runner import run_climb

    changed = tmp_path / "smoke.toml"
    changed.write_text(
        RECIPE.read_text().replace(
            "[sft]\nseq_len = 256\nbatch_size = 8\nsteps = 12",
            "[sft]\nseq_len = 256\nbatch_size = 8\nsteps = 13",
        )
    )
    assert changed.read_text() != RECIPE.read_text()
    with pytest.raises(
        HillclimbError,
        match=r"stage sft-code-flash .*steps: 12 -> 13.*--restart-from sft-code-flash",
    ):
        run_climb(changed, climb["run"], print_summary=False)
    # --restart-from a later stage with that recipe is refused too, and removes nothing first
    before = sorted(p.name for p in climb["run"].iterdir())
    with pytest.raises(HillclimbError, match=r"stage sft-code-flash .*steps: 12 -> 13"):
        run_climb(changed, climb["run"], restart_from="report", print_summary=False)
    assert sorted(p.name for p in climb["run"].iterdir()) == before
    assert (climb["run"] / "report" / "_stage.json").is_file()


def test_summary_table_says_what_bpb_is_measured_on():
    """The terminal summary names the data of every bits/byte column (corpus, not SFT data)."""
    import io

    from hillclimb.climb.runner import print_summary_table

    ev = {"corpus_val_bpb_pretrained": 1.5, "corpus_val_bpb_sft": 2.25, "corpus_unigram_bpb": 3.0}
    summary = {"recipe": "r", "run_dir": "d", "stages_run": [], "total_stage_seconds": 1.0,
               "report": "d/report/report.md", "models": {"m": {"eval": ev}}}  # fmt: skip
    buf = io.StringIO()
    print_summary_table(summary, file=buf)
    out = " ".join(buf.getvalue().split())
    assert "2.250" in out and "1.500" in out and "3.000" in out
    assert "pre-training corpus's val split (not on SFT data)" in out
    assert "sft_examples_val_bpb" in out
    # every accuracy row has its no-training baseline row (absent only for older summaries)
    ev["by_split"] = {"heldout": {"by_kind_tier": {"reasoning": {"1": 0.8, "2": 0.31}},
                                  "baseline_by_kind_tier": {"reasoning": {"1": 0.19, "2": None}}}}  # fmt: skip
    buf = io.StringIO()
    print_summary_table(summary, file=buf)
    out = " ".join(buf.getvalue().split())
    assert "t1:80% t2:31%" in out and "no-training baseline" in out and "t1:19% t2:-" in out


def test_flywheel_export_feeds_the_next_climb(climb: dict, tmp_path: Path, capsys) -> None:
    """Run tasks → a user rejects one → export → the next climb (a copy of this run with the
    export in the recipe) re-runs SFT data onwards, trains code-flash on the accepted episode
    and its report says how many examples came from the flywheel."""
    import shutil

    from hillclimb.climb.runner import run_climb

    tasks, hrun, exp = tmp_path / "tasks", tmp_path / "hrun", tmp_path / "export"
    assert main(["harness", "generate", "--out", str(tasks), "--n", "2", "--seed", "5",
                 "--kinds", "bugfix"]) == 0  # fmt: skip
    assert main(["harness", "run", "--tasks", str(tasks), "--model", "reference", "--out",
                 str(hrun), "--json"]) == 0  # fmt: skip
    from hillclimb.harness.telemetry import Telemetry

    with Telemetry(hrun / "telemetry.db") as tel:
        first = tel.query("SELECT id FROM episodes ORDER BY task_id")[0][0]
    assert main(["telemetry", "feedback", "--db", str(hrun / "telemetry.db"), "--episode", first,
                 "--reject"]) == 0  # fmt: skip
    assert main(["telemetry", "export", "--db", str(hrun / "telemetry.db"), "--out",
                 str(exp)]) == 0  # fmt: skip
    capsys.readouterr()
    recipe = tmp_path / "smoke-flywheel.toml"
    recipe.write_text(
        RECIPE.read_text().replace(
            "[sft_data.code-flash]\n", f'[sft_data.code-flash]\nflywheel = ["{exp}"]\n'
        )
    )
    run = tmp_path / "run"
    shutil.copytree(climb["run"], run)
    with pytest.raises(HillclimbError, match="stage sft-data"):
        run_climb(recipe, run, print_summary=False)  # a changed recipe needs --restart-from
    s = run_climb(recipe, run, restart_from="sft-data", print_summary=False)
    assert s["stages_run"][0] == "sft-data" and "sft-code-flash" in s["stages_run"]
    rec = json.loads((run / "06-sft-data" / "_stage.json").read_text())["result"]["code-flash"]
    fw = rec["flywheel"]
    assert fw["sft_examples"] == 1 and fw["by_source"] == {"harness": 1}
    assert fw["rl_prompts_available"] == 1 and rec["by_kind"]["flywheel"] == 1
    # checked against the data build's probes (and the task against the held-out split)
    assert fw["decontamination"] == "probes of the data build" and fw["refused"] == {}
    lines = (run / "06-sft-data" / "code-flash.jsonl").read_text().splitlines()
    mine = [json.loads(x) for x in lines if '"kind": "flywheel"' in x]
    assert len(mine) == 1 and mine[0]["meta"]["source"] == "harness"
    md = (run / "report" / "report.md").read_text()
    assert "## The flywheel" in md and "| code-flash | 1 |" in md
    assert "probes of the data build" in md


def test_gate_evaluates_an_incumbent_from_elsewhere(climb: dict, tmp_path: Path) -> None:
    """`thinking@prod` points at a checkpoint with no evaluation (promoted by hand, or by a climb
    whose eval could not be imported): the registry stage evaluates it with this recipe's
    settings and the gate decides, instead of erroring. A separate registry file keeps the
    module's shared one untouched."""
    from hillclimb.climb.runner import run_climb
    from hillclimb.registry.db import Registry

    run, reg_file = climb["run"], tmp_path / "registry.sqlite"
    pre = run / "05-pretrain-thinking" / "run" / "final"
    with Registry(reg_file) as reg:
        ck = reg.register_checkpoint(pre, stage="pretrain")
        reg.set_alias("thinking@prod", ck.id, "by hand, never evaluated")
        inc = ck.id
    s = run_climb(RECIPE, run, restart_from="registry", print_summary=False, registry=reg_file)
    rec = s["registry"]["models"]["thinking"]
    assert rec["incumbent"] == inc and rec["decision"] in ("promoted", "refused"), rec
    assert set(rec["incumbent_evaluated"]) == {"heldout", "heldout_phrasing"}
    with Registry(reg_file, create=False) as reg:
        ev, items = reg.items(inc, "heldout")
        assert len(items) == 16
    assert "evaluated now" in (run / "13-registry" / "gate.md").read_text()
