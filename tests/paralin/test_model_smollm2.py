"""ParalinGPT end to end on SmolLM2 (slow: loads and fine-tunes the 135M model)."""
from __future__ import annotations

import pytest

from speechlm.core import catalogue
from speechlm.paralin.meld import Turn, build_windows

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not catalogue.installed("smollm2-135m-instruct"), reason="SmolLM2 not installed")]


def test_learns_a_constant_pattern_and_writes_the_format(tmp_path):
    from speechlm.llm.lora import LoRAConfig
    from speechlm.paralin.model import evaluate, load, predict, train
    from speechlm.paralin.serialize import FormatConfig

    lines = ["how are you", "fine thanks", "see you later", "where is it", "over there"]
    dialogues = [[Turn(f"d{k}", i, "Ann" if i % 2 else "Bob", lines[(i + k) % 5], "joy",
                       "positive" if i % 2 == 0 else "negative") for i in range(4)]
                 for k in range(6)]
    windows = build_windows(dialogues, 2)
    lora = LoRAConfig(rank=4, alpha=8, epochs=3, lr=2e-3, batch_size=6, threads=1,
                      wcn_noise=0.0, nbest_noise=0.0)
    report = train(windows, tmp_path / "m", lora=lora, progress=False)
    assert report["windows"] == len(windows) and report["steps"] == 3 * 3
    llm, fmt, max_tokens = load(tmp_path / "m")
    assert fmt == FormatConfig()
    preds, extra = predict(llm, windows[:4], fmt, max_tokens=max_tokens, max_new_tokens=8,
                           progress=False)
    scores = evaluate(windows[:4], preds, fmt, extra)
    # even turns are positive, odd ones negative: both labels follow the turn parity
    assert scores["cur_acc"] == 100.0 and scores["resp_acc"] == 100.0, (scores, preds)
    assert scores["response_ppl"] > 1.0
