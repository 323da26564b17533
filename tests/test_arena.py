"""The arena (`hillclimb arena`, src/hillclimb/eval/arena/): ratings, vote store, web app, browser.

Models here are real: random-weight micro checkpoints (tests/_server_util.make_checkpoints)
answering through the engine, and in the browser test one of them behind a real `hillclimb serve`
app reached over HTTP. No answer generator is faked anywhere in this file.
"""

from __future__ import annotations

import math
import random
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from _server_util import load_engines, make_checkpoints
from hillclimb.errors import HillclimbError
from hillclimb.eval.arena.app import Arena, ArenaConfig, create_app
from hillclimb.eval.arena.models import (
    GenerationConfig,
    check_targets,
    open_contenders,
    parse_models,
)
from hillclimb.eval.arena.ratings import Game, RatingConfig, fit_log_strengths, rate, win_matrix
from hillclimb.eval.arena.store import AlreadyVoted, ArenaStore
from hillclimb.serve.billing import UsageDB

ALICE, BOB = "hc-arena-alice-key-0001", "hc-arena-bob-key-00002"
ELO = 400.0 / math.log(10.0)


# ---- ratings --------------------------------------------------------------------------------
def test_bt_two_models_closed_form():
    # A beats B 3 times, B beats A once, one tie: wins 3.5 vs 1.5 → odds 7:3
    games = [Game("A", "B", "a")] * 3 + [Game("B", "A", "a"), Game("A", "B", "tie")]
    r = {x.model: x for x in rate(["A", "B"], games, RatingConfig(prior=0, n_bootstrap=0))}
    assert r["A"].rating - r["B"].rating == pytest.approx(400 * math.log10(3.5 / 1.5), abs=1e-6)
    assert r["A"].rating + r["B"].rating == pytest.approx(2000, abs=1e-6)  # mean 1000
    assert (r["A"].wins, r["A"].losses, r["A"].ties, r["A"].games) == (3, 1, 1, 5)
    assert r["A"].rank == 1 and r["A"].ci_low is None


def test_bt_three_models_hand_computed():
    # win shares equal p_i / (p_i + p_j) for p = (4, 2, 1), so that p is the exact MLE
    w = np.array([[0, 2, 4], [1, 0, 2], [1, 1, 0]], dtype=float)
    logp = fit_log_strengths(w, prior=0)
    assert np.allclose(logp, [math.log(2), 0.0, -math.log(2)], atol=1e-7)
    games = (
        [Game("A", "B", "a")] * 2
        + [Game("A", "B", "b")]
        + [Game("B", "C", "a")] * 2
        + [Game("C", "B", "a")]
        + [Game("A", "C", "a")] * 4
        + [Game("C", "A", "a")]
    )
    assert np.array_equal(win_matrix(["A", "B", "C"], games), w)
    r = rate(["C", "A", "B"], games, RatingConfig(prior=0, n_bootstrap=0))
    assert [x.model for x in r] == ["A", "B", "C"]
    assert [x.rating for x in r] == pytest.approx(
        [1000 + 400 * math.log10(2), 1000, 1000 - 400 * math.log10(2)], abs=1e-5
    )


def test_bt_both_bad_counts_as_tie_and_prior_keeps_fit_finite():
    tie = rate(["A", "B"], [Game("A", "B", "tie")] * 2 + [Game("A", "B", "a")], RatingConfig(0, 0))
    bad = rate(
        ["A", "B"], [Game("A", "B", "both_bad")] * 2 + [Game("A", "B", "a")], RatingConfig(0, 0)
    )
    assert [x.rating for x in tie] == pytest.approx([x.rating for x in bad])
    assert bad[0].both_bad == 2 and bad[0].ties == 0
    sweep = [Game("A", "B", "a")] * 5
    with pytest.raises(HillclimbError, match="strongly connected"):
        rate(["A", "B"], sweep, RatingConfig(prior=0, n_bootstrap=0))
    # one virtual tie per pair: wins 5.5 vs 0.5 → exactly 11:1
    r = rate(["A", "B"], sweep, RatingConfig(prior=1, n_bootstrap=0))
    assert r[0].rating - r[1].rating == pytest.approx(400 * math.log10(11), abs=1e-5)
    with pytest.raises(HillclimbError, match="unknown vote outcome"):
        rate(["A", "B"], [Game("A", "B", "draw")])
    with pytest.raises(HillclimbError, match="unknown models"):
        rate(["A", "B"], [Game("A", "Z", "a")])


