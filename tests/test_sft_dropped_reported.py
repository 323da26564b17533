"""SFT examples the row cannot hold are reported, by reason and kind (session 22).

A climb's two tool episodes were both longer than the SFT row and dropped without a word: the
sft-data stage said `tool: 2`, nothing else mentioned it. `hillclimb sft` now warns on stderr,
`run.json` carries `sft_dropped_by`, and the climb's summary.json `models.M.sft.dropped`."""

from __future__ import annotations

import json

from hillclimb.cli import main


def test_a_too_long_example_is_reported_by_kind(tmp_path, capsys):
    ck = tmp_path / "ck"
    assert main(["init", "--preset", "thinking-micro", "--out", str(ck), "--seed", "0"]) == 0
    short = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    }
    long = {"messages": [{"role": "user", "content": "x " * 200},
                         {"role": "assistant", "content": "y " * 200}]}  # fmt: skip
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in (short, short, long)))
    out = tmp_path / "o"
    rc = main(["sft", "--from", str(ck), "--data", str(f), "--out", str(out), "--steps", "1",
               "--seq-len", "64", "--batch-size", "2", "--threads", "1", "--val-fraction", "0"])  # fmt: skip
    assert rc == 0
    err = capsys.readouterr().err
    assert "WARNING dropped 1 of 3 examples (too_long:chat 1;" in err
    extra = json.loads((out / "run.json").read_text())["extra"]
    assert extra["sft_dropped"] == 1 and extra["sft_dropped_by"] == {"too_long:chat": 1}
