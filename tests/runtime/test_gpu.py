"""The runtime on a CUDA device (``-m gpu``): parity with transformers, bf16, metrics."""

from __future__ import annotations

import pytest
import torch

from speechlm.runtime import LLM, SamplingParams
from speechlm.testing.llm import reference_logprobs, tiny_model, tiny_tokenizer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
TEXTS = ["one two three four", "the water is good", "ask my mother , then go home ."]


def _cuda_llm(family, **kw):
    return LLM(tiny_model(family).cuda(), tiny_tokenizer(family), **kw)


@pytest.mark.parametrize("family", ["llama", "qwen2", "mixtral", "gpt2"])
def test_cuda_scores_and_generation_match_transformers(family):
    # TF32 would make fp32 matmuls differ between the two paths by ~1e-3
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    llm, ref = _cuda_llm(family), tiny_model(family).cuda()
    tok = llm.tokenizer
    got = llm.score(TEXTS, prefix="count : zero")
    ctx = tok("count : zero")["input_ids"]
    for text, g in zip(TEXTS, got, strict=True):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert g == pytest.approx(sum(reference_logprobs(ref.cpu(), ctx, ids)), abs=1e-4)
        ref.cuda()
    for beams in (1, 4):
        ids = torch.tensor([tok("one two three")["input_ids"]], device="cuda")
        theirs = ref.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=10,
            num_beams=beams,
        )[0, ids.shape[1] :].tolist()
        ours = llm.generate("one two three", SamplingParams(max_tokens=10, num_beams=beams))[0]
        n = len(ours.token_ids)
        assert ours.token_ids == theirs[:n] and all(t in llm.eos_ids for t in theirs[n:])


def test_cuda_bfloat16_and_metrics(tmp_path):
    llm = LLM(
        tiny_model("llama").to("cuda", torch.bfloat16),
        tiny_tokenizer("llama"),
        metrics_path=tmp_path / "m.jsonl",
    )
    c = llm.generate(
        ["one two", "the water is"],
        SamplingParams(max_tokens=16, temperature=0.8, top_p=0.9, seed=0),
    )
    assert all(x.token_ids for x in c)
    rec = llm.metrics.records[-1]
    assert rec.peak_memory_bytes > 0 and rec.kv_cache_bytes > 0 and rec.decode_s > 0
    # where zeus can read the GPU, a real positive number; never a fake 0
    assert rec.energy_j is None or rec.energy_j > 0
    print("energy_j per generate call:", rec.energy_j)
    print(llm.metrics.prometheus_text())
