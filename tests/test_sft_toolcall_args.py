"""SFT records' tool calls must carry JSON-object arguments: the chat template writes a string
verbatim into `<tool_call>`, so a string that is not a JSON object taught malformed calls."""

from __future__ import annotations

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.tokenizer.io import bytelevel_tokenizer
from hillclimb.train.sft_data import normalize_chat


def _rec(arguments) -> dict:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "read_file", "arguments": arguments},
    }
    return {"messages": [
        {"role": "user", "content": "look"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]}  # fmt: skip


@pytest.mark.parametrize("bad", ['{"path": "a.py"', "path=a.py", "[1, 2]", "3", "  "])
def test_arguments_that_are_not_a_json_object_are_refused(bad):
    with pytest.raises(HillclimbError, match=r"data.jsonl:3: messages\[1\]\.tool_calls\[0\]"):
        normalize_chat(_rec(bad), "data.jsonl:3")


@pytest.mark.parametrize("good", ['{"path": "a.py"}', {"path": "a.py"}, "{}"])
def test_json_object_arguments_pass_unchanged(good):
    out = normalize_chat(_rec(good), "x")
    assert out["messages"][1]["tool_calls"][0]["function"]["arguments"] == good


def test_empty_string_arguments_render_as_an_empty_object():
    tok = bytelevel_tokenizer()
    msgs = normalize_chat(_rec(""), "x")["messages"]
    assert msgs[1]["tool_calls"][0]["function"]["arguments"] == "{}"
    text = tok.apply_chat_template(msgs)
    assert '"arguments": {}}' in text and '"arguments": }' not in text
