"""Bad input to the arena's web app and CLI, `hillclimb serve` flags, `hillclimb report`,
`hillclimb router fit` and `hillclimb problems export`: a clear error (CLI: one line, exit 2;
web: a 4xx/502 page, never a 500), nothing stored half-way.

The arena's models here are URL models served by a small HTTP server in this file that answers
`/models` properly and `/chat/completions` with whatever a test sets (a misbehaving upstream)."""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.climb.html_report import write_html_report
from hillclimb.errors import HillclimbError
from hillclimb.eval.arena.app import Arena, ArenaConfig, create_app
from hillclimb.eval.arena.models import GenerationConfig, open_contenders, parse_models
from hillclimb.eval.arena.ratings import RatingConfig
from hillclimb.eval.arena.store import ArenaStore
from hillclimb.serve.billing import UsageDB

sys.path.insert(0, str(Path(__file__).parent))
from test_report_html import make_climb_run  # noqa: E402

KEY = "hc-adversarial-alice-0001"
GOOD = {"choices": [{"message": {"content": "four"}, "finish_reason": "stop"}]}


class _Upstream:
    """A chat server whose `/chat/completions` body is `self.body` (bytes, sent with 200)."""

    def __init__(self) -> None:
        self.body = json.dumps(GOOD).encode()
        up = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _send(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                self._send(json.dumps({"data": [{"id": "m"}]}).encode())

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["content-length"]))
                self._send(up.body)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/v1"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    up = _Upstream()
    yield up
    up.srv.shutdown()
    up.srv.server_close()


def _client(up: _Upstream, rating: RatingConfig):  # noqa: ANN202
    from fastapi.testclient import TestClient

    accounts = UsageDB(":memory:")
    accounts.create_account("alice", None, key=KEY)
    specs = parse_models(f"a={up.url},b={up.url}")
    arena = Arena(
        open_contenders(specs),
        ArenaStore(":memory:"),
        accounts,
        ["p"],
        ArenaConfig(gen=GenerationConfig(max_tokens=4), rating=rating),
    )
    client = TestClient(create_app(arena), raise_server_exceptions=False)
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    r = client.post("/login", data={"csrf": csrf, "key": KEY})
    return arena, client, re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{}", b'{"choices": []}', b"[1]", b'{"choices": [{"message": 5}]}'],
)
def test_upstream_answer_that_is_not_a_completion_is_502_not_500(upstream, body):
    arena, client, csrf = _client(upstream, RatingConfig(n_bootstrap=0))
    upstream.body = body
    r = client.post("/battle", data={"csrf": csrf, "prompt": "2+2?"}, follow_redirects=False)
    assert r.status_code == 502 and "a model failed to answer" in r.text
    assert arena.store.votes() == [] and arena.store.voted_pairs("account:1", "2+2?") == set()
    upstream.body = json.dumps(GOOD).encode()  # the same arena goes on working
    r = client.post("/battle", data={"csrf": csrf, "prompt": "2+2?"}, follow_redirects=False)
    assert r.status_code == 303


def test_results_page_without_ratings_is_409_not_500(upstream):
    # --prior 0 with one sweep: the MLE does not exist (win graph not strongly connected)
    arena, client, csrf = _client(upstream, RatingConfig(prior=0, n_bootstrap=0))
    r = client.post("/battle", data={"csrf": csrf, "prompt": "2+2?"}, follow_redirects=False)
    bid = r.headers["location"].rsplit("/", 1)[1]
    r = client.post(f"/battle/{bid}/vote", data={"csrf": csrf, "vote": "left"})
    assert r.status_code == 200
    r = client.get("/results")
    assert r.status_code == 409 and "strongly connected" in r.text
    assert len(arena.store.votes()) == 1


def test_generation_config_refuses_nan_and_inf():
    for t in (float("nan"), float("inf")):
        with pytest.raises(HillclimbError, match="--temperature must be a finite number"):
            GenerationConfig(temperature=t)


