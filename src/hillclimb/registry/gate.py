"""The promotion gate — the hill-climbing rule.

A candidate replaces the incumbent (an alias such as `thinking@prod` moves to it) only if

1. on the **target** suite it is better beyond noise: the paired bootstrap over the items both
   were evaluated on gives a positive mean difference with one-sided p < `alpha`; and
2. on every **gate** suite it is not worse beyond noise: one-sided p(worse) >= `alpha`.

Both are one-sided bootstrap p-values, not probabilities of being better or worse: p(worse) = 1
means "no sign of a regression", not "certainly worse". The printed lines and reasons say
"p(one-sided, better|worse)" for that reason; the JSON keeps `p_better` / `p_worse` (a contract).

Why paired on shared items: the two models saw the same problems, so per-item differences cancel
item difficulty; comparing two accuracies as if independent would call a real 4-point gain on
500 items noise, or a 4-point loss on 40 items real. Why "beyond noise" and not "higher": a
climb that keeps every candidate with a higher number keeps lucky draws, and the incumbent drifts
on noise. Gates guard what the target does not measure (new wordings, another kind of problem):
a candidate that buys target points by forgetting them is refused.

Why an exact sign test beside the bootstrap: the null-centred bootstrap cannot see noise it has
no spread to resample. One shared item that only the candidate passes (or any n where every item
moved the same way) resamples to a zero-width distribution, and the bootstrap called a +100 point
"gain" on one item significant at p = 1/10001. The exact one-sided sign test on the items the two
disagree on (McNemar's exact test for pass/fail) is valid at every n: one item gives p = 0.5,
five items all one way p = 0.031. The gate decides on the larger of the two p-values (`p_exact_*`
keep the sign test's, `stats` the bootstrap's); at hundreds of items they agree.

Every decision — promoted or refused, with its statistics and reasons — is stored in the
registry (`decisions`), and the alias moves in the same transaction as the record. Multiple gates
are each tested at `alpha` (no correction): a gate can only refuse, so this errs towards keeping
the incumbent.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.eval.bootstrap import PairedBootstrap, paired_bootstrap
from hillclimb.registry.db import ANY_TARGET, Evaluation, Registry, check_alias_name
from hillclimb.registry.evalfile import (
    ITEM_SETTINGS,
    LIKE_SETTING_SUITES,
    LIKE_SETTINGS,
    Item,
    item_cap,
)


@dataclass(frozen=True)
class GateConfig:
    target: str
    gates: tuple[str, ...] = ()
    alpha: float = 0.05
    resamples: int = 10_000
    confidence: float = 0.95
    seed: int = 0

    def validate(self) -> None:
        if not self.target:
            raise HillclimbError("a target suite is needed (--target SUITE)")
        if not 0 < self.alpha < 0.5:
            raise HillclimbError(f"alpha must be in (0, 0.5), got {self.alpha}")


@dataclass
class Comparison:
    """Incumbent (a) vs candidate (b) on the items of one suite both were evaluated on."""

    suite: str
    a: str
    b: str
    n_a: int
    n_b: int
    stats: PairedBootstrap
    warnings: list[str] = field(default_factory=list)
    # the evaluations compared (registry ids): a stored decision names its evidence, so a
    # later re-import of either (a re-run eval stage) is seen as new evidence
    eval_a: int | None = None
    eval_b: int | None = None
    # exact one-sided sign-test p-values over the discordant items (see the module doc)
    p_exact_better: float = 1.0
    p_exact_worse: float = 1.0
    # `LIKE_SETTINGS` the two evaluations differ in ("token_healing True vs False"): the numbers
    # measure different things and the gate refuses; and those it could not check (unrecorded)
    not_comparable: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        """What could not be checked, as report lines (not warnings: nothing is known wrong)."""
        if not self.unchecked:
            return []
        return [
            f"{self.suite}: could not check that both used the same {', '.join(self.unchecked)}"
        ]

    @property
    def p_better(self) -> float:
        """The p-value the gate decides "better" on: the larger of bootstrap and sign test."""
        return max(self.stats.p_better, self.p_exact_better)

    @property
    def p_worse(self) -> float:
        """The p-value the gate decides "worse" on: the larger of bootstrap and sign test."""
        return max(self.stats.p_worse, self.p_exact_worse)

    def to_dict(self) -> dict[str, Any]:
        # p_better / p_worse: what the gate decided on (`stats` keeps the bootstrap's own)
        return {
            **asdict(self),
            "stats": self.stats.to_dict(),
            "p_better": self.p_better,
            "p_worse": self.p_worse,
        }

    def line(self) -> str:
        s = self.stats
        pct = int(round(s.confidence * 100))
        return (
            f"{s.mean_a:.1%} -> {s.mean_b:.1%} ({s.delta * 100:+.1f} pts, {pct}% CI "
            f"[{s.ci_low * 100:+.1f}, {s.ci_high * 100:+.1f}]), "
            f"p(one-sided, better)={self.p_better:.3g}, p(one-sided, worse)={self.p_worse:.3g} "
            f"(larger of bootstrap and exact sign test), dz={s.effect_size:+.2f}, "
            f"n={s.n} shared items "
            f"({s.b_only} only the candidate passes, {s.a_only} only the incumbent)"
        )


def compare(
    reg: Registry,
    a: str,
    b: str,
    suite: str,
    *,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Paired bootstrap of checkpoint `b` minus checkpoint `a` (ids) on `suite`'s shared items."""
    eb, ib = reg.items(b, suite)
    ea, ia = reg.items(a, suite, like=eb.settings)  # like for like when `a` has it
    # ids of a seeded suite are positions in the items its seed drew (`ifeval-000`): under two
    # seeds the "shared" ids are different prompts, so nothing is paired (evalfile.ITEM_SETTINGS)
    other = {k: (ea.settings.get(k), eb.settings.get(k)) for k in ITEM_SETTINGS
             if ea.settings.get(k) != eb.settings.get(k)}  # fmt: skip
    if other:
        raise HillclimbError(
            f"checkpoints {a} and {b} were evaluated on different items of suite {suite!r} "
            f"({', '.join(f'{k} {x!r} vs {y!r}' for k, (x, y) in other.items())}: the same item "
            "id names another prompt); evaluate both with the same seed (an evaluation imported "
            "before the seed was kept shows None: import its file again)"
        )
    shared = sorted(set(ia) & set(ib))
    if not shared:
        raise HillclimbError(
            f"checkpoints {a} and {b} share no items on suite {suite!r} ({len(ia)} and "
            f"{len(ib)} items): they were evaluated with different seeds or families"
        )
    warnings = []
    left_a, left_b = len(ia) - len(shared), len(ib) - len(shared)
    if left_a or left_b:
        # paired means on the shared items only: say what was left out, or a candidate
        # evaluated on 10 of the incumbent's 500 items reads like a full comparison
        warnings.append(
            f"{suite}: compared on the {len(shared)} items both were evaluated on; "
            f"{left_a} of {a}'s {len(ia)} and {left_b} of {b}'s {len(ib)} are left out "
            "(another item count, seed or problems version?)"
        )
    diff = {
        k: (ea.settings.get(k), eb.settings.get(k))
        for k in sorted(set(ea.settings) | set(eb.settings))  # stable text across hash seeds
        if ea.settings.get(k) != eb.settings.get(k) and k not in LIKE_SETTINGS
    }
    if diff:
        warnings.append(f"{suite}: evaluated with different generation settings {diff}")
    unlike, unchecked = like_for_like(ea, eb, ia, ib, shared)
    if unlike:
        warnings.append(
            f"{suite}: NOT COMPARABLE: evaluated with different {'; '.join(unlike)} "
            "(evaluate both under the same settings, tokenizer and scoring code)"
        )
    stats = paired_bootstrap(
        [float(ia[k].passed) for k in shared],
        [float(ib[k].passed) for k in shared],
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
    return Comparison(
        suite, a, b, len(ia), len(ib), stats, warnings, ea.id, eb.id,
        p_exact_better=sign_test_p(stats.b_only, stats.a_only),
        p_exact_worse=sign_test_p(stats.a_only, stats.b_only),
        not_comparable=unlike, unchecked=unchecked,
    )  # fmt: skip


def _shown(key: str, value: Any) -> Any:
    """A setting as a report shows it: a hash by its first 12 hex digits (as checkpoint ids)."""
    return value[:12] if key.endswith("sha256") and isinstance(value, str) else value


def like_for_like(
    ea: Evaluation, eb: Evaluation, ia: dict[str, Item], ib: dict[str, Item], shared: list[str]
) -> tuple[list[str], list[str]]:
    """(how `ea` and `eb` differ in `LIKE_SETTINGS`, which of them could not be checked).

    Why: token healing, the problems suite's budget rule, an item's `max_tokens` and the
    tokenizer each change a suite's numbers, and two evaluations that differed in them were
    compared as like for like. A setting one evaluation does not record (imported from an
    older result) cannot be checked: it is named, not guessed."""
    unlike: list[str] = []
    unchecked: list[str] = []
    if ea.id == eb.id:  # one evaluation (a checkpoint against itself) is like itself
        return unlike, unchecked
    for k in LIKE_SETTINGS:
        has_a, has_b = k in ea.settings, k in eb.settings
        if not (has_a and has_b):
            where = LIKE_SETTING_SUITES[k]
            if has_a or has_b or where is None or ea.suite in where:
                lacks = eb if has_a else ea
                who = (
                    "either"
                    if not (has_a or has_b)
                    else f"{lacks.checkpoint_id}'s eval #{lacks.id}"
                )
                unchecked.append(f"{k} (not recorded by {who}: an older result?)")
            continue
        va, vb = ea.settings[k], eb.settings[k]
        if k == "item_max_tokens":
            bad = [i for i in shared if item_cap(va, ia[i]) != item_cap(vb, ib[i])]
            if bad:
                x, y = item_cap(va, ia[bad[0]]), item_cap(vb, ib[bad[0]])
                unlike.append(
                    f"max_tokens on {len(bad)} of {len(shared)} shared items "
                    f"(e.g. {bad[0]}: {x!r} vs {y!r})"
                )
        elif va != vb and (va is None or vb is None):  # e.g. a server that takes no healing
            unchecked.append(f"{k} (unknown to one of them: {va!r} vs {vb!r})")
        elif va != vb:
            unlike.append(f"{k} ({_shown(k, va)!r} vs {_shown(k, vb)!r})")
    return unlike, unchecked


def sign_test_p(wins: int, losses: int) -> float:
    """Exact one-sided sign-test p-value: P(X >= wins) for X ~ Binomial(wins + losses, 1/2).

    Ties (items both pass or both fail) carry no evidence and are left out; with no
    discordant item at all there is no evidence either way (p = 1)."""
    n = wins + losses
    if n == 0 or wins == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(wins, n + 1))
    return min(1.0, tail / 2**n)


