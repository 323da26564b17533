"""Outside checks (session 21) of the evaluation area: whether the reported intervals are
honest where every item agrees or a resample has no fit, whether a busy server ends a run,
and whether settings no backend can use are refused before any work is done."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hillclimb.errors import HillclimbError


# ---- intervals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("followed", [0, 1], ids=["none_followed", "all_followed"])
def test_a_ratio_whose_clusters_all_agree_has_an_interval_not_a_point(followed):
    """Instruction-level accuracy (a ratio of sums over prompts) with every prompt following all
    of its instructions read [100%, 100%] — and the empty-answer baseline [0%, 0%] —: every
    resample of identical clusters is identical. Pass/fail items got Wilson in session 20; the
    ratio did not."""
    from hillclimb.eval.metrics import bootstrap_ci, wilson_ci
    from hillclimb.eval.suite_common import SuiteConfig, metric

    weights = [1.0, 2.0, 3.0, 1.0, 2.0]
    values = [w * followed for w in weights]
    lo, hi = bootstrap_ci(values, weights)
    assert hi - lo > 0.2  # five prompts cannot pin a share down
    assert (lo, hi) == wilson_ci(followed * 5, 5)  # conservative: n = the 5 prompts
    m = metric(values, SuiteConfig(), weights)
    assert m["value"] == followed and m["ci95"][0] <= followed <= m["ci95"][1]  # contains it
    assert m["ci95"][1] - m["ci95"][0] > 0.2


def test_mixed_ratios_still_use_the_bootstrap():
    from hillclimb.eval.metrics import bootstrap_ci

    values, weights = [1.0, 2.0, 0.0, 1.0], [1.0, 2.0, 3.0, 2.0]
    lo, hi = bootstrap_ci(values, weights, seed=3)
    assert 0 <= lo < 0.5 < hi <= 1
    assert bootstrap_ci([0.5] * 4) == (0.5, 0.5)  # not pass/fail: unchanged


def test_ifeval_silent_model_gets_an_instruction_interval():
    """The suite end to end: a model that answers nothing follows 0 instructions; its
    instruction-level interval (and the empty-answer baseline's) was [0%, 0%]."""
    from hillclimb.eval.backends import Completion
    from hillclimb.eval.suite_common import SuiteConfig
    from hillclimb.eval.suites import run_suite

    class Silent:
        kind, name = "scripted", "silent"

        def chat(self, reqs):  # noqa: ANN001, ANN202
            return [Completion("", "stop", 0) for _ in reqs]

        complete = chat

        def close(self) -> None:
            pass

    res = run_suite("ifeval", "silent", SuiteConfig(n_items=12), backend=Silent())
    for name in ("instruction_strict", "instruction_loose"):
        m = res["metrics"][name]
        assert m["value"] == 0 and m["ci95"][0] == 0 and m["ci95"][1] > 0.1, (name, m)


# ---- arena ratings ------------------------------------------------------------------------------
def test_plain_mle_ratings_survive_resamples_without_a_fit():
    """`--prior 0` with votes 3:1 has a finite fit (odds 3:1, ±95 Elo), but a third of the
    bootstrap resamples hold only the 3 wins; one of them made `rate` raise "some model never
    won or never lost" (false for these votes) and the results page answered 409. Now the
    ratings are given, and an interval end no finite fit reaches is unbounded (None)."""
    from hillclimb.eval.arena.ratings import Game, RatingConfig, rate

    games = [Game("A", "B", "a")] * 3 + [Game("A", "B", "b")]
    ratings = {r.model: r for r in rate(["A", "B"], games, RatingConfig(prior=0))}
    assert ratings["A"].rating == pytest.approx(1000 + 200 * 0.4771212547, abs=1e-6)
    assert ratings["A"].rank == 1
    for r in ratings.values():
        assert r.ci_low is None and r.ci_high is None  # unbounded both ways: no finite interval
        assert r.interval_text() == "-"


def test_plain_mle_intervals_are_finite_where_every_resample_has_a_fit():
    from hillclimb.eval.arena.ratings import Game, RatingConfig, rate

    games = [Game("A", "B", "a")] * 60 + [Game("A", "B", "b")] * 40
    for r in rate(["A", "B"], games, RatingConfig(prior=0)):
        assert r.ci_low is not None and r.ci_high is not None
        assert r.ci_low < r.rating < r.ci_high


def test_an_interval_with_one_open_end_is_shown_not_crashed():
    """`arena --results` formatted `ci_high` with `:.0f` whenever `ci_low` was set."""
    from hillclimb.eval.arena.pages import _ci
    from hillclimb.eval.arena.ratings import ModelRating

    r = ModelRating("A", 1, 1100.0, 1010.0, None, 4, 3, 1, 0, 0)
    assert r.interval_text() == "1010-+inf"
    assert _ci(r) == "1010 – +inf"
    r = ModelRating("B", 2, 900.0, None, 990.0, 4, 1, 3, 0, 0)
    assert r.interval_text() == "-inf-990"


@pytest.mark.parametrize(
    "votes",
    [[("A", "B", "tie")] * 5 + [("B", "C", "both_bad")] * 5,  # a voter who never picks
     [("A", "B", "a"), ("A", "C", "b"), ("B", "C", "a")],  # a cycle: all equal
     [("A", "B", "a"), ("A", "B", "b")]],
)  # fmt: skip
def test_models_the_votes_cannot_tell_apart_share_a_rank(votes):
    """Equal ratings got ranks 1, 2, 3 by the alphabetical order of the names, so the results
    page put "A" first on votes that say nothing about which is better."""
    from hillclimb.eval.arena.ratings import Game, rate

    models = sorted({m for v in votes for m in v[:2]})
    ratings = rate(models, [Game(*v) for v in votes])
    assert {r.rank for r in ratings} == {1}
    assert all(r.rating == pytest.approx(1000.0) for r in ratings)


def test_competition_ranks_skip_after_a_shared_rank():
    from hillclimb.eval.arena.ratings import Game, rate

    games = [Game("A", "B", "b")] * 4 + [Game("A", "C", "b")] * 4 + [Game("B", "C", "tie")] * 4
    ranks = {r.model: r.rank for r in rate(["A", "B", "C"], games)}
    assert ranks == {"B": 1, "C": 1, "A": 3}


# ---- sampling settings refused before anything runs ---------------------------------------------
@pytest.mark.parametrize(
    ("flags", "says"),
    [(["--temperature", "nan"], "--temperature must be a finite number"),
     (["--temperature=-1"], "--temperature must be a finite number"),
     (["--temperature", "inf"], "--temperature must be a finite number"),
     (["--top-p", "0"], "--top-p must be in (0, 1]"),
     (["--top-p", "nan"], "--top-p must be in (0, 1]"),
     (["--timeout", "nan"], "--timeout must be a finite number"),
     (["--timeout", "inf"], "--timeout must be a finite number"),
     (["--concurrency", "0"], "--concurrency must be >= 1")],
)  # fmt: skip
def test_unusable_settings_are_refused_before_the_model_is_asked(odd_server, capsys, flags, says):
    """A NaN `--temperature` against a URL ended in a `ValueError` traceback (NaN is not JSON);
    against a checkpoint it was refused only when sampling began, after the whole greedy pass;
    `--timeout nan` passed the `<= 0` check and failed in the sandbox after every answer had
    been generated; `--concurrency 0` was silently 1. Now: one line, before any request."""
    from hillclimb.cli import main

    url, state = odd_server
    args = ["eval", "--model", url, "--suite", "completion", "--n-items", "1", "--limit", "1"]
    args += ["--samples-per-item", "1"] if "--timeout" not in flags else []
    assert main([*args, *flags]) != 0
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert state["posts"] == 0


@pytest.mark.parametrize("flag", [["--temperature", "nan"], ["--top-p", "1.5"]])
def test_generator_eval_refuses_unusable_sampling_settings(flag):
    from hillclimb.errors import ConfigError
    from hillclimb.eval.tasks import TaskEvalConfig

    cfg = TaskEvalConfig(samples_per_item=2, pass_k=[1, 2])
    setattr(cfg, flag[0][2:].replace("-", "_"), float(flag[1]))
    with pytest.raises(ConfigError, match=flag[0]):
        cfg.validate()


# ---- a busy server ------------------------------------------------------------------------------
@pytest.fixture
def odd_server():
    """A real HTTP server on localhost: /v1/models lists one model; each POST first answers the
    statuses queued in `state["fail"]` (with `Retry-After: 0`), then a completion."""
    state: dict = {"fail": [], "posts": 0, "retry_after": "0", "sleep": [], "usage": True,
                   "on_post": None}  # fmt: skip

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:  # noqa: ANN002
            pass

        def _send(self, code: int, obj: object, retry: bool = False) -> None:
            b = json.dumps(obj).encode()
            self.send_response(code)
            if retry and state["retry_after"] is not None:
                self.send_header("Retry-After", state["retry_after"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        def do_GET(self) -> None:
            self._send(200, {"data": [{"id": "m"}]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state["posts"] += 1
            if state["on_post"] is not None:
                state["on_post"]()
            if state["sleep"]:
                time.sleep(state["sleep"].pop(0))
            if state["fail"]:
                self._send(state["fail"].pop(0), {"error": {"message": "busy"}}, retry=True)
                return
            choice = {
                "text": "    return 1\n",
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "the answer is one"},
            }
            usage = {"usage": {"completion_tokens": 3}} if state["usage"] else {}
            self._send(200, {"choices": [choice], **usage})

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.handle_error = lambda *a: None  # the client hung up on a stalled answer: expected
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", state
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_a_busy_server_is_retried_not_the_end_of_the_run(odd_server, status):
    """One 429 (or a gateway's 5xx) ended the whole suite: nothing of a run is written unless
    it all succeeded, so a rate-limited request of a hosted API lost every answer before it."""
    from hillclimb.eval.backends import HTTPBackend, Request

    url, state = odd_server
    be = HTTPBackend(url, concurrency=1)
    be.retry_delays = (0.0, 0.0, 0.0)
    state["fail"] = [status, status]
    out = be.complete([Request("a", "def f():\n", max_tokens=8)])
    assert out[0].text == "    return 1\n" and state["posts"] == 3
    be.close()


def test_a_server_that_stays_busy_is_a_clear_error_after_the_retries(odd_server):
    from hillclimb.eval.backends import HTTPBackend, Request

    url, state = odd_server
    be = HTTPBackend(url, concurrency=1)
    be.retry_delays = (0.0, 0.0)
    state["fail"] = [503] * 5
    with pytest.raises(HillclimbError, match=r"HTTP 503 \(after 2 retries\)"):
        be.complete([Request("a", "x", max_tokens=8)])
    assert state["posts"] == 3
    be.close()


def test_a_read_timeout_mid_run_is_retried(odd_server):
    """A server that stalls on one request past the client's timeout ended the run."""
    from hillclimb.eval.backends import HTTPBackend, Request

    url, state = odd_server
    be = HTTPBackend(url, concurrency=1, timeout_s=0.3)
    be.retry_delays = (0.0,)
    state["sleep"] = [1.0]
    out = be.complete([Request("a", "def f():\n", max_tokens=8)])
    assert out[0].text == "    return 1\n" and state["posts"] == 2
    be.close()


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_a_bad_request_is_not_retried(odd_server, status):
    from hillclimb.eval.backends import HTTPBackend, Request

    url, state = odd_server
    be = HTTPBackend(url, concurrency=1)
    be.retry_delays = (0.0, 0.0)
    state["fail"] = [status]
    with pytest.raises(HillclimbError, match=f"HTTP {status}:"):
        be.complete([Request("a", "x", max_tokens=8)])
    assert state["posts"] == 1
    be.close()


@pytest.mark.parametrize(
    ("header", "wait"),
    [("0", 0.0), ("3", 3.0), ("1e9", 60.0), ("-5", 1.0), ("nan", 1.0), ("inf", 60.0),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0), (None, 1.0)],
)  # fmt: skip
def test_retry_after_is_read_and_bounded(header, wait):
    from hillclimb.eval.backends import _retry_after

    assert _retry_after(header, 1.0) == wait


def test_wilson_interval_contains_an_observed_zero_or_one():
    """At 0 of n the Wilson lower bound came out 2.8e-17 for some n (0 of 5 among them): the
    reported interval of a model that solved nothing did not contain its own 0%."""
    from hillclimb.eval.metrics import bootstrap_ci, wilson_ci

    for n in range(1, 300):
        assert wilson_ci(0, n)[0] == 0.0 and wilson_ci(n, n)[1] == 1.0
        lo, hi = bootstrap_ci([0.0] * n)
        assert lo == 0.0 < hi


def test_a_server_without_usage_reports_unknown_tokens_not_zero(odd_server, tmp_path, capsys):
    """A server that sends no `usage` had every answer counted as 0 tokens, and the run printed
    "completion tokens per solved item 0.0" and a cost of 0 per solved item as if measured."""
    from hillclimb.cli import main

    url, state = odd_server
    state["usage"] = False
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"code-flash": {"prompt": 1.0, "completion": 2.0}}))
    args = ["eval", "--model", url, "--suite", "ifeval", "--n-items", "40",
            "--prices", str(prices), "--price-model", "code-flash"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    eff = res["efficiency"]
    assert res["usage_unknown"] == 40 and eff["solved"] >= 1
    assert eff["tokens_per_solved"] is None and eff["completion_tokens"] is None
    assert eff["cost_per_solved"] is None and "no token usage" in eff["tokens_note"]
    assert main(args) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "completion tokens unknown" in out and "per solved item unknown" in out
    assert "credits per solved item unknown" in out
    state["usage"] = True  # a server that reports usage: measured, as before
    assert main([*args, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert "usage_unknown" not in res and res["efficiency"]["tokens_per_solved"] > 0


def test_a_result_written_by_another_run_meanwhile_is_not_replaced(odd_server, tmp_path, capsys):
    """`--out DIR` was checked before the run and replaced at its end: a second run into the
    same DIR that finished in between lost its file to this one without `--force`."""
    from hillclimb.cli import main

    url, state = odd_server
    out = tmp_path / "out"
    target = out / "ifeval.json"
    other = '{"the other run": true}\n'

    def other_run_finishes() -> None:
        if not target.exists():
            out.mkdir(exist_ok=True)
            target.write_text(other)

    state["on_post"] = other_run_finishes
    args = ["eval", "--model", url, "--suite", "ifeval", "--n-items", "3", "--out", str(out)]
    assert main(args) != 0
    err = " ".join(capsys.readouterr().err.split())
    assert "appeared while this evaluation ran" in err and "Traceback" not in err
    assert target.read_text() == other  # kept
    kept = [p for p in out.iterdir() if p != target]
    assert len(kept) == 1 and str(kept[0]) in err  # this run's result, named in the error
    assert json.loads(kept[0].read_text())["suite"] == "ifeval"
    # an empty --out is written as before; --force replaces
    state["on_post"] = None
    assert main([*args[:-1], str(tmp_path / "fresh"), "--json"]) == 0
    assert json.loads((tmp_path / "fresh" / "ifeval.json").read_text())["n_items"] == 3
    capsys.readouterr()
    assert main([*args, "--force"]) == 0
    assert json.loads(target.read_text())["suite"] == "ifeval"
