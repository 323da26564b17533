"""The sandbox: the only place model-written code runs, as a foundation package.

Why a package of its own, at the bottom of the layer order next to `io`: code problems' checks
(`problems/verify.py`), evaluation's program runs (`eval/programs.py`) and the agent harness all
run model code, so the sandbox belongs to none of them. It imports nothing from hillclimb but
`errors`, and everything above may import it (tests/test_layers.py enforces the direction).

Modules: `core` (run_sandboxed, limits, result, backends, `batch_records`: the tagged records of
a batch runner), `fs` (mount plan, environment, per-run uid), `init` (stdlib-only PID 1 of the
`unshare` backend, run as a script), `memcg` (a memory cgroup per run, where one can be
made), `inflight` (files held only as fds in flight in the run's unix sockets, for the disk
quota), `execution` (`run_command`: a command with the harness's
fixed environment), `cli` (`hillclimb sandbox`).
Details: docs/areas/sandbox.md. The public names are re-exported here; importing them costs only
standard-library modules.
"""

from hillclimb.sandbox.core import (
    SandboxLimits,
    SandboxResult,
    backend_report,
    batch_records,
    probe_backend,
    run_sandboxed,
    sandbox_backend,
)
from hillclimb.sandbox.execution import base_env, run_command

__all__ = [
    "SandboxLimits",
    "SandboxResult",
    "backend_report",
    "batch_records",
    "base_env",
    "probe_backend",
    "run_command",
    "run_sandboxed",
    "sandbox_backend",
]