@dataclass
class Check:
    role: str  # "target" | "gate"
    ok: bool
    reason: str
    comparison: Comparison

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "ok": self.ok,
            "reason": self.reason,
            "comparison": self.comparison.to_dict(),
        }


@dataclass
class Decision:
    candidate: str
    incumbent: str
    alias: str | None
    promoted: bool
    reasons: list[str]
    checks: list[Check]
    config: GateConfig
    decision_id: int | None = None
    warnings: list[str] = field(default_factory=list)
    # settings the comparisons could not check (`Comparison.notes`: older results)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "incumbent": self.incumbent,
            "alias": self.alias,
            "promoted": self.promoted,
            "reasons": self.reasons,
            "checks": [c.to_dict() for c in self.checks],
            "config": asdict(self.config),
            "decision_id": self.decision_id,
            "warnings": self.warnings,
            "notes": self.notes,
        }

    def render(self) -> str:
        head = "PROMOTED" if self.promoted else "REFUSED"
        where = f" -> {self.alias}" if self.alias and self.promoted else ""
        lines = [f"{head}: candidate {self.candidate} over incumbent {self.incumbent}{where}"]
        for c in self.checks:
            mark = "ok " if c.ok else "NO "
            lines.append(f"  [{mark}] {c.role} {c.comparison.suite}: {c.comparison.line()}")
            lines.append(f"        {c.reason}")
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append("  decision: " + "; ".join(self.reasons))
        return "\n".join(lines)


