"""A router file is refused when it does not belong to this version or this code-flash.

Session 22 (arena/routing outside check): `Router.load` ignored the file's `features` list and
filled missing weights with the hand-set priors, and nothing recorded which code-flash the nll /
entropy features were fitted on, so a stale or foreign file loaded silently."""

from __future__ import annotations

import json

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.serve.engine import Engine
from hillclimb.serve.router import FEATURES, Router


@pytest.fixture(scope="module")
def flash(tmp_path_factory):
    d = tmp_path_factory.mktemp("router-file") / "cf"
    assert main(["init", "--preset", "code-flash-micro", "--out", str(d), "--seed", "0"]) == 0
    return Engine.from_checkpoint(d, device="cpu", max_batch=1)


def _saved(flash, path) -> dict:
    Router(flash, threshold=0.25, weights={"bias": 0.5, "nll": 2.0}).save(path)
    return json.loads(path.read_text())


def test_a_saved_router_records_its_code_flash_and_loads(flash, tmp_path):
    d = _saved(flash, tmp_path / "r.json")
    assert d["features"] == FEATURES and d["flash"]["vocab_size"] == flash.cfg.vocab_size
    r = Router.load(tmp_path / "r.json", flash)
    assert r.threshold == 0.25 and r.weights["nll"] == 2.0


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.update(features=["nll", "old_feature"]), "fitted on features"),
        (lambda d: d["weights"].pop("math"), r"weights \['math'\] are missing"),
        (lambda d: d["flash"].update(tokenizer_sha256="0" * 64), "another code-flash"),
        (lambda d: d["flash"].update(vocab_size=7), "another code-flash"),
    ],
)
def test_a_stale_or_foreign_router_file_is_refused(flash, tmp_path, edit, match):
    p = tmp_path / "r.json"
    d = _saved(flash, p)
    edit(d)
    p.write_text(json.dumps(d))
    with pytest.raises(HillclimbError, match=match):
        Router.load(p, flash)


def test_a_file_from_before_the_fingerprint_still_loads(flash, tmp_path):
    p = tmp_path / "r.json"
    d = _saved(flash, p)
    del d["flash"]
    p.write_text(json.dumps(d))
    assert Router.load(p, flash).weights["bias"] == 0.5
