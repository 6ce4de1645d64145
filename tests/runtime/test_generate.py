"""Generation: greedy and beam search equal transformers' generate; prefill + decode
equals one full forward; sampling, stop strings, streaming, EOS, chat."""

from __future__ import annotations

import pytest
import torch

from speechlm.runtime import SamplingParams
from speechlm.runtime.engine import CallStats
from speechlm.testing.llm import FAMILIES, tiny_llm, tiny_model

ALL_FAMILIES = sorted(FAMILIES)
PROMPTS = ["one two three", "the water is", "ask my mother , then go"]


def _hf_generate(model, tok, prompt, **kw):
    ids = torch.tensor([tok(prompt)["input_ids"]])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, **kw)
    return out[0, ids.shape[1] :].tolist()


def _strip_eos(tokens, eos_ids, pad_id):
    while tokens and tokens[-1] in (*eos_ids, pad_id):
        tokens = tokens[:-1]
    return tokens


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_greedy_equals_transformers_generate(family):
    llm, ref = tiny_llm(family), tiny_model(family)
    for prompt in PROMPTS[:2]:
        ours = llm.generate(prompt, SamplingParams(max_tokens=12))[0]
        theirs = _hf_generate(ref, llm.tokenizer, prompt, max_new_tokens=12)
        assert ours.token_ids == _strip_eos(theirs, llm.eos_ids, llm.pad_id)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2", "mixtral"])
def test_beam_search_equals_transformers(family):
    llm, ref = tiny_llm(family), tiny_model(family)
    for prompt in PROMPTS:
        ours = llm.generate(prompt, SamplingParams(max_tokens=10, num_beams=4))[0]
        theirs = _hf_generate(ref, llm.tokenizer, prompt, max_new_tokens=10, num_beams=4)
        assert ours.token_ids == _strip_eos(theirs, llm.eos_ids, llm.pad_id)


def _make_eos_likely(models, target: float) -> None:
    """Point EOS's output row along the mean final hidden state: EOS logit ~ ``target``."""
    ids = torch.tensor([list(range(3, 60))])
    with torch.no_grad():
        h = models[0](input_ids=ids, output_hidden_states=True).hidden_states[-1][0].mean(0)
        for m in models:
            m.lm_head.weight[2] = h / h.dot(h) * target


def test_beam_search_with_eos_equals_transformers():
    """EOS made likely, so hypotheses finish early and the finished-beam bookkeeping runs."""
    reasons = []
    for target in (4.0, 4.5, 5.0):
        llm, ref = tiny_llm("llama"), tiny_model("llama")
        _make_eos_likely([llm.model, ref], target)
        for prompt in PROMPTS:
            ours = llm.generate(prompt, SamplingParams(max_tokens=10, num_beams=4))[0]
            theirs = _hf_generate(ref, llm.tokenizer, prompt, max_new_tokens=10, num_beams=4)
            assert ours.token_ids == _strip_eos(theirs, llm.eos_ids, llm.pad_id)
            greedy = llm.generate(prompt, SamplingParams(max_tokens=10))[0]
            hf_greedy = _hf_generate(ref, llm.tokenizer, prompt, max_new_tokens=10)
            assert greedy.token_ids == _strip_eos(hf_greedy, llm.eos_ids, llm.pad_id)
            reasons.append(ours.finish_reason)
    assert reasons.count("eos") >= 3 and "length" in reasons


@pytest.mark.parametrize("kv_cache", ["contiguous", "dynamic"])
@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2_moe"])
def test_prefill_then_decode_equals_full_forward(family, kv_cache):
    llm = tiny_llm(family, kv_cache=kv_cache)
    ids = torch.tensor([[1, 5, 6, 7, 8, 9, 10, 11, 12, 13]])  # (1, T)
    with torch.no_grad():
        full = llm.model(input_ids=ids, use_cache=False).logits[0]  # (T, V)
    eng, stats = llm.engine, CallStats()
    cache = eng.new_cache()
    p = 4
    out = eng.forward(
        ids[:, :p],
        torch.ones(1, p, dtype=torch.long),
        torch.arange(p)[None],
        cache,
        phase="prefill",
        stats=stats,
    )
    steps = [out.logits[0]]
    for t in range(p, ids.shape[1]):
        out = eng.forward(
            ids[:, t : t + 1],
            torch.ones(1, t + 1, dtype=torch.long),
            torch.tensor([[t]]),
            cache,
            phase="decode",
            stats=stats,
        )
        steps.append(out.logits[0])
    torch.testing.assert_close(torch.cat(steps), full, atol=1e-5, rtol=1e-5)
    assert cache.lengths() == [ids.shape[1]] * len(cache.layers)


