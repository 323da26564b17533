"""The one way the harness runs commands: through the sandbox, with a predictable environment.

Every command that can execute model-written code (the agent's `run` tool, grading test commands,
terminal-task verifiers, generator validation) goes through `run_command`, which calls
`hillclimb.sandbox.run_sandboxed` (DESIGN.md: the sandbox is the only place model code
runs). The environment is fixed rather than inherited so results do not depend on the caller's
shell: `python` is the harness's own interpreter (its directory is first on PATH), hash seeds are
pinned, bytecode is not written into the workspace, and pytest plugin autoloading is off (faster
start-up, and third-party plugins installed next to the harness cannot change test outcomes).
The hillclimb package itself is hidden from the command (`own_package_paths`): with a regular
install it lies in the site-packages the sandbox binds, and it holds the correct sources and
full tests of every project the task generator mutates.
"""

from __future__ import annotations

import functools
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


@functools.cache
def own_package_paths() -> tuple[str, ...]:
    """Host paths a sandboxed command must not read: this package (the task generator's
    projects are the reference solutions of generated tasks, its tests their hidden tests), and
    for an editable install (the package not directly in a site-packages directory) the source
    checkout holding it. Paths no bind shows are already absent inside; hiding them is a no-op."""
    import site
    import sysconfig

    pkg = Path(__file__).resolve().parent.parent
    out = [str(pkg)]
    sites = {*site.getsitepackages(), site.getusersitepackages()}
    sites |= {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    if not any(s and Path(s).resolve() == pkg.parent for s in sites):
        out.append(str(pkg.parent.parent if pkg.parent.name == "src" else pkg.parent))
    return tuple(out)


def _hide_for(workspace: str | os.PathLike[str]) -> tuple[str, ...]:
    """`own_package_paths` minus any that hold the workspace (the sandbox refuses to hide those),
    and nothing when the unsafe backend would run (it cannot hide)."""
    from hillclimb.sandbox.core import sandbox_backend

    if sandbox_backend() in (None, "unsafe"):
        return ()
    ws = os.path.realpath(workspace) + os.sep
    return tuple(p for p in own_package_paths() if not ws.startswith(p.rstrip(os.sep) + os.sep))


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
    return run_sandboxed(
        cmd, workspace, limits, env=base_env(env), stdin=stdin, unsafe=unsafe,
        hide=_hide_for(workspace),
    )  # fmt: skip
