"""Outside checks (session 22) of `hillclimb eval` and `hillclimb registry add-eval`: an `eval --out`
directory given to `add-eval`, a URL's result attached to a checkpoint, a server that wants an
API key, and how many items the problems suite will run."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hillclimb.cli import main


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("s22evalcli") / "code-flash"
    assert main(["init", "--preset", "code-flash-micro", "--out", str(d), "--seed", "0"]) == 0
    return d


@pytest.fixture
def server():
    """A real HTTP server on localhost: /v1/models lists one model and every POST answers one
    completion. `state["key"]`: the bearer key it wants (None: open), refused as our server does;
    `state["die_after"]`: POSTs answered before every later one drops the connection."""
    state: dict = {"key": None, "posts": 0, "die_after": None, "finish": "stop",
                   "content": "The answer is 1."}  # fmt: skip

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:  # noqa: ANN002
            pass

        def _send(self, code: int, obj: object) -> None:
            b = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        def _authorized(self) -> bool:
            if (
                state["key"] is None
                or self.headers.get("Authorization") == f"Bearer {state['key']}"
            ):
                return True
            msg = ("You didn't provide an API key. You need to provide your API key in an "
                   "Authorization header using Bearer auth (Authorization: Bearer YOUR_KEY).")  # fmt: skip
            self._send(401, {"error": {"message": msg, "code": "invalid_api_key"}})
            return False

        def do_GET(self) -> None:
            if not self.path.startswith("/v1/"):
                self._send(404, {"detail": "Not Found"})
            elif self._authorized():
                self._send(200, {"data": [{"id": "m"}]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not self._authorized():
                return
            state["posts"] += 1
            if state["die_after"] is not None and state["posts"] > state["die_after"]:
                self.close_connection = True
                self.connection.close()  # the server went away mid-run
                return
            choice = {"text": "    return 1\n", "finish_reason": state["finish"],
                      "message": {"role": "assistant", "content": state["content"]}}  # fmt: skip
            self._send(200, {"choices": [choice], "usage": {"completion_tokens": 3}})

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.handle_error = lambda *a: None
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", state
    srv.shutdown()
    srv.server_close()


def _ifeval_out(model: str, out: Path, capsys) -> Path:  # noqa: ANN001
    args = ["eval", "--model", model, "--suite", "ifeval", "--limit", "2", "--max-tokens", "4"]
    assert main([*args, "--out", str(out)]) == 0
    capsys.readouterr()
    return out / "ifeval.json"


# ---- A1: add-eval takes an `eval --out` directory ----------------------------------------------
def test_add_eval_takes_an_eval_out_directory(micro, tmp_path, capsys):
    """README: `registry add-eval CKPT eval.json  # an hillclimb eval --out DIR / --json result`;
    giving DIR said "eval file not found: DIR"."""
    out = tmp_path / "ev"
    _ifeval_out(str(micro), out, capsys)
    reg = ["--registry", str(tmp_path / "r.sqlite")]
    assert main(["registry", "add-eval", str(micro), str(out), *reg]) == 0
    assert "ifeval" in capsys.readouterr().out


def test_add_eval_names_the_files_of_a_directory_with_several_results(micro, tmp_path, capsys):
    out = tmp_path / "ev"
    _ifeval_out(str(micro), out, capsys)
    (out / "fim.json").write_text((out / "ifeval.json").read_text())
    (out / "notes.json").write_text("{}")  # not a result: not offered
    reg = ["--registry", str(tmp_path / "r.sqlite")]
    assert main(["registry", "add-eval", str(micro), str(out), *reg]) != 0
    err = capsys.readouterr().err
    assert "fim.json" in err and "ifeval.json" in err and "notes.json" not in err
    assert "Traceback" not in err and not (tmp_path / "r.sqlite").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["registry", "add-eval", str(micro), str(empty), *reg]) != 0
    assert "no evaluation result" in capsys.readouterr().err


# ---- A2: a URL's result is not silently a checkpoint's ----------------------------------------
def test_a_result_of_a_url_needs_force_to_be_attached_to_a_checkpoint(
    micro, server, tmp_path, capsys
):
    """`eval --model URL` then `add-eval CKPT result.json` attached the server's numbers to any
    checkpoint: nothing tells which weights the server ran."""
    url, _ = server
    res = _ifeval_out(url, tmp_path / "ev", capsys)
    reg = ["--registry", str(tmp_path / "r.sqlite")]
    assert main(["registry", "add-eval", str(micro), str(res), *reg]) != 0
    err = capsys.readouterr().err
    assert url in err and "--force" in err and "weights" in err
    assert main(["registry", "add-eval", str(micro), str(res), *reg, "--force"]) == 0
    assert "ifeval" in capsys.readouterr().out


# ---- A3: a server that wants a key -------------------------------------------------------------
def test_a_server_that_wants_a_key_says_how_to_pass_one(server, capsys, monkeypatch):
    url, state = server
    state["key"] = "sk-right-key-123"
    for var in ("HILLCLIMB_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    args = ["eval", "--model", url, "--suite", "ifeval", "--limit", "2"]
    assert main(args) != 0
    err = " ".join(capsys.readouterr().err.split())
    assert "--api-key" in err and "$HILLCLIMB_API_KEY" in err and "YOUR_KEY" not in err
    assert state["posts"] == 0  # before any item
    assert main([*args, "--api-key", "sk-wrong-key-456"]) != 0
    err = " ".join(capsys.readouterr().err.split())
    assert "--api-key" in err and "refused" in err and "sk-wrong-key-456" not in err
    monkeypatch.setenv("HILLCLIMB_API_KEY", "sk-right-key-123")
    assert main(args) == 0
    capsys.readouterr()


# ---- A4: how many items the problems suite runs ------------------------------------------------
def test_the_problems_suite_says_how_many_items_it_will_run(server, capsys):
    """`--n-items` is per family x tier x split, not a total: `--n-items 1` ran 46 items and
    nothing said so before the run."""
    url, state = server
    args = ["eval", "--model", url, "--suite", "problems", "--n-items", "1", "--json"]
    assert main([*args, "--families", "arith,logic", "--tiers", "1,2"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)  # stdout stays the JSON alone
    err = " ".join(cap.err.split())
    assert f"{res['n_items']} items" in err and "1 per family × tier" in err
    assert "2 families" in err and "2 tiers" in err and "2 splits" in err
    assert main([*args, "--families", "arith", "--tiers", "1", "--limit", "1"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "--limit 1" in err
    # completion: --n-items is per tier
    args = ["eval", "--model", url, "--suite", "completion", "--n-items", "1", "--json"]
    assert main([*args, "--timeout", "5"]) == 0
    cap = capsys.readouterr()
    n = json.loads(cap.out)["n_items"]
    assert f"completion suite: {n} items: 1 per tier" in " ".join(cap.err.split())


# ---- --limit: the first N items, asked and counted --------------------------------------------
def test_problems_limit_asks_only_the_items_it_scores(server, capsys):
    """`--suite problems --limit 2` asked the server for every item (all 8 here) and kept the
    first two: a quick run cost a full one, and its finish reasons, truncated share and token
    means were over the 8, beside accuracies over the 2."""
    url, state = server
    args = ["eval", "--model", url, "--suite", "problems", "--n-items", "1", "--limit", "2",
            "--families", "arith,logic", "--tiers", "1,2"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_items"] == 2 and state["posts"] == 2
    assert sum(res["finish_reasons"].values()) == 2 and res["n_generations"] == 2
    assert sum(c["n"] for c in res["cells"]) == 2


def test_fim_limit_is_a_total_not_per_item_set(server, capsys):
    """`--suite fim --limit 3` ran 3 text items and 3 test items (6); with fewer test items
    left than asked, their metrics are left out rather than reported as 0% of nothing."""
    url, state = server
    args = ["eval", "--model", url, "--suite", "fim", "--json", "--timeout", "5"]
    assert main([*args, "--n-items", "1", "--limit", "3"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)
    assert "fim suite: 4 items: 1 standard-library lines and 3 test-based" in cap.err
    assert "--limit 3 asks the first 3" in cap.err
    assert res["n_items"] == 3 == state["posts"] and res["n_text_items"] == 1
    assert res["metrics"]["test_pass"]["n"] == 2
    assert main([*args, "--limit", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_items"] == 2 and res["n_test_items"] == 0
    assert "test_pass" not in res["metrics"] and "test_pass" not in res["baseline"]


# ---- a server that dies mid-run ----------------------------------------------------------------
def test_a_server_that_dies_mid_run_is_a_clear_error_and_nothing_is_written(
    server, tmp_path, capsys, monkeypatch
):
    """A server that goes away mid-run: a one-line error naming it and the retries, and neither
    a result file nor a table made of the answers before it died."""
    from hillclimb.eval import backends

    monkeypatch.setattr(backends, "RETRY_DELAYS", (0.0, 0.0))
    url, state = server
    state["die_after"] = 3
    out = tmp_path / "out"
    args = ["eval", "--model", url, "--suite", "ifeval", "--n-items", "8", "--concurrency", "1"]
    assert main([*args, "--out", str(out)]) != 0
    cap = capsys.readouterr()
    err = " ".join(cap.err.split())
    assert "Traceback" not in err and url in err and "after 2 retries" in err
    assert not (out / "ifeval.json").exists() and cap.out == ""


# ---- a baseline beside every accuracy ----------------------------------------------------------
def test_every_problems_accuracy_has_its_baseline(server, capsys):
    """The per-kind accuracies (reasoning, code, held-out families) had no no-training baseline
    beside them; only the per-split ones did, on a separate line."""
    url, _ = server
    args = ["eval", "--model", url, "--suite", "problems", "--n-items", "2",
            "--families", "arith,code_function", "--tiers", "1"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    base = res["baseline"]
    assert set(res["metrics"]) <= set(base) and "accuracy/heldout/code" in base
    assert base["accuracy/heldout"] == res["baselines"]["heldout"]
    assert all(0.0 <= base[m] <= 1.0 for m in res["metrics"])
    assert main(args) == 0
    assert "no-training baseline" in capsys.readouterr().out


# ---- truncated answers -------------------------------------------------------------------------
def test_an_ifeval_answer_cut_off_by_max_tokens_follows_no_instruction(server, capsys):
    """A cut-off answer was scored as if whole: "ok" stopped by max_tokens obeyed "no more than
    20 words", "no commas", "all lower case", ... — a smaller --max-tokens scored higher."""
    url, state = server
    state["content"] = "ok"
    args = ["eval", "--model", url, "--suite", "ifeval", "--n-items", "17", "--json"]
    assert main(args) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["metrics"]["instruction_strict"]["value"] > 0  # the text obeys some limits
    state["finish"] = "length"
    assert main(args) == 0
    cut = json.loads(capsys.readouterr().out)
    assert cut["truncated_share"] == 1.0
    assert all(m["value"] == 0.0 for m in cut["metrics"].values())
    assert {r["status"] for r in cut["items"]} == {"truncated"}
    assert {r["status"] for r in whole["items"]} == {"pass", "fail"}
    assert all(v["value"] == 0.0 for v in cut["by_instruction"].values())


