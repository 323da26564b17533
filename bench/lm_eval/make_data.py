"""Write bench/lm_eval/arith.jsonl: 20 held-out arithmetic items from hillclimb's own generators
(`hillclimb.problems.generate("arith", tier, 10, seed=0, split="heldout")`, tiers 1 and 2), each
with four answer choices (the answer and three seeded near misses) for the multiple-choice task
and the bare expression (`meta["expression"]`) that task's prompt opens the think block with.

    python bench/lm_eval/make_data.py        # rewrites arith.jsonl next to this file
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from hillclimb.problems import generate

OUT = Path(__file__).with_name("arith.jsonl")


def choices_for(answer: int, rng: random.Random) -> tuple[list[str], int]:
    near = [d for d in (-10, -2, -1, 1, 2, 10) if answer + d >= 0]
    wrong = rng.sample(near, 3)
    opts = [answer] + [answer + d for d in wrong]
    rng.shuffle(opts)
    return [str(x) for x in opts], opts.index(answer)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT, help=f"where to write ({OUT.name} here)")
    out = ap.parse_args().out
    rng = random.Random(0)
    rows = []
    for tier in (1, 2):
        for p in generate("arith", tier, 10, seed=0, split="heldout"):
            choices, label = choices_for(int(p.answer), rng)
            rows.append(
                {
                    "id": p.id,
                    "tier": tier,
                    "question": p.prompt,
                    "expression": p.meta["expression"],
                    "answer": p.answer,
                    "choices": choices,
                    "label": label,
                }
            )
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} items to {out}")


if __name__ == "__main__":
    main()
