"""The climb's SFT data stage: chat, tool-call and FIM examples as JSONL, one file per model.

Everything here comes from our own code and our licensed corpus, never from a model:

- **chat** — `hillclimb.problems` train-split instances rendered by `to_messages` (the worked
  solution as `reasoning_content`, i.e. inside `<think>`; the answer sentence or code block as
  content). Families, tiers and counts per (family, tier) come from `[sft_data]`; the records
  are `hillclimb.train.sft_data.problem_examples`, the same ones `hillclimb sft --problems` makes.
- **tool** — agent episodes in the harness's own format for `code_bugfix` train-split instances:
  the harness system prompt and task wording, every tool offered (compact schemas for models
  with a context ≤ `harness.tools.COMPACT_CONTEXT`, as `LocalClient` shows them), and a
  workspace with the buggy `solution.py` and `tests/test_solution.py` (the instance's asserts).
  The conversation is *executed* with the real `ToolBox`, so every observation is exactly what
  the harness will show: read → edit (the minimal line diff to our reference) → run the tests →
  submit, with recoveries in a share of episodes — running the failing tests first, or an edit
  whose `old_str` is stale (the tool's error), then reading again and editing correctly.
  Assistant turns carry an empty think block, which is what the harness's generation prompt
  holds for a non-thinking turn, so training and harness see the same tokens.
- **fim** — fill-in-the-middle cuts of corpus code documents (train split only) via
  `hillclimb.train.sft_data.fim_from_corpus` (code-flash, for IDE completion).

Records are the formats `hillclimb sft --data` reads (`{"messages", "tools"}` / `{"fim"}`), each
with a `kind` and `source` for the counts in the stage record. The order is shuffled with the
seed, so SFT batches mix kinds from the first step.
"""

from __future__ import annotations

import difflib
import json
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.io import atomic_path


def _minimal_edit(buggy: str, fixed: str) -> tuple[str, str] | None:
    """(old_str, new_str): the smallest line hunk turning `buggy` into `fixed`, unique in `buggy`."""
    a, b = buggy.splitlines(keepends=True), fixed.splitlines(keepends=True)
    ops = [
        o
        for o in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
        if o[0] != "equal"
    ]
    if not ops:
        return None
    i1, i2 = ops[0][1], ops[-1][2]
    j1, j2 = ops[0][3], ops[-1][4]
    old, new = "".join(a[i1:i2]), "".join(b[j1:j2])
    # Grow the hunk until old_str is non-empty and unique in the file (the edit tool demands it).
    while (not old or buggy.count(old) != 1) and (i1 > 0 or i2 < len(a)):
        i1, j1 = max(0, i1 - 1), max(0, j1 - 1)
        i2, j2 = min(len(a), i2 + 1), min(len(b), j2 + 1)
        old, new = "".join(a[i1:i2]), "".join(b[j1:j2])
    if not old or buggy.count(old) != 1:
        return None
    return old, new


def _tool_schemas(context: int | None) -> list[dict[str, Any]]:
    from hillclimb.harness.tools import COMPACT_CONTEXT, TOOL_SCHEMAS, compact_tools

    compact = context is not None and context <= COMPACT_CONTEXT
    return compact_tools(TOOL_SCHEMAS) if compact else TOOL_SCHEMAS


# Where the buggy module lives: the harness's repositories are not one `solution.py`, so the
# episodes must not teach that name (a model trained on it alone reads `solution.py` forever).
_LAYOUTS = ("solution.py", "{f}.py", "lib/{f}.py", "src/{f}_utils.py", "app/core.py")


def _stale(old_str: str) -> str:
    """An `old_str` the file does not hold (one indentation level halved, or a stray `#`): the
    planned mistake an episode recovers from by reading again."""
    return old_str.replace("    ", "  ", 1) if "    " in old_str else old_str + "#"


