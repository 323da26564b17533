"""Session 24 outside checks: an ML engineer builds a corpus from their own files.

Each test walks one step of `hillclimb data build --source DIR` on a user's tree the way the
README tells it, and checks what the command says when the tree is not what the filters expect:
an empty directory, files none of which are UTF-8, a source lost whole to the license filter
beside sources that kept documents, and a tree with no LICENSE file at all (`--license`).
Decontamination is switched off in these builds (`_fast`): its probes take ~20 s to build and
none of these checks is about it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.data import cli as data_cli
from hillclimb.data.jsonl import iter_documents

MIT = (
    "MIT License\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\n"
    'of this software and associated documentation files (the "Software"), to deal\n'
    "in the Software without restriction.\n"
)

CODE = '''def greet(person_name):
    """Say hello to a person by name, politely and with a trailing newline."""
    message = "Hello, " + person_name + "!"
    print(message)
    return message
'''

CODE2 = '''def add_numbers(first_value, second_value):
    """Add two numbers and return the total for the caller to use later on."""
    total = first_value + second_value
    return total
'''

GPL_HEADER = (
    "# This program is free software: you can redistribute it and/or modify\n"
    "# it under the terms of the GNU General Public License as published by\n"
    "# the Free Software Foundation, either version 3 of the License, or\n"
    "# (at your option) any later version.\n\n"
)


@pytest.fixture
def _fast(monkeypatch):
    """The CLI's own config, with decontamination off (see the module docstring)."""
    orig = data_cli._config_from_args

    def fast(args):
        cfg = orig(args)
        cfg.decontaminate.enabled = False
        return cfg

    monkeypatch.setattr(data_cli, "_config_from_args", fast)


def _tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, body in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, bytes):
            p.write_bytes(body)
        else:
            p.write_text(body, encoding="utf-8")
    return root


