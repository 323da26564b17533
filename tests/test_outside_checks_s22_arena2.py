"""Outside checks (session 22) of the arena (`eval/arena/`) and router training (`eval/routing`).

Each test names the input, the old behaviour and the contract it now keeps. Models are real
random-weight micro checkpoints (tests/_server_util.make_checkpoints); nothing is faked.
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from _server_util import make_checkpoints
from hillclimb.errors import HillclimbError
from hillclimb.eval.arena.ratings import Game, RatingConfig, fit_log_strengths, rate, win_matrix


# ---- ratings ------------------------------------------------------------------------------------
def _reference_log_strengths(models: list[str], games: list[Game], prior: float) -> np.ndarray:
    """An independent maximum-likelihood fit: plain Newton on the pairwise logistic likelihood
    with one model pinned at 0 (not the code under test's parametrisation or solver)."""
    n = len(models)
    off = 1.0 - np.eye(n)
    w = win_matrix(models, games) * off + prior / 2.0 * off
    x = np.zeros(n)
    for _ in range(500):
        d = x[:, None] - x[None, :]
        p = np.exp(-np.logaddexp(0.0, -d))  # P(i beats j)
        q = np.exp(-np.logaddexp(0.0, d))
        g = (w * q - w.T * p).sum(axis=1)  # d loglik / dx_i
        h = (w + w.T) * p * q
        hess = np.diag(h.sum(axis=1)) - h
        step = np.zeros(n)
        step[1:] = np.linalg.solve(hess[1:, 1:], g[1:])
        x = x + np.clip(step, -1.0, 1.0)
    return x - x.mean()


CHAIN = [Game("A", "B", "a")] * 20 + [Game("B", "C", "a")] * 20 + [Game("C", "D", "a")] * 20


@pytest.mark.parametrize("prior", [1.0, 0.01, 1e-6])
@pytest.mark.parametrize(
    "games",
    [CHAIN,
     [Game("A", "B", "a")] * 1000,
     [Game("A", "B", "a")] * 3 + [Game("D", "E", "b")] + [Game("C", "E", "tie")]],
    ids=["chain", "lopsided", "sparse"],
)  # fmt: skip
def test_fit_matches_an_independent_reference_for_any_legal_prior(games, prior):
    """`--prior 0.01` on a chain of one-sided pairs (A beat B 20:0, B beat C, C beat D): Hunter's
    MM crawled (rate → 1) and the point fit was 1e-6 off; at 1e-6 it raised "did not converge
    in 20000 iterations" — no ratings for valid votes. Now within 1e-8 of a reference fit."""
    models = sorted({m for g in games for m in (g.a, g.b)})
    got = fit_log_strengths(win_matrix(models, games), prior)
    np.testing.assert_allclose(got, _reference_log_strengths(models, games, prior), atol=1e-8)


def test_bootstrap_with_a_small_prior_gives_ratings_not_an_error():
    """The same chain with `--prior 0.01`: six of 500 bootstrap refits did not converge, `rate`
    raised, and the results page answered 409 "no ratings" although prior > 0 always has a fit."""
    ratings = rate(list("ABCD"), CHAIN, RatingConfig(prior=0.01, n_bootstrap=500))
    assert [r.model for r in ratings] == list("ABCD")
    for r in ratings:
        assert r.ci_low is not None and r.ci_high is not None
        assert r.ci_low <= r.rating <= r.ci_high


@pytest.mark.parametrize("n", [1, 3, 12])
def test_unanimous_votes_get_no_zero_width_interval(n):
    """One vote, or n of n for the same model: every bootstrap resample holds the same votes, so
    the "95% interval" had zero width (`1169-1169` after three votes): certainty the votes do not
    have. Now no interval is claimed ("-"), as with `--bootstrap 0`; a pair with a split vote
    beside it keeps its real interval."""
    for r in rate(["A", "B"], [Game("A", "B", "a")] * n):
        assert r.ci_low is None and r.ci_high is None and r.interval_text() == "-"
    games = [Game("A", "B", "a")] * 3 + [Game("B", "C", "a")] * 4 + [Game("B", "C", "b")] * 2
    for r in rate(["A", "B", "C"], games):
        assert r.ci_low is not None and r.ci_high is not None and r.ci_low < r.ci_high


# ---- the web app --------------------------------------------------------------------------------
ALICE, BOB = "hc-s22-arena-alice-0001", "hc-s22-arena-bob-00002"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("s22-arena2-ckpts"))