def _episode_plan(
    rng: random.Random, edit: tuple[str, str], path: str, named: bool, entry: str
) -> list[tuple[str, dict[str, Any]]]:
    """The calls of one reference episode. When the task does not name the file (`named`
    False) the agent first finds it — `search` for the function's definition or `list_dir` —
    then reads, edits, tests and submits; a share of episodes recover from a mistake: tests run
    before the fix (they fail), an edit with a stale `old_str` (refused), or a read of a file
    that does not exist (the tool says so; the agent lists the repository)."""
    read = ("read_file", {"path": path})
    good = ("edit", {"path": path, "old_str": edit[0], "new_str": edit[1]})
    test = ("run", {"command": "python -m pytest -q"})
    find: list[tuple[str, dict[str, Any]]] = []
    if not named:
        if rng.random() < 0.5:
            find = [("search", {"pattern": f"def {entry}("})]
        else:
            find = [("list_dir", {"path": "."})]
    r = rng.random()
    if r < 0.15:  # run the failing tests first, then fix
        plan = [test, *find, read, good, test]
    elif r < 0.3:  # a stale old_str: the edit tool refuses it; read again, edit correctly
        stale = _stale(edit[0])
        plan = [*find, read, ("edit", {**good[1], "old_str": stale}), read, good, test]
    elif r < 0.45 and path != "solution.py":  # a guessed file that is not there
        plan = [("read_file", {"path": "solution.py"}), ("list_dir", {"path": "."}), read, good,
                test]  # fmt: skip
    else:
        plan = [*find, read, good, test]
    return [*plan, ("submit", {})]


def _steady(observation: str, workspace: Path | None = None) -> str:
    """A `run` observation as the live harness shows it (`harness.tools.steady_observation`:
    wall-clock figures at typical values, the temporary `workspace` path as the harness's fixed
    alias), so the SFT data is a function of the seed alone and matches what eval and RL show.
    The ToolBox already applies it; applying it again is a no-op."""
    from hillclimb.harness.tools import steady_observation

    return steady_observation(observation, workspace)


def _planned_mistake(old_str: str, path: str) -> Callable[[str, dict[str, Any]], bool]:
    """The mistakes a plan makes on purpose (an edit with a stale `old_str`, a read of a file
    that is not there): their tool errors are part of the episode, any other error spoils it."""

    def planned(name: str, args: dict[str, Any]) -> bool:
        if name == "edit":
            return args["old_str"] != old_str
        return name == "read_file" and args["path"] != path

    return planned


def _execute(
    box: Any,
    plan: list[tuple[str, dict[str, Any]]],
    msgs: list[dict[str, Any]],
    call_prefix: str,
    planned: Callable[[str, dict[str, Any]], bool],
    notes: dict[int, str] | None = None,
) -> bool:
    """Run `plan` with the real tools, appending each call and its observation to `msgs` in the
    harness's message shapes (`notes`: assistant text before the call of that plan step); False
    when a call fails that the plan did not mean to fail."""
    for i, (name, args) in enumerate(plan):
        outcome = box.call(name, args)
        if outcome.malformed or (not outcome.ok and not planned(name, args)):
            return False
        cid = f"{call_prefix}_{i}"
        msgs.append(
            {
                "role": "assistant",
                "reasoning_content": "",  # the non-thinking turn's empty think block
                "content": (notes or {}).get(i, ""),
                "tool_calls": [
                    {
                        "id": cid,
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(args)},
                    }
                ],
            }
        )
        if name != "submit":  # the harness ends the episode at submit
            msgs.append(
                {
                    "role": "tool",
                    "tool_call_id": cid,
                    "name": name,
                    "content": _steady(outcome.observation, Path(box.workspace)),
                }
            )
    return True


