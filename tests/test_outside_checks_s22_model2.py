"""Outside checks (session 22, round 2) on the model contracts: loading checkpoints whose
config.json / hillclimb.json are hand-edited, and what `hillclimb export` hands to transformers /
vLLM / llama.cpp (padding ids, a tokenizer from another run, an output inside the checkpoint).
Each test failed before its fix."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.model.checkpoint import load_model, save_checkpoint
from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("s22m2") / "ck"
    save_checkpoint(build_model(get_preset("thinking-micro"), seed=0), d)
    return d


def _copy(base, tmp_path, name="ck"):
    d = tmp_path / name
    shutil.copytree(base, d)
    return d


def _edit_json(path, fn):
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def _one_line_error(capsys, rc, *needles):
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


# ---- a foreign config.json with values of the wrong type -----------------------------------------
@pytest.mark.parametrize(
    "key, value",
    [
        ("tie_word_embeddings", "false"),  # was: a truthy string → tied, stored lm_head ignored
        ("norm_topk_prob", "false"),  # was: read as True
        ("num_experts_per_tok", True),  # was: top_k 1
        ("num_experts_per_tok", 2.9),  # was: top_k 2 (truncated)
        ("rope_theta", "5000"),  # was: parsed from the string (transformers cannot)
        ("vocab_size", None),  # was: an int() message that named no field
        ("mlp_only_layers", "0"),  # was: iterated as characters
    ],
)
def test_foreign_config_json_value_of_the_wrong_type_names_the_field(base, tmp_path, key, value):
    ck = _copy(base, tmp_path)
    (ck / "hillclimb.json").unlink()  # a plain HF directory: config.json is the config

    def edit(d):
        d[key] = value
        if key == "rope_theta":
            d["rope_parameters"] = {"rope_type": "default", "rope_theta": value}

    _edit_json(ck / "config.json", edit)
    with pytest.raises(HillclimbError, match=key):
        load_model(ck)


def test_foreign_config_json_with_integral_floats_and_defaults_still_loads(base, tmp_path):
    ck = _copy(base, tmp_path)
    (ck / "hillclimb.json").unlink()
    # JSON writers that emit 1e-06 / 10000 (an int for a float field) stay loadable
    _edit_json(ck / "config.json", lambda d: d.update(rope_theta=10000, rms_norm_eps=1e-06))
    load_model(ck)


# ---- config.json and hillclimb.json disagree (or hillclimb.json lacks a key) --------------------
def test_load_refuses_a_config_json_edit_that_our_loader_would_ignore(base, tmp_path):
    ck = _copy(base, tmp_path)

    # the Qwen recipe for long context edits config.json; our loader reads hillclimb.json, so the
    # server silently ran without YaRN while vLLM/transformers ran with it
    def yarn(d):
        d["rope_parameters"] = {
            "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
            "original_max_position_embeddings": 512,
        }  # fmt: skip
        d["max_position_embeddings"] = 2048

    _edit_json(ck / "config.json", yarn)
    with pytest.raises(HillclimbError, match="rope_scaling") as e:
        load_model(ck)
    assert "config.json" in str(e.value) and "hillclimb.json" in str(e.value)


def test_load_refuses_model_config_missing_a_key_that_changes_the_model(tmp_path):
    ck = tmp_path / "ck"
    cfg = get_preset("thinking-micro").replace(rope_theta=500000.0, norm_eps=1e-5)
    save_checkpoint(build_model(cfg, seed=0), ck)
    # before: the missing keys silently took the defaults (10000, 1e-6): other logits, no word
    _edit_json(ck / "hillclimb.json", lambda d: d["model_config"].pop("rope_theta"))
    with pytest.raises(HillclimbError, match="rope_theta"):
        load_model(ck)


def test_model_config_missing_a_key_whose_default_is_right_still_loads(base, tmp_path):
    ck = _copy(base, tmp_path)
    # an older checkpoint without a later-added key loads as long as the model is the same
    _edit_json(ck / "hillclimb.json", lambda d: d["model_config"].pop("bias_update_rate"))
    load_model(ck)


# ---- padding ids (embedding rows beyond the tokenizer) ------------------------------------------
def test_generation_config_suppresses_padding_ids_in_transformers(base, tmp_path):
    transformers = pytest.importorskip("transformers")
    from hillclimb.tokenizer.io import load_tokenizer

    n_tok = load_tokenizer(base).vocab_size
    assert n_tok < 512  # the byte-level tokenizer in a 512-row micro model: padded
    gc = json.loads((base / "generation_config.json").read_text())
    # before: no suppress_tokens; transformers' generate sampled ids with no token (16 of 40 on
    # a random model), which decode drops and vLLM cannot detokenize
    assert gc["suppress_tokens"] == list(range(n_tok, 512))
    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    torch.manual_seed(0)
    out = model.generate(torch.tensor([[104, 105]]), max_new_tokens=40, do_sample=True)
    assert int(out.max()) < n_tok


def test_generation_config_without_padding_has_no_suppress_tokens(tmp_path):
    from hillclimb.model.checkpoint import generation_config
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    assert "suppress_tokens" not in generation_config(tok, vocab_size=tok.vocab_size)


# ---- export: a tokenizer from another run ---------------------------------------------------------
def test_hf_export_refuses_a_tokenizer_larger_than_the_embedding(base, tmp_path, capsys):
    from tokenizers import AddedToken

    from hillclimb.tokenizer.io import bytelevel_tokenizer, save_tokenizer

    ck = _copy(base, tmp_path)
    big = bytelevel_tokenizer()
    big.hf.add_tokens([AddedToken(f"w{i}") for i in range(300)])
    save_tokenizer(big, tmp_path / "tok")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tmp_path / "tok" / f, ck / f)
    out = tmp_path / "out"
    # before: exported; transformers then indexed past the 512-row embedding on those ids
    rc = main(["export", str(ck), "--out", str(out)])
    _one_line_error(capsys, rc, "512")
    assert not out.exists()


def test_hf_export_refuses_stop_ids_that_are_not_the_tokenizers(base, tmp_path, capsys):
    ck = _copy(base, tmp_path)
    # a tokenizer from another run puts its specials elsewhere; generation_config.json still
    # names the old ids. Simulated by naming ids this tokenizer does not have.
    _edit_json(ck / "generation_config.json", lambda d: d.update(eos_token_id=[300, 301]))
    out = tmp_path / "out"
    # before: exported; generate never stopped (eos ids with no token)
    rc = main(["export", str(ck), "--out", str(out)])
    _one_line_error(capsys, rc, "eos_token_id", "generation_config.json")
    assert not out.exists()


# ---- export: an output inside the checkpoint ------------------------------------------------------
@pytest.mark.parametrize(
    "fmt, name", [("hf", "exp"), ("gguf", "m.gguf"), ("gguf", "x.safetensors")]
)
def test_export_refuses_an_out_inside_the_checkpoint(base, tmp_path, capsys, fmt, name):
    pytest.importorskip("gguf")
    ck = _copy(base, tmp_path)
    before = sorted(p.name for p in ck.iterdir())
    # before: written into the checkpoint (a *.safetensors file changes the registry's content
    # hash; the next HF export copied the GGUF along)
    rc = main(["export", str(ck), "--format", fmt, "--out", str(ck / name)])
    _one_line_error(capsys, rc, "inside the checkpoint")
    assert sorted(p.name for p in ck.iterdir()) == before


# ---- a file where a checkpoint directory is expected ---------------------------------------------
def test_a_file_given_as_checkpoint_says_it_is_a_file(base, capsys):
    rc = main(["model", "info", "--checkpoint", str(base / "config.json")])
    # before: "checkpoint directory not found" for a path that exists
    _one_line_error(capsys, rc, "is a file")


# ---- a sharded checkpoint's index ----------------------------------------------------------------
@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    d = tmp_path_factory.mktemp("s22m2sh") / "ck"
    model = build_model(get_preset("thinking-micro"), seed=0)
    save_checkpoint(model, d, max_shard_bytes=400_000)
    assert (d / "model.safetensors.index.json").is_file()
    return d


def test_index_whose_weight_map_is_not_an_object_is_one_line(sharded, tmp_path, capsys):
    ck = _copy(sharded, tmp_path)
    _edit_json(
        ck / "model.safetensors.index.json", lambda d: d.update(weight_map=list(d["weight_map"]))
    )
    # before: AttributeError traceback from load_model
    with pytest.raises(HillclimbError, match="weight_map"):
        load_model(ck)


def test_index_naming_a_shard_outside_the_checkpoint_is_refused(sharded, tmp_path, capsys):
    ck = _copy(sharded, tmp_path)
    index = ck / "model.safetensors.index.json"
    first = sorted(json.loads(index.read_text())["weight_map"].values())[0]
    (tmp_path / "elsewhere").mkdir()
    (ck / first).rename(tmp_path / "elsewhere" / first)

    def point_away(d):
        d["weight_map"] = {
            k: (f"../elsewhere/{v}" if v == first else v) for k, v in d["weight_map"].items()
        }

    _edit_json(index, point_away)
    # before: loaded the outside file, and the export "succeeded" without it (not self-contained)
    with pytest.raises(HillclimbError, match="not a file of the checkpoint directory"):
        load_model(ck)
    out = tmp_path / "out"
    rc = main(["export", str(ck), "--out", str(out)])
    _one_line_error(capsys, rc, "not a file of the checkpoint directory")
    assert not out.exists()


def test_hf_export_refuses_a_malformed_generation_config(base, tmp_path, capsys):
    ck = _copy(base, tmp_path)
    (ck / "generation_config.json").write_text("{bad")
    out = tmp_path / "out"
    # before: exported; transformers silently fell back to its defaults (stop ids and the
    # padding suppression lost)
    rc = main(["export", str(ck), "--out", str(out)])
    _one_line_error(capsys, rc, "malformed generation_config.json")
    assert not out.exists()
