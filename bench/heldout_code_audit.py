"""Held-out code audit: is a val/held-out "new function" passed by a training function of another
key? (session 16, docs/LOG.md; docs/areas/problems.md "Code is held out as whole functions")

Generates `--n-train` training items and `--n-eval` val/held-out items per code family x tier
for seeds 0-1 (code_bugfix: training items only, with their buggy versions). Each function is
fingerprinted on a shared pool of inputs per argument signature; within a fingerprint, every
training function of another key is run on each val/held-out item's own tests. Per cell it
counts items passed by another key's training *reference*, else only by another key's *buggy*
training version; it also checks that every code_bugfix item's tests reject its buggy version.
A fingerprint shared is a precondition, so this is a lower bound on what a full cross-run finds.

    python bench/heldout_code_audit.py --n-train 1500 --n-eval 300    # ~2-3 min on 2 cores

Prints a table, then one JSON line.
"""

import argparse
import ast
import collections
import copy
import json
import signal
import time

import hillclimb.problems as P
from hillclimb.problems.codetasks import compile_function

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--n-train", type=int, default=1500)
ap.add_argument("--n-eval", type=int, default=300)
args = ap.parse_args()
N_TRAIN, N_EVAL = args.n_train, args.n_eval
SEEDS = range(2)


def tdesc(v):
    if isinstance(v, (list, tuple)):
        return f"{type(v).__name__}[{'|'.join(sorted({tdesc(x) for x in v}))}]"
    return "dict" if isinstance(v, dict) else type(v).__name__


def cases_of(p):
    out = []
    for line in p.tests.splitlines():
        t = ast.parse(line).body[0].test
        out.append(
            (tuple(ast.literal_eval(a) for a in t.left.args), ast.literal_eval(t.comparators[0]))
        )
    return out


def sigof(args):
    return tuple(tdesc(a) for a in args)


class TO(Exception):
    pass


def _alarm(*a):
    raise TO


signal.signal(signal.SIGALRM, _alarm)


def run(fn, args):
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    try:
        r = fn(*copy.deepcopy(args))
        return ("ok", type(r).__name__, repr(r))
    except TO:
        return ("timeout",)
    except Exception as e:
        return ("err", type(e).__name__)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


t0 = time.time()
items = []
for fam in ["code_function", "code_bugfix"]:
    for t in P.TIERS:
        for s in SEEDS:
            for sp, n in (("train", N_TRAIN), ("val", N_EVAL), ("heldout", N_EVAL)):
                if fam == "code_bugfix" and sp != "train":
                    continue
                for p in P.generate(fam, t, n, s, sp):
                    cs = cases_of(p)
                    items.append((sp, fam, t, p.key, p.answer, p.entry_point, "ref", cs, p.id))
                    if fam == "code_bugfix":
                        items.append(
                            (
                                sp,
                                fam,
                                t,
                                p.key,
                                p.meta["buggy"],
                                p.entry_point,
                                "buggy",
                                cs,
                                p.id,
                            )
                        )
print("generated", len(items), round(time.time() - t0, 1), flush=True)
# bugfix: does each item's tests reject its buggy version?
bf_total = bf_ok = 0
for it in items:
    if it[6] == "buggy":
        bf_total += 1
        fn = compile_function(it[4], it[5])
        if not all(run(fn, a) == ("ok", type(x).__name__, repr(x)) for a, x in it[7]):
            bf_ok += 1
print(f"bugfix items whose tests reject the buggy version: {bf_ok}/{bf_total}")
pools = collections.defaultdict(list)
seen = collections.defaultdict(set)
for it in items:
    for a, _ in it[7]:
        sg = sigof(a)
        r = repr(a)
        if r not in seen[sg] and len(pools[sg]) < 60:
            seen[sg].add(r)
            pools[sg].append(a)


def main_sig(cs):
    return collections.Counter(sigof(a) for a, _ in cs).most_common(1)[0][0]


fps = collections.defaultdict(list)
uniq = {}
for it in items:
    k = (it[4], it[5])
    if k not in uniq:
        fn = compile_function(it[4], it[5])
        sg = main_sig(it[7])
        uniq[k] = (sg, tuple(run(fn, a) for a in pools[sg]))
    fps[uniq[k]].append(it)
print("fingerprinted", len(uniq), round(time.time() - t0, 1), flush=True)
res = collections.Counter()
n_eval = collections.Counter()
ex = collections.defaultdict(list)
for its in fps.values():
    trains = [i for i in its if i[0] == "train" and i[6] == "ref"] + [
        i for i in its if i[0] == "train" and i[6] == "buggy"
    ]
    for e in its:
        if e[0] == "train" or e[6] != "ref":
            continue
        cls = None
        for tr in trains:
            if tr[3] == e[3]:
                continue
            fn = compile_function(tr[4], tr[5])
            if all(run(fn, a) == ("ok", type(x).__name__, repr(x)) for a, x in e[7]):
                cls = tr[6]
                break
        if cls:
            res[(e[0], e[2], cls)] += 1
            ex[(e[0], e[2], cls)].append((e[3], tr[3], tr[1], e[4], tr[4]))
for it in items:
    if it[0] != "train" and it[6] == "ref":
        n_eval[(it[0], it[2])] += 1
print("split tier: n | passed by other-key train REF | only by other-key train BUGGY")
for sp in ("heldout", "val"):
    for t in P.TIERS:
        print(sp, t, n_eval[(sp, t)], res[(sp, t, "ref")], res[(sp, t, "buggy")])
out = {
    "bugfix_tests_reject_buggy": [bf_ok, bf_total],
    "seconds": round(time.time() - t0, 1),
    "cells": {
        f"{sp}/{t}": {
            "n": n_eval[(sp, t)],
            "other_key_train_ref": res[(sp, t, "ref")],
            "only_other_key_train_buggy": res[(sp, t, "buggy")],
        }
        for sp in ("heldout", "val")
        for t in P.TIERS
    },
    "examples": {f"{k[0]}/{k[1]}/{k[2]}": [list(x[:3]) for x in v[:5]] for k, v in ex.items()},
}
print(json.dumps(out))
