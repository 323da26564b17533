"""What the standard suites' decontamination probes catch (session 17, docs/LOG.md;
docs/areas/data.md "Decontamination").

Builds an index of the suite probes only (`[data.decontaminate] suites`, no problem probes) and
judges, as the data build does (`Decontaminator.check`):
- every `.py` / `.md` / `.toml` file of this installed package outside `problems/` (what the tiny
  recipe's `{hillclimb}` tree source reads): which evaluation suites live in it;
- every stdlib `.py` file the `python_env` source may ingest (the two thirds outside the FIM
  suite's held-out third): how much ordinary code the probes take away, and through what;
- with `--corpus DIR`, every document of a built corpus (e.g. `runs/tiny/01-data/corpus`);
- with `--roots DIR ...`, every `.py` / `.h` / `.c` file under those trees (ordinary code the
  probes should leave alone: C headers, numpy), with `--with-problems` against the full default
  index (problem probes too, seed 0, 50 per family x tier).

    python bench/decontam_suites.py [--corpus DIR]     # ~10 s on 2 cores; one JSON object
    python bench/decontam_suites.py --with-problems --roots /usr/include \
        .venv/lib/python3.11/site-packages/numpy          # ~40 s
"""

from __future__ import annotations

import argparse
import json
import sysconfig
from collections import Counter
from pathlib import Path

import hillclimb
from hillclimb.data.config import DecontaminateConfig
from hillclimb.data.decontam import Decontaminator, build_index
from hillclimb.io import stdlib_heldout


def judge(dec: Decontaminator, docs: list[tuple[str, str, str]], examples: int) -> dict:
    by_origin: Counter[str] = Counter()
    shown: list[dict[str, str]] = []
    for path, source, text in docs:
        verdict, m = dec.check(text, source, None)
        if verdict == "clean":
            continue
        by_origin[f"{verdict}:{m.origin}"] += 1
        if len(shown) < examples:
            shown.append({"path": path, "probe": m.probe, "match": m.ngram})
    return {"documents": len(docs), "matched": dict(sorted(by_origin.items())), "examples": shown}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=None, help="a `data build` output directory")
    ap.add_argument("--examples", type=int, default=12)
    ap.add_argument("--roots", nargs="*", default=[], help="other code trees to judge")
    ap.add_argument("--with-problems", action="store_true", help="problem probes as well")
    args = ap.parse_args()

    cfg = DecontaminateConfig(problems_n_per_tier=50 if args.with_problems else 0)
    index = build_index(cfg)
    dec = Decontaminator(index, cfg, {"generators"})
    out: dict = {"probes": index.stats}

    pkg = Path(hillclimb.__file__).parent
    docs = [
        (f.relative_to(pkg).as_posix(), "hillclimb", f.read_text(encoding="utf-8"))
        for f in sorted(pkg.rglob("*"))
        if f.suffix in (".py", ".md", ".toml") and "problems" not in f.relative_to(pkg).parts
    ]
    out["package"] = judge(dec, docs, args.examples)

    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        if "site-packages" in rel or stdlib_heldout(rel):
            continue
        try:
            docs.append((rel, "python_env", f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    out["stdlib_ingestable"] = judge(dec, docs, args.examples)

    if args.corpus:
        from hillclimb.data.jsonl import iter_documents

        docs = [
            (d.get("path") or d["id"], d["source"], d["text"])
            for d in iter_documents(Path(args.corpus))
        ]
        out["corpus"] = judge(dec, docs, args.examples)
    if args.roots:
        docs = []
        for r in args.roots:
            for f in sorted(Path(r).rglob("*")):
                if f.suffix in (".py", ".h", ".c") and f.is_file():
                    try:
                        docs.append((str(f), "tree", f.read_text(encoding="utf-8")))
                    except (OSError, UnicodeDecodeError):
                        continue
        out["roots"] = judge(dec, docs, args.examples)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