# Elo scale, mean 1000. With 200-point gaps, 200 votes (10% ties) put the four in true order for
# 200 of 200 seeds tried; 140-point gaps for 198 of 200 — so the test below is not a lucky seed.
TRUE = {"m0": 1300.0, "m1": 1100.0, "m2": 900.0, "m3": 700.0}


def simulate(rng: random.Random, n: int, tie_p: float = 0.1) -> list[Game]:
    """Votes from the Bradley–Terry model with strengths TRUE (ties: half a win, either way)."""
    names = list(TRUE)
    out = []
    for _ in range(n):
        a, b = rng.sample(names, 2)
        if rng.random() < tie_p:
            out.append(Game(a, b, "tie"))
            continue
        pa = 1.0 / (1.0 + 10 ** ((TRUE[b] - TRUE[a]) / 400))
        out.append(Game(a, b, "a" if rng.random() < pa else "b"))
    return out


def test_200_votes_recover_true_ranking():
    for seed in range(20):
        games = simulate(random.Random(seed), 200)
        r = rate(list(TRUE), games, RatingConfig(n_bootstrap=200, seed=seed))
        assert [x.model for x in r] == ["m0", "m1", "m2", "m3"], seed
        for x in r:
            assert x.ci_low <= x.rating <= x.ci_high


def test_bootstrap_intervals_cover_truth():
    hits = total = 0
    widths = []
    for rep in range(40):
        games = simulate(random.Random(1000 + rep), 300, tie_p=0.0)
        for x in rate(list(TRUE), games, RatingConfig(n_bootstrap=200, seed=rep)):
            total += 1
            hits += x.ci_low <= TRUE[x.model] <= x.ci_high
            widths.append(x.ci_high - x.ci_low)
    coverage = hits / total
    assert 0.85 <= coverage <= 1.0, coverage
    assert np.mean(widths) < 250, np.mean(widths)  # informative, not everything-covers


# ---- store ----------------------------------------------------------------------------------
def _battle(s: ArenaStore, voter: str, prompt: str, left: str, right: str) -> str:
    return s.add_battle(
        voter=voter,
        prompt=prompt,
        source="typed",
        left=(left, f"answer of {left}", "stop"),
        right=(right, f"answer of {right}", "stop"),
        seed=0,
    )


def test_one_vote_per_user_per_prompt_and_pair(tmp_path):
    db = tmp_path / "arena.sqlite"
    s = ArenaStore(db)
    b1 = _battle(s, "u1", "hi", "A", "B")
    s.vote(b1, "u1", "left")
    with pytest.raises(AlreadyVoted):
        s.vote(b1, "u1", "right")  # the same battle again
    # the same prompt (up to surrounding whitespace) and the same pair, sides swapped
    b2 = _battle(s, "u1", " hi\n", "B", "A")
    with pytest.raises(AlreadyVoted):
        s.vote(b2, "u1", "tie")
    with pytest.raises(HillclimbError, match="no battle"):
        s.vote(b2, "u2", "tie")  # not u2's battle
    with pytest.raises(HillclimbError, match="unknown vote"):
        s.vote(b2, "u1", "maybe")
    with pytest.raises(HillclimbError, match="two different models"):
        _battle(s, "u1", "hi", "A", "A")
    # another voter, another prompt or another pair: allowed
    b3 = _battle(s, "u2", "hi", "A", "B")
    s.vote(b3, "u2", "right")
    b4 = _battle(s, "u1", "other", "A", "B")
    s.vote(b4, "u1", "both_bad")
    b5 = _battle(s, "u1", "hi", "C", "A")
    s.vote(b5, "u1", "left")
    assert s.voted_pairs("u1", "hi") == {"A\nB", "A\nC"}
    s.close()
    again = ArenaStore(db)  # nothing stored is lost across a reopen
    assert [(v.battle_id, v.outcome) for v in again.votes()] == [
        (b1, "left"),
        (b3, "right"),
        (b4, "both_bad"),
        (b5, "left"),
    ]
    assert again.battle(b2).outcome is None
    again.close()


