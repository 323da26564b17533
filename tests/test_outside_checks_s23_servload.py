"""Outside checks, session 23 (server under load and misbehaving clients): the lifecycle of
requests in flight — shutdown while requests run, clients that disconnect mid-stream, accounting
totals — against random-weight micro checkpoints on a live loopback server."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time

import httpx
import pytest

from _server_util import load_engines, make_checkpoints, wait_for
from hillclimb.serve.server import ServerThread, build_state

LONG = {"max_tokens": 400, "ignore_eos": True, "temperature": 0.0}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("servload"))


def _server(ckpts, tmp_path, max_batch: int = 2) -> ServerThread:
    """A code-flash server of its own (not started): these tests stop it or load it."""
    engines = load_engines({"code-flash": ckpts["code-flash"]}, max_batch=max_batch)
    return ServerThread(build_state(engines, db=tmp_path / "usage.sqlite"))


def _rows(srv: ServerThread) -> list[tuple]:
    """(status, http_status, completion_tokens) of every stored request row."""
    con = sqlite3.connect(srv.state.db.path)
    try:
        sql = "SELECT status, http_status, completion_tokens FROM requests ORDER BY created"
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _metric(srv: ServerThread, name: str) -> float:
    text = srv.state.metrics.render()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def _in_flight(srv: ServerThread) -> float:
    return srv.state.metrics.inflight.value()


# ---- 1. shutdown with requests in flight ---------------------------------------------------------
def test_shutdown_ends_requests_in_flight_with_a_clean_error(ckpts, tmp_path):
    """Stopping the server (SIGTERM: uvicorn's graceful shutdown) while requests still run past
    the grace period: a plain request got uvicorn's text/plain `500 Internal Server Error` and
    its job was never finalized (credits left `reserved`, the in-flight gauge stuck above 0, the
    request never counted); a stream was cut mid-body (an incomplete chunked read, no error
    object, no `[DONE]`) and counted as 499 (client closed). Under `hillclimb serve` the process
    re-raises SIGTERM as soon as the app's lifespan ends, so cleanup that had not run by then
    never ran (rows left `reserved`). Now: an OpenAI-style 503 / an error object and `[DONE]`,
    every request settled and counted as 503 before the engines stop, the gauge back at 0."""
    srv = _server(ckpts, tmp_path, max_batch=4).start()
    results: dict[int, object] = {}
    started = threading.Event()

    def call(i: int, stream: bool) -> None:
        body = {"model": "code-flash", "prompt": f"p{i}", "stream": stream, **LONG}
        try:
            with httpx.Client(base_url=srv.url, timeout=60) as c:
                if not stream:
                    r = c.post("/v1/completions", json=body)
                    results[i] = (r.status_code, r.headers.get("content-type"), r.text)
                    return
                with c.stream("POST", "/v1/completions", json=body) as r:
                    lines = []
                    for line in r.iter_lines():
                        if line:
                            lines.append(line)
                            started.set()
                    results[i] = (r.status_code, lines)
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i, i % 2 == 0)) for i in range(4)]
    for t in threads:
        t.start()
    eng = srv.state.models["code-flash"].engine
    eng.after_step = lambda: time.sleep(0.01)  # >= 4 s per answer: none ends before the stop
    assert started.wait(30)
    assert wait_for(lambda: eng.stats()["totals"]["requests"] == 4, 30)
    assert eng.stats()["totals"]["finished"] == 0
    srv.server.config.timeout_graceful_shutdown = 0.2  # nothing finishes within the grace
    # `hillclimb serve` re-raises SIGTERM (the process dies) as soon as the lifespan has ended:
    # every cancelled request must be settled before the engines stop
    stop_engines, at_stop = srv.state.stop_engines, []
    srv.state.stop_engines = lambda: (at_stop.append(_in_flight(srv)), stop_engines())[1]
    srv.stop()
    assert at_stop == [0]
    for t in threads:
        t.join(30)
    for i in range(4):
        res = results[i]
        assert not isinstance(res, Exception), res
        if i % 2:  # plain request: an OpenAI error object, not Starlette/uvicorn text
            status, ctype, text = res  # type: ignore[misc]
            assert status == 503 and ctype == "application/json", (status, text)
            assert json.loads(text)["error"]["type"] == "server_error"
        else:
            status, lines = res  # type: ignore[misc]
            assert status == 200 and lines[-1] == "data: [DONE]", lines[-3:]
            assert "error" in json.loads(lines[-2][len("data: ") :])
    rows = _rows(srv)
    assert len(rows) == 4 and all(r[:2] == ("settled", 503) for r in rows), rows
    assert _metric(srv, "hillclimb_http_requests_in_flight") == 0
    assert (
        _metric(
            srv, 'hillclimb_requests_total{endpoint="completions",model="code-flash",status="503"}'
        )
        == 4
    )


# ---- 2. streamed answers the client walked away from ---------------------------------------------
def test_disconnected_streams_are_charged_what_the_engine_generated(ckpts, tmp_path):
    """A streamed request whose client disconnects is cancelled at the engine's next step; the
    tokens generated until then were not counted (only those the SSE loop had already taken), so
    `hillclimb_completion_tokens_total` and the charged usage fell short of what the engine
    generated (a plain request cancelled the same way counted them all). Now a closed stream is
    settled with the engine's own final counts."""
    with _server(ckpts, tmp_path, max_batch=4) as srv:
        eng = srv.state.models["code-flash"].engine

        async def walk_away(c: httpx.AsyncClient, i: int) -> None:
            body = {"model": "code-flash", "prompt": f"walk {i}", "stream": True, **LONG}
            async with c.stream("POST", "/v1/completions", json=body) as r:
                n = 0
                async for line in r.aiter_lines():
                    n += line.startswith("data:")
                    if n >= 2:
                        break

        async def main() -> None:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as c:
                await asyncio.gather(*(walk_away(c, i) for i in range(8)))

        asyncio.run(main())
        assert wait_for(lambda: _in_flight(srv) == 0, 30)
        assert wait_for(lambda: eng.stats()["totals"]["finished"] == 8, 30)
        generated = eng.stats()["totals"]["completion_tokens"]
        assert 8 * 2 <= generated < 8 * LONG["max_tokens"]  # cut mid-stream
        assert _metric(srv, "hillclimb_completion_tokens_total") == generated
        rows = _rows(srv)
        assert [r[1] for r in rows] == [499] * 8
        assert sum(r[2] for r in rows) == generated


# ---- 3. requests that never left the queue -------------------------------------------------------
def test_request_cancelled_while_queued_is_not_charged(ckpts, tmp_path):
    """Beyond the slot count requests queue; a client that gives up while its request is still
    queued (a streaming client that closes after the headers, a plain one that times out) was
    charged its whole prompt and counted in `hillclimb_prompt_tokens_total` ("processed"),
    though the engine never ran a token of it. Now, as a request refused at submit: prompt 0,
    cost 0, and the metric counts only the prompt that ran."""
    srv = _server(ckpts, tmp_path, max_batch=1).start()
    try:
        eng = srv.state.models["code-flash"].engine
        eng.after_step = lambda: time.sleep(0.01)  # the slot stays taken for seconds
        body = {"model": "code-flash", "stream": True, **LONG}
        with (
            httpx.Client(base_url=srv.url, timeout=60) as c,
            c.stream("POST", "/v1/completions", json={**body, "prompt": "runs"}) as r,
        ):
            lines = r.iter_lines()  # kept: a collected iterator closes the response
            next(lines)  # the running request holds the only slot
            with c.stream("POST", "/v1/completions", json={**body, "prompt": "queued"}) as q:
                assert q.status_code == 200
                assert wait_for(lambda: eng.stats()["queue_depth"] == 1, 30)
            with pytest.raises(httpx.TimeoutException):  # a plain client gives up
                c.post("/v1/completions", json={**body, "stream": False, "prompt": "waits"},
                       timeout=0.5)  # fmt: skip
            assert wait_for(lambda: eng.stats()["totals"]["cancelled"] == 2, 30)
        assert wait_for(lambda: _in_flight(srv) == 0, 30)
        con = sqlite3.connect(srv.state.db.path)
        rows = con.execute(
            "SELECT prompt_tokens, completion_tokens, cost_micro, http_status FROM requests "
            "ORDER BY created"
        ).fetchall()
        con.close()
        assert rows[0][0] > 0 and rows[0][3] == 499  # the one that ran is charged
        assert rows[1:] == [(0, 0, 0, 499), (0, 0, 0, 499)], rows
        assert _metric(srv, "hillclimb_prompt_tokens_total") == rows[0][0]
    finally:
        srv.stop()