def _one_line_error(capsys, argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_arena_cli_bad_numbers_and_busy_port(tmp_path, capsys, busy_port):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()  # exist, so the checks below are reached (no model is opened)
    models = f"{tmp_path}/a,{tmp_path}/b"
    for prior in ("nan", "inf"):
        argv = ["arena", "--results", "--arena-db", str(tmp_path / "x.sqlite"), "--prior", prior]
        ArenaStore(tmp_path / "x.sqlite").close()
        _one_line_error(capsys, argv, "--prior must be a finite number >= 0")
    _one_line_error(capsys, ["arena", "--models", models, "--temperature", "nan", "--port", "0"],
                    "--temperature must be a finite number")  # fmt: skip
    _one_line_error(capsys, ["arena", "--models", models, "--port", str(busy_port)],
                    f"cannot listen on 127.0.0.1:{busy_port}")  # fmt: skip


def test_serve_flags_fail_before_any_model_loads(tmp_path, capsys, busy_port):
    # the checkpoint does not exist: each error below must come before it is even looked at
    base = ["serve", "--flash", str(tmp_path / "no-ckpt"), "--state-dir", str(tmp_path / "st")]
    for argv, match in [
        (["--port", "70000"], "--port must be between 0 and 65535, got 70000"),
        (["--port", "-1"], "--port must be between 0 and 65535, got -1"),
        (["--port", str(busy_port)], f"cannot listen on 127.0.0.1:{busy_port}"),
        (["--host", "no-such-host.invalid"], "--host 'no-such-host.invalid' does not resolve"),
        (["--default-max-tokens", "0"], "--default-max-tokens must be >= 1, got 0"),
        (["--device", "nonsense"], "--device 'nonsense' is not a torch device"),
    ]:
        _one_line_error(capsys, base + argv, match)
    assert not (tmp_path / "st").exists()  # nothing was created either


def test_report_damaged_markers_and_shapes(tmp_path):
    run = make_climb_run(tmp_path / "run", rl=False, evals=True)
    marker = run / "06-sft-m" / "_stage.json"
    m = json.loads(marker.read_text())
    marker.write_text(json.dumps({**m, "stage": ["not", "a", "key"]}))  # unhashable stage
    ev = run / "08-eval" / "m.json"
    rec = json.loads(ev.read_text())
    rec["sft"]["bpb"] = 3  # an object expected: read with .get
    ev.write_text(json.dumps(rec))
    (run / "08-eval" / "eval.json").write_text(json.dumps({"m": rec}))
    (run / "04-pretrain-m" / "run").mkdir(parents=True, exist_ok=True)
    (run / "04-pretrain-m" / "run" / "routing.jsonl").write_text("7\n")
    out = write_html_report(run, tmp_path / "r.html")
    text = out.read_text()
    assert "AttributeError" in text  # one section became a note, the report was written


def test_report_output_and_deep_json_errors(tmp_path, capsys):
    run = make_climb_run(tmp_path / "run", rl=False, evals=False)
    (tmp_path / "afile").write_text("x")
    _one_line_error(capsys, ["report", str(run), "--out", str(tmp_path)], "is a directory")
    _one_line_error(capsys, ["report", str(run), "--out", str(tmp_path / "afile" / "r.html")],
                    "report: cannot write")  # fmt: skip
    assert (tmp_path / "afile").read_text() == "x"
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    _one_line_error(capsys, ["report", str(deep)], "cannot read")


def test_problems_export_and_router_fit_outputs(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    exp = ["problems", "export", "--n-per-tier", "1", "--families", "arith", "--tiers", "1"]
    for out in (str(tmp_path), ""):
        _one_line_error(capsys, [*exp, "--out", out], "must name a file to write")
    _one_line_error(capsys, [*exp, "--out", str(tmp_path / "afile" / "x.jsonl")], "cannot write")
    assert (tmp_path / "afile").read_text() == "x"
    (tmp_path / "d.json").mkdir()
    fit = ["router", "fit", "--thinking", "t", "--code-flash", "f"]
    _one_line_error(capsys, [*fit, "--out", str(tmp_path / "d.json")], "is a directory")
    _one_line_error(capsys, [*fit, "--out", str(tmp_path / "r.json"), "--device", "bogus"],
                    "is not a torch device")  # fmt: skip


def test_keys_and_router_files_that_are_not_text_or_objects(tmp_path):
    """A keys or router file that is not UTF-8 (or JSON that is not an object) is one error line,
    not a UnicodeDecodeError / AttributeError traceback."""
    from hillclimb.serve.auth import load_keys_file
    from hillclimb.serve.router import Router

    bad = tmp_path / "keys.json"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(HillclimbError, match="malformed keys file"):
        load_keys_file(bad)
    rb = tmp_path / "router.json"
    rb.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(HillclimbError, match="cannot read router weights"):
        Router.load(rb, flash=None)
    rb.write_text("[1, 2]")
    with pytest.raises(HillclimbError, match="not a hillclimb router file"):
        Router.load(rb, flash=None)
