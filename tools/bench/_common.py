"""Shared setup of the LLM benchmarks: a random Llama of realistic-ish shape for a CPU."""

from __future__ import annotations

import random

import torch

BENCH_CONFIG = dict(
    vocab_size=32000,
    hidden_size=256,
    intermediate_size=688,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def bench_model(seed: int = 0):
    """(model, tokenizer, config): random fp32 Llama, word-level tokenizer (256 words)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from speechlm.testing.llm import tiny_tokenizer

    config = AutoConfig.for_model("llama", **BENCH_CONFIG)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, attn_implementation="sdpa"
    )
    return model.eval(), tiny_tokenizer("llama"), config


def random_words(rng: random.Random, n: int) -> str:
    from speechlm.testing.llm import tiny_words

    words = [w for w in tiny_words() if w.isalpha()]
    return " ".join(rng.choice(words) for _ in range(n))


def describe(config) -> str:
    return (
        f"Llama config: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads "
        f"({config.num_key_value_heads} KV), intermediate {config.intermediate_size}, "
        f"vocab {config.vocab_size}, fp32; torch threads {torch.get_num_threads()}"
    )