# ---- bad input ------------------------------------------------------------------------------
def _dead_url() -> str:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there


def test_bad_model_lists_fail_clearly(tmp_path):
    with pytest.raises(HillclimbError, match="at least 2 models, got 1"):
        parse_models(str(tmp_path))
    with pytest.raises(HillclimbError, match="at least 2 models, got 0"):
        parse_models(" , ")
    with pytest.raises(HillclimbError, match="both named x"):
        parse_models("x=http://a:1/v1,x=http://b:2/v1")
    specs = parse_models(f"{tmp_path / 'nope'},http://h:8000/v1#code-flash")
    assert [s.name for s in specs] == ["nope", "h:8000/code-flash"]
    assert specs[1].served_model == "code-flash"
    with pytest.raises(HillclimbError, match="neither a checkpoint directory that exists"):
        check_targets(specs)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HillclimbError, match="not a checkpoint directory"):
        open_contenders(parse_models(f"{tmp_path / 'empty'},b=http://h:1/v1"))
    dead = _dead_url()
    with pytest.raises(HillclimbError, match=re.escape(f"cannot reach {dead}/models")):
        open_contenders(parse_models(f"a={dead},b={dead}"))


def test_cli_errors(tmp_path):
    from hillclimb.cli import main

    assert main(["arena", "--models", "only-one"]) == 2
    assert main(["arena", "--models", f"{tmp_path}/a,{tmp_path}/b"]) == 2
    assert main(["arena", "--results", "--arena-db", str(tmp_path / "none.sqlite")]) == 2


# ---- the web app ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("arena-ckpts"))


def _accounts(path: Path) -> UsageDB:
    db = UsageDB(path)
    db.create_account("alice", None, key=ALICE)
    db.create_account("bob", None, key=BOB)
    return db


@pytest.fixture
def arena(ckpts, tmp_path):
    specs = parse_models(f"zq-think={ckpts['thinking']},xk-flash={ckpts['code-flash']}")
    contenders = open_contenders(specs, device="cpu")
    a = Arena(
        contenders,
        ArenaStore(tmp_path / "arena.sqlite"),
        _accounts(tmp_path / "usage.sqlite"),
        ["What is 2 + 3?", "Name a colour."],
        ArenaConfig(gen=GenerationConfig(max_tokens=12), rating=RatingConfig(n_bootstrap=50)),
        rng=random.Random(0),
    )
    yield a
    a.store.close()


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def _login(client, key: str) -> str:
    r = client.get("/login")
    r = client.post("/login", data={"csrf": _csrf(r.text), "key": key}, follow_redirects=True)
    assert r.status_code == 200 and "New battle" in r.text, r.text
    return _csrf(r.text)


def test_no_keys_no_arena(ckpts, tmp_path):
    specs = parse_models(f"a={ckpts['thinking']},b={ckpts['code-flash']}")
    with pytest.raises(HillclimbError, match="has no API keys"):
        Arena(open_contenders(specs), ArenaStore(":memory:"), UsageDB(":memory:"), ["p"])


