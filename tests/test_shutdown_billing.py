"""A server shutting down settles its queued requests without waiting for their outputs; a
request that never got a batch slot was charged its whole prompt (and counted in
`hillclimb_prompt_tokens_total`), though no token of it ran. `RequestHandle.never_admitted`
decides it exactly: the engine checks a cancel under the same lock as it admits."""

from __future__ import annotations

import sqlite3
import threading
import time

import httpx
import pytest

from _server_util import load_engines, make_checkpoints, wait_for
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.serve.server import ServerThread, build_state

LONG = {"max_tokens": 400, "ignore_eos": True, "temperature": 0.0}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("shutdown_billing"))


def test_never_admitted_is_decided_after_cancel(ckpts) -> None:
    eng = Engine.from_checkpoint(ckpts["code-flash"], device="cpu", max_batch=1, seed=0)
    eng.after_step = lambda: time.sleep(0.005)
    sp = SamplingParams(max_tokens=300, ignore_eos=True, temperature=0.0, speculative=False)
    eng.start()
    try:
        running = eng.submit("def f(x):", sp)
        assert wait_for(lambda: eng.stats()["running"] == 1, 30)
        queued = eng.submit("def g(y):", sp)
        with pytest.raises(RuntimeError, match="after cancel"):
            queued.never_admitted()
        queued.cancel()
        running.cancel()
        assert queued.never_admitted() and not running.never_admitted()
        assert not queued.result(timeout=30).admitted  # the engine agrees
    finally:
        eng.stop()


def test_a_request_queued_at_shutdown_is_charged_nothing(ckpts, tmp_path) -> None:
    engines = load_engines({"code-flash": ckpts["code-flash"]}, max_batch=1)
    srv = ServerThread(build_state(engines, db=tmp_path / "usage.sqlite")).start()
    eng = srv.state.models["code-flash"].engine
    eng.after_step = lambda: time.sleep(0.01)  # nothing ends before the stop
    done: list[int] = []

    def call(prompt: str) -> None:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            body = {"model": "code-flash", "prompt": prompt, **LONG}
            done.append(c.post("/v1/completions", json=body).status_code)

    threads = [threading.Thread(target=call, args=(p,)) for p in ("first one", "second one")]
    threads[0].start()
    assert wait_for(lambda: eng.stats()["running"] == 1, 30)
    threads[1].start()
    assert wait_for(lambda: eng.stats()["queue_depth"] == 1, 30)
    srv.server.config.timeout_graceful_shutdown = 0.2
    srv.stop()
    for t in threads:
        t.join(30)
    assert done == [503, 503]
    con = sqlite3.connect(srv.state.db.path)
    try:
        rows = con.execute("SELECT prompt_tokens FROM requests ORDER BY created").fetchall()
    finally:
        con.close()
    prompts = sorted(r[0] for r in rows)
    assert len(prompts) == 2 and prompts[0] == 0 and prompts[1] > 0, prompts
    text = srv.state.metrics.render()
    counted = sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("hillclimb_prompt_tokens_total{")
    )
    assert counted == prompts[1]
