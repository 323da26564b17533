"""Atomic writes publish files and directories with the mode a plain open/mkdir would give."""

from __future__ import annotations

import os
import stat

import pytest

from hillclimb.io import atomic_dir, write_text_atomic


def test_atomic_artifacts_are_not_private(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "report.md", "x")
        with atomic_dir(tmp_path / "ckpt") as d:
            (d / "a").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "ckpt").stat().st_mode) == 0o755
    assert (tmp_path / "report.md").read_text() == "x"


def test_a_failed_write_leaves_the_old_file(tmp_path):
    write_text_atomic(tmp_path / "f", "old")
    with pytest.raises(RuntimeError):
        from hillclimb.io import atomic_path

        with atomic_path(tmp_path / "f") as t:
            t.write_text("half")
            raise RuntimeError("killed")
    assert (tmp_path / "f").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


# ---- one writer per output directory ------------------------------------------------------------
_HOLDER = """
import sys, time
from hillclimb.io import exclusive_dir
with exclusive_dir(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def _hold(path):
    """A second process holding `path` (returns once it holds it)."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE,
                         text=True)  # fmt: skip
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_process_is_refused_until_the_first_dies(tmp_path):
    from hillclimb.errors import HillclimbError
    from hillclimb.io import exclusive_dir

    run = tmp_path / "run"
    p = _hold(run)
    try:
        refused = pytest.raises(HillclimbError, match=rf"--out {run} is in use .*pid {p.pid}:")
        with refused, exclusive_dir(run):
            pass
    finally:
        p.kill()  # kill -9: the kernel drops the lock, nothing stale blocks the next run
        p.wait()
    (tmp_path / "link").symlink_to(run, target_is_directory=True)
    p = _hold(tmp_path / "link")  # the same directory reached through a link: the same lock
    try:
        with pytest.raises(HillclimbError, match="is in use"), exclusive_dir(run):
            pass
    finally:
        p.kill()
        p.wait()
    (tmp_path / "link").unlink()
    with exclusive_dir(run):
        with exclusive_dir(run):  # re-entrant within a process (a climb and its stages)
            pass
        assert (tmp_path / ".run.lock").exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == []  # nothing left beside or inside


def test_commands_refuse_a_directory_another_process_writes(tmp_path, capsys):
    from hillclimb.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("theirs")
    p = _hold(run)
    try:
        for argv in (
            ["climb", "--recipe", "smoke", "--out", str(run), "--no-registry"],
            ["data", "build", "--recipe", "smoke", "--out", str(run)],
        ):
            assert main(argv) != 0
            assert "is in use by another hillclimb process" in capsys.readouterr().err
    finally:
        p.kill()
        p.wait()
    assert [x.name for x in run.iterdir()] == ["keep.txt"]  # nothing of theirs touched
