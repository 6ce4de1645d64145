"""Eval sets: item building, and scoring by a tiny unit LM checked against a plain forward."""
from __future__ import annotations

import pytest
import torch

from speechlm.core.errors import InputError
from speechlm.slm.evalsets import (
    EvalItem,
    cloze_pairs,
    item_scores,
    lexical_pairs,
    pair_correct,
    read_items,
    syntactic_pairs,
    write_items,
)
from speechlm.slm.units import unit_tokenizer, units_to_text


def test_lexical_nonwords_are_one_vowel_away_and_not_words():
    corpus = ["play the music please", "play some music", "turn the lights off", "music music"]
    lexicon = {"plays", "mesic"}
    items = lexical_pairs(corpus, lexicon, 3, seed=0)
    assert [it.good for it in items] == ["music", "play", "please"]
    for it in items:
        assert len(it.bad) == len(it.good) and it.bad not in lexicon | {"music", "play"}
        diff = [(a, b) for a, b in zip(it.good, it.bad, strict=True) if a != b]
        assert len(diff) == 1 and diff[0][0] in "aeiou" and diff[0][1] in "aeiou"
    with pytest.raises(InputError, match="only"):
        lexical_pairs(corpus, lexicon, 50)


def test_syntactic_pairs_are_distinct_and_cover_templates():
    items = syntactic_pairs(30, seed=1)
    assert len({(i.good, i.bad) for i in items}) == 30
    assert len({i.tag for i in items}) == 6
    assert all(i.good != i.bad for i in items)


def test_cloze_distractor_comes_from_another_dialogue(tmp_path):
    dialogues = [[f"dialogue {'abcdef'[d]} turn {'wxyz'[t]} says words" for t in range(4)]
                 for d in range(6)]
    items = cloze_pairs(dialogues, 5, seed=0)
    for it in items:
        d_ctx = it.context.split()[1]
        assert it.good.split()[1] == d_ctx and it.bad.split()[1] != d_ctx
    write_items(tmp_path / "i.jsonl", items)
    assert read_items(tmp_path / "i.jsonl") == items
    (tmp_path / "bad.jsonl").write_text('{"id": "x", "kind": "cloze", "good": "a", "bad": "b"}\n')
    with pytest.raises(InputError, match="bad.jsonl:1"):
        read_items(tmp_path / "bad.jsonl")


def _tiny_lm():
    from transformers import LlamaConfig

    from speechlm.runtime import LLM

    tok = unit_tokenizer(10)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=64, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0)
    return LLM.from_config(cfg, tok, seed=0)


def _logp(model, ids: list[int], start: int) -> float:
    """Sum of log p(ids[t] | ids[:t]) for t >= start, by one plain forward pass."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    return float(sum(logits[t - 1, ids[t]] for t in range(start, len(ids))))


def test_item_scores_match_a_plain_forward_pass():
    lm = _tiny_lm()
    m = lm.model
    good, bad, ctx = [3, 4, 5], [3, 6], [1, 2]
    units = {"good": units_to_text(good), "bad": units_to_text(bad), "ctx": units_to_text(ctx)}
    to_ids = [4 + u for u in good], [4 + u for u in bad], [4 + u for u in ctx]
    gi, bi, ci = to_ids
    lex = EvalItem("lex_0", "lexical", "word", "wurd")
    g, b = item_scores(lm, lex, units)
    assert g == pytest.approx(_logp(m, [1, *gi, 2], 1), abs=1e-4)
    assert b == pytest.approx(_logp(m, [1, *bi, 2], 1), abs=1e-4)
    clz = EvalItem("clz_0", "cloze", "yes", "no", context="hi")
    g, b = item_scores(lm, clz, units)
    pmi_g = _logp(m, [1, *ci, *gi, 2], 1 + len(ci)) - _logp(m, [1, *gi, 2], 1)
    pmi_b = _logp(m, [1, *ci, *bi, 2], 1 + len(ci)) - _logp(m, [1, *bi, 2], 1)
    assert g == pytest.approx(pmi_g, abs=1e-4) and b == pytest.approx(pmi_b, abs=1e-4)
    assert pair_correct(1.0, 0.0) == 1.0 and pair_correct(0.0, 0.0) == 0.5
    assert pair_correct(-1.0, 0.0) == 0.0