def decide(reg: Registry, candidate: str, incumbent: str, cfg: GateConfig) -> Decision:
    """Run the gate (no writes): target improves beyond noise, no gate regresses beyond it."""
    cfg.validate()
    if candidate == incumbent:
        raise HillclimbError(f"candidate and incumbent are the same checkpoint ({candidate})")
    kw = dict(resamples=cfg.resamples, confidence=cfg.confidence, seed=cfg.seed)
    # Every suite is looked up before any statistics: an unknown suite fails the whole call.
    suites = [cfg.target] + [g for g in dict.fromkeys(cfg.gates) if g != cfg.target]
    comps = [compare(reg, incumbent, candidate, s, **kw) for s in suites]  # type: ignore[arg-type]
    checks: list[Check] = []
    t, tp = comps[0].stats, comps[0].p_better
    if comps[0].not_comparable:
        checks.append(Check("target", False, _unlike_reason(comps[0]), comps[0]))
    elif t.delta > 0 and tp < cfg.alpha:
        checks.append(
            Check(
                "target",
                True,
                f"improves beyond noise (p(one-sided, better)={tp:.3g} < {cfg.alpha})",
                comps[0],
            )
        )
    elif t.delta > 0:
        checks.append(
            Check(
                "target",
                False,
                f"higher but within noise (p(one-sided, better)={tp:.3g} >= {cfg.alpha})",
                comps[0],
            )
        )
    else:
        checks.append(Check("target", False, "does not improve", comps[0]))
    for comp in comps[1:]:
        s, pw = comp.stats, comp.p_worse
        if comp.not_comparable:
            checks.append(Check("gate", False, _unlike_reason(comp), comp))
        elif s.delta < 0 and pw < cfg.alpha:
            checks.append(
                Check(
                    "gate",
                    False,
                    f"regresses beyond noise (p(one-sided, worse)={pw:.3g} < {cfg.alpha})",
                    comp,
                )
            )
        else:
            checks.append(
                Check(
                    "gate",
                    True,
                    f"no regression beyond noise (p(one-sided, worse)={pw:.3g})",
                    comp,
                )
            )
    failed = [c for c in checks if not c.ok]
    reasons = (
        [f"{c.role} {c.comparison.suite} {c.reason}" for c in failed]
        if failed
        else [f"target {cfg.target} improves and no gate regresses"]
    )
    return Decision(
        candidate=candidate,
        incumbent=incumbent,
        alias=None,
        promoted=not failed,
        reasons=reasons,
        checks=checks,
        config=cfg,
        warnings=[w for c in comps for w in c.warnings],
        notes=[n for c in comps for n in c.notes()],
    )


