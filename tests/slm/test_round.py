"""A curriculum round on a tiny unit LM: files written once, a killed round resumes."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")


class LengthJudge:
    """A rule, not a model: longer transcripts score higher (enough to make pairs)."""

    name = "length"

    def __call__(self, prompt, continuations):
        return [float(len(t)) if t else None for t in continuations]


@pytest.mark.slow
def test_round_writes_its_steps_and_resumes(tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from speechlm.llm.lm_train import save_tokenizer
    from speechlm.slm.align import TrainConfig
    from speechlm.slm.pipeline import run_round
    from speechlm.slm.recognizer import CTCConfig, UnitCTC
    from speechlm.slm.units import unit_tokenizer

    k = 12
    tok = unit_tokenizer(k)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=64, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0)
    torch.manual_seed(0)
    base = tmp_path / "base"
    LlamaForCausalLM(cfg).save_pretrained(base)
    save_tokenizer(tok, base)
    torch.manual_seed(0)
    ctc = UnitCTC(CTCConfig(k)).eval()  # untrained: random but real transcripts
    prompts = {f"p{i}": [i % k, (i + 3) % k, (i + 5) % k] for i in range(6)}
    kw = dict(policy=base, ref=base, prompts=prompts, ctc=ctc, judge=LengthJudge(),
              num_units=k, margin=0.0, n=4, max_tokens=8,
              config=TrainConfig(epochs=1, batch_size=4), seed=0)
    out = tmp_path / "r1"
    summary = run_round(out, **kw)
    assert summary["pairs"] > 0
    pairs = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    for p in pairs:
        assert p["chosen_score"] - p["rejected_score"] >= 0.0
        assert p["prompt"] == " ".join(f"u{u}" for u in prompts[p["prompt_id"]])
    samples = (out / "samples.jsonl").read_text()
    # a round killed during DPO: samples and pairs stay, only the model is trained again
    (out / "round.json").unlink()
    (out / "model" / "train.json").unlink()
    (out / "samples.jsonl").touch()
    mtime = (out / "samples.jsonl").stat().st_mtime_ns
    again = run_round(out, **kw)
    assert (out / "samples.jsonl").stat().st_mtime_ns == mtime
    assert (out / "samples.jsonl").read_text() == samples
    assert again["pairs"] == summary["pairs"]
    assert (out / "model" / "train.json").exists()
    assert run_round(out, **kw) == again  # a finished round is read back, not rerun
