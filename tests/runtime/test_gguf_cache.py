"""The dequantized copy of a GGUF model: written on the first load, read by the next ones,
the same model either way; keyed by the file, off on request, skipped for big models."""

from __future__ import annotations

import os

import pytest
import torch

from speechlm.runtime import gguf_cache, loading
from speechlm.runtime.loading import ModelSource, load_model_and_tokenizer, resolve_model
from speechlm.testing.llm import tiny_model, tiny_tokenizer

NAME = "smollm2-135m-instruct"


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(gguf_cache.CACHE_ENV, str(root))
    return root


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """A GGUF source whose "conversion" is a tiny Llama (counted), other loads real."""
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    converted = []
    real = loading._load

    def load(source, dtype):
        if source.gguf_file is None:
            return real(source, dtype)
        converted.append(source)
        return tiny_model("llama").to(dtype), tiny_tokenizer("llama")

    monkeypatch.setattr(loading, "_load", load)
    return ModelSource(tmp_path, "m.gguf"), converted


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_first_load_converts_and_keeps_a_copy_the_next_reads(cache_root, fake_gguf):
    source, converted = fake_gguf
    model, tok = load_model_and_tokenizer(source, torch.float32)
    (copy,) = cache_root.iterdir()
    assert copy.name.startswith("m-float32-") and (copy / "config.json").is_file()
    umask = os.umask(0)
    os.umask(umask)
    assert copy.stat().st_mode & 0o777 == 0o777 & ~umask  # readable by others as any dir
    again, tok2 = load_model_and_tokenizer(source, torch.float32)
    assert len(converted) == 1  # the second load read the copy
    assert _same_weights(model, again) and _same_weights(model, tiny_model("llama"))
    assert tok("one two")["input_ids"] == tok2("one two")["input_ids"]
    assert tok.pad_token_id is not None


def test_off_big_or_unwritable_loads_from_the_gguf_every_time(
        cache_root, fake_gguf, monkeypatch):  # fmt: skip
    source, converted = fake_gguf
    monkeypatch.setenv(gguf_cache.CACHE_ENV, "off")
    load_model_and_tokenizer(source, torch.float32)
    assert not cache_root.exists()
    monkeypatch.setenv(gguf_cache.CACHE_ENV, str(cache_root))
    monkeypatch.setattr(gguf_cache, "MAX_CACHED_BYTES", 1000)
    model, _ = load_model_and_tokenizer(source, torch.float32)
    assert not cache_root.exists() and _same_weights(model, tiny_model("llama"))
    monkeypatch.setattr(gguf_cache, "MAX_CACHED_BYTES", 4 << 30)
    cache_root.write_text("a file, not a folder")
    load_model_and_tokenizer(source, torch.float32)  # warns, loads anyway
    assert len(converted) == 3


def test_copy_is_keyed_by_file_state_and_dtype(cache_root, tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    first = gguf_cache.cache_dir(f, torch.float32)
    assert first.parent == cache_root
    assert gguf_cache.cache_dir(f, torch.bfloat16) != first
    os.utime(f, ns=(1, 1))  # replaced: another modification time
    assert gguf_cache.cache_dir(f, torch.float32) != first


def test_smollm2_copy_equals_the_gguf(cache_root, monkeypatch):
    """The real GGUF (~15 s to convert): the copy's weights and tokenizer are the GGUF's."""
    torch.set_num_threads(1)
    source = resolve_model(NAME)
    gguf_model, gguf_tok = loading._load(source, torch.float32)
    dest = gguf_cache.cache_dir(source.path / source.gguf_file, torch.float32)
    assert gguf_cache.keep_copy(gguf_model, gguf_tok, dest)

    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    def no_gguf(*args, **kwargs):
        raise AssertionError("the GGUF file was read again")

    monkeypatch.setattr(gguf_utils, "load_gguf_checkpoint", no_gguf)
    model, tok = load_model_and_tokenizer(source, torch.float32)
    assert _same_weights(model, gguf_model)
    assert model.config.tie_word_embeddings and model.lm_head.weight is \
        model.model.embed_tokens.weight
    text = "Wake me up at 7:30, then play jazz in the kitchen 🎷"
    assert tok(text)["input_ids"] == gguf_tok(text)["input_ids"]
    chat = [{"role": "user", "content": "hello"}]
    assert tok.apply_chat_template(chat, tokenize=False) == \
        gguf_tok.apply_chat_template(chat, tokenize=False)
    assert (tok.eos_token_id, tok.pad_token_id, tok.bos_token_id) == \
        (gguf_tok.eos_token_id, gguf_tok.pad_token_id, gguf_tok.bos_token_id)
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, gguf_model(ids).logits)
