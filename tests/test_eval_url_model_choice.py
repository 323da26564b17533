"""`eval --model URL` without `--served-model`: a server that lists several models is an
error naming them (the first listed was scored silently); one model, or one beside our
router's `auto` alias, is used."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.eval.backends import HTTPBackend


@pytest.fixture
def models_server():
    listed: list[str] = []

    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps({"object": "list", "data": [{"id": m} for m in listed]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", listed
    srv.shutdown()


def test_several_models_need_served_model(models_server):
    url, listed = models_server
    listed[:] = ["thinking", "code-flash", "auto"]
    with pytest.raises(
        HillclimbError, match=r"serves 2 models \(thinking, code-flash\).*--served-model"
    ):
        HTTPBackend(url)
    be = HTTPBackend(url, model="code-flash")
    assert be.model == "code-flash"
    be.close()


@pytest.mark.parametrize(("ids", "picked"), [(["m1"], "m1"), (["code-flash", "auto"], "code-flash"),
                                              (["auto", "thinking"], "thinking"), (["a", "a"], "a")])  # fmt: skip
def test_one_model_is_used(models_server, ids, picked):
    url, listed = models_server
    listed[:] = ids
    be = HTTPBackend(url)
    assert be.model == picked
    be.close()


def test_harness_run_picks_the_served_model_like_eval(models_server):
    """`harness run --model URL` without `--model-name` asked for "default" (404 on every task
    from our server and vLLM); it now uses the only model listed, or names them all."""
    from hillclimb.harness.cli import make_client

    url, listed = models_server
    listed[:] = ["code-flash", "auto"]
    assert make_client(url, None, None, 10.0)().model == "code-flash"
    assert make_client(url, "mine", None, 10.0)().model == "mine"  # named: used as given
    listed[:] = ["thinking", "code-flash", "auto"]
    with pytest.raises(HillclimbError, match=r"serves 2 models.*--model-name"):
        make_client(url, None, None, 10.0)
