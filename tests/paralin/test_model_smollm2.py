"""ParalinGPT end to end on SmolLM2 (slow: loads and fine-tunes the 135M model)."""
from __future__ import annotations

import pytest

from speechlm.core import catalogue
from speechlm.paralin.meld import Turn, build_windows

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not catalogue.installed("smollm2-135m-instruct"), reason="SmolLM2 not installed")]


def parity_windows():
    """Even turns positive, odd ones negative: both labels follow the turn parity. A
    window's length follows its position too, so training here does not group batches by
    length (every batch would hold one label)."""
    lines = ["how are you", "fine thanks", "see you later", "where is it", "over there"]
    dialogues = [[Turn(f"d{k}", i, "Ann" if i % 2 else "Bob", lines[(i + k) % 5], "joy",
                       "positive" if i % 2 == 0 else "negative") for i in range(4)]
                 for k in range(6)]
    return build_windows(dialogues, 2)


def test_learns_a_constant_pattern_and_writes_the_format(tmp_path):
    from speechlm.llm.lora import LoRAConfig
    from speechlm.paralin.model import evaluate, load, predict, train
    from speechlm.paralin.serialize import FormatConfig

    windows = parity_windows()
    lora = LoRAConfig(rank=4, alpha=8, epochs=3, lr=2e-3, batch_size=6, threads=1,
                      wcn_noise=0.0, nbest_noise=0.0)
    report = train(windows, tmp_path / "m", lora=lora, group_by_length=False, progress=False)
    assert report["windows"] == len(windows) and report["steps"] == 3 * 3
    llm, fmt, max_tokens = load(tmp_path / "m")
    assert fmt == FormatConfig()
    preds, extra = predict(llm, windows[:4], fmt, max_tokens=max_tokens, max_new_tokens=8,
                           progress=False)
    scores = evaluate(windows[:4], preds, fmt, extra)
    # even turns are positive, odd ones negative: both labels follow the turn parity
    assert scores["cur_acc"] == 100.0 and scores["resp_acc"] == 100.0, (scores, preds)
    assert scores["response_ppl"] > 1.0


def test_sequence_classifier_learns_the_pattern_and_reloads(tmp_path):
    from speechlm.llm.lora import LoRAConfig
    from speechlm.paralin import seqcls
    from speechlm.paralin.serialize import FormatConfig

    windows = parity_windows()
    lora = LoRAConfig(rank=4, alpha=8, epochs=4, lr=3e-3, batch_size=6, threads=1,
                      wcn_noise=0.0, nbest_noise=0.0)
    report = seqcls.train(windows, tmp_path / "h", base="smollm2-135m-instruct", lora=lora,
                          group_by_length=False, progress=False)
    assert report["steps"] == 4 * 3
    model, tok, fmt, max_tokens = seqcls.load(tmp_path / "h")
    assert fmt == FormatConfig()
    preds, _ = seqcls.predict(model, tok, windows, fmt, max_tokens=max_tokens)
    right = sum(p["cur"] == w.current.sentiment and p["resp"] == w.response.sentiment
                for p, w in zip(preds, windows, strict=True))
    assert right == len(windows), preds


def test_response_only_model_writes_no_labels(tmp_path):
    from speechlm.llm.lora import LoRAConfig
    from speechlm.paralin.model import evaluate, load, predict, train
    from speechlm.paralin.serialize import FormatConfig

    windows = parity_windows()
    fmt = FormatConfig(task="response")
    lora = LoRAConfig(rank=4, alpha=8, epochs=2, lr=2e-3, batch_size=6, threads=1,
                      wcn_noise=0.0, nbest_noise=0.0)
    train(windows, tmp_path / "r", fmt=fmt, lora=lora, progress=False)
    llm, loaded, max_tokens = load(tmp_path / "r")
    assert loaded == fmt
    preds, extra = predict(llm, windows[:3], loaded, max_tokens=max_tokens, max_new_tokens=8,
                           progress=False)
    scores = evaluate(windows[:3], preds, loaded, extra)
    assert "cur_acc" not in scores and scores["response_ppl"] > 1.0
    assert all("<cur_sentiment>" not in p.response for p in preds)
