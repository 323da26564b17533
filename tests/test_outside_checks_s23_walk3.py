"""Session 23 walk-through as a first-time non-root user (walk3): what such a user hit.

Each test names the input and the old behaviour; the fixes are in `hillclimb.cli` and
`hillclimb.io`."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hillclimb.cli import _pass_undecodable_names_through
from hillclimb.io import atomic_dir


# ---- a stdout that is not UTF-8 -----------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_non_utf8_stdout_escapes_what_it_cannot_hold(encoding):
    """`PYTHONIOENCODING=latin-1 hillclimb climb ...` died with UnicodeEncodeError printing the
    summary's `—` (and every `→` progress line, `×` in `problems describe`): now escaped."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, errors="strict")
    _pass_undecodable_names_through(stream)
    stream.write("data: running \u2192 runs/x \u2014 5 \u00d7 7\n")
    stream.flush()
    text = raw.getvalue().decode(encoding)
    assert "\\u2192" in text and "\\u2014" in text
    assert "runs/x" in text


def test_utf8_stdout_still_writes_undecodable_names_as_their_bytes():
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
    _pass_undecodable_names_through(stream)
    stream.write("wrote bad\udcff \u2192\n")
    stream.flush()
    assert raw.getvalue() == b"wrote bad" + b"\xff" + " \u2192\n".encode()


def test_cli_under_an_ascii_stdout_finishes_without_a_traceback():
    env = dict(os.environ, PYTHONIOENCODING="ascii")
    r = subprocess.run(
        [sys.executable, "-m", "hillclimb", "problems", "describe"],
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in r.stderr
    assert b"\\xd7" in r.stdout  # the `×` of "Calculate 5 × 7", escaped


# ---- published artifacts readable by other accounts ---------------------------------------------
def test_atomic_dir_publishes_files_a_temp_writer_left_private(tmp_path):
    """safetensors' save_file writes 0600 files; every checkpoint's model.safetensors was
    unreadable to any other account (serve as a service user, a shared model dir) while its
    config.json was 0644."""
    import torch
    from safetensors.torch import save_file

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "ckpt") as d:
            save_file({"w": torch.zeros(2)}, str(d / "model.safetensors"))
            (d / "sub").mkdir()
            secret = d / "sub" / "kept.bin"
            secret.write_bytes(b"x")
            os.chmod(secret, 0o640)  # a deliberate mode is left alone
            script = d / "run.sh"
            script.write_text("#!/bin/sh\n")
            os.chmod(script, 0o700)
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "ckpt" / "model.safetensors").stat().st_mode)
    assert mode == 0o644
    assert stat.S_IMODE((tmp_path / "ckpt" / "sub" / "kept.bin").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "ckpt" / "run.sh").stat().st_mode) == 0o700


