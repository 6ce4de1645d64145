"""The retrieval plug point: kNN-LM logits processor, and prompts given as embeddings."""

import pytest
import torch

from speechlm.runtime import SamplingParams
from speechlm.runtime.llm import LLM
from speechlm.runtime.retrieval import ExactRetriever, KNNLogitsProcessor
from speechlm.testing.llm import tiny_config, tiny_tokenizer

TEXT = "the water is on the side of the house"


@pytest.fixture(scope="module")
def llm():
    return LLM.from_config(tiny_config("llama"), tiny_tokenizer("llama"), seed=0)


def _store(llm, text=TEXT):
    """Keys: final hidden state at each token of ``text``; value: the next token."""
    ids = llm.tokenizer(text)["input_ids"]
    h = llm.hidden_states([text], layer=-1)[0]  # (T, D), BOS first
    return ExactRetriever(h[:-1], torch.tensor(ids[1:]), "tiny"), ids


def test_lambda_zero_greedy_equals_plain_model(llm):
    store, _ = _store(llm)
    params = SamplingParams(max_tokens=8)
    plain = llm.generate(["the water", "one two three"], params)
    knn = llm.generate(["the water", "one two three"], params,
                       logits_processor=KNNLogitsProcessor(store, lam=0.0, k=4))
    for a, b in zip(plain, knn, strict=True):
        assert a.token_ids == b.token_ids
        assert a.logprob == b.logprob


def test_lambda_zero_scoring_equals_plain_model(llm):
    store, _ = _store(llm)
    texts = [TEXT, "one two three four"]
    plain = llm.score(texts, per_token=True)
    knn = llm.score(texts, per_token=True,
                    logits_processor=KNNLogitsProcessor(store, lam=0.0, k=4))
    for a, b in zip(plain, knn, strict=True):
        assert a.token_logprobs == b.token_logprobs
    with_prefix = llm.score([" two three"], prefix="one")
    assert with_prefix == llm.score([" two three"], prefix="one",
                                    logits_processor=KNNLogitsProcessor(store, lam=0.0))


def test_lambda_one_scores_stored_text_with_certainty(llm):
    store, _ = _store(llm)
    res = llm.score([TEXT], per_token=True,
                    logits_processor=KNNLogitsProcessor(store, lam=1.0, k=1))[0]
    assert max(abs(v) for v in res.token_logprobs) < 1e-5
    plain = llm.score([TEXT])[0]
    assert plain < -5.0  # the random tiny model does not know the text


def test_interpolation_raises_stored_continuation(llm):
    store, ids = _store(llm)
    out = llm.generate(["the water"], SamplingParams(max_tokens=7),
                       logits_processor=KNNLogitsProcessor(store, lam=1.0, k=1))[0]
    assert out.text.strip() == "is on the side of the house"
    mid = llm.score([TEXT], logits_processor=KNNLogitsProcessor(store, lam=0.5, k=2,
                                                                   temperature=10.0))[0]
    assert llm.score([TEXT])[0] < mid < 0.0


def test_generate_from_embeds_equals_generate(llm):
    params = SamplingParams(max_tokens=6)
    ids = llm.tokenizer("one two")["input_ids"]
    a = llm.generate(["one two"], params)[0]
    b = llm.generate_from_embeds([llm.embed_tokens(ids)], params)[0]
    assert a.token_ids == b.token_ids
    assert b.logprob == pytest.approx(a.logprob, abs=1e-4)


def test_generate_from_embeds_batch_equals_one_by_one(llm):
    params = SamplingParams(max_tokens=5)
    embeds = [llm.embed_tokens(llm.tokenizer(t)["input_ids"]) for t in ("one", "the water is")]
    batch = llm.generate_from_embeds(embeds, params)
    for e, b in zip(embeds, batch, strict=True):
        assert llm.generate_from_embeds([e], params)[0].token_ids == b.token_ids