def test_batched_generation_equals_unbatched():
    llm = tiny_llm("llama")
    params = SamplingParams(max_tokens=8)
    batched = llm.generate(PROMPTS, params)
    for prompt, b in zip(PROMPTS, batched, strict=True):
        single = llm.generate(prompt, params)[0]
        assert b.token_ids == single.token_ids
        assert b.logprob == pytest.approx(single.logprob, abs=1e-4)


def test_completion_logprob_is_sum_of_token_logprobs():
    llm = tiny_llm("llama")
    c = llm.generate("one two three", SamplingParams(max_tokens=6))[0]
    assert c.finish_reason == "length" and len(c.token_ids) == 6
    text_ids = llm.tokenizer(c.text, add_special_tokens=False)["input_ids"]
    assert text_ids == c.token_ids
    rescored = llm.score([c.text], prefix="one two three")[0]
    assert c.logprob == pytest.approx(rescored, abs=1e-4)


def test_sampling_is_seeded_and_filters_work():
    llm = tiny_llm("qwen2")
    greedy = llm.generate(PROMPTS[0], SamplingParams(max_tokens=8))[0].token_ids
    p = SamplingParams(max_tokens=8, temperature=1.5, seed=3)
    a, b = (llm.generate(PROMPTS[0], p)[0].token_ids for _ in range(2))
    assert a == b
    others = {
        tuple(
            llm.generate(PROMPTS[0], SamplingParams(max_tokens=8, temperature=1.5, seed=s))[
                0
            ].token_ids
        )
        for s in range(4)
    }
    assert len(others) > 1  # temperature 1.5 really samples
    top1 = SamplingParams(max_tokens=8, temperature=1.0, top_k=1, seed=0)
    assert llm.generate(PROMPTS[0], top1)[0].token_ids == greedy
    tiny_p = SamplingParams(max_tokens=8, temperature=1.0, top_p=1e-6, seed=0)
    assert llm.generate(PROMPTS[0], tiny_p)[0].token_ids == greedy


def test_stop_strings_and_streaming():
    llm = tiny_llm("llama")
    full = llm.generate("one two three", SamplingParams(max_tokens=8))[0]
    words = full.text.split(" ")
    stop = words[2]
    pieces = []
    c = llm.generate(
        "one two three",
        SamplingParams(max_tokens=8, stop=(stop,)),
        on_token=lambda i, tok, piece: pieces.append((i, tok, piece)),
    )[0]
    cut = full.text.find(stop)
    assert c.finish_reason == "stop"
    assert c.text == full.text[:cut]
    assert "".join(p for _, _, p in pieces) == c.text
    assert {i for i, _, _ in pieces} == {0}
    assert c.token_ids == full.token_ids[: len(c.token_ids)]
    # streaming without stop strings: one call per token, pieces join to the text
    pieces.clear()
    c = llm.generate(
        ["one two three", "the water is"],
        SamplingParams(max_tokens=5),
        on_token=lambda i, tok, piece: pieces.append((i, tok, piece)),
    )
    for i in (0, 1):
        mine = [(t, p) for j, t, p in pieces if j == i]  # no stop strings: no extra call
        assert [t for t, _ in mine] == c[i].token_ids
        assert "".join(p for _, p in mine) == c[i].text


def test_eos_finishes_a_row():
    llm = tiny_llm("llama")
    free = llm.generate("one two three", SamplingParams(max_tokens=8))[0]
    llm.eos_ids = [*llm.eos_ids, free.token_ids[3]]  # pretend the 4th token is EOS
    c = llm.generate("one two three", SamplingParams(max_tokens=8))[0]
    assert c.finish_reason == "eos"
    assert c.token_ids == free.token_ids[:3]


def test_generation_capped_by_context_length():
    llm = tiny_llm("llama")  # 128 positions
    prompt = " ".join(["one"] * 120)
    c = llm.generate(prompt, SamplingParams(max_tokens=50))[0]
    assert len(c.token_ids) <= 128 - 121 and c.finish_reason in ("length", "eos")


def test_chat_uses_template():
    llm = tiny_llm("llama")
    msgs = [{"role": "user", "content": "one two"}]
    c = llm.chat(msgs, SamplingParams(max_tokens=5))
    rendered = "user : one two . assistant :"
    ids = llm.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    direct = llm._generate_ids([ids], SamplingParams(max_tokens=5), None, kind="chat")[0]
    assert c.token_ids == direct.token_ids
    with pytest.raises(ValueError, match="chat_template"):
        tiny_llm("qwen2").chat(msgs)
    with pytest.raises(ValueError, match="role"):
        llm.chat([{"content": "x"}])
