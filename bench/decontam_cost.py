"""What the decontaminator's session-18 looks cost (docs/LOG.md session 18; docs/areas/data.md
"Decontamination"): the percent-decoded view and the code skeleton look (renamed identifiers).

Builds the default probe index (timing the probe generation, the index build and, within it,
the skeleton table), then judges three corpora with the full `Decontaminator.check` (B) and with
the looks it had before session 18 (A: words, words without line comments, markup as text), in
the same process, alternating A and B over `--reps` passes so both see the same load:
- `stdlib_py`: every stdlib `.py` file the `python_env` source may ingest (code with `def`);
- `c_headers`: every `.h` under /usr/include (code without `def`);
- `prose`: `.md` / `.rst` / `.txt` files of the installed packages and of this repository's docs.
Per corpus: CPU seconds per pass (median and minimum of the reps), the B/A ratio, how many
documents have a `def name(` (a skeleton look unless the words match) or a percent-decoded
view, and the documents B drops that A kept. With `--roots DIR ...`, every `.py` file under
those trees (under 1 MB) is judged once by A and B, untimed: the documents B drops that A kept
(false positives of the new looks on ordinary code).

    python bench/decontam_cost.py [--reps 5] [--roots DIR ...]   # ~4 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

from hillclimb.data import decontam as D
from hillclimb.data.config import DecontaminateConfig
from hillclimb.io import stdlib_heldout

ROOT = Path(__file__).resolve().parents[1]


def before_check(dec: D.Decontaminator, text: str) -> bool:
    """The check as it was before session 18 (True: a match), for the A side."""
    m = dec._look(text)
    if m is None and ("&" in text or "<" in text) and D._HTML_HINT.search(text):
        m = dec._look(D.html_to_text(text))
    return m is not None


def read_all(files: list[Path], limit: int) -> list[tuple[str, str]]:
    """(path, text) of up to `limit` readable UTF-8 files."""
    out: list[tuple[str, str]] = []
    for f in files:
        if len(out) >= limit:
            break
        try:
            out.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return out


def corpora(limit: int) -> dict[str, list[tuple[str, str]]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    py = [
        f
        for f in sorted(stdlib.rglob("*.py"))
        if "site-packages" not in f.parts and not stdlib_heldout(f.relative_to(stdlib).as_posix())
    ]
    site = Path(sysconfig.get_paths()["purelib"])
    prose = [
        f
        for base in (site, ROOT / "docs")
        for f in sorted(base.rglob("*"))
        if f.suffix in (".md", ".rst", ".txt") and f.is_file()
    ]
    return {
        "stdlib_py": read_all(py, limit),
        "c_headers": read_all(sorted(Path("/usr/include").rglob("*.h")), limit),
        "prose": read_all(prose, limit),
    }


def cpu_pass(judge: Callable[[str], object], docs: list[tuple[str, str]]) -> float:
    t = time.process_time()
    for _, text in docs:
        judge(text)
    return time.process_time() - t


def new_drops(dec: D.Decontaminator, root: str) -> dict:
    """Every `.py` file under `root` judged by A and B once: how many, how many A drops, and
    the files only B drops (with the probe and the matching skeleton or words)."""
    n = before = 0
    new: list[dict[str, str]] = []
    for f in sorted(Path(root).rglob("*.py")):
        try:
            if not f.is_file() or f.stat().st_size > 1_000_000:
                continue
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        n += 1
        a = before_check(dec, text)
        before += a
        verdict, m = dec.check(text, "w", None)
        if verdict == "drop" and not a and m is not None:
            new.append({"path": str(f), "probe": m.probe, "match": m.ngram})
    return {"documents": n, "dropped_before": before, "new_drops": new}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="timed passes per side (0: none)")
    ap.add_argument("--limit", type=int, default=3000, help="files per corpus at most")
    ap.add_argument("--roots", nargs="*", default=[], help="trees of .py files: new drops only")
    args = ap.parse_args()
    cfg = DecontaminateConfig()
    t = time.process_time()
    probes, info = D.collect_probes(cfg)
    gen_s = time.process_time() - t
    builds, skels = [], []
    for _ in range(3):
        t = time.process_time()
        index = D.ProbeIndex.build(probes, cfg.ngram, cfg.min_tokens, info)
        builds.append(time.process_time() - t)
        t = time.process_time()
        D._skeleton_table(probes, index.skeleton_ngram)
        skels.append(time.process_time() - t)
    out: dict = {
        "index": {
            "probe_generation_cpu_s": round(gen_s, 2),
            "build_cpu_s": round(min(builds), 3),
            "of_which_skeleton_table_cpu_s": round(min(skels), 3),
            # the index build with the skeleton table over the build without it, and the same
            # with the probe generation that precedes every build
            "build_ratio": round(min(builds) / (min(builds) - min(skels)), 3),
            "generation_and_build_ratio": round(
                (gen_s + min(builds)) / (gen_s + min(builds) - min(skels)), 3
            ),
            "skeleton_ngrams": index.stats["skeleton_ngrams"],
            "ngrams": index.stats["ngrams"],
        }
    }
    dec = D.Decontaminator(index, cfg, set())
    sides = {
        "A": lambda text: before_check(dec, text),
        "B": lambda text: dec.check(text, "w", None),
    }
    for name, docs in corpora(args.limit).items() if args.reps > 0 else ():
        a_hits = {p for p, text in docs if before_check(dec, text)}  # also warms the caches
        b_hits = {p for p, text in docs if dec.check(text, "w", None)[0] == "drop"}
        times: dict[str, list[float]] = {"A": [], "B": []}
        for rep in range(args.reps):
            for side in ("A", "B") if rep % 2 == 0 else ("B", "A"):
                times[side].append(cpu_pass(sides[side], docs))
        med = {s: statistics.median(v) for s, v in times.items()}
        out[name] = {
            "documents": len(docs),
            "mb": round(sum(len(t) for _, t in docs) / 1e6, 1),
            "cpu_s_median": {s: round(v, 3) for s, v in med.items()},
            "cpu_s_min": {s: round(min(v), 3) for s, v in times.items()},
            "ratio_B_over_A": round(med["B"] / med["A"], 3),
            "with_def": sum(D.looks_like_code(t) for _, t in docs),  # `def name(`
            "percent_views": sum(bool(D._PERCENT_HINT.search(t)) for _, t in docs),
            "new_drops": sorted(b_hits - a_hits),
            "lost_drops": sorted(a_hits - b_hits),
        }
    for r in args.roots:
        out[f"root:{r}"] = new_drops(dec, r)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