@pytest.fixture
def arena(ckpts, tmp_path):
    from hillclimb.eval.arena.app import Arena, ArenaConfig
    from hillclimb.eval.arena.models import GenerationConfig, open_contenders, parse_models
    from hillclimb.eval.arena.store import ArenaStore
    from hillclimb.serve.billing import UsageDB

    accounts = UsageDB(tmp_path / "usage.sqlite")
    accounts.create_account("alice", None, key=ALICE)
    accounts.create_account("bob", None, key=BOB)
    specs = parse_models(f"m-one={ckpts['thinking']},m-two={ckpts['code-flash']}")
    a = Arena(
        open_contenders(specs, device="cpu"),
        ArenaStore(tmp_path / "arena.sqlite"),
        accounts,
        ["What is 2 + 3?", "Name a colour."],
        ArenaConfig(gen=GenerationConfig(max_tokens=4), rating=RatingConfig(n_bootstrap=20)),
        rng=random.Random(0),
    )
    yield a
    a.store.close()


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, page
    return m.group(1)


def _client_logged_in(arena, key: str):
    from fastapi.testclient import TestClient

    from hillclimb.eval.arena.app import create_app

    client = TestClient(create_app(arena))
    r = client.post("/login", data={"csrf": _csrf(client.get("/login").text), "key": key})
    assert r.status_code == 200 and "New battle" in r.text, r.text
    return client, _csrf(r.text)


def test_a_legal_non_ascii_prompt_is_not_refused_as_too_large(arena):
    """A prompt of 8000 CJK characters is within the documented limit (MAX_PROMPT_CHARS, the
    textarea's maxlength) but, form-encoded (9 bytes each), it is 72 KB: the 64 KiB form cap
    answered 413 "the form is larger than 65536 bytes" — so non-Latin voters got a smaller limit
    than the one they were told. A prompt over the limit still gets the limit's message."""
    from hillclimb.eval.arena.models import MAX_PROMPT_CHARS

    client, csrf = _client_logged_in(arena, ALICE)
    r = client.post(
        "/battle", data={"csrf": csrf, "action": "ask", "prompt": "漢" * MAX_PROMPT_CHARS}
    )
    assert r.status_code == 200 and 'id="vote-left"' in r.text, r.text[:300]
    assert "漢" * 100 in r.text
    r = client.post(
        "/battle", data={"csrf": csrf, "action": "ask", "prompt": "漢" * (MAX_PROMPT_CHARS + 1)}
    )
    assert r.status_code == 400 and f"longer than {MAX_PROMPT_CHARS} characters" in r.text


def test_a_revoked_key_ends_its_arena_sessions(arena):
    """`hillclimb keys revoke alice` while alice is logged in: her session kept starting battles
    and voting for up to 7 days (the account was read only at log-in), where the server refuses
    a revoked key from its next request. Now every request re-reads the account."""
    client, csrf = _client_logged_in(arena, ALICE)
    other_tab, _ = _client_logged_in(arena, ALICE)
    bob, _ = _client_logged_in(arena, BOB)
    r = client.post("/battle", data={"csrf": csrf, "action": "ask", "prompt": "Say hi."})
    assert r.status_code == 200
    bid = str(r.url).rsplit("/", 1)[1]
    arena.accounts.set_revoked("alice", True)
    r = client.post(f"/battle/{bid}/vote", data={"csrf": csrf, "vote": "left"})
    assert r.status_code == 401 and "revoked" in r.text
    assert arena.store.votes() == []
    # the refusal ended that session: its token is gone (403, nothing read or written)
    r = client.post("/battle", data={"csrf": csrf, "action": "ask", "prompt": "Another."})
    assert r.status_code == 403
    # a page view of another of her sessions goes back to the log-in page; bob is untouched
    r = other_tab.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert bob.get("/", follow_redirects=False).status_code == 200
    # restored: a new log-in works and the battle can be voted on
    arena.accounts.set_revoked("alice", False)
    client, csrf = _client_logged_in(arena, ALICE)
    r = client.post(f"/battle/{bid}/vote", data={"csrf": csrf, "vote": "left"})
    assert r.status_code == 200 and 'id="reveal"' in r.text