def tool_records(
    n: int, seed: int, tiers: list[int], context: int | None = None
) -> list[dict[str, Any]]:
    """`n` bug-fix agent episodes executed against the harness's real tools (see the module
    docstring); `context` is the model's context, which decides the tool schema rendering."""
    if n <= 0:
        return []
    from hillclimb import problems as P
    from hillclimb.harness.agent import SYSTEM_PROMPT
    from hillclimb.harness.tools import ToolBox, observation_chars

    tools = _tool_schemas(context)
    rng = random.Random(seed * 7919 + 13)
    per_tier = max(1, -(-n // max(1, len(tiers))))
    probs = []
    for tier in tiers:
        probs += P.generate(
            "code_bugfix", int(tier), per_tier * 2, seed=seed * 1000 + 77, split="train"
        )
    out: list[dict[str, Any]] = []
    for k, p in enumerate(probs):
        if len(out) >= n:
            break
        buggy = p.meta.get("buggy")
        if not buggy:
            continue
        edit = _minimal_edit(buggy, p.answer if p.answer.endswith("\n") else p.answer + "\n")
        if edit is None:
            continue
        head = p.prompt.split("```", 1)[0].strip().replace("This version has a bug:", "").strip()
        fails = p.prompt.rsplit("```", 1)[-1].strip()
        path = rng.choice(_LAYOUTS).format(f=p.entry_point)
        named = rng.random() < 0.5
        where = f"The function is in `{path}` and has a bug." if named else "It has a bug."
        user = (
            f"{head} {where} {fails}\n\n"
            "Edit the files in the repository; call `submit` when you are done."
        )
        folder, module = str(Path(path).parent), Path(path).stem
        tests = (
            "import sys\nfrom pathlib import Path\n\n"
            f"sys.path.insert(0, str(Path(__file__).resolve().parents[1] / {folder!r}))\n"
            f"from {module} import *  # noqa: E402,F403\n\n\ndef test_{p.entry_point}():\n"
        ) + "".join(f"    {line.strip()}\n" for line in p.tests.splitlines() if line.strip())
        with tempfile.TemporaryDirectory(prefix="hc-sft-tool-") as tmp:
            ws = Path(tmp)
            (ws / path).parent.mkdir(parents=True, exist_ok=True)
            (ws / path).write_text(buggy, encoding="utf-8")
            (ws / "tests").mkdir()
            (ws / "tests" / f"test_{module}.py").write_text(tests, encoding="utf-8")
            box = ToolBox(ws, run_timeout_s=20.0, max_observation_chars=observation_chars(context))
            msgs: list[dict[str, Any]] = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user},
            ]
            plan = _episode_plan(rng, edit, path, named, p.entry_point)
            ok = _execute(box, plan, msgs, f"call_{k}", _planned_mistake(edit[0], path))
            if not ok:
                continue
            fixed = (ws / path).read_text(encoding="utf-8")
        if fixed.strip() != p.answer.strip():
            continue  # the executed edit must reproduce our reference exactly
        out.append({"messages": msgs, "tools": tools, "kind": "tool", "source": p.id})
    return out


