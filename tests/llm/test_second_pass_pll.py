"""Pseudo-log-likelihood scorer: equal to a hand loop over masked positions; the MLM head
built on an encoder-only checkpoint (new transform, tied decoder); fine-tuning; the dir."""
from __future__ import annotations

import json

import pytest
import torch

from speechlm.llm.second_pass.nbest import NbestItem
from speechlm.llm.second_pass.pll import (
    PllConfig,
    PllScorer,
    build_pll_scorer,
    load_pll_scorer,
    save_pll_scorer,
    train_pll,
)
from speechlm.llm.second_pass.run import load_trained_scorer
from speechlm.testing.llm import tiny_tokenizer


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _bert_config():
    from transformers import BertConfig

    return BertConfig(vocab_size=260, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64)


def _tokenizer():
    tok = tiny_tokenizer("llama")  # adds <s>: a special token PLL must not mask
    tok.add_special_tokens({"mask_token": "<mask>"})
    return tok


def _tiny_mlm():
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    return BertForMaskedLM(_bert_config()).eval(), _tokenizer()


def _hand_pll(mlm, tok, text):
    """sum_t ln p(w_t | w with w_t masked), one full forward (all logits) per position."""
    enc = tok(text, return_special_tokens_mask=True)
    ids = enc["input_ids"]
    total = 0.0
    for t, special in enumerate(enc["special_tokens_mask"]):
        if special:
            continue
        masked = torch.tensor([ids])
        masked[0, t] = tok.mask_token_id
        with torch.no_grad():
            logits = mlm(input_ids=masked).logits[0, t]
        total += torch.log_softmax(logits, -1)[ids[t]].item()
    return total


def test_pll_equals_a_hand_loop_over_masked_positions():
    mlm, tok = _tiny_mlm()
    texts = ["the man said good one", "six", "one two three four five six seven"]
    # 3 rows per batch: masked copies of different texts share batches, with padding
    scorer = PllScorer(mlm, tok, PllConfig(model="tiny", rows_per_batch=3))
    got = scorer.costs(texts)
    want = [-_hand_pll(mlm, tok, t) for t in texts]
    assert got == pytest.approx(want, abs=1e-4)
    assert len({round(c, 3) for c in got}) == 3
    scored = scorer.score([NbestItem("u1", tuple(texts))])["u1"]
    assert scored.scores == pytest.approx([-c for c in want], abs=1e-4)


def test_a_tokenizer_without_a_mask_token_is_refused():
    mlm, _ = _tiny_mlm()
    with pytest.raises(ValueError, match="no mask token"):
        PllScorer(mlm, tiny_tokenizer("llama"), PllConfig(model="tiny"))


def _toy_items(n=16):
    words = ["one", "two", "three", "four"]
    return [NbestItem(f"u{i}", ("the man said bad",), f"the man said good {words[i % 4]}")
            for i in range(n)]


def test_head_is_built_on_an_encoder_only_dir_fine_tuned_and_the_dir_round_trips(tmp_path):
    from transformers import BertModel

    torch.manual_seed(0)
    BertModel(_bert_config()).save_pretrained(tmp_path / "enc")  # no MLM head, like MiniLM
    _tokenizer().save_pretrained(tmp_path / "enc")
    cfg = PllConfig(model=str(tmp_path / "enc"), lr=1e-2, backbone_lr=1e-2, epochs=8,
                    sents_per_step=4)
    scorer, new = build_pll_scorer(cfg)
    assert any(k.startswith("cls.predictions.transform.") for k in new)
    assert not any(k.startswith("bert.encoder") for k in new)  # the encoder was loaded
    emb = scorer.mlm.get_input_embeddings().weight
    assert scorer.mlm.get_output_embeddings().weight.data_ptr() == emb.data_ptr()  # tied
    text = "the man said good two"
    before = scorer.costs([text])[0]
    stats = train_pll(scorer, _toy_items(), progress=False)
    assert stats["sentences"] == 16 and stats["final_loss"] < stats["first_loss"]
    after = scorer.costs([text])[0]
    assert after < before - 1.0  # the references' PLL went up
    save_pll_scorer(scorer, tmp_path / "s", stats, new)
    meta = json.loads((tmp_path / "s" / "pll.json").read_text())
    assert meta["newly_initialised"] == new and meta["train"]["steps"] == stats["steps"]
    again, info = load_trained_scorer("pll", tmp_path / "s")
    assert info["scorer"] == "pll_enc"
    assert again.costs([text, "six"]) == pytest.approx(scorer.costs([text, "six"]), abs=1e-4)


def test_a_dir_of_the_other_method_is_refused_by_name(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "mwer.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"no pll.json.*use --method mwer"):
        load_pll_scorer(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="no such scorer dir"):
        load_trained_scorer("pll", tmp_path / "missing")
    with pytest.raises(ValueError, match="no trained scorer dir"):
        load_trained_scorer("lm", tmp_path / "m")


def test_pll_training_needs_references():
    mlm, tok = _tiny_mlm()
    scorer = PllScorer(mlm, tok, PllConfig(model="tiny"))
    with pytest.raises(ValueError, match="no training utterance with a reference"):
        train_pll(scorer, [NbestItem("u1", ("a b",))], progress=False)


def test_cli_train_pll_refuses_a_causal_lm(tmp_path, capsys):
    from speechlm.bin.rescore import main

    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps([{"input": ["the man"], "output": "the man"}]))
    code = main(["train", "--method", "pll", "--model", "smollm2-135m-instruct", "--train",
                 str(clean), "--out", str(tmp_path / "o")])
    assert code != 0 and "is a causal LM" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name, head", [("minilm-l6", "cls.predictions."),
                                        ("mpnet-base", "lm_head.")])
def test_catalogue_encoders_have_no_mlm_head_and_get_one(name, head):
    from speechlm.core import catalogue

    try:
        catalogue.locate(name)
    except catalogue.ModelNotInstalled as e:  # a broken install fails, only absent skips
        pytest.skip(str(e))
    scorer, new = build_pll_scorer(PllConfig(model=name, rows_per_batch=7, sents_per_step=4,
                                             epochs=3))
    # the head is what is missing, and all of it that is not tied to the embeddings
    assert new and all(k.startswith(head) for k in new)
    assert any(".dense." in k for k in new)
    emb = scorer.mlm.get_input_embeddings().weight
    assert scorer.mlm.get_output_embeddings().weight.data_ptr() == emb.data_ptr()
    texts = ["he hoped there would be stew for dinner", "he hope there would be stew for diner"]
    together = scorer.costs(texts)
    assert together == pytest.approx([scorer.costs([t])[0] for t in texts], rel=1e-4)
    refs = [NbestItem(f"u{i}", ("x",), t) for i, t in enumerate(texts * 8)]
    stats = train_pll(scorer, refs, progress=False)
    assert stats["final_loss"] < stats["first_loss"]


def test_a_hypothesis_over_max_length_is_truncated_and_named(caplog):
    mlm, tok = _tiny_mlm()
    scorer = PllScorer(mlm, tok, PllConfig(model="tiny", max_length=5))
    with caplog.at_level("WARNING"):
        got = scorer.score([NbestItem("utt-7", ("one two three four five six seven", "six"))])
    assert "utt-7" in caplog.text and "over 5 tokens" in caplog.text
    assert got["utt-7"].scores[0] == pytest.approx(-scorer.costs(["one two three four"])[0],
                                                   abs=1e-4)