def test_csrf_blindness_and_votes(arena, ckpts):
    from fastapi.testclient import TestClient

    client = TestClient(create_app(arena))
    r = client.get("/")
    assert r.status_code == 200 and 'id="key"' in r.text  # redirected to the log-in page
    # log-in itself needs the CSRF token of the pre-login session
    assert client.post("/login", data={"key": ALICE}).status_code == 403
    assert client.post("/login", data={"key": ALICE, "csrf": "forged"}).status_code == 403
    r = client.post(
        "/login", data={"key": "hc-nope-nope-nope", "csrf": _csrf(client.get("/login").text)}
    )
    assert r.status_code == 401 and "unknown or disabled API key" in r.text
    csrf = _login(client, ALICE)
    # no token / a wrong token: refused, nothing stored
    for data in ({"prompt": "hi", "action": "ask"}, {"prompt": "hi", "csrf": csrf + "x"}):
        r = client.post("/battle", data=data, follow_redirects=False)
        assert r.status_code == 403 and "CSRF" in r.text
    assert arena.store.voted_pairs("account:1", "hi") == set()
    assert client.post("/battle", data={"csrf": csrf, "prompt": "  "}).status_code == 400
    r = client.post("/battle", data={"csrf": csrf, "prompt": "Say hi.", "action": "ask"})
    assert r.status_code == 200
    page = r.text
    bid = str(r.url).rsplit("/", 1)[1]
    # blind: neither name nor path nor anything else identifying before the vote
    for secret in ("zq-think", "xk-flash", str(ckpts["thinking"]), str(ckpts["code-flash"])):
        assert secret not in page
    assert 'id="vote-left"' in page and 'id="reveal"' not in page
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    # vote without / with a wrong token
    url = f"/battle/{bid}/vote"
    assert client.post(url, data={"vote": "left"}).status_code == 403
    assert client.post(url, data={"vote": "left", "csrf": "x" * 43}).status_code == 403
    assert arena.store.battle(bid).outcome is None
    # bob can neither see nor vote on alice's battle
    bob = TestClient(create_app(arena))
    bob_csrf = _login(bob, BOB)
    assert bob.get(f"/battle/{bid}").status_code == 404
    assert bob.post(url, data={"vote": "left", "csrf": bob_csrf}).status_code == 404
    assert client.post(url, data={"vote": "sideways", "csrf": csrf}).status_code == 400
    r = client.post(url, data={"vote": "right", "csrf": csrf})
    assert r.status_code == 200 and 'id="reveal"' in r.text
    b = arena.store.battle(bid)
    assert b.outcome == "right"
    assert f'id="model-left">{b.model_left}<' in r.text
    assert f'id="model-right">{b.model_right}<' in r.text
    assert {b.model_left, b.model_right} == {"zq-think", "xk-flash"}
    assert client.post(url, data={"vote": "left", "csrf": csrf}).status_code == 409
    # the same prompt again: every pair (there is one) already voted on → refused
    r = client.post("/battle", data={"csrf": csrf, "prompt": "Say hi.\n"})
    assert r.status_code == 409 and "every pair" in r.text
    r = client.get("/results")
    assert r.status_code == 200 and 'id="n-votes">1 vote.' in r.text
    winner = b.model_right
    assert re.search(rf'<tr><td>1</td><td class="name">{winner}</td>', r.text)
    # log-out ends the session; its token no longer works
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert client.post("/battle", data={"csrf": csrf, "prompt": "x"}).status_code == 403


def test_draw_covers_pairs_then_refuses(arena):
    # two prompts x one pair: two drawn battles, then the prompt set is used up for this voter
    voter = "account:1"
    seen = set()
    for _ in range(2):
        p = arena.draw_prompt(voter)
        bid = arena.start_battle(voter, p, "drawn")
        arena.store.vote(bid, voter, "tie")
        seen.add(p)
    assert seen == set(arena.prompts)
    with pytest.raises(AlreadyVoted, match="every prompt"):
        arena.draw_prompt(voter)