def test_prefix_embeds_in_scoring_and_hidden_states(llm):
    ids = llm.tokenizer("one two")["input_ids"]
    emb = llm.embed_tokens(ids)
    assert llm.score([" three four"], prefix="one two") == pytest.approx(
        llm.score([" three four"], prefix_embeds=emb), abs=1e-4)
    full = llm.hidden_states(["one two three four"], layer=-1)[0]
    tail = llm.hidden_states([" three four"], layer=-1, prefix_embeds=[emb])[0]
    assert torch.allclose(full[len(ids) - 1 :], tail, atol=1e-4)


def test_bad_inputs(llm):
    store, _ = _store(llm)
    with pytest.raises(ValueError, match="lam"):
        KNNLogitsProcessor(store, lam=1.5)
    with pytest.raises(ValueError, match="temperature"):
        KNNLogitsProcessor(store, temperature=0.0)
    with pytest.raises(ValueError, match=r"\(P, 64\)"):
        llm.generate_from_embeds([torch.zeros(3, 7)])
    with pytest.raises(ValueError, match="NaN"):
        llm.score(["one"], prefix_embeds=torch.full((2, 64), float("nan")))
    with pytest.raises(ValueError, match="beam"):
        llm.generate(["one"], SamplingParams(num_beams=2),
                     logits_processor=KNNLogitsProcessor(store))


def test_suppress_tokens_bans_them_and_empty_is_the_plain_model(llm):
    from speechlm.runtime.suppress import SuppressTokens

    params = SamplingParams(max_tokens=8)
    prompts = ["the water", "one two three"]
    plain = llm.generate(prompts, params)
    same = llm.generate(prompts, params, logits_processor=SuppressTokens([]))
    assert [c.token_ids for c in same] == [c.token_ids for c in plain]
    banned = {t for c in plain for t in c.token_ids}
    assert banned  # the plain model writes something for the ban to remove
    out = llm.generate(prompts, params, logits_processor=SuppressTokens(banned))
    for c in out:
        assert c.token_ids and not banned & set(c.token_ids)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        llm.generate(prompts, params, logits_processor=SuppressTokens([10**9]))


def test_suppress_tokens_containing_finds_every_token_with_the_text(llm):
    from speechlm.runtime.suppress import SuppressTokens

    tok = llm.tokenizer
    s = SuppressTokens.containing(tok, "e")
    ids = set(s.token_ids.tolist())
    assert ids and all("e" in tok.decode([i]) for i in ids)
    others = set(range(len(tok))) - ids
    assert others and all("e" not in tok.decode([i]) for i in others)


def test_suppress_tokens_at_begin_bans_only_the_first_token(llm):
    from speechlm.runtime.suppress import SuppressTokens

    params = SamplingParams(max_tokens=6)
    prompts = ["the water", "one two three"]
    plain = llm.generate(prompts, params)
    first = {c.token_ids[0] for c in plain}
    later = {t for c in plain for t in c.token_ids[1:]} - first
    assert later  # the ban must be seen to lift after the first token
    ban = SuppressTokens(first | later, at_begin=True)
    out = llm.generate(prompts, params, logits_processor=ban)
    assert all(c.token_ids[0] not in first | later for c in out)
    # each row's own first token decides its history; one call per instance
    again = llm.generate(prompts, params, logits_processor=ban.fresh())
    assert [c.token_ids for c in again] == [c.token_ids for c in out]
    with pytest.raises(ValueError, match="follows generation rows"):
        llm.score(["the water"], logits_processor=ban.fresh())


def test_suppress_tokens_at_begin_lifts_per_row():
    from speechlm.runtime.suppress import SuppressTokens

    ban = SuppressTokens([1], at_begin=True)
    logits = torch.zeros(2, 3)
    ban.set_rows([0, 1])
    assert torch.isinf(ban(torch.zeros(2, 4), logits)[:, 1]).all()
    ban.observe([0], [2])  # row 0 has started, row 1 has not
    ban.set_rows([0, 1])
    out = ban(torch.zeros(2, 4), logits)
    assert out[0, 1] == 0 and torch.isinf(out[1, 1])
    ban.set_rows([1])  # row 0 finished and left the batch
    assert torch.isinf(ban(torch.zeros(1, 4), torch.zeros(1, 3))[0, 1])