def _task_plan(
    rng: random.Random, edit: tuple[str, str], path: str, function: str, line: int
) -> list[tuple[str, dict[str, Any]]]:
    """The calls of one reference episode on a generated repository task (the bug report names
    the function and its module): read the module — from the window holding the bug when the
    file is longer than one read — edit the smallest unique hunk, run the tests, submit. A share
    of episodes run the tests first, find the function with `search` first, or recover from an
    edit whose `old_str` is stale."""
    from hillclimb.harness.tools import READ_WINDOW

    args: dict[str, Any] = {"path": path}
    if line > READ_WINDOW:
        args["start_line"] = max(1, line - READ_WINDOW // 2)
    read = ("read_file", args)
    good = ("edit", {"path": path, "old_str": edit[0], "new_str": edit[1]})
    test = ("run", {"command": "python -m pytest -q"})
    r = rng.random()
    if r < 0.15:  # run the tests first (the visible ones pass: the failing ones are hidden)
        plan = [test, read, good, test]
    elif r < 0.3:  # a stale old_str: the edit tool refuses it; read again, edit correctly
        stale = _stale(edit[0])
        plan = [read, ("edit", {**good[1], "old_str": stale}), read, good, test]
    elif r < 0.4:  # find the definition first
        plan = [("search", {"pattern": f"def {function.rsplit('.', 1)[-1]}("}), read, good, test]
    else:
        plan = [read, good, test]
    return [*plan, ("submit", {})]


def _restate(instruction: str, path: str) -> str:
    """The bug report's opening up to the module it names (``Bug report: `f` in `m.py` ``),
    which the agent writes before its first read. Why: a small model copies a run of text once it
    has its first token (the token before it matches, so an induction head continues it), but
    cannot find the first token of a path from a different cue (a JSON `path` field is not the
    report's "in `...`"); restating the report's opening verbatim is all continuation, and the
    path is then a few tokens back (LOG.md, session 12). Empty when the report does not name
    the module."""
    end = instruction.find(f"`{path}`")
    return instruction[: end + len(path) + 2] + "." if end >= 0 else ""


def task_records(n: int, seed: int, context: int | None = None) -> list[dict[str, Any]]:
    """Up to `n` agent episodes on generated repository bug-fix tasks (`harness generate
    --kinds bugfix --split train`: the training projects at their training mutation sites only,
    so `--split heldout_mutations` and `--split heldout` tasks stay unseen). Each episode is
    executed with the real tools on a copy of the task's repository and kept only when it leaves
    the module exactly as the task's reference solution does; the edit is the smallest unique
    line hunk of that solution, i.e. what an agent that read the file would write."""
    if n <= 0:
        return []
    from hillclimb.harness.agent import SYSTEM_PROMPT, task_prompt
    from hillclimb.harness.patching import apply_patch, copy_tree, diff_trees
    from hillclimb.harness.task import find_task_dirs, load_task
    from hillclimb.harness.taskgen.generate import generate_tasks
    from hillclimb.harness.tools import ToolBox, observation_chars

    tools = _tool_schemas(context)
    rng = random.Random(seed * 7919 + 29)
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hc-sft-task-") as tmp:
        root = Path(tmp)
        generate_tasks(root / "tasks", n, seed=seed * 1000 + 501, kinds=["bugfix"], split="train")
        for d in find_task_dirs(root / "tasks"):
            task = load_task(d)
            if task.solution_patch is None:
                continue
            fixed_ws = root / "fixed"
            shutil.rmtree(fixed_ws, ignore_errors=True)
            copy_tree(task.repo, fixed_ws)
            if not apply_patch(fixed_ws, task.solution_patch.read_text(encoding="utf-8")).ok:
                continue
            changed = diff_trees(task.repo, fixed_ws).changed
            if len(changed) != 1:
                continue
            path = changed[0]
            buggy = (task.repo / path).read_text(encoding="utf-8")
            fixed = (fixed_ws / path).read_text(encoding="utf-8")
            edit = _minimal_edit(buggy, fixed)
            if edit is None:
                continue
            line = buggy[: buggy.index(edit[0])].count("\n") + 1
            ws = root / "ws"
            shutil.rmtree(ws, ignore_errors=True)
            copy_tree(task.repo, ws)
            box = ToolBox(
                ws, run_timeout_s=20.0, env=dict(task.env),
                max_observation_chars=observation_chars(context),
            )  # fmt: skip
            msgs: list[dict[str, Any]] = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": task_prompt(task)},
            ]
            function = str((task.meta or {}).get("function") or "")
            plan = _task_plan(rng, edit, path, function, line)
            first_read = next(i for i, (name, _) in enumerate(plan) if name == "read_file")
            notes = {first_read: _restate(task.instruction, path)}
            mistake = _planned_mistake(edit[0], path)
            if not _execute(box, plan, msgs, f"call_{task.id}", mistake, notes):
                continue
            if (ws / path).read_text(encoding="utf-8") != fixed:
                continue  # the executed edit must reproduce the reference solution exactly
            out.append({"messages": msgs, "tools": tools, "kind": "task", "source": task.id})
    return out


