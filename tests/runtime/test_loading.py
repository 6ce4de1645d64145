"""Loading from a local directory, and clear errors on bad input."""

from __future__ import annotations

import json
import shutil

import pytest

from speechlm.runtime import LLM, SamplingParams
from speechlm.testing.llm import save_tiny_model, tiny_config, tiny_llm, tiny_tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "llama", "llama", seed=0)


def test_from_pretrained_matches_in_memory_model(model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = LLM.from_pretrained(model_dir, dtype="float32", device="cpu", measure_energy=False)
    mem = tiny_llm("llama")
    assert loaded.score(["one two three"], prefix="count") == pytest.approx(
        mem.score(["one two three"], prefix="count"), abs=1e-6
    )
    assert loaded.max_length == 128
    assert loaded.tokenizer.chat_template is not None


def test_from_pretrained_bfloat16(model_dir):
    llm = LLM.from_pretrained(model_dir, dtype="bfloat16", measure_energy=False)
    assert next(llm.model.parameters()).dtype.is_floating_point
    assert str(next(llm.model.parameters()).dtype) == "torch.bfloat16"
    assert llm.generate("one two", SamplingParams(max_tokens=2))[0].token_ids


def test_from_config_seeded():
    a = LLM.from_config(tiny_config("gpt2"), tiny_tokenizer("gpt2"), seed=1, measure_energy=False)
    b = LLM.from_config(tiny_config("gpt2"), tiny_tokenizer("gpt2"), seed=1, measure_energy=False)
    assert a.score(["one two three"]) == b.score(["one two three"])


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        LLM.from_pretrained(tmp_path / "nope")


@pytest.mark.parametrize(
    "remove, error, match",
    [
        ("config.json", FileNotFoundError, "config.json is missing"),
        ("model.safetensors", FileNotFoundError, "no weights in"),
        ("tokenizer.json", FileNotFoundError, "no tokenizer in"),
    ],
)
def test_incomplete_directory(model_dir, tmp_path, remove, error, match):
    d = shutil.copytree(model_dir, tmp_path / "m")
    (d / remove).unlink()
    with pytest.raises(error, match=match):
        LLM.from_pretrained(d)


def test_missing_shard_and_bad_config(model_dir, tmp_path):
    d = shutil.copytree(model_dir, tmp_path / "m")
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}})
    )
    with pytest.raises(FileNotFoundError, match="model-00001-of-00002.safetensors"):
        LLM.from_pretrained(d)
    (d / "model.safetensors.index.json").unlink()
    (d / "config.json").write_text(json.dumps({"vocab_size": 256}))
    with pytest.raises(ValueError, match="'model_type'"):
        LLM.from_pretrained(d)


def test_vocab_mismatch():
    with pytest.raises(ValueError, match="vocab_size is 200"):
        LLM.from_config(tiny_config("llama", vocab_size=200), tiny_tokenizer("llama"))


def test_bad_dtype_and_device(model_dir):
    with pytest.raises(ValueError, match="dtype"):
        LLM.from_pretrained(model_dir, dtype="float8")
    with pytest.raises(ValueError, match="device"):
        LLM.from_pretrained(model_dir, device="tpu:9")


def test_bad_inputs():
    llm = tiny_llm("llama")
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        llm.score(["one", ""])
    with pytest.raises(ValueError, match="not a str"):
        llm.score("one two")
    long = " ".join(["one"] * 130)
    with pytest.raises(
        ValueError, match=r"prefix \+ texts\[0\] is 1?[0-9]+ tokens.*max_position_embeddings = 128"
    ):
        llm.score([long], prefix="count")
    with pytest.raises(ValueError, match=r"prompts\[0\].*max_position_embeddings"):
        llm.generate(long)
    with pytest.raises(ValueError, match=r"texts\[0\].*max_position_embeddings"):
        llm.hidden_states([long], 1)
    with pytest.raises(ValueError, match=r"prompts\[0\] is empty"):
        tiny_llm("qwen2").generate("")
