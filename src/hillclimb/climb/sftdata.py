"""The climb's SFT data stage: chat, tool-call and FIM examples as JSONL, one file per model.

Everything here comes from our own code and our licensed corpus, never from a model:

- **chat** — `hillclimb.problems` train-split instances rendered by `to_messages` (the worked
  solution as `reasoning_content`, i.e. inside `<think>`; the answer sentence or code block as
  content). Families, tiers and counts per (family, tier) come from `[sft_data]`.
- **tool** — harness-style agent conversations for `code_bugfix` instances: the buggy function is
  written to `solution.py` in a temporary workspace, and the conversation is *executed* with the
  harness's real `ToolBox` (`read_file`, `edit`, `submit`), so every tool observation in the data
  is exactly what the harness will show the model at run time. The edit is the minimal line diff
  between the buggy code and our reference solution.
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
import tempfile
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.io import atomic_path

TOOL_SUBSET = ("read_file", "edit", "submit")


def problem_records(spec: dict[str, Any]) -> list[dict[str, Any]]:
    from hillclimb import problems as P

    families = spec["families"] or list(P.TRAIN_FAMILIES)
    tiers = list(spec["tiers"])
    ns = spec["n"] if isinstance(spec["n"], list) else [spec["n"]] * len(tiers)
    out = []
    for fi, fam in enumerate(families):
        for tier, n in zip(tiers, ns, strict=True):
            if int(n) <= 0:
                continue
            for p in P.generate(
                fam, int(tier), int(n), seed=int(spec["seed"]) * 1000 + fi, split="train"
            ):
                out.append({"messages": P.to_messages(p), "kind": "chat", "source": p.id,
                            "family": fam, "tier": int(tier)})  # fmt: skip
    return out


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


def _tool_schemas() -> list[dict[str, Any]]:
    from hillclimb.harness.tools import TOOL_SCHEMAS

    return [t for t in TOOL_SCHEMAS if t["function"]["name"] in TOOL_SUBSET]


def tool_records(n: int, seed: int, tiers: list[int]) -> list[dict[str, Any]]:
    """`n` bug-fix agent conversations executed against the harness's real tools."""
    if n <= 0:
        return []
    from hillclimb import problems as P
    from hillclimb.harness.tools import ToolBox

    tools = _tool_schemas()
    per_tier = max(1, -(-n // max(1, len(tiers))))
    probs = []
    for tier in tiers:
        probs += P.generate(
            "code_bugfix", int(tier), per_tier, seed=seed * 1000 + 77, split="train"
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
        head = p.prompt.split("```", 1)[0].strip()
        user = f"{head}\nThe function is in `solution.py`. Fix the file, then submit."
        with tempfile.TemporaryDirectory(prefix="hc-sft-tool-") as ws:
            (Path(ws) / "solution.py").write_text(buggy, encoding="utf-8")
            box = ToolBox(Path(ws))
            calls = [
                ("Let me look at solution.py first.", "read_file", {"path": "solution.py"}),
                (
                    p.reasoning,
                    "edit",
                    {"path": "solution.py", "old_str": edit[0], "new_str": edit[1]},
                ),
                ("The fix is in place.", "submit", {}),
            ]
            msgs: list[dict[str, Any]] = [{"role": "user", "content": user}]
            ok = True
            for i, (thought, name, args) in enumerate(calls):
                outcome = box.call(name, args)
                if not outcome.ok:
                    ok = False
                    break
                cid = f"call_{k}_{i}"
                msgs.append(
                    {
                        "role": "assistant",
                        "reasoning_content": thought,
                        "content": "",
                        "tool_calls": [
                            {
                                "id": cid,
                                "type": "function",
                                "function": {"name": name, "arguments": json.dumps(args)},
                            }
                        ],
                    }
                )
                msgs.append(
                    {
                        "role": "tool",
                        "tool_call_id": cid,
                        "name": name,
                        "content": outcome.observation,
                    }
                )
            if not ok:
                continue
            fixed = (Path(ws) / "solution.py").read_text(encoding="utf-8")
        if fixed.strip() != p.answer.strip():
            continue  # the executed edit must reproduce our reference exactly
        msgs.append({"role": "assistant", "content": f"Fixed `{p.entry_point}` in solution.py."})
        out.append({"messages": msgs, "tools": tools, "kind": "tool", "source": p.id})
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


def build_sft_file(spec: dict[str, Any], corpus: Path, dest: Path, seq_len: int) -> dict[str, Any]:
    """Write the SFT JSONL for one model; returns counts by kind/family/tier."""
    recs = problem_records(spec)
    recs += tool_records(int(spec["tool_examples"]), int(spec["seed"]), list(spec["tiers"]))
    recs += fim_records(
        corpus,
        int(spec["fim_examples"]),
        int(spec["seed"]),
        seq_len * 3,
        list(spec["fim_languages"]),
    )
    recs += text_records(corpus, int(spec.get("text_examples", 0)), int(spec["seed"]), seq_len * 2)
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
    with atomic_path(dest) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return counts