def test_results_cli(arena, tmp_path, capsys):
    import json

    from hillclimb.cli import main

    voter = "account:2"
    bid = arena.start_battle(voter, "What is 2 + 3?", "typed")
    arena.store.vote(bid, voter, "left")
    rc = main(["arena", "--results", "--json", "--arena-db", str(tmp_path / "arena.sqlite")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["votes"] == 1
    assert [r["model"] for r in out["ratings"]][0] == arena.store.battle(bid).model_left


# ---- the real browser -----------------------------------------------------------------------
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


class _AppThread:
    """uvicorn on a bound loopback socket in a daemon thread (the arena app under test)."""

    def __init__(self, app) -> None:  # noqa: ANN001
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> _AppThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive()
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs chromium and chromedriver on PATH (Debian: apt-get install chromium "
    "chromium-driver)",
)
def test_browser_vote_and_results(ckpts, tmp_path):
    selenium = pytest.importorskip("selenium", reason="selenium is in the [dev] extra")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from hillclimb.serve.server import ServerThread, build_state

    assert selenium
    # one model behind a real `hillclimb serve` app (HTTP), one loaded from its checkpoint
    state = build_state(
        load_engines({"code-flash": ckpts["code-flash"]}, max_batch=2),
        checkpoints={"code-flash": ckpts["code-flash"]},
    )
    with ServerThread(state) as served:
        specs = parse_models(f"zq-think={ckpts['thinking']},xk-served={served.url}/v1#code-flash")
        arena = Arena(
            open_contenders(specs, device="cpu"),
            ArenaStore(tmp_path / "arena.sqlite"),
            _accounts(tmp_path / "usage.sqlite"),
            ["What is 2 + 3?"],
            ArenaConfig(gen=GenerationConfig(max_tokens=12), rating=RatingConfig(n_bootstrap=50)),
        )
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chrome-profile'}",
        ):
            opts.add_argument(flag)
        with _AppThread(create_app(arena)) as web:
            driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
            wait = WebDriverWait(driver, 120)

            def find(element_id: str):  # noqa: ANN202 - waits: a click returns before the page
                return wait.until(ec.presence_of_element_located((By.ID, element_id)))

            try:
                driver.set_page_load_timeout(120)
                driver.get(web.url + "/")
                find("key").send_keys(ALICE)
                find("login").click()
                # a drawn prompt
                find("draw").click()
                assert find("battle-prompt").text == "What is 2 + 3?"
                before = driver.page_source
                for secret in ("zq-think", "xk-served", served.url, str(ckpts["thinking"])):
                    assert secret not in before
                find("vote-left").click()
                left = find("model-left").text
                right = find("model-right").text
                assert {left, right} == {"zq-think", "xk-served"}
                # a typed prompt, voted a tie
                find("next").click()
                find("prompt").send_keys("Write a haiku about sand.")
                find("ask").click()
                assert "Write a haiku" in find("battle-prompt").text
                assert "zq-think" not in driver.page_source
                find("vote-tie").click()
                assert find("reveal").is_displayed()
                find("results").click()
                assert find("n-votes").text == "2 votes."
                rows = driver.find_elements(By.CSS_SELECTOR, "#ratings tbody tr")
                cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
            finally:
                driver.quit()
        votes = arena.store.votes()
        assert [v.outcome for v in votes] == ["left", "tie"]
        # the page shows the fit of the stored votes: the first battle's left model is ahead
        assert [c[1] for c in cells] == [left, right]
        assert [c[4] for c in cells] == ["2", "2"]
        expected = rate(
            [left, right], [Game(left, right, "a"), Game(left, right, "tie")], RatingConfig()
        )
        assert cells[0][2] == f"{expected[0].rating:.0f}"
        for c in arena.contenders.values():
            c.close()
        arena.store.close()
