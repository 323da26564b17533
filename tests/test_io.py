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
