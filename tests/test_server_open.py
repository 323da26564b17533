"""Open mode (no keys) with one model, the `hillclimb serve` command in a subprocess, the
`hillclimb keys` operator commands, and the `hillclimb chat` terminal client."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from _server_util import load_engines, make_checkpoints, wait_for
from hillclimb.cli import main as cli_main
from hillclimb.serve.chat_cli import ChatSession, chat_loop, normalize_url
from hillclimb.serve.server import ServerThread, banner, build_state, free_port

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("open"))


@pytest.fixture(scope="module")
def server(ckpts, tmp_path_factory):
    engines = load_engines({"code-flash": ckpts["code-flash"]}, max_batch=4)
    db = tmp_path_factory.mktemp("db") / "usage.sqlite"
    state = build_state(engines, db=db, checkpoints={"code-flash": ckpts["code-flash"]})
    with ServerThread(state) as srv:
        yield srv


def test_open_mode_single_model(server):
    assert server.state.open_mode
    text = banner(server.state, server.url)
    assert "OPEN MODE" in text and "ANYONE" in text
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="anything", max_retries=0)
    assert [m.id for m in c.models.list().data] == ["code-flash", "auto"]
    r = c.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert r.headers["x-hillclimb-routed-to"] == "code-flash"
    body = r.parse()
    assert body.model_extra["hillclimb"]["reason"] == "only code-flash is loaded"
    with pytest.raises(openai.NotFoundError):  # thinking is not loaded
        c.completions.create(model="thinking", prompt="x")
    # open-mode usage is still accounted, under the "open" account
    usage = server.state.db.usage()["accounts"]
    assert usage[0]["name"] == "open" and usage[0]["requests"] >= 1
    # default prices come from the checkpoint's active parameters (code-flash-micro)
    m = server.state.models["code-flash"]
    assert m.active_params and m.price.prompt == pytest.approx(m.active_params / 1e9)


def test_chat_session_and_loop(server):
    assert normalize_url("http://h:1/") == "http://h:1/v1"
    assert normalize_url("http://h:1/v1") == "http://h:1/v1"
    s = ChatSession(server.url, model="code-flash", max_tokens=6, temperature=0, system="sys")
    reply = s.send("hello")
    assert reply.usage and reply.usage["completion_tokens"] >= 1
    assert [m["role"] for m in s.history] == ["system", "user", "assistant"]
    assert s.history[-1]["content"] == reply.content.strip()
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=100)
    lines = io.StringIO(
        "/models\n/model nope\nhi\n/model code-flash\nhi\n/think\n/reset\n/bogus\n/exit\n"
    )
    assert chat_loop(s, console, lines) == 0
    text = out.getvalue()
    assert "models: code-flash, auto" in text
    assert "does not exist" in text  # the unknown model's 404 is shown, the chat goes on
    assert "reasoning: shown in full" in text and "conversation reset" in text
    assert "unknown command /bogus" in text
    assert [m["role"] for m in s.history] == ["system"]


def test_chat_without_max_tokens_fits_the_context(server):
    """`hillclimb chat` sent max_tokens 512 by default: a 512-token model answered 400 on the
    first turn. Without the flag it sends none, and the server caps by what the context leaves."""
    s = ChatSession(server.url, model="code-flash", temperature=0)
    reply = s.send("hello")
    ctx = server.state.models["code-flash"].engine.max_context
    assert 1 <= reply.usage["completion_tokens"] <= ctx


def test_keys_cli(tmp_path, capsys):
    db = tmp_path / "k.sqlite"
    assert (
        cli_main(
            [
                "keys",
                "create",
                "--db",
                str(db),
                "--name",
                "ann",
                "--credits",
                "2.5",
                "--rpm",
                "30",
                "--json",
            ]
        )
        == 0
    )
    created = json.loads(capsys.readouterr().out)
    assert created["key"].startswith("hc-") and created["credits"] == 2.5
    assert cli_main(["keys", "create", "--db", str(db), "--name", "ann"]) == 2  # duplicate name
    assert cli_main(["keys", "credit", "--db", str(db), "--name", "ann", "--add", "1"]) == 0
    capsys.readouterr()
    assert cli_main(["keys", "usage", "--db", str(db), "--json"]) == 0
    usage = json.loads(capsys.readouterr().out)
    (acc,) = usage["accounts"]
    assert acc["name"] == "ann" and acc["credits"] == 3.5 and acc["rate_limit_rpm"] == 30
    assert cli_main(["keys", "usage", "--db", str(db)]) == 0
    assert "ann" in capsys.readouterr().out
    assert cli_main(["keys", "usage", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert cli_main(["serve"]) == 2  # no model given: one-line error
    # bad serving flags fail before any checkpoint is read (this directory has none)
    for bad, why in (
        (["--stream-interval", "5"], "--stream-interval"),
        (["--threads", "0"], "--threads"),
    ):
        assert cli_main(["serve", "--flash", str(tmp_path), *bad]) == 2
        assert why in capsys.readouterr().err


@pytest.mark.slow
def test_serve_command_subprocess(ckpts, tmp_path):
    port = free_port()
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"hc-subprocess-key-1": {"name": "sub", "credits": 100}}))
    env = {**os.environ, "PYTHONPATH": SRC, "HILLCLIMB_API_KEYS": ""}
    cmd = [
        sys.executable,
        "-m",
        "hillclimb",
        "serve",
        "--thinking",
        str(ckpts["thinking"]),
        "--flash",
        str(ckpts["code-flash"]),
        "--port",
        str(port),
        "--keys",
        str(keys),
        "--db",
        str(tmp_path / "u.sqlite"),
        "--max-batch",
        "4",
        "--device",
        "cpu",
        "--log-level",
        "warning",
        # the draft model forced: by default the start-up timing decides, and a micro pair on a
        # busy machine may measure either way (session 24); this test is about the subprocess
        "--draft",
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(url + "/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None

        # start-up compiles both models' decode steps (the CPU default; cold cache ≈10-30 s)
        assert wait_for(up, timeout=240, interval=0.2) and proc.poll() is None
        health = httpx.get(url + "/health").json()
        assert health["auth"] == "keys" and health["speculative"] is True
        models = health["models"].values()
        assert all(m["compiled_decode"] and m["compiled_batch"] for m in models), health
        assert all(m["engine_process"] for m in models), health  # the default layout
        engine_pid = next(iter(models))["engine_pid"]
        c = openai.OpenAI(base_url=url + "/v1", api_key="hc-subprocess-key-1", max_retries=0)
        r = c.chat.completions.create(
            model="thinking", max_tokens=4, messages=[{"role": "user", "content": "x"}]
        )
        assert r.usage.completion_tokens >= 1
        r = c.chat.completions.create(
            model="auto",
            max_tokens=3,  # router: RPC scoring
            messages=[{"role": "user", "content": "def f(x):"}],
        )
        assert r.usage.completion_tokens >= 1
        chunks = list(
            c.completions.create(
                model="code-flash", prompt="def add(a, b):", max_tokens=5, stream=True
            )
        )
        assert chunks and chunks[-1].choices[0].finish_reason in ("stop", "length")
        assert httpx.get(url + "/v1/models").status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert f"http://127.0.0.1:{port}/v1" in out
    assert wait_for(lambda: not Path(f"/proc/{engine_pid}").exists(), timeout=30), out
    assert "auth: API keys required" in out
    assert "speculative decoding" in out
    time.sleep(0)
