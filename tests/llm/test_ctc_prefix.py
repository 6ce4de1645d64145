"""CTC prefix scores against brute-force path enumeration; joint decoding through the runtime."""

import itertools
import math

import pytest
import torch

from speechlm.llm.ctc_prefix import CTCJointProcessor, CTCPrefixScorer
from speechlm.runtime import SamplingParams
from speechlm.runtime.llm import LLM
from speechlm.testing.llm import tiny_config, tiny_tokenizer


def brute_force(logp: torch.Tensor, blank: int) -> tuple[dict, dict]:
    """P(collapsed path == seq) and P(collapsed path starts with seq), every path listed."""
    t_len, c = logp.shape
    exact: dict = {}
    for path in itertools.product(range(c), repeat=t_len):
        p = math.exp(sum(float(logp[t, k]) for t, k in enumerate(path)))
        out = tuple(k for i, k in enumerate(path) if k != blank and (i == 0 or path[i - 1] != k))
        exact[out] = exact.get(out, 0.0) + p
    prefix: dict = {}
    for seq, p in exact.items():
        for n in range(len(seq) + 1):
            prefix[seq[:n]] = prefix.get(seq[:n], 0.0) + p
    return exact, prefix


def test_prefix_and_full_probabilities_match_enumeration():
    torch.manual_seed(0)
    logp = torch.randn(5, 4).log_softmax(-1)  # 5 frames, tokens 0-2, blank 3
    exact, prefix = brute_force(logp, blank=3)
    s = CTCPrefixScorer(logp, blank=3)
    for g in [(), (0,), (0, 0), (0, 2), (1, 1, 2)]:
        s = CTCPrefixScorer(logp, blank=3)
        for tok in g:
            s.scores()
            s.advance(tok)
        assert s.full() == pytest.approx(math.log(exact.get(g, 1e-300)), abs=1e-4)
        psi = s.scores()
        for c in range(3):
            want = prefix.get((*g, c), 0.0)
            if want > 1e-12:
                assert float(psi[c]) == pytest.approx(math.log(want), abs=1e-4)
        if g:
            assert s.log_psi == pytest.approx(math.log(prefix[g]), abs=1e-4)


def test_bad_posteriorgram_is_refused():
    with pytest.raises(ValueError, match="blank"):
        CTCPrefixScorer(torch.zeros(3, 4), blank=4)
    with pytest.raises(ValueError, match="weight"):
        CTCJointProcessor([torch.zeros(3, 4)], [0], weight=1.5)


@pytest.fixture(scope="module")
def llm():
    return LLM.from_config(tiny_config("llama"), tiny_tokenizer("llama"), seed=0)


def test_weight_zero_is_the_plain_model_and_weight_one_follows_the_ctc_path(llm):
    v = llm.model.get_output_embeddings().weight.shape[0]
    eos = llm.eos_ids
    paths = [[40, 41, 42], [50, 50, 51]]  # a repeated token must come out twice
    posts = []
    for path in paths:
        frames = []
        for tok in path:  # each token, then a blank frame
            frames += [tok, v]
        x = torch.full((len(frames), v + 1), -20.0)
        x[torch.arange(len(frames)), torch.tensor(frames)] = 0.0
        posts.append(x.log_softmax(-1))
    prompts = ["one two", "three"]
    params = SamplingParams(max_tokens=6)
    plain = llm.generate(prompts, params)
    zero = llm.generate(prompts, params,
                        logits_processor=CTCJointProcessor(posts, eos, weight=0.0))
    assert [c.token_ids for c in zero] == [c.token_ids for c in plain]
    one = llm.generate(prompts, params,
                       logits_processor=CTCJointProcessor(posts, eos, weight=1.0))
    assert [c.token_ids for c in one] == paths
    assert all(c.finish_reason == "eos" for c in one)
