"""The one way the harness runs commands: through the sandbox, with a predictable environment.

Every command that can execute model-written code (the agent's `run` tool, grading test commands,
terminal-task verifiers, generator validation) goes through `run_command`, which calls
`hillclimb.sandbox.run_sandboxed` (DESIGN.md: the sandbox is the only place model code
runs). The environment is fixed rather than inherited so results do not depend on the caller's
shell: `python` is the harness's own interpreter (its directory is first on PATH), hash seeds are
pinned, bytecode is not written into the workspace, and pytest plugin autoloading is off (faster
start-up, and third-party plugins installed next to the harness cannot change test outcomes).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from hillclimb.sandbox.core import SandboxResult


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Variables added on top of the sandbox's own minimal environment (which already puts this
    interpreter's directory first on PATH and pins PYTHONHASHSEED)."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "NO_COLOR": "1",
        "TERM": "dumb",
    }
    if extra:
        env.update(extra)
    return env


def run_command(
    cmd: str | list[str],
    workspace: str | os.PathLike[str],
    *,
    timeout_s: float = 60.0,
    memory_mb: int = 2048,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    max_output_bytes: int = 1 << 20,
    unsafe: bool = False,
) -> SandboxResult:
    """Run `cmd` (str: through /bin/sh -c) with cwd = `workspace`, inside the sandbox."""
    from hillclimb.sandbox.core import SandboxLimits, run_sandboxed

    limits = SandboxLimits(
        timeout_s=float(timeout_s), memory_mb=int(memory_mb), max_output_bytes=max_output_bytes
    )
    return run_sandboxed(cmd, workspace, limits, env=base_env(env), stdin=stdin, unsafe=unsafe)