def test_an_empty_source_directory_is_refused_before_the_build(tmp_path, capsys, _fast):
    """Was: the build ran, then failed with advice to add a LICENSE file."""
    (tmp_path / "mine").mkdir()
    rc = main(["data", "build", "--source", str(tmp_path / "mine"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "empty" in err and "LICENSE" not in err
    assert not (tmp_path / "o").exists()


def test_a_tree_of_undecodable_files_is_not_blamed_on_licenses(tmp_path, capsys, _fast):
    """Nothing read (every file Latin-1): the error names the skip, not licenses."""
    src = _tree(
        tmp_path / "mine",
        {"LICENSE": MIT, "notes.txt": "caf\xe9 na\xefve r\xe9sum\xe9 ".encode("latin-1") * 20},
    )
    rc = main(["data", "build", "--source", str(src), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "non_utf8 1" in err
    assert "LICENSE" not in err and "license is unknown" not in err


def test_a_source_lost_to_the_license_filter_is_warned_about(tmp_path, capsys, _fast):
    """Two sources, one without license evidence: the build succeeds on the other, and the
    summary now says which source kept nothing and why (was: silent, a 0 row in the card)."""
    ok = _tree(tmp_path / "licensed", {"LICENSE": MIT, "a.py": CODE})
    lost = _tree(tmp_path / "mine", {"b.py": CODE2})
    out = tmp_path / "o"
    rc = main(["data", "build", "--source", str(ok), "--source", str(lost), "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert [d["path"] for d in iter_documents(out)] == ["a.py"]
    warn = [ln for ln in text.splitlines() if "warning:" in ln and "'mine'" in ln]
    assert len(warn) == 1, text
    assert "kept no document" in warn[0] and "license:unknown 1" in warn[0]
    assert not [ln for ln in text.splitlines() if "warning:" in ln and "'licensed'" in ln]


def test_license_flag_labels_own_files_and_a_gpl_header_still_wins(tmp_path, capsys, _fast):
    """`--license MIT` on a tree without a LICENSE file: its files are MIT, except the one
    whose own header says GPL (header beats the assumed license), which is dropped."""
    src = _tree(tmp_path / "mine", {"a.py": CODE, "gpl.py": GPL_HEADER + CODE2})
    out = tmp_path / "o"
    rc = main(["data", "build", "--source", str(src), "--license", "MIT", "--out", str(out)])
    capsys.readouterr()
    assert rc == 0
    docs = {d["path"]: d["license"] for d in iter_documents(out)}
    assert docs == {"a.py": "MIT"}


def test_license_flag_with_a_recipe_is_refused(tmp_path, capsys):
    """A recipe's sources carry their own `license`: the flag would be ignored silently."""
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[[data.sources]]\nkind = "tree"\npath = "{tmp_path}"\n')
    rc = main(["data", "build", "--recipe", str(recipe), "--license", "MIT", "--out", "o"])
    err = capsys.readouterr().err
    assert rc == 2 and "--license applies to --source" in err


def _ingest_rejects(out: Path) -> dict[str, dict]:
    import gzip
    import json

    recs = {}
    for p in sorted((out / "rejects").glob("ingest-*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as fh:
            recs.update({r["path"]: r for r in map(json.loads, fh)})
    return recs


def test_ingest_skips_of_own_files_say_where_and_which_setting(tmp_path, capsys, _fast):
    """A Latin-1 file's reject names the first bad byte and its offset (was: bare
    `non_utf8`); a file over the cap names `max_file_bytes` and the cap (was: bare
    `too_large`), so the user knows what to convert or which setting to raise."""
    src = _tree(
        tmp_path / "mine",
        {
            "LICENSE": MIT,
            "a.py": CODE,
            "latin.txt": b"plain ascii first, then caf\xe9 " * 3,
            "huge.py": "x = [" + ",".join(["1"] * 600_000) + "]\n",
        },
    )
    out = tmp_path / "o"
    rc = main(["data", "build", "--source", str(src), "--out", str(out)])
    capsys.readouterr()
    assert rc == 0
    rej = _ingest_rejects(out)
    assert rej["latin.txt"]["reason"] == "non_utf8"
    assert "0xe9 at offset 27" in rej["latin.txt"]["detail"]
    assert rej["huge.py"]["reason"] == "too_large"
    assert "max_file_bytes = 1,048,576" in rej["huge.py"]["detail"]


def test_an_empty_directory_beside_a_good_source_is_built_and_warned_about(tmp_path, capsys, _fast):
    """Not refused (the other source builds), but named: it yielded no file."""
    ok = _tree(tmp_path / "licensed", {"LICENSE": MIT, "a.py": CODE, "b.py": CODE2})
    (tmp_path / "other").mkdir()
    out = tmp_path / "o"
    rc = main(["data", "build", "--source", str(ok), "--source", str(tmp_path / "other"),
               "--out", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0
    assert "warning: source 'other' kept no document: it yielded no file" in text


def test_the_climb_says_when_a_recipe_source_kept_nothing(tmp_path, capsys, monkeypatch):
    """`hillclimb climb` built the data stage without a word about its sources: a user's tree
    whose files all lacked a license trained the models on the generators alone, silently.
    The stage now prints what `data build` prints and records it in the stage result."""
    import json
    import tomllib

    from hillclimb.climb.runner import FAULT_ENV, run_climb
    from hillclimb.errors import HillclimbError

    src = Path(__file__).resolve().parent.parent / "src" / "hillclimb" / "recipes" / "smoke.toml"
    text = src.read_text()
    mine = _tree(tmp_path / "mine", {"a.py": CODE, "b.py": CODE2})  # no LICENSE anywhere
    extra = f'\n[[data.sources]]\nkind = "tree"\nname = "mine"\npath = "{mine}"\n'
    at = text.index('[[data.sources]]\nkind = "generators"')
    recipe = tmp_path / "my.toml"
    recipe.write_text(text[:at] + extra.lstrip("\n") + "\n" + text[at:])
    tomllib.loads(recipe.read_text())  # still a valid recipe
    monkeypatch.setenv(FAULT_ENV, "fail:tokenizer")  # stop right after the data stage
    with pytest.raises(HillclimbError, match="injected failure"):
        run_climb(recipe, tmp_path / "run", print_summary=False)
    out = capsys.readouterr()
    said = out.out + out.err
    assert "warning: source 'mine' kept no document" in said, said[-2000:]
    stage = json.loads((tmp_path / "run" / "01-data" / "_stage.json").read_text())
    result = stage.get("result", stage)
    assert any("'mine'" in w for w in result["warnings"]), stage