def _unlike_reason(comp: Comparison) -> str:
    return f"is not comparable: evaluated with different {'; '.join(comp.not_comparable)}"


def promote(
    reg: Registry,
    candidate_ref: str,
    incumbent_ref: str | None,
    cfg: GateConfig,
    *,
    alias: str | None = None,
    alias_was: str | None | object = ANY_TARGET,
) -> Decision:
    """Resolve the references, run the gate, record the decision and (when promoted) move
    `alias` to the candidate, all or nothing. Without `incumbent_ref` the alias's current
    checkpoint is the incumbent. The alias moves only if it still points where it did when the
    gate started (or at `alias_was`, what the caller read before its own preparations): a
    promotion that raced another one is refused, not written over it."""
    if alias is not None:
        check_alias_name(alias)
        if alias_was is ANY_TARGET:
            found = reg.find_alias(alias)
            alias_was = found.checkpoint_id if found else None
    cand = reg.resolve(candidate_ref)
    if incumbent_ref is None:
        if alias is None or reg.find_alias(alias) is None:
            raise HillclimbError(
                "no incumbent: give --over CKPT (or an --alias that already points somewhere)"
            )
        inc = reg.checkpoint(reg.alias(alias).checkpoint_id)
    else:
        inc = reg.resolve(incumbent_ref)
    if alias is not None:
        prefix = alias.split("@", 1)[0]
        if cand.model and prefix != cand.model:
            raise HillclimbError(
                f"alias {alias} names model {prefix!r} but the candidate is a {cand.model!r} "
                "checkpoint"
            )
        gone = cand.unservable_reason()
        if gone:
            raise HillclimbError(f"cannot promote candidate {cand.id} to {alias}: {gone}")
    dec = decide(reg, cand.id, inc.id, cfg)
    dec.alias = alias
    dec.decision_id = reg.record_decision(
        cand.id, inc.id, alias, dec.promoted, dec.to_dict(), alias_was=alias_was
    )
    return dec


def print_decision(dec: Decision, file: Any = None) -> None:
    print(dec.render(), file=file or sys.stdout)
