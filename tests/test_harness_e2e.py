"""End to end: `hillclimb harness run` against a real HTTP OpenAI-compatible endpoint.

The endpoint is a tiny http.server on 127.0.0.1 that answers /v1/chat/completions with scripted
OpenAI tool calls (the reference solution of whichever task the conversation is about) — a
scripted agent over real HTTP, which exercises OpenAIClient, the tool loop, grading, the results
table and telemetry exactly as a real model would. A second server returns garbage, and a closed
port plays an endpoint that is down.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.harness.clients import OpenAIClient, reference_actions
from hillclimb.harness.task import find_task_dirs, load_task
from hillclimb.harness.taskgen.generate import generate_tasks
from hillclimb.harness.telemetry import Telemetry

pytestmark = pytest.mark.slow


def _server(handler_fn):
    class H(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, payload = handler_fn(self.path, body)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/v1"


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tasks")
    s = generate_tasks(out, 2, seed=11, kinds=["bugfix", "repo_qa"], multi_project_prob=0.0)
    assert s["generated"] == 2
    return out


def test_harness_run_over_http(tasks, tmp_path):
    scripts = {}
    for d in find_task_dirs(tasks):
        t = load_task(d)
        scripts[t.instruction.strip()] = reference_actions(t)
    seen = []

    def fake_model(path, body):
        assert path == "/v1/chat/completions" and body["model"] == "code-flash"
        assert {t["function"]["name"] for t in body["tools"]} >= {"edit", "submit"}
        seen.append(body)
        user = body["messages"][1]["content"]
        script = next(v for k, v in scripts.items() if user.startswith(k))
        turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
        a = script[turn]
        msg = {"role": "assistant", "content": None, "tool_calls": [{
            "id": f"call_{turn}", "type": "function",
            "function": {"name": a["name"], "arguments": json.dumps(a["arguments"])}}]}  # fmt: skip
        return 200, {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls"}],
                     "usage": {"prompt_tokens": 100 + turn, "completion_tokens": 10}}  # fmt: skip

    srv, url = _server(fake_model)
    out = tmp_path / "run"
    try:
        rc = main(["harness", "run", "--tasks", str(tasks), "--model", url, "--model-name", "code-flash",
                   "--out", str(out), "--concurrency", "2", "--json"])  # fmt: skip
    finally:
        srv.shutdown()
    assert rc == 0 and seen
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["resolved"] and r["exit_status"] == "submitted" for r in rows)
    assert all(r["model"] == "code-flash" and r["completion_tokens"] > 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resolved"] == 2 and set(summary["by_kind"]) == {"bugfix", "repo_qa"}
    for p in (out / "trajectories").glob("*.json"):
        traj = json.loads(p.read_text())
        assert traj["format"] == "hillclimb-trajectory-v1" and traj["grade"]["resolved"]
        assert traj["messages"][2]["tool_calls"][0]["function"]["name"]
        assert traj["prompt_tokens"] >= 100 and traj["wall_s"] > 0 and traj["steps"]
    with Telemetry(out / "telemetry.db") as tel:
        st = tel.stats()
        assert (
            st["episodes"] == 2
            and st["resolved"] == 2
            and st["by_model"]["code-flash"]["episodes"] == 2
        )
        assert st["edits"].get("applied", 0) >= 1
    assert (
        main(
            [
                "telemetry",
                "export",
                "--db",
                str(out / "telemetry.db"),
                "--out",
                str(tmp_path / "exp"),
            ]
        )
        == 0
    )
    assert len((tmp_path / "exp" / "sft.jsonl").read_text().splitlines()) == 2


def test_endpoint_down_or_garbage_errors_per_task(tasks, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    out = tmp_path / "down"
    assert (
        main(
            ["harness", "run", "--tasks", str(tasks), "--model", dead, "--out", str(out), "--json"]
        )
        == 1  # every task errored: a failed run (results kept; resume retries them)
    )
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(
        r["exit_status"] == "model_error" and "unreachable" in r["error"] for r in rows
    )

    replies = iter(
        [(200, b"<html>not json</html>"), (200, {"choices": []}), (500, {"error": "boom"})] * 10
    )
    srv, url = _server(lambda path, body: next(replies))
    try:
        client = OpenAIClient(url, "m", retries=0)
        for expected in ("non-JSON", "malformed chat completion", "HTTP 500"):
            with pytest.raises(Exception, match=expected):
                client.chat(
                    [{"role": "user", "content": "x"}], [], max_tokens=5, temperature=0.0, seed=0
                )
        out2 = tmp_path / "garbage"
        assert (
            main(
                [
                    "harness",
                    "run",
                    "--tasks",
                    str(tasks),
                    "--model",
                    url,
                    "--out",
                    str(out2),
                    "--json",
                ]
            )
            == 1
        )
    finally:
        srv.shutdown()
    rows = [json.loads(x) for x in (out2 / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["exit_status"] == "model_error" for r in rows)
    # a resumed run retries errored tasks (the endpoint may be back): here it still is down
    assert (
        main(
            ["harness", "run", "--tasks", str(tasks), "--model", dead, "--out", str(out), "--json"]
        )
        == 1  # every task errored: a failed run (results kept; resume retries them)
    )
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


def test_local_checkpoint_client(tmp_path):
    pytest.importorskip("hillclimb.serve.engine")
    from hillclimb.harness.clients import LocalClient

    ck = tmp_path / "ck"
    if main(["init", "--preset", "code-flash-tiny", "--out", str(ck), "--seed", "0"]) != 0:
        pytest.skip("init preset not available")
    client = LocalClient(ck)
    msgs = [{"role": "user", "content": "hi"}]
    a = client.chat(msgs, [], max_tokens=8, temperature=0.0, seed=0)
    b = client.chat(msgs, [], max_tokens=8, temperature=0.0, seed=0)
    assert 0 < a.usage.completion_tokens <= 8 and a.usage.prompt_tokens > 0
    assert (a.content, a.raw) == (b.content, b.raw)  # greedy: deterministic


def test_tiny_model_episode_ends_with_context_exhausted_not_a_crash(tmp_path):
    """A micro model (512-token context) asked for 4,096 tokens per turn (or the default, what
    the context leaves): turns get what fits, and when the history fills the context the episode ends `context_exhausted`."""
    pytest.importorskip("hillclimb.serve.engine")
    from hillclimb.harness.agent import EpisodeLimits, run_episode
    from hillclimb.harness.clients import ContextExhausted, LocalClient

    ck = tmp_path / "ck"
    assert main(["init", "--preset", "thinking-micro", "--out", str(ck), "--seed", "0"]) == 0
    client = LocalClient(ck)
    long = [{"role": "user", "content": "word " * 600}]
    with pytest.raises(ContextExhausted, match="context tokens"):
        client.chat(long, [], max_tokens=4096, temperature=0.0, seed=0)
    r = client.chat(
        [{"role": "user", "content": "hi"}], [], max_tokens=4096, temperature=0.0, seed=0
    )
    assert r.usage.prompt_tokens + r.usage.completion_tokens <= client.engine.max_context
    # the default (None) asks for what the context leaves
    assert EpisodeLimits().max_tokens_per_turn is None
    r = client.chat(
        [{"role": "user", "content": "hi"}], [], max_tokens=None, temperature=0.0, seed=0
    )
    assert r.usage.prompt_tokens + r.usage.completion_tokens <= client.engine.max_context
    tasks = tmp_path / "tasks"
    assert main(["harness", "generate", "--out", str(tasks), "--n", "1", "--seed", "0"]) == 0
    from hillclimb.harness.task import load_task

    task = load_task(next(p for p in tasks.iterdir() if p.is_dir()))
    ep = run_episode(task, client, EpisodeLimits(max_steps=50, temperature=0.0, seed=0))
    # the task prompt with the full tool schema alone is ~4k tokens: the first turn cannot fit
    assert ep.exit_status == "context_exhausted" and "context tokens" in ep.error


def test_endpoint_client_follows_the_endpoints_context():
    """`max_tokens=None` (harness run's default) leaves `max_tokens` out, so the server's own
    default applies, capped by its context; a context_length_exceeded 400 ends the episode
    `context_exhausted`, not `model_error`."""
    import httpx

    from hillclimb.harness.clients import ContextExhausted, ModelError

    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if body["messages"][-1]["content"] == "long":
            err = {"message": "too long", "type": "invalid_request_error",
                   "param": "messages", "code": "context_length_exceeded"}  # fmt: skip
            return httpx.Response(400, json={"error": err})
        if body["messages"][-1]["content"] == "bad":
            return httpx.Response(400, json={"error": {"message": "no", "code": "invalid_value"}})
        msg = {"role": "assistant", "content": "ok"}
        return httpx.Response(200, json={"choices": [{"message": msg, "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": 3, "completion_tokens": 1}})  # fmt: skip

    client = OpenAIClient("http://test/v1", "m")
    client._client = httpx.Client(transport=httpx.MockTransport(handler))
    r = client.chat(
        [{"role": "user", "content": "hi"}], [], max_tokens=None, temperature=0.0, seed=0
    )
    assert r.content == "ok" and "max_tokens" not in bodies[-1]
    client.chat([{"role": "user", "content": "hi"}], [], max_tokens=7, temperature=0.0, seed=None)
    assert bodies[-1]["max_tokens"] == 7
    with pytest.raises(ContextExhausted):
        client.chat(
            [{"role": "user", "content": "long"}], [], max_tokens=None, temperature=0.0, seed=0
        )
    with pytest.raises(ModelError) as e:
        client.chat(
            [{"role": "user", "content": "bad"}], [], max_tokens=None, temperature=0.0, seed=0
        )
    assert not isinstance(e.value, ContextExhausted)
