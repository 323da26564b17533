"""`hillclimb tokenizer train`: layouts, saving/loading (ours + transformers), determinism, errors."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from unittest import mock

import pytest

import hillclimb.cli
from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.tokenizer.specials import SPECIAL_TOKENS

FIXTURES = Path(__file__).parent / "fixtures" / "tokenizer"
_spec = importlib.util.spec_from_file_location("tok_corpus_maker", FIXTURES / "corpus_maker.py")
corpus_maker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus_maker)


def main(argv: list[str]) -> int:
    """The real `hillclimb` entry point, loading only this area's commands (so a half-built
    stage elsewhere in the tree cannot break these tests)."""
    with mock.patch.object(hillclimb.cli, "COMMAND_MODULES", ["hillclimb.tokenizer.cli"]):
        return hillclimb.cli.main(argv)


SAMPLES = [
    "def f(x):\n    return x + 1\n",
    "<|im_start|>user\nhi<|im_end|>\n<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>",
    "int main(void) {\r\n\treturn 0;\r\n}\r\n",
    "naïve café 😀 12345 \x00\x1b[0m",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return corpus_maker.write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def tokdir(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tok"
    rc = main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "600",
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    return out


def test_layout_and_special_ids(tokdir: Path):
    import hillclimb

    assert {p.name for p in tokdir.iterdir()} >= {
        "tokenizer.json", "tokenizer_config.json", "tokenizer_train.json"
    }  # fmt: skip
    tok = hillclimb.load_tokenizer(tokdir)
    assert tok.vocab_size == 600
    # Specials come right after the BPE vocabulary, in SPECIAL_TOKENS order.
    assert [tok.token_id(t) for t in SPECIAL_TOKENS] == list(range(600 - len(SPECIAL_TOKENS), 600))
    assert tok.encode("<|im_start|>") == [tok.token_id("<|im_start|>")]
    plain = tok.encode("<|im_start|>", allow_special=False)
    assert len(plain) > 1 and tok.decode(plain) == "<|im_start|>"
    meta = json.loads((tokdir / "tokenizer_train.json").read_text())
    train_ids = {d["id"] for d in corpus_maker.documents() if d["split"] == "train"}
    assert meta["selection"]["split"] == "train"
    assert meta["selection"]["documents"] == len(train_ids)  # duplicates count once


def test_transformers_loads_it_with_identical_encodings(tokdir: Path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    import hillclimb

    ours = hillclimb.load_tokenizer(tokdir)
    fast = PreTrainedTokenizerFast(tokenizer_file=str(tokdir / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(str(tokdir))
    for s in SAMPLES:
        ids = ours.encode(s)
        assert fast.encode(s, add_special_tokens=False) == ids
        assert auto.encode(s, add_special_tokens=False) == ids
        assert auto.decode(ids) == s == ours.decode(ids)
    assert auto.eos_token == "<|im_end|>"
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}]
    rendered = auto.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert rendered == ours.apply_chat_template(msgs, add_generation_prompt=True)


def test_learns_indentation_and_keeps_number_digits_single(tokdir: Path):
    import hillclimb

    tok = hillclimb.load_tokenizer(tokdir)
    texts = [tok.decode([i]) for i in range(tok.vocab_size - len(SPECIAL_TOKENS))]
    assert "\n        " in texts and "\n    " in texts  # newline + indent learned as one token
    assert any(t.startswith("\n    return") for t in texts)  # a line-opening keyword merged
    assert not any(re.search(r"\d\D|\D\d", t) for t in texts)  # digits never join non-digits
    ids = tok.encode("    x = 2048\n")
    assert [tok.decode([i]) for i in ids][-5:-1] == ["2", "0", "4", "8"]


def test_training_is_deterministic(corpus: Path, tmp_path: Path):
    outs = []
    for k, seed in enumerate([7, 7, 8]):
        out = tmp_path / f"t{k}"
        assert main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "500",
                     "--max-bytes", "20000", "--seed", str(seed), "--out", str(out)]) == 0  # fmt: skip
        outs.append(out)
    a, b, c = ((o / "tokenizer.json").read_bytes() for o in outs)
    assert a == b
    fp = [json.loads((o / "tokenizer_train.json").read_text())["selection"] for o in outs]
    assert fp[0]["fingerprint"] == fp[1]["fingerprint"] != fp[2]["fingerprint"]
    assert all(s["bytes"] <= 20000 for s in fp)
    assert a != c  # a different seed picked different documents


def test_train_tokenizer_function_is_order_independent():
    from hillclimb.tokenizer.train import train_tokenizer

    texts = [d["text"] for d in corpus_maker.documents(4)]
    t1 = train_tokenizer(texts, 400)
    t2 = train_tokenizer(list(reversed(texts)), 400)
    assert t1.hf.to_str() == t2.hf.to_str()
    assert t1.vocab_size == 400
    gpt2 = train_tokenizer(texts, 400, pretokenizer="gpt2")
    s = "def total(self) -> int:\n        return 1\n"
    assert gpt2.decode(gpt2.encode(s)) == s
    assert len(t1.encode(s)) < len(gpt2.encode(s))


def test_plain_directory_and_jsonl_file(tmp_path: Path):
    src = tmp_path / "tree"
    (src / "pkg").mkdir(parents=True)
    for p in (FIXTURES / "src").iterdir():
        (src / "pkg" / p.name).write_text(p.read_text())
    (src / "pkg" / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (src / "pkg" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    out = tmp_path / "tok_plain"
    assert main(["tokenizer", "train", "--corpus", str(src), "--vocab-size", "300",
                 "--out", str(out)]) == 0  # fmt: skip
    from hillclimb.tokenizer.train import iter_documents

    langs = sorted(d.language for d in iter_documents(src))
    assert langs == ["c", "javascript", "markdown", "python"]  # binary / non-UTF-8 skipped

    jl = tmp_path / "docs.jsonl"
    jl.write_text(
        "".join(json.dumps({"text": d["text"]}) + "\n" for d in corpus_maker.documents(3))
    )
    out2 = tmp_path / "tok_jsonl"
    assert main(["tokenizer", "train", "--corpus", str(jl), "--vocab-size", "300",
                 "--out", str(out2)]) == 0  # fmt: skip
    sel = json.loads((out2 / "tokenizer_train.json").read_text())["selection"]
    assert 0 < sel["documents"] <= 12  # splits assigned by content hash


def test_bad_input_is_a_clean_error(corpus: Path, tmp_path: Path, capsys):
    from hillclimb.tokenizer.train import select_documents, train_tokenizer

    with pytest.raises(ConfigError):
        train_tokenizer(["abc"], 100)
    with pytest.raises(HillclimbError, match="does not exist"):
        select_documents(tmp_path / "missing")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(HillclimbError, match=r"bad\.jsonl:2: malformed JSON"):
        select_documents(bad)
    only_val = tmp_path / "val.jsonl"
    only_val.write_text(json.dumps({"text": "x", "split": "val"}) + "\n")
    with pytest.raises(HillclimbError, match="no documents"):
        select_documents(only_val)

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("precious")
    rc = main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "400",
               "--out", str(taken)])  # fmt: skip
    assert rc == 2 and "already exists" in capsys.readouterr().err
    assert (taken / "keep.txt").read_text() == "precious"
    assert main(["tokenizer", "train", "--corpus", str(tmp_path / "nope"), "--vocab-size",
                 "400", "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_code_v1_tokenizers_keep_their_rule(tmp_path: Path):
    """Issue 16 changed the pattern to code-v2; a code-v1 tokenizer.json stores its own regex, so
    files trained before load and encode exactly as they did."""
    import hillclimb
    from hillclimb.tokenizer.pretok import CODE_PATTERN, CODE_PATTERNS, CODE_V1_PATTERN
    from hillclimb.tokenizer.train import TrainConfig, save_trained, train_from_corpus

    src = tmp_path / "src"
    src.mkdir()
    for p in (FIXTURES / "src").iterdir():
        (src / p.name).write_text(p.read_text())
    metas = {}
    for kind in ("code", "code-v1"):
        tok, meta = train_from_corpus(TrainConfig(str(src), 400, pretokenizer=kind))
        save_trained(tok, meta, tmp_path / kind)
        metas[kind] = meta
    assert (
        metas["code"]["pattern_version"] == "code-v2" and metas["code"]["pattern"] == CODE_PATTERN
    )
    assert metas["code-v1"]["pattern"] == CODE_V1_PATTERN == CODE_PATTERNS["code-v1"]
    old = hillclimb.load_tokenizer(tmp_path / "code-v1")
    pre = json.loads(old.hf.to_str())["pre_tokenizer"]["pretokenizers"][0]
    assert pre["pattern"]["Regex"] == CODE_V1_PATTERN
    s = "        return self.items[i]):\n"
    assert old.decode(old.encode(s)) == s
    assert "Ġself." in [piece for piece, _ in old.hf.pre_tokenizer.pre_tokenize_str(s)]  # v1 kept
