"""What `hillclimb sft --decontaminate` drops from a user's SFT file, and what it costs
(session 18, docs/LOG.md; docs/areas/train.md "Decontaminating your own SFT data").

Builds the default probe index (`--decontaminate default`: problem items of seed 0, 50 per family
x tier, and the standard suites), then judges, as `hillclimb sft` does (`data.decontam_records`),
SFT records of four kinds a user's file could hold:
- `humaneval_solutions`: each HumanEval prompt as the user turn and its canonical solution as the
  assistant turn (a "coding instructions" file scraped from the web) — all should be dropped;
- `humaneval_renamed_entry`: the same with the function renamed (`def f(`) and the docstring
  kept — the docstring alone should still catch it;
- `stdlib_functions`: every top-level function of the ingestable stdlib (outside the FIM suite's
  held-out third) as an "explain this code" chat — ordinary code, which should be kept;
- `generator_train`: our generators' own train-split problems as chat records (what `--problems`
  makes, here passed as outside text): their n-gram overlaps with sibling evaluation items are
  what the data build keeps for its own `generators` source, and why the climb does not judge
  its mixture this way.

    python bench/sft_decontaminate.py        # ~1-2 min on 2 cores; one JSON object
"""

from __future__ import annotations

import argparse
import ast
import json
import sysconfig
import time
from pathlib import Path

from hillclimb.data.decontam_records import decontaminate_records, load_probes
from hillclimb.io import stdlib_heldout


def humaneval_records(rename: bool) -> list[dict]:
    from hillclimb.eval.humaneval import load_problems

    out = []
    for p in load_problems():
        prompt = p["prompt"]
        if rename:
            prompt = prompt.replace(f"def {p['entry_point']}(", "def f(")
        out.append({"messages": [{"role": "user", "content": "Complete this:\n" + prompt},
                                 {"role": "assistant", "content": prompt + p["canonical_solution"]}]})  # fmt: skip
    return out


def stdlib_records(limit: int) -> list[dict]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out: list[dict] = []
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        if "site-packages" in rel or stdlib_heldout(rel):
            continue
        try:
            src = f.read_text(encoding="utf-8")
            tree = ast.parse(src)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                code = ast.get_source_segment(src, node) or ""
                if code.count("\n") >= 3:
                    out.append({"messages": [{"role": "user", "content": "Explain:\n" + code},
                                             {"role": "assistant", "content": "It does what it says."}]})  # fmt: skip
        if len(out) >= limit:
            break
    return out[:limit]


def generator_records(n: int) -> list[dict]:
    from hillclimb.train.sft_data import problem_examples

    return problem_examples({"tiers": [1, 2, 3], "n": n}, seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stdlib", type=int, default=3000, help="stdlib functions to judge")
    ap.add_argument("--generator-n", type=int, default=20, help="per family x tier")
    args = ap.parse_args()
    t0 = time.perf_counter()
    index, where = load_probes("default")
    out: dict = {"probes": where, "index_build_s": round(time.perf_counter() - t0, 1)}
    sets = {
        "humaneval_solutions": humaneval_records(rename=False),
        "humaneval_renamed_entry": humaneval_records(rename=True),
        "stdlib_functions": stdlib_records(args.stdlib),
        "generator_train": generator_records(args.generator_n),
    }
    for name, recs in sets.items():
        t0 = time.perf_counter()
        _, rep = decontaminate_records(recs, index, examples=3)
        dt = time.perf_counter() - t0
        out[name] = {**rep, "records_per_s": round(len(recs) / max(dt, 1e-9))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
