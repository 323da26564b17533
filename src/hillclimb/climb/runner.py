"""`hillclimb climb`: run the whole line from a recipe, resumably, stage by stage.

The line (one directory per stage under RUN_DIR, numbered in order):

    01-data            data build (pipeline.build)            corpus/ (documents, rejects, card)
    02-tokenizer       shared BPE tokenizer                   tokenizer/
    03-shards          corpus tokenized with it               shards/, data_card.json (with tokens)
    04-pretrain-<m>    pre-training, one stage per model      run/ (checkpoints, final/, logs)
    ..-sft-data        SFT examples per model                 <m>.jsonl
    ..-sft-<m>         SFT from the pre-trained model         run/
    ..-rl-<m>          RL from the SFT model ([rl] table)     run/ (+ rl.json, report.md)
    ..-eval            bpb + accuracy per model, SFT and RL   <m>.json, eval.json
    ..-registry        register checkpoints + evals, gate     gate.md (summary.json `registry`)
    report/            Markdown + PNG report, one-file HTML   report.md, *.png, report.html

Why markers and hashes: a stage is complete iff its marker `_stage.json` exists — written LAST,
atomically, after every output — and the marker records the SHA-256 of the recipe section(s) the
stage used chained with its parents' hashes. So a re-run skips complete stages, an interrupted
stage runs again (training stages resume from their own latest checkpoint; the data build resumes
from its committed chunks), and a recipe edited after a stage completed is refused with the exact
keys that changed, instead of silently mixing old and new outputs. `--restart-from STAGE` removes
that stage and everything after it. When a stage must run, every later stage directory is removed
first (its inputs are about to change), which is what makes "skip iff marker" sound.

`RUN_DIR/climb.jsonl` logs every start/end/skip with seconds and status; `RUN_DIR/summary.json`
collects the headline numbers the final table prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hillclimb.climb.climb_recipe import Recipe, canonical_hash, describe_change, load_recipe
from hillclimb.climb.flywheel import fingerprint
from hillclimb.climb.promotion import GATE_SETTINGS
from hillclimb.climb.state import (
    MARKER,
    MARKER_FORMAT,
    RUN_FILE,
    STARTED,
    Climb,
    Stage,
    now_iso,
    read_json,
    stage_timings,
)
from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.io import exclusive_dir, write_json_atomic, write_text_atomic

FAULT_ENV = "HILLCLIMB_CLIMB_FAULT"  # test hook: "fail:STAGE" raises inside STAGE before its marker


# ---- stage bodies -------------------------------------------------------------------------------
def _data(c: Climb, st: Stage, d: Path) -> dict[str, Any]:
    from hillclimb.data import pipeline
    from hillclimb.data.card import empty_corpus_message
    from hillclimb.data.cli import checkpoint_scorer, source_warnings

    cfg = c.recipe.data_config()
    seen = _fresh_sources(c, d)
    card = pipeline.build(
        cfg,
        d / "corpus",
        resume=True,
        recipe=str(c.recipe.path),
        progress=c.progress,
        ai_scorer=checkpoint_scorer(cfg.ai_content),
    )
    # what `data build` prints, said here too: a recipe source that lost every file (no
    # license found, not UTF-8) left the climb training on the generators alone, silently
    warnings = [*card.get("warnings", []), *source_warnings(card, d / "corpus")]
    for w in warnings:
        c.say(f"warning: {w}")
    if not (card.get("totals") or {}).get("documents"):
        # a corpus of nothing fails here, as `data build` does: the climb went on to the
        # tokenizer, which failed with "documents holds no .jsonl[.gz] files" (session 30)
        raise HillclimbError(empty_corpus_message(card))
    out = {"totals": card.get("totals", {}), "corpus": str(d / "corpus"), "sources": seen}
    return {**out, "warnings": warnings} if warnings else out


def _source_key(i: int, src: Any) -> str:
    return src.name or f"{src.kind}#{i}"


def _sources_fingerprint(c: Climb) -> dict[str, str]:
    """Per path source of the data stage, a SHA-256 of its files' relative paths, sizes and
    modification times (the folders the build walks, without `data.sources.SKIP_DIRS` and this
    climb's own run directory; a JSONL/Parquet file by itself). Cheap (no file is read), and
    what the stage hash leaves out: it covers the recipe, not the contents it points at."""
    import hashlib

    from hillclimb.data.sources import SKIP_DIRS

    own = c.out.resolve()
    out: dict[str, str] = {}
    for i, src in enumerate(c.recipe.data_config().sources):
        if src.kind not in PATH_SOURCES or not src.path:
            continue
        h = hashlib.sha256()
        root = Path(src.path)
        files = [root] if root.is_file() else []
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                here = Path(dirpath)
                dirnames[:] = sorted(
                    n for n in dirnames if n not in SKIP_DIRS and (here / n).resolve() != own
                )
                files += [here / n for n in sorted(filenames)]
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            rel = os.fsencode(f.relative_to(root)) if f != root else b""
            h.update(rel + b"\0" + f"{st.st_size}:{st.st_mtime_ns}".encode() + b"\0")
        out[_source_key(i, src)] = h.hexdigest()
    return out


def _fresh_sources(c: Climb, d: Path) -> dict[str, str]:
    """The sources' fingerprint this data build reads, recorded in `d/_sources.json` before it
    starts (an edit during the build then shows on the next run). A resumed build whose sources
    changed since it started is discarded: its committed chunks hold the old files, and
    resuming would mix them with the new ones (or, when every chunk was committed, keep the old
    corpus under the new fingerprint, so no later run would notice)."""
    now = _sources_fingerprint(c)
    rec = read_json(d / "_sources.json")
    was = rec.get("sources") if rec is not None else None
    if isinstance(was, dict) and was != now and (d / "corpus").exists():
        changed = sorted(k for k in now if was.get(k) != now[k]) or sorted(set(was) ^ set(now))
        c.say(
            f"warning: source(s) {', '.join(map(repr, changed))} changed since the data build "
            "started; building the corpus again from the current files"
        )
        _remove(d / "corpus")
    write_json_atomic(d / "_sources.json", {"sources": now})
    return now


def _warn_stale_sources(c: Climb, result: dict[str, Any]) -> None:
    """Say which source changed since the data stage that this run keeps built its corpus
    (its result's `sources`; stages of older runs have none and are not checked). A warning,
    not a re-run: the `{hillclimb}` source is this package, which any edit to the code changes,
    and a finished climb should not redo hours of training for it unasked."""
    was = result.get("sources")
    if not isinstance(was, dict):
        return
    now = _sources_fingerprint(c)
    for name, digest in now.items():
        if name in was and was[name] != digest:
            c.say(
                f"warning: source {name!r} changed since the data stage built the corpus this "
                "run keeps using; re-run with --restart-from data to build it from the "
                "current files"
            )


PATH_SOURCES = ("tree", "git", "jsonl", "parquet")


def _check_sources_exist(recipe: Recipe) -> None:
    """Refuse a `[[data.sources]]` path that is not there, before the data stage starts.
    Why: the data build records a missing source as one `missing_source` ingest skip and goes
    on, so a typo in a user's corpus path (or a relative path meant from the shell's directory,
    not the recipe's) gave a climb trained on the other sources alone — the generators' problems
    — with nothing said. Checked only when the data stage is about to run, not at load: a
    finished climb never reads its sources again, so moving them afterwards costs nothing."""
    raw = recipe.raw.get("data", {}).get("sources") or []
    for i, src in enumerate(recipe.data_config().sources):
        if src.kind in PATH_SOURCES and src.path and not Path(src.path).exists():
            given = raw[i].get("path") if i < len(raw) and isinstance(raw[i], dict) else None
            relative = isinstance(given, str) and not given.startswith(("/", "~", "{"))
            how = (
                f" (the recipe says {given!r}; a relative path is resolved from the recipe's "
                f"directory {recipe.path.parent})"
                if relative
                else ""
            )
            raise ConfigError(
                f"[data] source {src.name or src.kind!r}: {src.path} does not exist{how}; "
                "fix the path or remove the source"
            )


def _tokenizer(c: Climb, st: Stage, d: Path) -> dict[str, Any]:
    from hillclimb.tokenizer.train import TrainConfig as TokConfig
    from hillclimb.tokenizer.train import save_trained, train_from_corpus

    t = c.recipe.tokenizer
    cfg = TokConfig(
        corpus=str(c.corpus),
        vocab_size=int(t["vocab_size"]),
        max_bytes=t["max_bytes"],
        seed=c.recipe.seed,
        pretokenizer=t["pretokenizer"],
        min_frequency=int(t["min_frequency"]),
    )
    tok, meta = train_from_corpus(cfg, show_progress=False)
    save_trained(tok, meta, d / "tokenizer")
    return {
        "vocab_size": tok.vocab_size,
        "train_seconds": meta.get("train_seconds"),
        "tokenizer": str(d / "tokenizer"),
    }


def _shards(c: Climb, st: Stage, d: Path) -> dict[str, Any]:
    from hillclimb.data.card import render_markdown
    from hillclimb.data.pipeline import apply_tokens
    from hillclimb.data.tokenize import tokenize_corpus
    from hillclimb.io import write_text_atomic

    tok = tokenize_corpus(c.corpus, c.tokenizer_dir, d / "shards")
    card = json.loads((c.corpus / "data_card.json").read_text())
    apply_tokens(card, tok)
    write_json_atomic(d / "data_card.json", card)
    write_text_atomic(d / "DATA_CARD.md", render_markdown(card))
    return {
        "splits": {
            k: {kk: v[kk] for kk in ("tokens", "documents", "bytes")}
            for k, v in tok["splits"].items()
        },
        "shards": str(d / "shards"),
    }


def _fresh_run_dir(run: Path) -> None:
    """A training run dir without any checkpoint restarts clean (stale logs of a killed start)."""
    from hillclimb.train.checkpointing import latest_checkpoint

    if run.exists() and latest_checkpoint(run) is None:
        shutil.rmtree(run)


def _pretrain(model: str) -> Callable[[Climb, Stage, Path], dict[str, Any]]:
    def body(c: Climb, st: Stage, d: Path) -> dict[str, Any]:
        from hillclimb.train import TrainConfig, pretrain

        spec = c.recipe.models[model]
        run = d / "run"
        _fresh_run_dir(run)
        cfg = TrainConfig.from_dict(
            {
                **c.recipe.pretrain[model],
                "out": run,
                "data": c.shards_dir,
                "tokenizer": c.tokenizer_dir,
                "preset": spec["preset"],
                # [models.NAME] overrides with [pretrain] model_overrides on top (the recipe
                # accepts both; the second was replaced by the first, silently)
                "model_overrides": c.recipe.pretrain_overrides(model),
                "resume": True,
            }
        )
        res = pretrain.run(cfg).to_dict()
        _check_final(run)
        return res

    return body


def _sft_data(c: Climb, st: Stage, d: Path) -> dict[str, Any]:
    from hillclimb.climb.sft_mixture import build_sft_file

    out = {}
    for m in c.recipe.model_names:
        seq = int(c.recipe.sft[m].get("seq_len", 256))
        # the model's context decides how tool schemas are rendered (as the harness shows them):
        # the trained checkpoint's, overrides included (the preset's alone rendered compact tools
        # for a model the harness then showed the full ones)
        ctx = c.recipe.context(m)
        out[m] = build_sft_file(
            c.recipe.sft_data[m], c.corpus, d / f"{m}.jsonl", seq, ctx, c.tokenizer_dir
        )
        out[m]["file"] = str(d / f"{m}.jsonl")
    return out


def _sft(model: str) -> Callable[[Climb, Stage, Path], dict[str, Any]]:
    def body(c: Climb, st: Stage, d: Path) -> dict[str, Any]:
        from hillclimb.train import SFTConfig, sft

        run = d / "run"
        _fresh_run_dir(run)
        cfg = SFTConfig.from_dict(
            {
                **c.recipe.sft[model],
                "out": run,
                "init": c.final(f"pretrain-{model}"),
                "sft_data": [c.dir("sft-data") / f"{model}.jsonl"],
                "resume": True,
            }
        )
        res = sft.run(cfg).to_dict()
        _check_final(run)
        return res

    return body


def _rl(model: str) -> Callable[[Climb, Stage, Path], dict[str, Any]]:
    def body(c: Climb, st: Stage, d: Path) -> dict[str, Any]:
        from hillclimb.rl.config import RLConfig
        from hillclimb.rl.report import write_rl_report
        from hillclimb.rl.train import run_rl

        run = d / "run"
        _fresh_run_dir(run)
        cfg = RLConfig.from_dict(
            {**c.recipe.rl[model], "out": run, "init": c.final(f"sft-{model}"), "resume": True}
        )
        res = run_rl(cfg)
        write_rl_report(run)
        _check_final(run)
        return {
            k: res.get(k)
            for k in ("steps", "first", "last", "rollout_tokens_per_s", "sync_share", "elapsed_s")
        }

    return body


def _rl_harness(model: str, parent: str) -> Callable[[Climb, Stage, Path], dict[str, Any]]:
    """Agentic RL in the harness (`hillclimb rl --harness`) on tasks this stage generates
    (`[rl_harness.<model>]` n_tasks / task_seed / kinds / split, default `train`: never the
    held-out projects; evaluate with `hillclimb eval --suite harness` on tasks of other seeds —
    other mutations — and on `harness generate --split heldout` tasks — unseen projects), plus
    the tasks of the telemetry exports its `flywheel` names (`harness_tasks`)."""

    def body(c: Climb, st: Stage, d: Path) -> dict[str, Any]:
        from hillclimb.rl.config import RLConfig
        from hillclimb.rl.report import write_rl_report
        from hillclimb.rl.train import run_rl

        spec = c.recipe.rl_harness[model]
        harness, info = harness_tasks(spec, d, c.corpus, f"rl-harness-{model}")
        val = _harness_val_tasks(spec, d, f"rl-harness-{model}")
        if val is not None:
            from hillclimb.harness.task import find_task_dirs

            info["val_tasks"] = len(find_task_dirs(val))
        run = d / "run"
        _fresh_run_dir(run)
        cfg = RLConfig.from_dict(
            {**spec["rl"], "harness": str(harness), "out": run, "init": c.final(parent),
             "resume": True, **({"harness_val": str(val)} if val is not None else {})}
        )  # fmt: skip
        res = run_rl(cfg)
        write_rl_report(run)
        _check_final(run)
        return {**info, **{k: res.get(k) for k in ("steps", "first", "last", "elapsed_s")}}

    return body


def _harness_val_tasks(spec: dict[str, Any], d: Path, stage: str) -> Path | None:
    """`d/val-tasks`: `val_tasks` held-out tasks for the stage's val curve — new mutation
    sites of the training projects (`split = heldout_mutations`, which `train` never draws),
    the training kinds that have mutation sites (bugfix, feature; else bugfix), seed
    `task_seed + 1` — or None without `val_tasks`. `rl --harness-val`
    refuses any overlap with the training tasks (ids, content, mutation sites)."""
    n = int(spec.get("val_tasks", 0))
    if not n:
        return None
    t = spec["tasks"]
    val = d / "val-tasks"
    from hillclimb.harness.taskgen.generate import MUTATION_SPLIT_KINDS

    kinds = [k for k in t["kinds"] if k in MUTATION_SPLIT_KINDS] or ["bugfix"]
    _ensure_tasks(val, n, int(t["task_seed"]) + 1, kinds, "heldout_mutations", f"{stage} val")
    return val


def _ensure_tasks(d: Path, n: int, seed: int, kinds: list[str], split: str, stage: str) -> None:
    """Generate `n` tasks into `d` unless a finished generation is there (`_tasks_complete`)."""
    if _tasks_complete(d, n):
        return
    from hillclimb.harness.taskgen.generate import generate_tasks

    gen = generate_tasks(d, n, seed=seed, kinds=kinds, split=split)
    if not gen["generated"]:
        raise HillclimbError(f"{stage}: no task generated ({gen['failures']})")


def harness_tasks(
    spec: dict[str, Any], d: Path, corpus: Path | None, stage: str
) -> tuple[Path, dict[str, Any]]:
    """(what the stage's `RLConfig.harness` names, counts for the stage result): the
    generated task directory `d/tasks` alone, or — with `flywheel` exports — `d/tasks.jsonl`,
    task references to the generated tasks (none with `n_tasks = 0`) and to the export tasks
    `climb.flywheel.flywheel_rl_tasks` admits (`rl.harness.load_tasks` reads both forms).

    Why mixed, not the export alone: as `[sft_data] flywheel` adds to the generated examples,
    the export's tasks (the ones the served model failed or users rejected) add to the stage's
    own; `n_tasks = 0` trains on the export's alone."""
    from hillclimb.harness.task import find_task_dirs

    t = spec["tasks"]
    tasks = d / "tasks"
    n = int(t["n_tasks"])
    if n:  # first run, or one cut short
        _ensure_tasks(tasks, n, int(t["task_seed"]), list(t["kinds"]),
                      str(t.get("split", "train")), stage)  # fmt: skip
    generated = sorted(find_task_dirs(tasks)) if n else []
    if not spec.get("flywheel"):
        return tasks, {"tasks": len(generated)}
    from hillclimb.climb.flywheel import flywheel_rl_tasks
    from hillclimb.harness.task import load_task

    refs, counts = flywheel_rl_tasks(list(spec["flywheel"]), _probes(corpus), generated)
    if not refs and not generated:
        raise HillclimbError(
            f"{stage}: no task to train on: n_tasks = 0 and the flywheel exports' tasks were all "
            f"refused ({counts['refused']}); set n_tasks or name another export"
        )
    own = [{"task_id": load_task(p).id, "task_dir": str(Path(p).resolve())} for p in generated]
    out = d / "tasks.jsonl"
    write_text_atomic(out, "".join(json.dumps(r) + "\n" for r in own + refs))
    return out, {"tasks": len(own) + len(refs), "flywheel_tasks": len(refs), "flywheel": counts}


def _probes(corpus: Path | None) -> Any:
    """The data build's probe index (`probes.npz` beside its documents), or None when the data
    build ran without decontamination — as the sft-data stage reads it."""
    if corpus is None or not (Path(corpus) / "probes.npz").is_file():
        return None
    from hillclimb.data.decontam import ProbeIndex

    return ProbeIndex.load(Path(corpus) / "probes.npz")


def _tasks_complete(tasks: Path, n: int) -> bool:
    """Whether a generation of `n` tasks finished in `tasks`: its manifest (written last) asked
    for `n`. Why not "any task there": each task is published atomically, so a climb killed
    part-way left some of them, and the re-run trained on those alone. An unfinished one is
    run again, which keeps the tasks already made (generation is deterministic by seed)."""
    manifest = read_json(tasks / "manifest.json")
    return manifest is not None and manifest.get("n") == n and _has_tasks(tasks)


def _has_tasks(tasks: Path) -> bool:
    from hillclimb.harness.task import find_task_dirs

    try:
        return bool(find_task_dirs(tasks))
    except HillclimbError:  # missing or empty (find_task_dirs raises on both)
        return False


def _check_final(run: Path) -> None:
    if not (run / "final" / "config.json").is_file():
        raise HillclimbError(f"training finished without a final checkpoint in {run}")


def _eval(c: Climb, st: Stage, d: Path) -> dict[str, Any]:
    from hillclimb.climb.climb_recipe import eval_suites, task_config
    from hillclimb.eval.core import run_eval
    from hillclimb.eval.suite_common import SuiteConfig

    ev = c.recipe.eval
    out: dict[str, Any] = {}
    harness: list[str] | None = None
    for m in c.recipe.model_names:
        seq = int(ev["seq_len"] or c.recipe.pretrain[m].get("seq_len", 256))
        common = dict(tasks=task_config(ev), val_tokens=int(ev["val_tokens"]), seq_len=seq)
        c.say(f"eval {m}: pre-trained model")
        base = run_eval(
            c.final(f"pretrain-{m}"), c.shards_dir, accuracy=bool(ev["base_accuracy"]), **common
        )
        c.say(f"eval {m}: SFT model (held-out suites)")
        tuned = run_eval(c.final(f"sft-{m}"), c.shards_dir, accuracy=True, **common)
        rec = {"model": m, "pretrain": base, "sft": tuned}
        rl_key = rl_final(c.recipe, m)
        if rl_key is not None:
            c.say(f"eval {m}: RL model ({rl_key}; held-out suites, same settings)")
            rec["rl"] = run_eval(c.final(rl_key), c.shards_dir, accuracy=True, **common)
            rec["rl_stage"] = rl_key
        suites = eval_suites(ev, c.recipe.model_names).get(m, [])
        if "harness" in suites and harness is None:
            harness = _harness_tasks(c, d)  # once per stage, shared by the models
        if suites:
            final = rl_key if rl_key is not None else f"sft-{m}"
            cfg = SuiteConfig(
                seed=int(ev["seed"]),
                limit=int(ev["suite_limit"]) or None,
                max_tokens=int(ev["suite_max_tokens"]) or None,
                tasks=harness if "harness" in suites else None,
                harness_max_steps=int(ev["harness_max_steps"]),
                harness_guided_tools=bool(ev["harness_guided_tools"]),
            )
            rec["suites"] = _run_suites(c, m, c.final(final), suites, cfg, d)
            if rl_key is not None:  # the same suites on the SFT model: RL beside what it started
                # from (issue 13: SFT-only and RL resolve rates side by side), same items
                rec["suites_sft"] = _run_suites(
                    c, m, c.final(f"sft-{m}"), suites, cfg, d, which=f"sft-{m}"
                )
        write_json_atomic(d / f"{m}.json", rec)
        out[m] = rec
    write_json_atomic(d / "eval.json", out)
    return {m: _eval_headline(r) for m, r in out.items()}


def _harness_tasks(c: Climb, d: Path) -> list[str]:
    """Held-out bug-fix tasks for the harness suite, generated once per eval stage (in
    `d/harness-tasks/`, reused by every model): `[eval] harness_tasks` at the held-out mutation
    sites of the training projects ("new-mutations") and as many from the held-out projects
    ("unseen-projects"). Training data never draws either (`task_examples` and the harness RL
    stage use `--split train`), so a resolve rate here is on lines no training task broke."""
    from hillclimb.harness.taskgen.generate import generate_tasks

    ev = c.recipe.eval
    groups = {"new-mutations": "heldout_mutations", "unseen-projects": "heldout"}
    specs = []
    for name, split in groups.items():
        dest = d / "harness-tasks" / name
        c.say(f"eval: generating {ev['harness_tasks']} held-out harness tasks ({split})")
        generate_tasks(
            dest, int(ev["harness_tasks"]), seed=int(ev["harness_task_seed"]),
            kinds=["bugfix"], split=split,
        )  # fmt: skip
        specs.append(f"{name}={dest}")
    return specs


def _run_suites(
    c: Climb, m: str, ckpt: Path, suites: list[str], cfg: Any, d: Path, which: str = "final"
) -> dict[str, Any]:
    """`[eval] suites` on a checkpoint (`which`: "final", or the SFT stage beside an RL final);
    each full result as `suite-<model>-<suite>.json` (final; the HTML report and `hillclimb
    registry add-eval` read it) or `suite-<model>-<suite>-sft.json`, a summary per suite
    returned."""
    from hillclimb.eval.suites import run_suite

    out: dict[str, Any] = {}
    tag = "" if which == "final" else "-sft"
    for name in suites:
        c.say(f"eval {m}: suite {name} ({which} model)")
        res = run_suite(name, str(ckpt), cfg)
        write_json_atomic(d / f"suite-{m}-{name}{tag}.json", res)
        out[name] = {
            "metrics": res["metrics"],
            "baseline": res.get("baseline"),  # the no-training baseline on the same items
            "n_items": res["n_items"],
            "truncated_share": res.get("truncated_share"),
            "seconds": res["seconds"],
            "file": f"suite-{m}-{name}{tag}.json",
        }
    return out


def rl_final(recipe: Recipe, model: str) -> str | None:
    """The stage whose checkpoint is the model's RL-trained final: harness RL when the recipe
    has it (it starts from the problem-RL or SFT model), else problem RL, else None."""
    if model in recipe.rl_harness:
        return f"rl-harness-{model}"
    if model in recipe.rl:
        return f"rl-{model}"
    return None


def _counted(t: dict[str, Any]) -> dict[str, Any]:
    """`correct`, `n` and the Wilson 95% interval of an accuracy (empty when not recorded)."""
    from hillclimb.stats import wilson_ci

    k, n = t.get("correct"), t.get("n")
    if not isinstance(k, int) or not isinstance(n, int) or n < 1:
        return {}
    lo, hi = wilson_ci(k, n)
    return {"correct": k, "n": n, "ci95": [round(lo, 4), round(hi, 4)]}


def _checkpoint_stage(rec: dict[str, Any]) -> str | None:
    """The stage key of the checkpoint an eval record's headline is from: `rl_stage` for RL, else
    `sft-<model>`. An RL record without `rl_stage` predates harness RL (both came in one change),
    when `rl-<model>` was the only RL checkpoint; None when the record names no model."""
    m = rec.get("model")
    if rec.get("rl"):
        return rec.get("rl_stage") or (f"rl-{m}" if m else None)
    return f"sft-{m}" if m else None


def _eval_headline(rec: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers of the final model (RL when the climb has it, else SFT).

    Bits/byte keys name the data they are measured on: `corpus_*` is the pre-training corpus's
    val split (eval's fixed windows), for the pre-trained, SFT and final model."""
    from hillclimb.climb.report import rl_verdict

    base, tuned = rec["pretrain"], rec.get("rl") or rec["sft"]
    t = tuned.get("tasks") or {}
    splits = t.get("splits") or {}
    return {
        "corpus_val_bpb_pretrained": (base.get("bpb") or {}).get("val_bpb"),
        "corpus_val_bpb_sft": (rec["sft"].get("bpb") or {}).get("val_bpb"),
        "corpus_val_bpb_final": (tuned.get("bpb") or {}).get("val_bpb"),
        "corpus_unigram_bpb": (base.get("bpb") or {}).get("unigram_bpb"),
        "accuracy": t.get("accuracy"),
        # k of n and the Wilson 95% interval beside every accuracy (session 24: summary.json
        # printed bare accuracies, which read the same at n = 20 and n = 621)
        **_counted(t),
        # the no-training baseline on the same items (pooled per-cell best: eval/tasks.py);
        # None for an evaluation written before it was kept
        "baseline": t.get("baseline"),
        "by_kind_tier": {
            k: {tier: v["accuracy"] for tier, v in tiers.items()}
            for k, tiers in (t.get("by_kind_tier") or {}).items()
        },
        "by_split": {
            s: {
                "accuracy": v["accuracy"],
                **_counted(v),
                "baseline": v.get("baseline"),
                "by_kind_tier": {
                    k: {tier: x["accuracy"] for tier, x in tiers.items()}
                    for k, tiers in v["by_kind_tier"].items()
                },
                "baseline_by_kind_tier": {
                    k: {tier: x.get("baseline") for tier, x in tiers.items()}
                    for k, tiers in v["by_kind_tier"].items()
                },
            }
            for s, v in splits.items()
        },
        "truncated_share": t.get("truncated_share"),
        "final_stage": "rl" if rec.get("rl") else "sft",
        # the stage whose checkpoint the unprefixed numbers (accuracy, by_split,
        # corpus_val_bpb_final, suites) were measured on (session 25: "rl" did not say whether
        # it was problem RL's or harness RL's checkpoint)
        "checkpoint_stage": _checkpoint_stage(rec),
        # which checkpoint "rl" is (harness RL's when the recipe has it) and RL's paired
        # held-out change in words, as the report's RL title reads it (session 25)
        "rl_stage": rec.get("rl_stage") if rec.get("rl") else None,
        "rl_vs_sft": rl_verdict(rec) if rec.get("rl") else None,
        "suites": {
            name: {k: v["value"] for k, v in s["metrics"].items()}
            for name, s in (rec.get("suites") or {}).items()
        },
        # the same suites on the SFT model when the final one is RL-trained (else empty)
        "suites_sft": {
            name: {k: v["value"] for k, v in s["metrics"].items()}
            for name, s in (rec.get("suites_sft") or {}).items()
        },
        "sft_accuracy": (rec["sft"].get("tasks") or {}).get("accuracy"),
        **{f"sft_{k}": v for k, v in _counted(rec["sft"].get("tasks") or {}).items()},
    }


def _registry(c: Climb, st: Stage, d: Path) -> dict[str, Any]:
    from hillclimb.climb.promotion import registry_stage

    return registry_stage(c, d)


def _same_registry(c: Climb, result: dict[str, Any]) -> bool:
    """Whether a completed registry stage registered into the registry this invocation names
    (`--registry`, the default state directory's, or none for `--no-registry`). Why: the choice
    is an option, not a recipe key, so it is in no stage hash; a climb finished with
    `--no-registry` and re-run with `--registry FILE` skipped the stage, registered nothing and
    printed "registry disabled (--no-registry)". A different target re-runs the stage (cheap:
    registering is idempotent and a stored decision is reused) and the report after it;
    `--no-registry` keeps what an earlier run registered (and its gate in the report)."""
    from hillclimb.registry.db import registry_path

    if c.registry is False:  # nothing to register now; what an earlier run registered stays
        return True
    if "skipped" in result or not isinstance(result.get("registry"), str):
        return False
    want = registry_path(c.registry if isinstance(c.registry, Path) else None)
    return Path(result["registry"]).resolve() == want.resolve()


def _report(c: Climb, st: Stage, d: Path) -> dict[str, Any]:
    from hillclimb.climb.html_report import write_html_report
    from hillclimb.climb.report import write_report

    res = write_report(c, d)
    return {**res, "html": str(write_html_report(c.out, d / "report.html"))}


# ---- planning -----------------------------------------------------------------------------------
def plan(recipe: Recipe) -> list[Stage]:
    r = recipe
    names = r.model_names
    stages: list[Stage] = [
        Stage("data", "", {"data": r.data}, [], _data, keep_partial=True),
        Stage("tokenizer", "", {"tokenizer": r.tokenizer, "seed": r.seed}, ["data"], _tokenizer),
        Stage("shards", "", {}, ["data", "tokenizer"], _shards),
    ]
    for m in names:
        stages.append(
            Stage(
                f"pretrain-{m}",
                "",
                {"model": r.models[m], "pretrain": r.pretrain[m]},
                ["shards"],
                _pretrain(m),
                keep_partial=True,
            )
        )
    stages.append(
        Stage(
            "sft-data",
            "",
            {
                "sft_data": r.sft_data,
                "seq_len": {m: r.sft[m].get("seq_len") for m in names},
                # a new telemetry export re-runs SFT data (and what follows); the same does not
                **(
                    {"flywheel": {m: fingerprint(r.sft_data[m]["flywheel"]) for m in names}}
                    if any(r.sft_data[m]["flywheel"] for m in names)
                    else {}
                ),
            },
            # budget notes pick each solution's form by its length in tokens: the tokenizer's
            ["data", "tokenizer"]
            if any(r.sft_data[m].get("budget_fraction") for m in names)
            else ["data"],
            _sft_data,
        )
    )
    for m in names:
        stages.append(
            Stage(
                f"sft-{m}",
                "",
                {"sft": r.sft[m]},
                [f"pretrain-{m}", "sft-data"],
                _sft(m),
                keep_partial=True,
            )
        )
    for m in names:
        if m in r.rl:
            stages.append(
                Stage(f"rl-{m}", "", {"rl": r.rl[m]}, [f"sft-{m}"], _rl(m), keep_partial=True)
            )
    before_harness = {m: f"rl-{m}" if m in r.rl else f"sft-{m}" for m in names}
    for m in names:
        if m in r.rl_harness:
            stages.append(
                Stage(
                    f"rl-harness-{m}",
                    "",
                    {
                        "rl_harness": r.rl_harness[m],
                        # a new telemetry export re-runs the stage; the same does not
                        **(
                            {"flywheel": fingerprint(r.rl_harness[m]["flywheel"])}
                            if r.rl_harness[m].get("flywheel")
                            else {}
                        ),
                    },
                    [before_harness[m]],
                    _rl_harness(m, before_harness[m]),
                    keep_partial=True,
                )
            )
    finals = [f"rl-harness-{m}" if m in r.rl_harness else before_harness[m] for m in names]
    stages.append(Stage("eval", "", {"eval": r.eval}, ["shards"] + finals, _eval))
    # register checkpoints + evals, promotion gate (docs/areas/registry.md); the report's
    # parents stay ["eval"] so adding this stage left finished climbs' report hashes valid
    stages.append(
        Stage("registry", "", {"gate": GATE_SETTINGS}, ["eval"], _registry, current=_same_registry)
    )
    stages.append(Stage("report", "report", {"report": r.report}, ["eval"], _report))
    _check_unique_keys(r, stages)
    hashes: dict[str, str] = {}
    for i, s in enumerate(stages):
        if not s.dirname:
            s.dirname = f"{i + 1:02d}-{s.key}"
        s.hash = canonical_hash(
            {"stage": s.key, "section": s.section, "parents": [hashes[p] for p in s.parents]}
        )
        hashes[s.key] = s.hash
    return stages


def _check_unique_keys(recipe: Recipe, stages: list[Stage]) -> None:
    """Refuse model names that give two stages one key (a model named `data` has the SFT stage
    `sft-data`, the SFT examples' key; `harness-x` with RL has `rl-harness-x`, model `x`'s
    harness RL). Why: a stage's outputs are found by key (`Climb.dir`, `final`), so the second
    one's checkpoint was looked for in the first one's directory and the climb failed after
    training, in the stage that read it."""
    keys = [s.key for s in stages]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ConfigError(
            f"recipe {recipe.path}: the model names {recipe.model_names} give two stages the "
            f"name(s) {dup} (a model's stages are pretrain-NAME, sft-NAME, rl-NAME and "
            "rl-harness-NAME; the climb's own include sft-data); rename the model"
        )


def resolve_stage(stages: list[Stage], name: str, models: list[str] | None = None) -> int:
    """Index of the stage named `name` (exact key, dir name, or a prefix like "pretrain").

    A stage family (`pretrain`, `sft`, `rl`, `rl-harness`) means its first model stage
    (`FAMILY-MODEL` for a model of `models`) before any other prefix match: `sft` matched
    `sft-data` (listed first), so `--restart-from sft` rebuilt the SFT examples as well."""
    if not name.strip():  # "" is a prefix of every stage: it would restart the whole climb
        raise HillclimbError(
            f"--restart-from needs a stage name; stages: {', '.join(s.key for s in stages)}"
        )
    for i, s in enumerate(stages):
        if name in (s.key, s.dirname):
            return i
    for i, s in enumerate(stages):
        if any(s.key == f"{name}-{m}" for m in models or []):
            return i
    for i, s in enumerate(stages):
        if s.key.startswith(name):
            return i
    raise HillclimbError(f"unknown stage {name!r}; stages: {', '.join(s.key for s in stages)}")


def _mismatch(c: Climb, s: Stage, rec: dict[str, Any], what: str) -> HillclimbError:
    changes = describe_change(rec.get("section"), s.section)
    if not changes:
        changes = ["an upstream stage's recipe section changed"]
    shown = "; ".join(changes[:6]) + (f"; … {len(changes) - 6} more" if len(changes) > 6 else "")
    return HillclimbError(
        f"stage {s.key} in {c.out} was {what} with a different recipe ({shown}); "
        f"re-run with --restart-from {s.key} to redo it and every later stage, or choose a new --out"
    )


def _remove(path: Path) -> None:
    if path.exists():
        tmp = path.with_name(f".{path.name}.removing")
        shutil.rmtree(tmp, ignore_errors=True)
        os.replace(path, tmp)  # one rename: never a half-deleted stage under the real name
        shutil.rmtree(tmp, ignore_errors=True)


def _sweep_leftovers(c: Climb) -> None:
    """Finish what a killed climb left half done in RUN (held by this process): stage removals
    (`.NAME.removing`, `_remove`) and the temp files of atomic writes in RUN and its stage
    directories. Why: a kill while `_remove` deleted a stage left the rest of it (a training
    run, checkpoints and all) under the hidden name for good: only removing the same stage
    again looked for it."""
    from hillclimb.io import sweep_temp

    sweep_temp(c.out, also=(".removing",))
    for s in c.stages:
        sweep_temp(c.out / s.dirname)


def _fault(stage: str) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    if spec == f"fail:{stage}":
        raise HillclimbError(f"injected failure in stage {stage} ({FAULT_ENV})")
    if spec == f"kill:{stage}":
        os.kill(os.getpid(), 9)


# ---- the climb ----------------------------------------------------------------------------------
def run_climb(
    recipe: str | Path | Recipe,
    out: str | Path | None = None,
    *,
    restart_from: str | None = None,
    progress: bool | None = None,
    print_summary: bool = True,
    registry: Path | bool | None = None,
) -> dict[str, Any]:
    """Run (or continue) a climb; returns the summary (also RUN_DIR/summary.json). `registry`:
    the registry file the climb registers into (None: STATE_DIR/registry.sqlite; False: none)."""
    r = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    run_dir = Path(out) if out is not None else Path("runs") / r.name
    c = Climb(
        recipe=r,
        out=run_dir,
        stages=plan(r),
        progress=sys.stderr.isatty() if progress is None else progress,
        registry=Path(registry) if isinstance(registry, (str, os.PathLike)) else registry,
    )
    with exclusive_dir(c.out):  # a second climb on RUN is refused, not interleaved
        return _climb(c, restart_from, print_summary)


def _climb(c: Climb, restart_from: str | None, print_summary: bool) -> dict[str, Any]:
    _check_run_dir(c.out)
    restart_at = (
        resolve_stage(c.stages, restart_from, c.recipe.model_names)
        if restart_from is not None
        else None
    )
    stale = _stale_stage_dirs(c, restart_at)
    # Validate every marker that stays before doing any work or removing anything: a refused run
    # (a kept stage was made with another recipe) leaves the run directory as it was.
    kept = c.stages if restart_at is None else c.stages[:restart_at]
    first_todo = None
    for i, s in enumerate(kept):
        d = c.out / s.dirname
        done = read_json(d / MARKER)
        if done is not None:
            if done.get("hash") != s.hash:
                raise _mismatch(c, s, done, "completed")
            if s.current is None or s.current(c, done.get("result") or {}):
                continue
            c.say(f"{s.key}: complete, but not for this invocation's options: runs again")
        started = read_json(d / STARTED)
        if started is not None and started.get("hash") != s.hash:
            raise _mismatch(c, s, started, "started")
        if first_todo is None:
            first_todo = i
    if restart_at == 0 or first_todo == 0:  # the data build runs: its sources must be there
        _check_sources_exist(c.recipe)
    # only an accepted run writes climb.json and the recipe copy: a refused one (another recipe,
    # an unknown --restart-from) must leave RUN/recipe.toml describing the run that is there
    _open_run_dir(c)
    _sweep_leftovers(c)
    data_done = read_json(c.out / c.stages[0].dirname / MARKER)
    if data_done is not None and restart_at != 0 and first_todo != 0:
        _warn_stale_sources(c, data_done.get("result") or {})
    if restart_at is not None:
        for s in c.stages[restart_at:]:
            _remove(c.out / s.dirname)
        for d in stale:  # laid out by another plan at or after the restart: redone now
            _remove(d)
        c.log(event="restart", stage=c.stages[restart_at].key)
        c.say(f"restarting from {c.stages[restart_at].key}: removed it and every later stage")
        if first_todo is None:
            first_todo = restart_at
    t_climb = time.perf_counter()
    ran: list[str] = []
    for i, s in enumerate(c.stages):
        d = c.out / s.dirname
        done = read_json(d / MARKER)
        if done is not None and (first_todo is None or i < first_todo):
            c.results[s.key] = done.get("result", {})
            c.log(
                event="skip",
                stage=s.key,
                status="skipped",
                seconds=0.0,
                completed_in_s=done.get("seconds"),
            )
            c.say(f"{s.key}: complete, skipped")
            continue
        if i == first_todo:
            for later in c.stages[i + 1 :]:
                if (c.out / later.dirname).exists():
                    _remove(c.out / later.dirname)
                    c.say(f"{later.key}: removed (an earlier stage re-runs)")
        if d.exists() and not s.keep_partial:
            _remove(d)
        resumed = d.exists()
        d.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            d / STARTED,
            {"stage": s.key, "hash": s.hash, "section": s.section, "started": now_iso()},
        )
        c.log(event="start", stage=s.key, resumed=resumed)
        c.say(f"{s.key}: {'resuming' if resumed else 'running'} → {d}")
        t0 = time.perf_counter()
        try:
            _fault(s.key)
            result = s.fn(c, s, d)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            c.log(
                event="end",
                stage=s.key,
                status=status,
                seconds=round(time.perf_counter() - t0, 3),
                error=f"{type(exc).__name__}: {exc}",
            )
            if not isinstance(exc, (HillclimbError, KeyboardInterrupt)):
                traceback.print_exc()
            raise
        secs = round(time.perf_counter() - t0, 3)
        write_json_atomic(
            d / MARKER,
            {
                "format": MARKER_FORMAT,
                "stage": s.key,
                "hash": s.hash,
                "section": s.section,
                "parents": s.parents,
                "seconds": secs,
                "finished": now_iso(),
                "result": result,
            },
        )
        c.results[s.key] = result
        c.log(event="end", stage=s.key, status="ok", seconds=secs)
        c.say(f"{s.key}: done in {secs:.1f}s")
        ran.append(s.key)
    summary = build_summary(c, ran, time.perf_counter() - t_climb)
    write_json_atomic(c.out / "summary.json", summary)
    if print_summary:
        print_summary_table(summary)
    return summary


STAGE_DIR = re.compile(r"(\d+)-.+")


def _stage_number(dirname: str) -> int | None:
    m = STAGE_DIR.fullmatch(dirname)
    return int(m.group(1)) if m else None


def _stale_stage_dirs(c: Climb, restart_at: int | None) -> list[Path]:
    """Stage directories in RUN that this recipe's plan does not name; refused unless
    `--restart-from` removes them. Why: stage directories are numbered by the recipe's
    `[models]` order and stage tables, so reordering the models or adding `[rl]` after a climb
    renumbers every later stage; the old `05-pretrain-thinking/` then stayed beside the new
    `04-pretrain-thinking/`, a re-run removed "later stages" by their new names only, and the
    summary's and report's stage times mixed the two layouts. A stage directory is one holding
    a marker or `_started.json` (anything else in RUN is left alone)."""
    if not c.out.is_dir():
        return []
    planned = {s.dirname for s in c.stages}
    stale = sorted(
        (
            d
            for d in c.out.iterdir()
            if d.is_dir()
            and d.name not in planned
            and _stage_number(d.name) is not None
            and ((d / MARKER).exists() or (d / STARTED).exists())
        ),
        key=lambda d: (_stage_number(d.name), d.name),
    )
    if not stale:
        return []
    first = min(_stage_number(d.name) or 0 for d in stale)
    # the first stage of this plan laid out at or after the oldest stale position: everything
    # from there on was numbered differently when it ran
    at = next(
        (i for i, s in enumerate(c.stages) if (_stage_number(s.dirname) or 10**9) >= first),
        len(c.stages) - 1,
    )
    if restart_at is not None and restart_at <= at:
        return stale
    names = ", ".join(d.name for d in stale[:6]) + (" …" if len(stale) > 6 else "")
    raise HillclimbError(
        f"{c.out} holds stage directories this recipe does not plan ({names}): the stage list "
        "changed since they ran (the [models] order and the rl/rl_harness tables number the "
        f"stages); re-run with --restart-from {c.stages[at].key} to remove them and redo that "
        "stage and every later one, or choose a new --out"
    )


def _check_run_dir(out: Path) -> None:
    """Refuse an --out that is a file or a directory of something else (before anything is read
    from it or written to it)."""
    if out.exists():
        if not out.is_dir():
            raise HillclimbError(f"{out} exists and is not a directory")
        if not (out / RUN_FILE).is_file() and any(out.iterdir()):
            raise HillclimbError(
                f"{out} exists, is not empty and is not a climb run directory; choose a new --out"
            )


def _open_run_dir(c: Climb) -> None:
    out = c.out
    meta = out / RUN_FILE
    _check_run_dir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not meta.is_file():
            write_json_atomic(
                meta,
                {
                    "format": "hillclimb-climb-run-v1",
                    "recipe": c.recipe.name,
                    "recipe_path": str(c.recipe.path),
                    "created": now_iso(),
                },
            )
        shutil.copyfile(c.recipe.path, out / ".recipe.toml.tmp")
        os.replace(out / ".recipe.toml.tmp", out / "recipe.toml")
    except OSError as exc:
        raise HillclimbError(
            f"cannot write the run directory {out}: {exc.strerror or exc}"
        ) from exc


# ---- summary ------------------------------------------------------------------------------------
def build_summary(c: Climb, ran: list[str], seconds: float) -> dict[str, Any]:
    models: dict[str, Any] = {}
    ev = c.results.get("eval", {})
    for m in c.recipe.model_names:
        pre = c.results.get(f"pretrain-{m}", {})
        sft = c.results.get(f"sft-{m}", {})
        # Bits/byte keys say what they are measured on (docs/areas/climb.md): `corpus_*` on the
        # pre-training corpus's val split, `sft_examples_*` on held-out SFT examples' assistant
        # tokens (what the SFT trainer validates on — not comparable with corpus bpb).
        models[m] = {
            "preset": c.recipe.models[m]["preset"],
            "pretrain": {
                "steps": pre.get("steps"),
                "tokens": pre.get("tokens"),
                # the pre-training run's own last validation ([pretrain] val_tokens)
                "corpus_val_bpb": pre.get("val_bpb"),
                "final_loss": pre.get("final_loss"),
                "tokens_per_s": pre.get("tokens_per_s"),
                "elapsed_s": pre.get("elapsed_s"),
                # with a copy warm-up: did copying form (train/copy_check.py)? None without
                "copy_check": (pre.get("extra") or {}).get("copy_check"),
                # an adaptive warm-up: where it ended, its probe readings (None: fixed or none)
                "copy_warmup": (pre.get("extra") or {}).get("copy_warmup"),
            },
            "sft": {
                "steps": sft.get("steps"),
                "tokens": sft.get("tokens"),
                "sft_examples_val_bpb": sft.get("val_bpb"),
                # examples the row could not hold (by reason:kind), never silent
                "dropped": (sft.get("extra") or {}).get("sft_dropped"),
                "dropped_by": (sft.get("extra") or {}).get("sft_dropped_by"),
                "final_loss": sft.get("final_loss"),
                "elapsed_s": sft.get("elapsed_s"),
            },
            "rl": _rl_summary(c, f"rl-{m}", _RL_KEYS) if m in c.recipe.rl else None,
            "rl_harness": _rl_summary(c, f"rl-harness-{m}", _RL_HARNESS_KEYS)
            if m in c.recipe.rl_harness
            else None,
            # the checkpoint eval and the registry use: harness RL's when the recipe has it
            "final": str(c.final(rl_final(c.recipe, m) or f"sft-{m}")),
            "final_stage": rl_final(c.recipe, m) or f"sft-{m}",
            "eval": _current_headline(c, m, ev.get(m, {})),
        }
    timings = stage_timings(c.out)
    return {
        "format": "hillclimb-climb-summary-v1",
        "recipe": c.recipe.name,
        "run_dir": str(c.out),
        "stages_run": ran,
        "this_invocation_s": round(seconds, 3),
        "stage_seconds": {t["stage"]: t["seconds"] for t in timings},
        "total_stage_seconds": round(sum(t["seconds"] for t in timings), 3),
        "models": models,
        "registry": c.results.get("registry"),
        "report": str(c.out / "report" / "report.md"),
    }


_RL_KEYS = ("steps", "first", "last", "rollout_tokens_per_s", "sync_share")
_RL_HARNESS_KEYS = ("steps", "first", "last", "elapsed_s", "tasks", "flywheel_tasks")


def _rl_summary(c: Climb, key: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """One RL stage's training numbers, named by the stage and the checkpoint they belong to.
    Why: `rl` held problem RL's numbers (`rl-<m>`) beside an eval of the harness-RL checkpoint
    (`rl-harness-<m>`) with nothing to tell them apart, and harness RL's own numbers were not
    in summary.json at all; now each stage has its own entry that says which it is."""
    res = c.results.get(key) or {}
    return {"stage": key, "checkpoint": str(c.final(key)), **{k: res.get(k) for k in keys}}


def _current_headline(c: Climb, m: str, cached: dict[str, Any]) -> dict[str, Any]:
    """The eval headline rebuilt from `eval/<model>.json` (so a summary written after the keys
    were renamed uses today's names even when the eval stage finished earlier)."""
    try:
        rec = read_json(c.dir("eval") / f"{m}.json")
    except KeyError:  # a recipe without an eval stage
        return cached
    return _eval_headline(rec) if rec else cached


def print_summary_table(summary: dict[str, Any], file: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # printed as text, never as rich markup: a run directory such as `runs/ablation[lr=3e-5]`
    # lost its `[...]` (the printed report path did not exist) and `[/]` raised MarkupError
    con = Console(file=file or sys.stdout, markup=False, highlight=False)

    def f(x: Any, fmt: str = "{:.3f}") -> str:
        return "-" if x is None else fmt.format(x)

    tab = Table(title=Text(f"climb {summary['recipe']} — {summary['run_dir']}"))
    for col in (
        "model",
        "corpus val bpb: pre-trained",
        "corpus val bpb: after SFT",
        "corpus unigram bpb",
        "final model",
    ):
        tab.add_column(col)
    acc = Table(title="greedy accuracy on never-trained problems, by tier")
    for col in ("model", "split", "reasoning", "code", "held-out family"):
        acc.add_column(col)
    short = {"heldout": "new problems", "heldout_phrasing": "new wording"}
    for m, rec in summary["models"].items():
        ev = rec.get("eval") or {}
        tab.add_row(
            m,
            f(ev.get("corpus_val_bpb_pretrained")),
            f(ev.get("corpus_val_bpb_sft")),
            f(ev.get("corpus_unigram_bpb")),
            # the stage key (rl-harness-<m> / rl-<m> / sft-<m>), not just "rl"
            ev.get("checkpoint_stage") or ev.get("final_stage", "sft"),
        )
        by_split = ev.get("by_split") or {"heldout": {"by_kind_tier": ev.get("by_kind_tier") or {}}}
        first = True
        for split, sv in by_split.items():
            rows = [(short.get(split, split), sv.get("by_kind_tier") or {})]
            if sv.get("baseline_by_kind_tier"):  # absent in summaries of older evaluations
                rows.append(("  no-training baseline", sv["baseline_by_kind_tier"]))
            for label, kt in rows:

                def tiers(kind: str, kt: dict = kt) -> str:
                    cells = sorted((kt.get(kind) or {}).items())
                    return " ".join(f"t{t}:{f(v, '{:.0%}')}" for t, v in cells) or "-"

                acc.add_row(
                    m if first else "",
                    label,
                    tiers("reasoning"),
                    tiers("code"),
                    tiers("heldout_family"),
                )
                first = False
    con.print(tab)
    con.print(acc)
    con.print(
        "corpus val bpb: bits/byte on the pre-training corpus's val split (not on SFT data), for "
        "the pre-trained and the SFT model (the SFT trainer's own val bpb, on held-out SFT "
        "examples, is `sft.sft_examples_val_bpb` in summary.json). "
        "Accuracies: the final model (RL when the recipe has it), greedy; new problems = held "
        "out by underlying problem (code: whole functions), new wording = the same problems "
        "in phrasings never trained on; the no-training baseline row is the best of a lookup "
        "table over training items, the most common training answer and chance, per cell. "
        "SFT-vs-RL: the report."
    )
    con.print(
        f"stages run now: {', '.join(summary['stages_run']) or 'none (all complete)'}; "
        f"total stage time {summary['total_stage_seconds']:.1f}s"
    )
    if summary.get("registry"):
        from hillclimb.climb.promotion import render

        con.print(render(summary["registry"]))
    from hillclimb.climb.report import copy_warmup_phrase
    from hillclimb.train.copy_check import copy_warning

    for m, rec in summary["models"].items():  # last, where it is read: the model cannot copy
        pre = rec.get("pretrain") or {}
        w = copy_warning(f"pretrain-{m}", pre.get("copy_check"))
        if w:
            after = copy_warmup_phrase(pre.get("copy_warmup"))
            con.print(f"WARNING: {w}" + (f" {after}" if after else ""))
    con.print(f"report: {summary['report']}")
    html = Path(summary["report"]).with_suffix(".html")
    if html.is_file():
        con.print(f"report (one HTML file): {html}")
