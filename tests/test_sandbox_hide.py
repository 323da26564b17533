"""`run_sandboxed(hide=...)`: host paths a bind would show are empty/unopenable inside, on every
working backend (the code checker relies on it to keep the installed package out of reach)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import hillclimb
from hillclimb.errors import ConfigError
from hillclimb.sandbox import SandboxLimits, probe_backend, run_sandboxed
from hillclimb.sandbox.fs import hidden_targets

BACKENDS = [b for b in ("bwrap", "unshare") if probe_backend(b)[0]]
needs_backend = pytest.mark.skipif(not BACKENDS, reason="no sandbox isolation backend works here")
LIM = SandboxLimits(timeout_s=20, memory_mb=512, max_procs=64)
# A package directory inside the bound site-packages (as the installed hillclimb would be).
SITE_PKG = Path(pytest.__file__).resolve().parent

PROBE = """
import json, os, sys
out = {}
for p in sys.argv[1:]:
    try:
        out[p] = sorted(os.listdir(p)) if os.path.isdir(p) else open(p).read()
    except OSError as exc:
        out[p] = type(exc).__name__
    try:
        open(os.path.join(p, "new") if os.path.isdir(p) else p, "a").close()
        out[p + " written"] = True
    except OSError:
        pass
print(json.dumps(out))
"""


@pytest.fixture(params=BACKENDS or ["none"])
def backend(request) -> str:
    return request.param


def _probe(ws: Path, paths: list[str], backend: str, hide: list) -> dict:
    cmd = [sys.executable, "-I", "-S", "-c", PROBE, *paths]
    r = run_sandboxed(cmd, ws, LIM, backend=backend, hide=hide)
    assert r.status == "ok", r.stderr
    return json.loads(r.stdout)


@needs_backend
def test_hidden_directories_are_empty_and_files_unopenable(tmp_path, backend):
    ws = tmp_path / "ws"
    (ws / "secret").mkdir(parents=True)
    (ws / "secret" / "key").write_text("k")
    (ws / "answers.txt").write_text("42")
    paths = [str(SITE_PKG), str(ws / "secret"), str(ws / "answers.txt")]
    seen = _probe(ws, paths, backend, [])
    assert "__init__.py" in seen[paths[0]] and seen[paths[1]] == ["key"]
    assert seen[paths[2]] == "42"
    (ws / "secret" / "new").unlink()
    hidden = _probe(ws, paths, backend, [*paths, "/no/such/path", str(tmp_path / "elsewhere")])
    assert hidden == {paths[0]: [], paths[1]: [], paths[2]: "PermissionError"}
    assert (ws / "answers.txt").read_text() == "42" and (ws / "secret" / "key").exists()


@needs_backend
def test_hiding_the_workspace_or_in_unsafe_mode_is_refused(tmp_path, backend):
    ws = tmp_path / "ws"
    ws.mkdir()
    for bad in (ws, tmp_path):
        with pytest.raises(ConfigError, match="workspace is inside it"):
            run_sandboxed(["true"], ws, LIM, backend=backend, hide=[bad])
    with pytest.raises(ConfigError, match="unsafe"):
        run_sandboxed(["true"], ws, LIM, backend="unsafe", unsafe=True, hide=[SITE_PKG])


def test_hidden_targets_follow_the_bind_destination(tmp_path):
    real = tmp_path / "real"
    (real / "pkg").mkdir(parents=True)
    (real / "f.py").write_text("")
    link = tmp_path / "link"
    link.symlink_to(real)
    ws = tmp_path / "ws"
    ws.mkdir()
    binds = [(str(link), "/inside/lib")]
    got = hidden_targets([real / "pkg", link / "f.py", "/nope", tmp_path / "other"], binds, str(ws))
    assert got == [("/inside/lib/pkg", True), ("/inside/lib/f.py", False)]
    assert hidden_targets([link], binds, str(ws)) == [("/inside/lib", True)]


@needs_backend
def test_the_code_checker_hides_the_hillclimb_package(tmp_path, backend):
    """Whatever the install (editable: source tree not bound; regular: covered by a tmpfs), the
    package's files cannot be read from inside the check sandbox."""
    from hillclimb.problems.verify import _hidden_paths

    pkg = Path(hillclimb.__file__).resolve().parent
    assert str(pkg) in _hidden_paths()
    target = str(pkg / "problems" / "codetasks.py")
    ws = tmp_path / "ws"
    ws.mkdir()
    assert _probe(ws, [target], backend, list(_hidden_paths()))[target] in (
        "FileNotFoundError",
        "PermissionError",
    )
    assert os.path.isfile(target)
