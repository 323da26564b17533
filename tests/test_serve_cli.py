"""`hillclimb serve` / `keys` CLI: server state goes to a state directory, never the current one."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hillclimb.cli import build_parser, main
from hillclimb.serve import cli as serve_cli


def test_default_state_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert serve_cli.default_state_dir() == tmp_path / "xdg" / "hillclimb"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")  # the spec: absolute paths only
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert serve_cli.default_state_dir() == tmp_path / "home" / ".local" / "state" / "hillclimb"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert serve_cli.default_state_dir() == tmp_path / "home" / ".local" / "state" / "hillclimb"


def test_usage_db_path_explicit_db_wins(tmp_path):
    assert serve_cli.usage_db_path(tmp_path / "x.sqlite", tmp_path / "s") == tmp_path / "x.sqlite"
    assert serve_cli.usage_db_path(None, tmp_path / "s") == tmp_path / "s" / serve_cli.DEFAULT_DB


def _serve_db(monkeypatch, argv: list[str]) -> Path:
    """The `db=` that `hillclimb serve ARGV` hands to load_state (nothing is loaded)."""
    import hillclimb.serve.server as server

    seen: dict = {}

    def fake_load_state(*a, **kw):
        seen.update(kw)
        return object()

    monkeypatch.setattr(server, "load_state", fake_load_state)
    monkeypatch.setattr(server, "serve_forever", lambda *a, **kw: None)
    # --port 0: serve checks that it can listen before loading; 8000 may be busy on this machine
    assert main(["serve", "--thinking", "ck", "--port", "0", *argv]) == 0
    return Path(seen["db"])


def test_serve_puts_the_database_in_the_state_dir(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert _serve_db(monkeypatch, []) == tmp_path / "xdg" / "hillclimb" / serve_cli.DEFAULT_DB
    assert _serve_db(monkeypatch, ["--state-dir", "st"]) == Path("st") / serve_cli.DEFAULT_DB
    explicit = tmp_path / "mine.sqlite"
    assert _serve_db(monkeypatch, ["--state-dir", "st", "--db", str(explicit)]) == explicit
    (tmp_path / "afile").write_text("x")
    assert main(["serve", "--thinking", "ck", "--state-dir", "afile"]) != 0
    assert "--state-dir afile exists and is not a directory" in capsys.readouterr().err


def test_keys_default_to_the_servers_database(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert main(["keys", "create", "--name", "alice", "--credits", "5"]) == 0
    db = tmp_path / "xdg" / "hillclimb" / serve_cli.DEFAULT_DB
    assert db.is_file()
    assert main(["keys", "credit", "--name", "alice", "--add", "1"]) == 0
    assert main(["keys", "usage", "--json"]) == 0
    assert '"alice"' in capsys.readouterr().out
    # nothing was written to the current directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xdg"]
    other = tmp_path / "elsewhere.sqlite"
    assert main(["keys", "create", "--db", str(other), "--name", "bob"]) == 0
    assert other.is_file()


def _options_without_help(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options_without_help(sub, (*prefix, name))
        elif action.option_strings and action.dest != "help" and not action.help:
            yield " ".join(prefix), action.option_strings[0]


@pytest.mark.parametrize("command", ["harness", "telemetry", "sandbox", "keys"])
def test_every_option_has_help(command):
    missing = [
        f"{c} {o}" for c, o in _options_without_help(build_parser()) if c.startswith(command)
    ]
    assert not missing, f"options without help text: {missing}"


def test_sandbox_is_registered_once():
    """`hillclimb sandbox` comes from COMMAND_MODULES only; harness.cli does not mount it."""
    from hillclimb.harness import cli as harness_cli

    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    harness_cli.register(sub)
    assert "sandbox" not in sub.choices and "harness" in sub.choices
    top = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)][0]
    assert list(top.choices).count("sandbox") == 1


def test_both_checkpoints_are_checked_before_either_loads(tmp_path, capsys, monkeypatch):
    """`serve --thinking GOOD --flash MISSING` used to load (and compile) thinking first, then
    fail on the flash path; and a missing --thinking was reported after nothing at all."""
    from hillclimb.serve import host

    def never(*a, **k):
        raise AssertionError("an engine was loaded before the paths were checked")

    monkeypatch.setattr(host, "load_engines", never)
    monkeypatch.setattr(host, "start_engine_process", never)
    (tmp_path / "empty").mkdir()
    for argv, said in (
        (["--thinking", str(tmp_path / "nope")], "--thinking: checkpoint directory not found"),
        (["--flash", str(tmp_path / "empty")], "--flash: "),
    ):
        assert main(["serve", *argv, "--port", "0"]) == 2
        assert said in capsys.readouterr().err


def test_swapped_roles_are_served_with_a_warning(tmp_path, monkeypatch, caplog):
    """`serve --thinking CODE_FLASH_CKPT`: allowed (any model can fill a role), but said."""
    from hillclimb.errors import HillclimbError
    from hillclimb.model.checkpoint import save_checkpoint
    from hillclimb.model.config import PRESETS
    from hillclimb.model.transformer import build_model
    from hillclimb.serve import host
    from hillclimb.serve.state import load_state

    ckpt = tmp_path / "cf"
    save_checkpoint(build_model(PRESETS["code-flash-micro"]), ckpt)

    def stop(*a, **k):
        raise HillclimbError("stop here")

    monkeypatch.setattr(host, "load_engines", stop)
    with caplog.at_level("WARNING", logger="hillclimb.serve"), pytest.raises(HillclimbError):
        load_state(ckpt, None, db=tmp_path / "u.db", engine_process=False)
    assert "holds a code-flash model; serving it as thinking" in caplog.text