def fim_records(
    corpus: Path, n: int, seed: int, max_chars: int, languages: list[str] | None
) -> list[dict]:
    if n <= 0:
        return []
    from hillclimb.train.sft_data import fim_from_corpus

    recs = fim_from_corpus(corpus, n, seed, max_chars=max_chars, languages=languages or None)
    for r in recs:
        r["kind"] = "fim"
        r["source"] = "corpus"
    return recs


def text_records(corpus: Path, n: int, seed: int, max_chars: int) -> list[dict]:
    """`n` windows of up to `max_chars` characters from train-split corpus documents, as plain
    text records (language-model loss on every token): replay that keeps SFT from erasing what
    pre-training learned. Deterministic by seed; windows start at line boundaries."""
    if n <= 0:
        return []
    from hillclimb.data.jsonl import iter_documents

    docs = [d["text"] for d in iter_documents(corpus, split="train") if d.get("text")]
    if not docs:
        raise HillclimbError(f"text_examples: no train-split documents in {corpus}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text = docs[rng.randrange(len(docs))]
        if len(text) > max_chars:
            start = rng.randrange(len(text) - max_chars + 1)
            nl = text.rfind("\n", 0, start)
            start = nl + 1 if nl >= 0 else 0
            text = text[start : start + max_chars]
        out.append({"text": text, "kind": "text", "source": "corpus"})
    return out


def build_sft_file(
    spec: dict[str, Any],
    corpus: Path,
    dest: Path,
    seq_len: int,
    context: int | None = None,
    tokenizer: Path | None = None,
) -> dict[str, Any]:
    """Write the SFT JSONL for one model (`context`: its context length, which decides how
    tool schemas are rendered; `tokenizer`: counts thinking tokens for budget notes); returns
    counts by kind/family/tier."""
    from hillclimb.train.sft_data import problem_examples

    count = None
    if tokenizer is not None and spec.get("budget_fraction"):
        from hillclimb.tokenizer.io import load_tokenizer

        tok = load_tokenizer(tokenizer)

        def count(text: str) -> int:
            return len(tok.encode(text))

    recs = problem_examples(spec, int(spec["seed"]), count) if spec["tiers"] else []
    recs += tool_records(
        int(spec["tool_examples"]), int(spec["seed"]), list(spec["tiers"]), context
    )
    recs += task_records(int(spec.get("task_examples", 0)), int(spec["seed"]), context)
    recs += fim_records(
        corpus,
        int(spec["fim_examples"]),
        int(spec["seed"]),
        seq_len * 3,
        list(spec["fim_languages"]),
    )
    recs += text_records(corpus, int(spec.get("text_examples", 0)), int(spec["seed"]), seq_len * 2)
    flywheel: dict[str, Any] | None = None
    if spec.get("flywheel"):
        from hillclimb.climb.flywheel import flywheel_records

        probes = None
        if (corpus / "probes.npz").is_file():  # absent: the data build ran without decontamination
            from hillclimb.data.decontam import ProbeIndex

            probes = ProbeIndex.load(corpus / "probes.npz")
        fw_recs, flywheel = flywheel_records(list(spec["flywheel"]), probes)
        recs += fw_recs
    if not recs:
        raise HillclimbError(
            "the [sft_data] spec produced no examples (n = 0 and no tool/FIM examples)"
        )
    random.Random(int(spec["seed"])).shuffle(recs)
    counts: dict[str, Any] = {"examples": len(recs), "by_kind": {}, "by_family": {}, "by_tier": {}}
    for r in recs:
        counts["by_kind"][r["kind"]] = counts["by_kind"].get(r["kind"], 0) + 1
        if "family" in r:
            counts["by_family"][r["family"]] = counts["by_family"].get(r["family"], 0) + 1
            t = str(r["tier"])
            counts["by_tier"][t] = counts["by_tier"].get(t, 0) + 1
        if r.get("verbose"):
            counts["verbose"] = counts.get("verbose", 0) + 1
        if r.get("budget"):
            counts["budget_notes"] = counts.get("budget_notes", 0) + 1
    if flywheel is not None:
        counts["flywheel"] = flywheel
    with atomic_path(dest) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return counts
