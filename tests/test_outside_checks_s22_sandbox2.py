"""Outside checks, session 22 (sandbox red team, second pass): model-written code attacking the
sandbox's disk quota, workspace handling and backend selection in ways earlier sessions had not
tried."""

from __future__ import annotations

import contextlib
import os
import sys

import pytest

from hillclimb.sandbox import SandboxLimits, probe_backend, run_sandboxed

BACKENDS = [b for b in ("bwrap", "unshare") if probe_backend(b)[0]]
needs_backend = pytest.mark.skipif(not BACKENDS, reason="no sandbox isolation backend works here")

# Writes 80 MB into files it unlinks at once but keeps open: the directory walk sees none of it.
_HOLD_UNLINKED = r"""
import os, time
held = []
for i in range(4):
    f = open(f"big{i}", "wb")
    os.unlink(f"big{i}")
    f.write(b"x" * (20 << 20))
    f.flush()
    held.append(f)
time.sleep(3)
print("held")
"""


@needs_backend
@pytest.mark.parametrize("backend", BACKENDS)
def test_unlinked_open_files_count_against_the_disk_quota(tmp_path, backend):
    """A file unlinked but held open still fills the host disk; the quota only walked the tree,
    so 80 MB held this way passed a 5 MB quota as "ok" (and 512 fds x 256 MB per process could
    fill any disk). Open files of the run's processes on the workspace's file system count now."""
    (tmp_path / "p.py").write_text(_HOLD_UNLINKED)
    lim = SandboxLimits(timeout_s=20, memory_mb=512, max_workspace_mb=5)
    r = run_sandboxed([sys.executable, "p.py"], tmp_path, lim, backend=backend)
    assert r.status == "disk", (r.status, r.stdout, r.stderr)
    assert "held" not in r.stdout and "disk quota" in r.stderr and r.duration_s < 10


@needs_backend
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_workspace_given_through_a_symlink_is_writable_and_under_quota(tmp_path, backend):
    """A workspace path whose last component is a symlink: the owner hand-over and the quota
    walk never follow symlinks, so as root the run could not write its own workspace (honest code
    failed with EACCES) and the quota saw an empty tree. The real directory is used now."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    lim = SandboxLimits(timeout_s=20, memory_mb=512, max_workspace_mb=5)
    r = run_sandboxed("echo hi > f && cat f", link, lim, backend=backend)
    assert r.status == "ok" and r.stdout == "hi\n", (r.status, r.stderr)
    assert (real / "f").read_text() == "hi\n"
    assert (real / "f").stat().st_uid == os.getuid()  # handed back to the workspace's owner
    r = run_sandboxed("head -c 20000000 /dev/zero > g", link, lim, backend=backend)
    assert r.status == "disk", (r.status, r.stderr)


def _pids_running(marker: str, prefix: bytes = b"") -> list[int]:
    """Processes whose command line holds `marker` (and starts with `prefix`)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    line = f.read()
            except OSError:
                continue
            if marker.encode() in line and line.startswith(prefix):
                out.append(int(name))
    return out


@needs_backend
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_caller_leaves_no_sandboxed_process_behind(tmp_path, backend):
    """The caller SIGKILLed mid-run (the OOM killer, `kill -9` of a trainer): with the unshare
    backend nothing told `unshare` its parent was gone, so it, the init and the command ran on
    forever (a `sleep` outlived its 60 s timeout by as long as it liked). It dies with its caller
    now, as bwrap (--die-with-parent) already did."""
    import signal
    import subprocess
    import time

    marker = f"{time.time_ns() % 10**9 + 10**9}"
    caller = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\nfrom hillclimb.sandbox import SandboxLimits, run_sandboxed\n"
         f"run_sandboxed('sleep {marker}', sys.argv[1], SandboxLimits(timeout_s=60), "
         f"backend={backend!r})", str(tmp_path)],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not _pids_running(marker, b"sleep\0"):  # the command itself has started
            assert time.monotonic() < deadline and caller.poll() is None, "never started"
            time.sleep(0.05)
        caller.kill()
        caller.wait()
        deadline = time.monotonic() + 5
        while _pids_running(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _pids_running(marker) == []
    finally:
        for pid in _pids_running(marker):  # what this test started, by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@needs_backend
@pytest.mark.parametrize("value", ["bwarp", "unsafe"])
def test_a_forced_backend_that_is_no_backend_is_named_and_nothing_runs(
    tmp_path, monkeypatch, value
):
    """HILLCLIMB_SANDBOX_BACKEND with a typo (or "unsafe") failed closed, but said "no sandbox
    isolation backend works on this machine (bwrap: trial run ok ...)": working backends listed
    as the reason none works. It is a ConfigError naming the variable now, and still runs
    nothing (no unsafe fallback)."""
    from hillclimb.errors import ConfigError

    monkeypatch.setenv("HILLCLIMB_SANDBOX_BACKEND", value)
    with pytest.raises(ConfigError, match=f"HILLCLIMB_SANDBOX_BACKEND='{value}' is not"):
        run_sandboxed("touch ran", tmp_path)
    assert not (tmp_path / "ran").exists()


@needs_backend
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "cmd, env",
    [("echo hi", {"A=B": "x"}), ("echo hi", {"": "x"}), ("echo hi", {"A": "x\0y"}),
     (["echo", "a\0b"], None), ("echo a\0b", None)],
)  # fmt: skip
def test_unpassable_commands_and_env_are_a_clear_error(tmp_path, backend, cmd, env):
    """A NUL byte in the command or a variable, or '=' in a variable's name: bwrap's run raised a
    bare ValueError from subprocess, the unshare run reported "refused" (as if the sandbox were
    broken). Both are a ConfigError before anything runs now."""
    from hillclimb.errors import ConfigError

    with pytest.raises(ConfigError, match="NUL byte|environment variable name"):
        run_sandboxed(cmd, tmp_path, env=env, backend=backend)


@needs_backend
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_interpreter_inside_the_workspace_stays_read_only(tmp_path, backend):
    """A workspace holding the caller's own virtualenv (`--in-place --workspace .` in a project
    with .venv/): the interpreter's prefixes were bound read-only only when outside the
    workspace, so sandboxed code planted a .pth in the host venv — code every later, unsandboxed
    start of that interpreter runs. Prefixes inside the workspace are read-only over it now,
    and the interpreter still runs."""
    import subprocess

    import hillclimb

    proj = tmp_path / "proj"
    proj.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(proj / ".venv")], check=True)
    vpy = proj / ".venv" / "bin" / "python"
    src = os.path.dirname(os.path.dirname(hillclimb.__file__))
    script = (
        "import sys\nfrom hillclimb.sandbox import run_sandboxed\n"
        "r = run_sandboxed(sys.argv[2], sys.argv[1], backend=sys.argv[3])\n"
        "print(r.status, r.stdout, r.stderr)\n"
    )
    site = "$VIRTUAL_ENV/lib/python{}.{}/site-packages".format(*sys.version_info[:2])
    attack = f'echo "import os" > {site}/evil.pth; python -c "print(6 * 7)"'
    out = subprocess.run(
        [str(vpy), "-c", script, str(proj), attack, backend],
        env={**os.environ, "PYTHONPATH": src},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "42" in out.stdout, out.stdout  # the workspace's interpreter still works inside
    assert list((proj / ".venv").rglob("evil.pth")) == [], out.stdout
