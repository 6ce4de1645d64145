"""Our preference pairs go through trl's own DPO tokenization as intended."""
from __future__ import annotations

import pytest

pytest.importorskip("trl")


def test_pairs_tokenize_in_trl_as_prompt_then_unit_completions(tmp_path):
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    from speechlm.slm.feedback import Pair
    from speechlm.slm.units import unit_tokenizer

    tok = unit_tokenizer(12)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=64, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0)
    torch.manual_seed(0)
    pairs = [Pair("p1", "u1 u2 u3", " u4 u5", " u11", -1.0, -2.0),
             Pair("p2", "u0", " u7 u7 u8", " u9 u10", 0.0, -1.0)]
    args = DPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_length=64,
                     per_device_train_batch_size=2, save_strategy="no")
    trainer = DPOTrainer(model=LlamaForCausalLM(cfg), ref_model=LlamaForCausalLM(cfg),
                         args=args, train_dataset=Dataset.from_list([p.trl_row() for p in pairs]),
                         processing_class=tok)
    rows = list(trainer.train_dataset)
    eos, bos = tok.eos_token_id, tok.bos_token_id
    # unit u<i> is token 4 + i; BOS once before the prompt; EOS closes each completion
    assert rows[0]["prompt_ids"] == [bos, 5, 6, 7]
    assert rows[0]["chosen_ids"] == [8, 9, eos]
    assert rows[0]["rejected_ids"] == [15, eos]
    assert rows[1]["prompt_ids"] == [bos, 4]
    assert rows[1]["chosen_ids"] == [11, 11, 12, eos]
    assert rows[1]["rejected_ids"] == [13, 14, eos]
    assert tok.unk_token_id not in [t for r in rows for k in r if k.endswith("_ids")
                                    for t in r[k]]