# ---- a problems-suite result in the registry ---------------------------------------------------
def test_a_problems_suite_result_keeps_its_families_tiers_and_kinds(
    micro, server, tmp_path, capsys
):
    """Its items were stored without family, tier or kind, so `registry compare --suite
    problems:arith` (or `:code`, `:t2`) matched no item."""
    url, _ = server
    out = tmp_path / "ev"
    args = ["eval", "--model", url, "--suite", "problems", "--n-items", "2",
            "--families", "arith,code_function", "--tiers", "1,2", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    reg = ["--registry", str(tmp_path / "r.sqlite")]
    other = tmp_path / "other"
    assert main(["init", "--preset", "code-flash-micro", "--out", str(other), "--seed", "1"]) == 0
    for ck in (micro, other):
        assert main(["registry", "add-eval", str(ck), str(out / "problems.json"), *reg,
                     "--force"]) == 0  # fmt: skip
    capsys.readouterr()
    for sel in ("problems:arith", "problems:code", "problems:t2"):
        assert main(["registry", "compare", str(micro), str(other), "--suite", sel, *reg,
                     "--json"]) in (0, 1), sel  # fmt: skip
        res = json.loads(capsys.readouterr().out)
        assert res["n_a"] == res["n_b"] == res["stats"]["n"] == 8, sel  # 2 x 2 cells x 2 splits


def test_a_url_without_its_api_base_says_to_add_v1(server, capsys):
    """`--model http://host:port` (no /v1) printed the server's `{"detail": "Not Found"}`."""
    url, _ = server
    base = url.removesuffix("/v1")
    assert main(["eval", "--model", base, "--suite", "ifeval", "--limit", "1"]) != 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"{base}/v1" in err and "API base URL" in err


# ---- ifeval items ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "ok"),
    [("NaN", False), ("-Infinity", False), ('{"a": NaN}', False), ("[1, Infinity]", False),
     ('{"a": 1}', True), ("```json\n[1, 2]\n```", True), ("5", True)],
)  # fmt: skip
def test_ifeval_json_is_json_not_python_s_reading_of_it(answer, ok):
    from hillclimb.eval.ifeval import INSTRUCTIONS

    assert INSTRUCTIONS["json"].check(answer, {}) is ok


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--batch-size", "0"), ("--baseline-train-n", "-1"), ("--samples-per-item", "-2"),
     ("--samples", "-1")],
)  # fmt: skip
def test_generator_eval_names_the_setting_that_is_out_of_range(micro, capsys, flag, value):
    """One message named three settings ("batch_size >= 1, baseline_train_n >= 0, ...") and no
    value; `--samples -1` was taken (and kept every sample but the last)."""
    assert main(["eval", "--model", str(micro), flag, value]) != 0
    err = capsys.readouterr().err
    assert f"{flag} must be >= " in err and f"got {value}" in err


def test_a_result_that_cannot_be_written_is_shown_and_saved_elsewhere(
    server, tmp_path, capsys, monkeypatch
):
    """`--out` that cannot take the file at the end (here /proc, where nothing can be made; as
    well a disk that filled or went read-only meanwhile) dropped the finished evaluation
    unprinted and unsaved."""
    url, _ = server
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    args = ["eval", "--model", url, "--suite", "ifeval", "--limit", "2", "--json",
            "--out", "/proc/hillclimb-no-such-dir"]  # fmt: skip
    assert main(args) == 2
    cap = capsys.readouterr()
    if os.geteuid() != 0:  # not root: /proc is seen to be unwritable before any work is done
        assert cap.out == "" and "/proc is not writable" in cap.err
        return
    res = json.loads(cap.out)
    assert res["n_items"] == 2 and "cannot write /proc/hillclimb-no-such-dir" in cap.err
    saved = list(tmp_path.glob("hillclimb-ifeval-*.json"))
    assert len(saved) == 1 and str(saved[0]) in cap.err
    assert json.loads(saved[0].read_text())["items"] == res["items"]
