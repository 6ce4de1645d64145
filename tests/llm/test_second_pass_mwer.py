"""MWER loss against a hand-computed example; pooling heads and scorers on tiny configs."""
from __future__ import annotations

import pytest
import torch

from speechlm.llm.second_pass.mwer import (
    MwerConfig,
    Pooling,
    build_scorer,
    load_scorer,
    mwer_loss,
    save_scorer,
    train_scorer,
)
from speechlm.llm.second_pass.nbest import NbestItem
from speechlm.testing.llm import tiny_config, tiny_tokenizer


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def test_mwer_loss_matches_the_hand_computed_value():
    # costs 1, 2, 3 -> softmax(-s) = e^-1, e^-2, e^-3 over their sum 0.553001
    #   = 0.665241, 0.244728, 0.090031; errors 0, 1, 5, mean 2 -> (-2, -1, 3)
    #   loss = -1.330482 - 0.244728 + 0.270093 = -1.305117
    # second list (one padded slot): costs 0, 0 -> 0.5, 0.5; errors 1, 3 -> loss 0
    costs = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 9.0]])
    errs = torch.tensor([[0.0, 1.0, 5.0], [1.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert mwer_loss(costs[:1], errs[:1]).item() == pytest.approx(-1.305117, abs=1e-5)
    assert mwer_loss(costs, errs, mask).item() == pytest.approx(-1.305117 / 2, abs=1e-5)


def test_mwer_gradient_lowers_the_cost_of_the_better_hypothesis():
    costs = torch.tensor([[1.0, 1.0]], requires_grad=True)
    mwer_loss(costs, torch.tensor([[0.0, 2.0]])).backward()
    assert costs.grad[0, 0] > 0 > costs.grad[0, 1]  # descent lowers s_0, raises s_1


def _hidden():
    torch.manual_seed(0)
    h = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    return h, mask


def test_mean_pooling_ignores_padding():
    h, mask = _hidden()
    out = Pooling("mean", 3)(h, mask)
    assert torch.allclose(out[0], h[0, :3].mean(0)) and torch.allclose(out[1], h[1, :2].mean(0))


def test_last_token_pooling_takes_the_last_real_token():
    h, mask = _hidden()
    out = Pooling("last", 3)(h, mask)
    assert torch.equal(out[0], h[0, 2]) and torch.equal(out[1], h[1, 1])


def test_attention_pooling_is_a_convex_mix_of_real_tokens():
    h, mask = _hidden()
    pool = Pooling("attention", 3)
    out = pool(h, mask)
    h2 = h.clone()
    h2[0, 3] = 1e3  # garbage in a padded slot changes nothing
    assert torch.allclose(pool(h2, mask), out)
    w = torch.softmax(pool.query(h[1, :2]).squeeze(-1), 0)
    assert torch.allclose(out[1], (w[:, None] * h[1, :2]).sum(0), atol=1e-6)


def test_unknown_pooling_and_bad_combinations_are_refused():
    with pytest.raises(ValueError, match="pooling must be one of"):
        Pooling("max", 3)
    with pytest.raises(ValueError, match="needs a causal LM"):
        MwerConfig(kind="bidirectional", pooling="prob")
    with pytest.raises(ValueError, match="likelihood objective"):
        MwerConfig(kind="causal", pooling="mean", objective="likelihood")


def _tiny_causal():
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config("llama")), tiny_tokenizer("llama")


def _tiny_bidirectional():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=256, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    return BertModel(cfg), tiny_tokenizer("llama")


@pytest.mark.parametrize("kind, pooling", [("causal", "prob"), ("causal", "mean"),
                                           ("causal", "last"), ("causal", "attention"),
                                           ("bidirectional", "mean"),
                                           ("bidirectional", "attention")])
def test_a_cost_does_not_depend_on_its_batch(kind, pooling):
    model, tok = _tiny_causal() if kind == "causal" else _tiny_bidirectional()
    scorer = build_scorer(MwerConfig(model="tiny", kind=kind, pooling=pooling), model, tok)
    texts = ["one two three four five", "six", "the man said"]
    together = scorer.costs(texts)
    alone = [scorer.costs([t])[0] for t in texts]
    assert together == pytest.approx(alone, abs=1e-4)
    assert len(set(round(c, 4) for c in together)) == 3


def test_prob_cost_is_the_negative_log_probability():
    from speechlm.runtime import LLM

    model, tok = _tiny_causal()
    scorer = build_scorer(MwerConfig(model="tiny", kind="causal", pooling="prob",
                                     train_backbone=False), model, tok)
    llm = LLM(model, tok)
    want = llm.score(["one two three"], append_eos=True)[0]
    assert scorer.costs(["one two three"])[0] == pytest.approx(-want, abs=1e-4)


def _toy_nbests(n=24):
    # the right hypothesis always holds "good", a wrong one "bad": learnable from the words
    items = []
    for i in range(n):
        right = f"the man said good {['one', 'two', 'three'][i % 3]}"
        wrong = right.replace("good", "bad") + " bad"
        hyps = (wrong, right) if i % 2 else (right, wrong)
        items.append(NbestItem(f"u{i}", hyps, right))
    return items


def test_mwer_training_learns_and_the_scorer_dir_round_trips(tmp_path):
    model, tok = _tiny_bidirectional()
    cfg = MwerConfig(model="tiny", kind="bidirectional", pooling="mean", lr=3e-2,
                     backbone_lr=1e-3, epochs=6, utts_per_step=4)
    scorer = build_scorer(cfg, model, tok)
    items = _toy_nbests()
    stats = train_scorer(scorer, items, progress=False)
    assert stats["final_loss"] < stats["first_loss"] and stats["final_loss"] < -0.3
    scores = scorer.score(items)
    picks = [it.hyps[max(range(2), key=lambda k: scores[it.utt].scores[k])] for it in items]
    assert all("good" in p and "bad" not in p for p in picks)
    # a dir whose model is a local encoder dir loads back the same costs
    save_scorer(scorer, tmp_path / "s")
    again = load_scorer(tmp_path / "s")
    assert again.costs(["the man said good one"]) == pytest.approx(
        scorer.costs(["the man said good one"]), abs=1e-5)


def test_with_first_pass_trains_on_the_interpolated_cost():
    # the first pass ranks every toy list right (the reference first); its rank prior
    # (0, -1) enters the loss, so the very first loss (same init, same batch) is lower
    items = [NbestItem(it.utt, tuple(sorted(it.hyps, key=lambda h: "bad" in h)), it.ref)
             for it in _toy_nbests()]
    first = {}
    for fp in (False, True):
        model, tok = _tiny_bidirectional()
        cfg = MwerConfig(model="tiny", kind="bidirectional", pooling="mean", lr=3e-2,
                         backbone_lr=1e-3, epochs=1, utts_per_step=4, with_first_pass=fp)
        first[fp] = train_scorer(build_scorer(cfg, model, tok), items,
                                 progress=False)["first_loss"]
    assert first[True] < first[False] - 0.1
    assert MwerConfig(with_first_pass=True).key.endswith("_fp")
    with pytest.raises(ValueError, match="with_first_pass"):
        MwerConfig(model="x", kind="causal", pooling="prob", objective="likelihood",
                   with_first_pass=True)


def test_likelihood_objective_raises_the_reference_probability():
    model, tok = _tiny_causal()
    cfg = MwerConfig(model="tiny", kind="causal", pooling="prob", objective="likelihood",
                     lr=1e-2, epochs=3, utts_per_step=4, lora_rank=4)
    scorer = build_scorer(cfg, model, tok)
    before = scorer.costs(["the man said good one"])[0]
    train_scorer(scorer, _toy_nbests(12), progress=False)
    assert scorer.costs(["the man said good one"])[0] < before - 1.0


@pytest.mark.parametrize("pooling", ["prob", "mean"])
def test_causal_lora_scorer_dir_round_trips(tmp_path, pooling):
    model, tok = _tiny_causal()
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    cfg = MwerConfig(model=str(tmp_path / "lm"), kind="causal", pooling=pooling, lr=1e-2,
                     lora_rank=4)
    scorer = build_scorer(cfg)
    train_scorer(scorer, _toy_nbests(8), progress=False)
    save_scorer(scorer, tmp_path / "s")
    again = load_scorer(tmp_path / "s")
    assert (tmp_path / "s" / "adapter" / "adapter_config.json").is_file()
    assert again.costs(["the man said good one"]) == pytest.approx(
        scorer.costs(["the man said good one"]), abs=1e-4)