# ---- prompt sets --------------------------------------------------------------------------------
def test_a_prompt_set_with_a_lone_surrogate_is_refused_at_load(tmp_path, ckpts, capsys):
    """A .jsonl prompt `"\\ud800"` (legal JSON, not encodable text) loaded, the arena started,
    and drawing that prompt raised UnicodeEncodeError in the route: a 500. Now `hillclimb arena`
    refuses the file with its line, before any model loads."""
    from hillclimb.cli import main
    from hillclimb.eval.arena.models import load_prompts
    from hillclimb.serve.billing import UsageDB

    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "fine"}\n{"prompt": "bad \\ud800 half"}\n', encoding="utf-8")
    with pytest.raises(HillclimbError, match=r"p\.jsonl:2: the prompt is not valid Unicode"):
        load_prompts(f)
    UsageDB(tmp_path / "usage.sqlite").create_account("alice", None, key=ALICE)
    argv = ["arena", "--models", f"{ckpts['thinking']},{ckpts['code-flash']}", "--port", "0",
            "--prompts", str(f), "--db", str(tmp_path / "usage.sqlite"),
            "--arena-db", str(tmp_path / "arena.sqlite")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "not valid Unicode" in err and "Traceback" not in err


def test_prompt_sets_with_a_bom_or_unicode_line_separators_load(tmp_path):
    """A UTF-8 file with a byte-order mark: the .jsonl was refused ("Unexpected UTF-8 BOM"), the
    text file's first prompt began with an invisible U+FEFF. A .jsonl record holding U+2028 /
    U+2029 / U+0085 unescaped (as `json.dumps(ensure_ascii=False)` writes them) was split in
    two by `splitlines` and refused as "not JSON"."""
    import json

    from hillclimb.eval.arena.models import load_prompts

    f = tmp_path / "bom.jsonl"
    f.write_bytes("\ufeff".encode() + b'{"prompt": "hello"}\r\n{"prompt": "again"}\r\n')
    assert load_prompts(f) == ["hello", "again"]
    t = tmp_path / "bom.txt"
    t.write_bytes("\ufeffWhat is 2 + 3?\nName a colour.\n".encode())
    assert load_prompts(t) == ["What is 2 + 3?", "Name a colour."]
    odd = ["line one\u2028line two", "para\u2029graph", "next\x85line"]
    j = tmp_path / "odd.jsonl"
    j.write_text("".join(json.dumps({"prompt": q}, ensure_ascii=False) + "\n" for q in odd))
    assert "\u2028" in j.read_text()  # written raw, as a JSON writer may
    assert load_prompts(j) == odd


# ---- router training ----------------------------------------------------------------------------
def test_router_fit_refuses_a_negative_seed_before_any_model_answers(ckpts, tmp_path, capsys):
    """`router fit --seed -1` was accepted: both models answered every train and val problem,
    the router file was written, and only then the report's bootstrap raised numpy's bare
    "ValueError: expected non-negative integer" (a traceback, minutes in). Now refused first."""
    from hillclimb.cli import main

    out = tmp_path / "router.json"
    argv = ["router", "fit", "--thinking", str(ckpts["thinking"]), "--code-flash",
            str(ckpts["code-flash"]), "--out", str(out), "--seed", "-1"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "seed must be >= 0" in err and "Traceback" not in err
    assert not out.exists()
