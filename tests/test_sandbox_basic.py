"""Normal use of the sandbox: exit codes, stdin, env, Python and pytest inside, workspace copies,
ownership restored, the CLI, and the refusal when no isolation backend works."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from hillclimb import sandbox
from hillclimb.cli import main as cli_main
from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.sandbox import SandboxLimits, probe_backend, run_sandboxed, sandbox_backend

BACKENDS = [b for b in ("bwrap", "unshare") if probe_backend(b)[0]]
needs_backend = pytest.mark.skipif(not BACKENDS, reason="no sandbox isolation backend works here")
PY = sys.executable
LIM = SandboxLimits(timeout_s=20, memory_mb=512, max_procs=64)


@pytest.fixture(params=BACKENDS or ["none"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    d = tmp_path / "ws"
    d.mkdir()
    (d / "data.txt").write_text("payload\n")
    return d


@needs_backend
def test_exit_codes_streams_and_shell_strings(ws, backend):
    r = run_sandboxed(["sh", "-c", "echo out; echo err >&2; exit 7"], ws, LIM, backend=backend)
    assert (r.status, r.exit_code, r.stdout, r.stderr) == ("error", 7, "out\n", "err\n")
    assert r.backend == backend and not r.stdout_truncated
    r = run_sandboxed("cat data.txt && pwd", ws, LIM, backend=backend)
    assert r.status == "ok" and r.stdout == f"payload\n{os.path.abspath(ws)}\n"
    r = run_sandboxed(["no-such-command-xyz"], ws, LIM, backend=backend)
    assert r.status == "error" and r.exit_code == 127
    r = run_sandboxed("kill -SEGV $$", ws, LIM, backend=backend)
    assert r.status == "killed" and r.exit_code == -11


@needs_backend
def test_stdin_and_env(ws, backend, monkeypatch):
    r = run_sandboxed(["cat"], ws, LIM, stdin="hello\n", backend=backend)
    assert r.stdout == "hello\n"
    big = os.urandom(3 << 20)  # larger than a pipe buffer, both directions at once
    r = run_sandboxed(["cat"], ws, LIM, stdin=big, backend=backend)
    assert (
        r.status == "ok"
        and r.stdout_truncated
        and len(r.stdout.encode("utf-8", "surrogateescape")) > 0
    )
    monkeypatch.setenv("HC_HOST_SECRET_TOKEN", "leak-me")
    r = run_sandboxed("env", ws, LIM, env={"FOO": "bar"}, backend=backend)
    assert "FOO=bar" in r.stdout and "HC_HOST_SECRET_TOKEN" not in r.stdout
    assert "HOME=/tmp" in r.stdout


@needs_backend
def test_python_and_pytest_run_inside(ws, backend):
    code = "import sys, json; print(json.dumps([sys.version_info[:2], sys.prefix]))"
    r = run_sandboxed([PY, "-c", code], ws, LIM, backend=backend)
    assert r.status == "ok", r.stderr
    assert json.loads(r.stdout) == [list(sys.version_info[:2]), sys.prefix]
    (ws / "test_mod.py").write_text(
        textwrap.dedent(
            """
            def test_pass():
                assert open("data.txt").read() == "payload\\n"

            def test_fail():
                assert 1 == 2
            """
        )
    )
    r = run_sandboxed(
        ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"], ws, LIM, backend=backend
    )
    assert r.status == "error" and r.exit_code == 1, r.stdout + r.stderr
    assert "1 failed, 1 passed" in r.stdout
    r = run_sandboxed([PY, "-m", "pytest", "-q", "-k", "pass"], ws, LIM, backend=backend)
    assert r.status == "ok", r.stdout + r.stderr


@needs_backend
def test_copy_workspace_leaves_the_original_untouched(ws, backend):
    r = run_sandboxed(
        "echo changed > data.txt; touch new.txt; cat data.txt",
        ws,
        LIM,
        copy_workspace=True,
        backend=backend,
    )
    assert r.status == "ok" and r.stdout == "changed\n"
    assert (ws / "data.txt").read_text() == "payload\n" and not (ws / "new.txt").exists()


@needs_backend
def test_in_place_run_keeps_host_ownership(ws, backend):
    before = (ws.stat().st_uid, (ws / "data.txt").stat().st_uid)
    r = run_sandboxed(
        "mkdir -p sub && echo x > sub/made.txt && echo y >> data.txt", ws, LIM, backend=backend
    )
    assert r.status == "ok", r.stderr
    assert (ws / "data.txt").read_text() == "payload\ny\n"
    assert (ws.stat().st_uid, (ws / "data.txt").stat().st_uid) == before
    assert (ws / "sub" / "made.txt").stat().st_uid == before[0]  # created files handed back too


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(HillclimbError, match="not a directory"):
        run_sandboxed(["true"], tmp_path / "missing")
    with pytest.raises(ConfigError, match="timeout_s"):
        run_sandboxed(["true"], tmp_path, SandboxLimits(timeout_s=0))
    with pytest.raises(ConfigError, match="unknown sandbox backend"):
        run_sandboxed(["true"], tmp_path, backend="chroot")
    with pytest.raises(HillclimbError, match="requires unsafe=True"):
        run_sandboxed(["true"], tmp_path, backend="unsafe")


@pytest.fixture
def no_backends(monkeypatch, tmp_path_factory):
    """A machine without bwrap/unshare: only the system basics (sh, prlimit, setpriv) on PATH."""
    bindir = tmp_path_factory.mktemp("hc-bin")
    for tool in ("prlimit", "setpriv", "sh", "true", "echo"):
        for d in ("/usr/bin", "/bin"):
            if os.path.exists(f"{d}/{tool}"):
                (bindir / tool).symlink_to(f"{d}/{tool}")
                break
    monkeypatch.setenv("PATH", str(bindir))
    sandbox.probe_backend.cache_clear()
    yield
    sandbox.probe_backend.cache_clear()


def test_refuses_without_isolation_unless_unsafe(no_backends, tmp_path):
    assert sandbox_backend() is None
    with pytest.raises(HillclimbError, match="no sandbox isolation backend"):
        run_sandboxed(["true"], tmp_path)
    with pytest.warns(RuntimeWarning, match="UNSAFE"):
        r = run_sandboxed("echo unsafe; exit 3", tmp_path, LIM, unsafe=True)
    assert (r.backend, r.status, r.exit_code, r.stdout) == ("unsafe", "error", 3, "unsafe\n")
    assert cli_main(["sandbox", "check"]) == 1


def test_unsafe_backend_still_times_out_and_caps(tmp_path):
    limits = SandboxLimits(timeout_s=1.0, memory_mb=256, max_output_bytes=100)
    with pytest.warns(RuntimeWarning):
        r = run_sandboxed(
            "yes | head -c 5000; sleep 30", tmp_path, limits, unsafe=True, backend="unsafe"
        )
    assert r.status == "timeout" and len(r.stdout) == 100 and r.stdout_truncated


@needs_backend
def test_cli_run_and_check(ws, capsys):
    rc = cli_main(
        [
            "sandbox",
            "run",
            "--workspace",
            str(ws),
            "--timeout",
            "20",
            "--",
            "sh",
            "-c",
            "cat data.txt; echo x > data.txt; exit 4",
        ]
    )
    out = capsys.readouterr()
    assert rc == 4 and out.out == "payload\n" and "status=error" in out.err
    assert (ws / "data.txt").read_text() == "payload\n"  # default: a copy
    rc = cli_main(
        [
            "sandbox",
            "run",
            "--workspace",
            str(ws),
            "--in-place",
            "--json",
            "--",
            "sh",
            "-c",
            "echo x > data.txt",
        ]
    )
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["status"] == "ok" and (ws / "data.txt").read_text() == "x\n"
    rc = cli_main(
        ["sandbox", "run", "--workspace", str(ws), "--timeout", "0.5", "--", "sleep", "5"]
    )
    assert rc == 124 and "status=timeout" in capsys.readouterr().err
    assert cli_main(["sandbox", "check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] in BACKENDS and set(report["backends"]) == {"bwrap", "unshare"}
    assert cli_main(["sandbox", "run", "--workspace", str(ws)]) == 2  # no command


@needs_backend
def test_concurrent_runs_do_not_interfere(tmp_path, backend):
    from concurrent.futures import ThreadPoolExecutor

    dirs = []
    for i in range(6):
        d = tmp_path / f"w{i}"
        d.mkdir()
        (d / "n.txt").write_text(str(i))
        dirs.append(d)

    def one(d):
        return run_sandboxed("cat n.txt; echo $(cat n.txt) > out.txt", d, LIM, backend=backend)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, dirs))
    assert [r.stdout for r in results] == [f"{i}" for i in range(6)]
    assert all(r.status == "ok" for r in results)
    assert [(d / "out.txt").read_text() for d in dirs] == [f"{i}\n" for i in range(6)]


def test_check_says_why_none_is_selected_when_the_variable_names_no_backend(monkeypatch, capsys):
    """`HILLCLIMB_SANDBOX_BACKEND=bogus`: `sandbox check` listed both backends as working, then
    "selected: none" with no reason (session 23); it now names the variable."""
    monkeypatch.setenv("HILLCLIMB_SANDBOX_BACKEND", "bogus")
    assert cli_main(["sandbox", "check"]) == 1
    assert "HILLCLIMB_SANDBOX_BACKEND='bogus' is not a sandbox backend" in capsys.readouterr().out
    assert cli_main(["sandbox", "check", "--json"]) == 1
    assert "HILLCLIMB_SANDBOX_BACKEND" in json.loads(capsys.readouterr().out)["why_none"]