def test_atomic_dir_respects_a_private_umask(tmp_path):
    import torch
    from safetensors.torch import save_file

    old = os.umask(0o077)
    try:
        with atomic_dir(tmp_path / "ckpt") as d:
            save_file({"w": torch.zeros(2)}, str(d / "model.safetensors"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ckpt" / "model.safetensors").stat().st_mode) == 0o600


def test_saved_checkpoint_weights_are_readable_by_others(tmp_path):
    """End to end: `hillclimb init` (save_checkpoint) gave a 0600 model.safetensors."""
    old = os.umask(0o022)
    try:
        from hillclimb.cli import main

        assert main(["init", "--preset", "code-flash-micro", "--out", str(tmp_path / "m")]) == 0
    finally:
        os.umask(old)
    for f in (tmp_path / "m").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o044 == 0o044, f.name


# ---- a registry this user may read but not write ------------------------------------------------
def _other_uid() -> int | None:
    """`nobody`'s uid when the tests run as root (CI), else None: a read-only registry needs an
    account that is not its owner, and only root can run a command as another one."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:
        return None


def _shared_registry(tmp_root: str) -> tuple[str, str]:
    """A registry owned by root, world-readable, in a directory only root may write, holding one
    checkpoint: a team's shared registry as a colleague sees it."""
    import tempfile

    from hillclimb.cli import main

    d = tempfile.mkdtemp(dir=tmp_root)
    os.chmod(d, 0o755)
    ckpt = os.path.join(d, "ckpt")
    reg = os.path.join(d, "registry.sqlite")
    old = os.umask(0o022)
    try:
        assert main(["init", "--preset", "code-flash-micro", "--out", ckpt]) == 0
        assert main(["registry", "add", ckpt, "--registry", reg]) == 0
    finally:
        os.umask(old)
    return d, reg


def _as(uid: int, args: list[str], home: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hillclimb", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, HOME=home),
        user=uid,
        group=uid,
        extra_groups=[],
        cwd=home,
        timeout=120,
    )


def test_registry_read_only_for_this_user_is_readable_and_refuses_writes_clearly():
    """`registry list` / `show` on a registry the user may read but not write failed with
    "is not a usable registry database: attempt to write a readonly database" (the open ran
    `journal_mode = WAL` and `CREATE TABLE`); a write now names the real reason."""
    import shutil
    import tempfile

    uid = _other_uid()
    if uid is None:
        pytest.skip("needs root and a `nobody` account to read a registry as another user")
    try:
        ok = subprocess.run([sys.executable, "-c", "0"], user=uid, capture_output=True).returncode
    except OSError:
        ok = 1
    if ok != 0:
        pytest.skip(f"{sys.executable} cannot be run by `nobody` (an interpreter under /root)")
    root = tempfile.mkdtemp(prefix="hc-walk3-")
    os.chmod(root, 0o755)
    try:
        d, reg = _shared_registry(root)
        before = Path(reg).read_bytes()
        r = _as(uid, ["registry", "list", "--registry", reg, "--json"], d)
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
        assert os.path.join(d, "ckpt") in r.stdout
        r = _as(uid, ["registry", "alias", "x@prod", os.path.join(d, "ckpt"), "--registry", reg], d)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert "read-only here" in r.stderr and "not usable" not in r.stderr
        assert Path(reg).read_bytes() == before  # nothing changed
        assert sorted(os.listdir(d)) == ["ckpt", "registry.sqlite"]  # no -wal / -shm left
        r = _as(uid, ["registry", "add", d + "/ckpt", "--registry", d + "/new.sqlite"], d)
        assert r.returncode == 2 and "directory is not writable" in r.stderr, r.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_read_only_connection_reads_a_registry_and_checks_its_schema(tmp_path):
    """The read-only open itself (as root any file is writable, so this is its logic): it reads
    what the writable open reads, refuses another schema, and writes nothing."""
    import sqlite3

    from hillclimb.errors import HillclimbError
    from hillclimb.registry.db import Registry, _connect_read_only

    reg = tmp_path / "registry.sqlite"
    with Registry(reg) as r:
        r.set_alias  # noqa: B018 - the writable open made the schema
    before = reg.read_bytes()
    conn = _connect_read_only(reg)
    assert conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 0
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("INSERT INTO meta(key, value) VALUES ('x', 'y')")
    conn.close()
    assert reg.read_bytes() == before
    other = tmp_path / "other.sqlite"
    c = sqlite3.connect(other)
    c.execute("CREATE TABLE meta(key TEXT, value TEXT)")
    c.execute("INSERT INTO meta VALUES ('schema', '999')")
    c.commit()
    c.close()
    with pytest.raises(HillclimbError, match="schema 999"):
        _connect_read_only(other)


def test_registry_opened_by_a_non_owner_reads_and_refuses_writes(tmp_path, monkeypatch):
    """The same as the test above without a second account: the decision "this user cannot
    write it" (`os.access`, always true for root) is made to say so; the SQLite side is real."""
    from hillclimb.cli import main
    from hillclimb.errors import HillclimbError
    from hillclimb.registry import db

    ckpt, reg = tmp_path / "ckpt", tmp_path / "registry.sqlite"
    assert main(["init", "--preset", "code-flash-micro", "--out", str(ckpt)]) == 0
    assert main(["registry", "add", str(ckpt), "--registry", str(reg)]) == 0
    before = reg.read_bytes()
    monkeypatch.setattr(
        db, "_not_writable_reason", lambda p: "the file is not writable", raising=False
    )
    with db.Registry(reg, create=False) as r:
        assert [c.path for c in r.checkpoints()] == [str(ckpt.resolve())]
    with pytest.raises(HillclimbError, match="read-only here"), db.Registry(reg) as r:
        r.set_alias("x@prod", r.checkpoints()[0].id, "test")
    assert reg.read_bytes() == before


# ---- the name in an error is the one the user gave ----------------------------------------------
def test_unwritable_place_is_reported_with_the_users_name_not_a_temp_name():
    """`tokenizer train --out tok` / `init --out m` in a directory the user cannot write said
    `Permission denied: './.tok.c7_15se0.tmp'`. /proc refuses new entries even to root."""
    from hillclimb.io import write_text_atomic

    for write in (lambda: atomic_dir("/proc/hc-walk3").__enter__(),
                  lambda: write_text_atomic("/proc/hc-walk3.txt", "x")):  # fmt: skip
        with pytest.raises(OSError) as info:
            write()
        text = str(info.value)
        assert "hc-walk3" in text and ".tmp" not in text, text
        assert "(in the directory '/proc')" in text


def test_cli_names_the_out_it_could_not_create(capsys):
    from hillclimb.cli import main

    assert main(["init", "--preset", "code-flash-micro", "--out", "/proc/hc-walk3"]) == 2
    err = capsys.readouterr().err
    assert "'/proc/hc-walk3'" in err and ".tmp" not in err, err


def test_a_legal_long_name_can_be_written(tmp_path):
    """A 250-byte name is legal (255 is the limit) but its temp name `.NAME.XXXXXXXX.tmp` was not:
    the write failed with "File name too long"."""
    from hillclimb.io import write_text_atomic

    for name in ("a" * 250, "é" * 125):  # 250 bytes either way
        write_text_atomic(tmp_path / name, "x")
        assert (tmp_path / name).read_text() == "x"
        with atomic_dir(tmp_path / (name[:-1] + "d")) as d:
            (d / "f").write_text("y")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a 0000 file")
def test_weights_this_user_may_not_read_are_not_called_missing(tmp_path):
    """A checkpoint whose weights this user may not read said "No such file or directory"
    (safetensors' message): the error now names the permission."""
    from hillclimb.errors import HillclimbError
    from hillclimb.model.checkpoint import read_weights

    d = tmp_path / "ck"
    d.mkdir()
    f = d / "model.safetensors"
    f.write_bytes(b"x")
    f.chmod(0)
    with pytest.raises(HillclimbError, match="Permission denied"):
        read_weights(d)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes a read-only directory")
def test_retokenize_of_a_build_this_user_cannot_write_says_so(tmp_path):
    """`data tokenize` on a build the user may not write said "Permission denied:
    '.../.shards.tmp'"; it now names the build and says to tokenize a copy."""
    from hillclimb.data.pipeline import MARKER, retokenize
    from hillclimb.errors import HillclimbError

    d = tmp_path / "corpus"
    d.mkdir()
    (d / MARKER).write_text('{"state": "complete"}')
    d.chmod(0o555)
    try:
        with pytest.raises(HillclimbError, match="not writable by this user"):
            retokenize(d, tmp_path / "no-tokenizer")
    finally:
        d.chmod(0o755)
