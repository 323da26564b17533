"""Decontamination against disguised evaluation items (session 16, docs/LOG.md;
docs/areas/data.md "Decontamination").

Builds the default probe index (`problems.contamination_probes`, seed 0, 50 per family x tier),
takes every held-out probe text of >= 13 normalised words, disguises it (CRLF, tabs, NBSP,
full-width digits, Cyrillic look-alikes, zero-width spaces, NFKD, ligatures, soft hyphens, a
comment after every line, HTML-escaped), embeds it in a document and counts how often the filter still finds
it — the index alone, and as `Decontaminator.check` judges a document (with its second look
without line comments).

    python bench/decontam_disguises.py      # ~1 min on 2 cores; one JSON line
"""

from __future__ import annotations

import argparse
import html
import json
import unicodedata
from collections import Counter

import hillclimb.problems as P
from hillclimb.data.config import DecontaminateConfig
from hillclimb.data.decontam import Decontaminator, Probe, ProbeIndex, normalize_tokens

LOOK = str.maketrans({"a": "а", "e": "е", "o": "о", "i": "і", "c": "с", "p": "р"})  # Cyrillic


def disguises(t: str) -> dict[str, str]:
    return {
        "verbatim": t,
        "crlf": t.replace("\n", "\r\n"),
        "tabs": t.replace("    ", "\t"),
        "nbsp": t.replace(" ", "\u00a0"),
        "fullwidth_digits": t.translate({ord(d): chr(0xFF10 + int(d)) for d in "0123456789"}),
        "cyrillic_lookalikes": t.translate(LOOK),
        "zero_width": t.replace(" ", " \u200b"),
        "nfkd": unicodedata.normalize("NFKD", t),
        "ligature_fi": t.replace("fi", "\ufb01"),
        "soft_hyphen": t.replace("o", "o\u00ad"),
        "comment_every_line": "\n".join(line + "  # note" for line in t.splitlines()),
        # as a web page shows code: < > & " ' as entities, newlines as <br> (session 17)
        "html_escaped": html.escape(t).replace("\n", "<br>\n"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-per-tier", type=int, default=50)
    n_per_tier = ap.parse_args().n_per_tier
    recs = P.contamination_probes(seeds=[0], n_per_tier=n_per_tier)
    probes = [Probe(r["id"], "problems:" + r["split"], t) for r in recs for t in r["texts"] if t]
    index = ProbeIndex.build(probes, 13, 8)
    judge = Decontaminator(index, DecontaminateConfig(), set())
    n, by_index, by_filter = Counter(), Counter(), Counter()
    for r in recs:
        if r["split"] != "heldout":
            continue
        for t in r["texts"]:
            if len(normalize_tokens(t)) < 13:
                continue
            for name, text in disguises(t).items():
                doc = "Some preface text here.\n" + text + "\nend"
                n[name] += 1
                by_index[name] += index.match(doc) is not None
                by_filter[name] += judge.check(doc, "web", None)[0] == "drop"
    print(json.dumps({name: {"n": n[name], "index": by_index[name], "filter": by_filter[name]}
                      for name in n}))  # fmt: skip


if __name__ == "__main__":
    main()
