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

`--eval-flag` (session 29) instead runs evaluation's own flag (`baselines.flag_passed_by_train_fn`)
at the tiny eval settings (seed 0, 20 items per family x tier 1-4, splits heldout and
heldout_phrasing) against `--n-train` training items per family x tier, and classifies each
flagged item by the training function that passes it: **twin** when the two agree on 2,000
draws of the item's own input sampler (on the item's domain they are one function: only the
split can help), else **weak** (its tests missed an input that separates them; the first such
input and the share of draws that separate are printed).

    python bench/heldout_code_audit.py --eval-flag --n-train 1500    # ~1-4 min on 2 cores
"""

import argparse
import ast
import collections
import copy
import json
import random
import signal
import time

import hillclimb.problems as P
from hillclimb.problems.codetasks import compile_function

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--n-train", type=int, default=1500)
ap.add_argument("--n-eval", type=int, default=300)
ap.add_argument("--eval-flag", action="store_true", help="classify the eval flag (see above)")
args = ap.parse_args()
N_TRAIN, N_EVAL = args.n_train, args.n_eval
SEEDS = range(2)


def eval_flag_classes(n_train: int, draws: int = 2000) -> None:
    """The `--eval-flag` mode (see the module docstring)."""
    from hillclimb.problems import code_bugfix, code_function
    from hillclimb.problems.baselines import code_cases, flag_passed_by_train_fn

    samplers = {}  # (reference source, name) -> its instance's input sampler

    def recording(draw):
        def wrapped(rng, tier, accept=None):
            inst = draw(rng, tier, accept)
            if not isinstance(inst, str):
                samplers[(inst.source, inst.name)] = inst.inputs
            return inst

        return wrapped

    code_function.draw = recording(code_function.draw)
    code_bugfix.draw = recording(code_bugfix.draw)
    t0 = time.time()
    fams, tiers = ("code_function", "code_bugfix"), P.TIERS
    train = [x for f in fams for t in tiers for x in P.generate(f, t, n_train, 0, "train")]
    items = [
        x
        for sp in ("heldout", "heldout_phrasing")
        for f in fams
        for t in tiers
        for x in P.generate(f, t, 20, 0, sp)
    ]
    gen_s = time.time() - t0
    flagged = flag_passed_by_train_fn(items, train)
    by_key = collections.defaultdict(list)
    for t in train:
        by_key[t.key].append(t)

    def result(fn, a):
        try:
            r = fn(*copy.deepcopy(a))
            return ("ok", type(r).__name__, repr(r))
        except Exception:  # noqa: BLE001 - raising is a result too
            return ("err",)

    def passes(t, cases):
        fn = compile_function(t.answer, t.entry_point)
        for c in cases:
            try:
                got = fn(*copy.deepcopy(c.args))
            except Exception:  # noqa: BLE001 - raising fails the test
                return False
            if not c.passed_by(got):
                return False
        return True

    counts, pairs = collections.Counter(), {}
    for p in items:
        key = p.meta.get("passed_by_train_fn")
        if not key:
            continue
        cases = code_cases(p)
        tr = next(t for t in by_key[key] if passes(t, cases))  # the flag names the key only
        pair = (p.answer, tr.answer)
        if pair not in pairs:
            ref = compile_function(p.answer, p.entry_point)
            alt = compile_function(tr.answer, tr.entry_point)
            rng = random.Random(1)
            seps = [
                a
                for a in (samplers[(p.answer, p.entry_point)](rng) for _ in range(draws))
                if result(ref, a)[0] == "ok" and result(ref, a) != result(alt, a)
            ]
            pairs[pair] = ("weak" if seps else "twin", seps[0] if seps else None, len(seps) / draws)
            print(
                p.split,
                p.family,
                p.tier,
                p.key,
                "<-",
                key,
                pairs[pair][0],
                repr(pairs[pair][1])[:60],
                f"separating share {pairs[pair][2]:.3f}",
            )
        counts[(p.split, pairs[pair][0])] += 1
    print(
        json.dumps(
            {
                "n_train_per_cell": n_train,
                "flagged": [flagged, len(items)],
                "by_split_class": {f"{a}/{b}": v for (a, b), v in sorted(counts.items())},
                "distinct_pairs": dict(collections.Counter(v[0] for v in pairs.values())),
                "generate_s": round(gen_s, 1),
            }
        )
    )


if args.eval_flag:
    eval_flag_classes(N_TRAIN)
    raise SystemExit(0)


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
