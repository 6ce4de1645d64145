"""SmolLM2-135M-Instruct from the catalogue through the runtime.

Fast tests cover resolving names and paths and the bad-file errors. The slow ones load the
real model (20-45 s on the shared 2-core CPU, dequantizing the GGUF): scores and greedy
tokens must equal a plain transformers model loaded from the same file, the chat template
must be the tokenizer's, and every attention backend must run on its 30 layers of real
heads (9 query / 3 KV heads).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from speechlm.core import catalogue
from speechlm.core.catalogue import ModelFileError
from speechlm.runtime import LLM, SamplingParams
from speechlm.runtime.loading import ModelSource, resolve_model, set_pad_token

NAME = "smollm2-135m-instruct"
GGUF = catalogue.MODELS[NAME].extra["gguf_file"]
LOGPROB_ATOL = 1e-4  # float32 runtime vs plain transformers, same weights
HYPORADISE = Path("/work/shared/data/hyporadise_nbest/test_ls_clean.json")


def _gguf() -> Path:
    return catalogue.locate(NAME) / GGUF


# ---- resolving (fast) ---------------------------------------------------------------------
def test_catalogue_name_resolves_to_its_gguf():
    src = resolve_model(NAME)
    assert src == ModelSource(catalogue.locate(NAME), GGUF, NAME)


def test_gguf_file_and_directory_holding_one(tmp_path):
    assert resolve_model(_gguf()) == ModelSource(_gguf().parent, GGUF)
    (tmp_path / "m.gguf").symlink_to(_gguf())
    assert resolve_model(tmp_path) == ModelSource(tmp_path, "m.gguf")


def test_unknown_name_lists_catalogue_llms():
    with pytest.raises(FileNotFoundError, match=f"neither a catalogue LLM \\({NAME}\\)"):
        resolve_model("smollm2-135m")


def test_non_llm_catalogue_name():
    with pytest.raises(ValueError, match="'whisper-tiny.en' is a asr model"):
        resolve_model("whisper-tiny.en")


@pytest.mark.parametrize("n_bytes,match", [
    (3000, "unreadable GGUF header"),  # cut inside the vocabulary metadata
    (5_000_000, "tensors end at byte 98362432 but the file has 5000000 bytes"),
])
def test_truncated_gguf_copy_is_named(tmp_path, n_bytes, match):
    bad = tmp_path / "cut.gguf"
    with open(_gguf(), "rb") as f:
        bad.write_bytes(f.read(n_bytes))
    with pytest.raises(ModelFileError, match=match) as e:
        LLM.from_pretrained(bad)
    assert str(bad) in str(e.value)


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        LLM.from_pretrained(bad)


def test_pad_token_falls_back_to_eos():
    from speechlm.testing.llm import tiny_tokenizer

    tok = tiny_tokenizer("llama")
    tok.pad_token = None
    assert tok.pad_token_id is None
    set_pad_token(tok)
    assert tok.pad_token_id == tok.eos_token_id


# ---- the real model (slow) ----------------------------------------------------------------
@pytest.fixture(scope="module")
def smol():
    torch.set_num_threads(1)
    return LLM.from_pretrained(NAME, measure_energy=False)


@pytest.fixture(scope="module")
def reference():
    """The same GGUF through plain transformers: no runtime, default attention."""
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(
        catalogue.locate(NAME), gguf_file=GGUF, dtype=torch.float32
    )
    return model.eval()


def _real_text(n_words: int) -> str:
    """LibriSpeech test-clean references (HyPoradise), joined to about ``n_words``."""
    words: list[str] = []
    for item in json.loads(HYPORADISE.read_text()):
        words += item["output"].split()
        if len(words) >= n_words:
            break
    return " ".join(words[:n_words])


TEXTS = [" set an alarm for seven am tomorrow", " what is the weather like in paris", " play"]
PROMPTS = ["The capital of France is", "Once upon a time, in a small village,"]


@pytest.mark.slow
def test_loaded_as_float32_llama_with_pad(smol):
    cfg = smol.model.config
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.num_attention_heads,
            cfg.num_key_value_heads) == ("llama", 30, 9, 3)
    assert next(smol.model.parameters()).dtype == torch.float32  # dequantized
    assert smol.max_length == 8192
    assert smol.tokenizer.pad_token_id is not None and smol.eos_ids == [2]


@pytest.mark.slow
def test_score_matches_plain_forward(smol, reference):
    tok = smol.tokenizer
    got = smol.score(TEXTS, per_token=True)  # one padded batch (ragged lengths)
    for text, res in zip(TEXTS, got, strict=True):
        ids = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logp = torch.log_softmax(reference(torch.tensor([ids])).logits[0].float(), -1)
        want = logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
        torch.testing.assert_close(torch.tensor(res.token_logprobs), want,
                                   atol=LOGPROB_ATOL, rtol=0)
    # padding to a batch changes nothing
    one_by_one = [smol.score([t])[0] for t in TEXTS]
    assert [r.total for r in got] == pytest.approx(one_by_one, abs=LOGPROB_ATOL)


@pytest.mark.slow
def test_greedy_generate_matches_transformers(smol, reference):
    tok = smol.tokenizer
    outs = smol.generate(PROMPTS, SamplingParams(max_tokens=12))  # batched, ragged
    for prompt, out in zip(PROMPTS, outs, strict=True):
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        want = reference.generate(ids, do_sample=False, max_new_tokens=12)[0, ids.shape[1]:]
        assert out.token_ids == want.tolist()
    assert "Paris" in outs[0].text


@pytest.mark.slow
def test_chat_uses_the_template(smol, reference):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    out = smol.chat(messages, SamplingParams(max_tokens=20))
    ids = smol.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                             return_tensors="pt", return_dict=True)["input_ids"]
    want = reference.generate(ids, do_sample=False, max_new_tokens=20)[0, ids.shape[1]:]
    want = want.tolist()
    assert out.finish_reason == "eos" and want[len(out.token_ids)] in smol.eos_ids
    assert out.token_ids == want[: len(out.token_ids)]
    assert "Paris" in out.text


@pytest.mark.slow
@pytest.mark.parametrize("name,conf", [
    ("eager", {}),
    ("tactic", dict(p=1.0, cluster_size=16, min_tokens=64, refresh=4)),
    ("tactic", dict(p=1.0, mode="oracle", min_tokens=64)),
    ("quest", dict(page_size=16, top_k=1024, min_tokens=64, refresh=4)),
], ids=["eager", "tactic-keep-all", "oracle-keep-all", "quest-all-pages"])
def test_backends_kept_whole_match_sdpa(smol, name, conf):
    """On real heads, a backend told to keep everything must give sdpa's tokens."""
    prompt = _real_text(120)
    params = SamplingParams(max_tokens=8)
    want = LLM(smol.model, smol.tokenizer, measure_energy=False).generate(prompt, params)[0]
    llm = LLM(smol.model, smol.tokenizer, attention=name, attention_conf=conf,
              measure_energy=False)
    try:
        got = llm.generate(prompt, params)[0]
    finally:
        LLM(smol.model, smol.tokenizer, measure_energy=False)  # back to sdpa for the others
    assert got.token_ids == want.token_ids
    if name != "eager":
        assert llm.engine.attention.index_builds >= 30  # the sparse path ran on each layer


@pytest.mark.slow
@pytest.mark.parametrize("name,conf", [
    ("tactic", dict(p=0.9, cluster_size=16)),
    ("quest", dict(page_size=16, top_k=8)),
])
def test_sparse_backends_record_captured_mass(smol, name, conf):
    """Sparse settings on real text: every head's captured mass is recorded and sane."""
    llm = LLM(smol.model, smol.tokenizer, attention=name,
              attention_conf=dict(conf, min_tokens=128, record=True), measure_energy=False)
    try:
        out = llm.generate(_real_text(200), SamplingParams(max_tokens=4))[0]
    finally:
        LLM(smol.model, smol.tokenizer, measure_energy=False)
    recs = llm.engine.attention.records
    assert len(recs) == 30 * (len(out.token_ids) - 1)  # 30 layers x decode steps
    mass = torch.stack([r["mass"] for r in recs])  # (records, B, H)
    assert mass.shape[-1] == 9
    assert ((mass > 0) & (mass <= 1 + 1e-5)).all()
    assert mass.mean() > 0.5  # real heads concentrate: far above the share of tokens read
    union = torch.stack([r["union"] for r in recs]).float()
    assert (union < recs[0]["context"]).any()  # something was left out
