"""The registry: which checkpoints exist, where they came from, how they scored, which one is live.

Why a registry at all: hill-climbing means "keep a candidate only if it beats the incumbent", and
that needs three things a run directory alone does not give — a stable identity for a checkpoint
(its weights' content hash, so a moved or copied directory is still the same model), its lineage
(parent checkpoint, stage, recipe and data-card hashes) and its item-level evaluation results (so
two models are compared on the *same* items with a paired test, not on two noisy accuracies).

Modules: `db` (the SQLite store: runs, checkpoints, evaluations with item results, aliases,
promotion decisions; every write one transaction), `evalfile` (reading what `hillclimb eval` and
the climb's eval stage write), `gate` (the promotion rule: target improves beyond noise, no gate
regresses beyond noise, paired bootstrap from `hillclimb.eval.bootstrap`), `cli` (`hillclimb
registry ...` and `hillclimb promote`). Layer: above `eval` (reads its results), below `climb`
(which registers what it makes). docs/areas/registry.md.
"""
