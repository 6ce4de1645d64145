"""LoRA fine-tuning of a causal LM for generative error correction (GER).

Each training utterance becomes one example: the GER prompt with its N-best (the prefix
that ``ger-select`` scores after and ``ger-free`` generates from, tokenized as
``LLM.score`` tokenizes a prefix) and, as the target, the reference plus EOS. The loss is on
the target only (``speechlm.llm.lora.fit_lora``). The adapter is saved in peft's format;
``speechlm.llm.lora.load_lora_llm`` merges it back into the runtime's LLM.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from speechlm.llm.second_pass.nbest import NbestItem
from speechlm.llm.second_pass.prompt import PromptBuilder

__all__ = ["ger_examples", "train_ger_lora"]


def ger_examples(tokenizer, items: Sequence[NbestItem], max_length: int,
                 builder: PromptBuilder | None = None) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, reference ids + EOS) per training utterance with a reference and a
    non-empty N-best; an example over ``max_length`` tokens loses hypotheses from the end
    of its N-best (never the instructions or the target)."""
    builder = builder or PromptBuilder(tokenizer)
    out = []
    for it in items:
        if it.ref is None or not it.hyps:
            continue
        target = list(tokenizer(builder.answer(it.ref), add_special_tokens=False)["input_ids"])
        target.append(tokenizer.eos_token_id)
        hyps = list(it.hyps)
        while True:
            prompt = list(tokenizer(builder.render(builder.ger(hyps)))["input_ids"])
            if len(prompt) + len(target) <= max_length or len(hyps) == 1:
                break
            hyps.pop()
        if len(prompt) + len(target) <= max_length:
            out.append((prompt, target))
    return out


def train_ger_lora(llm_name: str, train: Sequence[NbestItem], out_dir: str | Path, *,
                   rank: int = 8, epochs: int = 1, lr: float = 1e-3, batch_size: int = 1,
                   seed: int = 0, progress: bool = True) -> dict:
    """Fit and save a GER adapter on ``llm_name`` (catalogue name, dir or .gguf)."""
    from speechlm.llm.lora import LoRAConfig, fit_lora
    from speechlm.runtime.loading import context_length, load_model_and_tokenizer, resolve_model

    t0 = time.monotonic()
    torch.manual_seed(seed)
    base, tokenizer = load_model_and_tokenizer(resolve_model(llm_name), torch.float32)
    items = ger_examples(tokenizer, train, context_length(base.config))
    config = LoRAConfig(rank=rank, alpha=2.0 * rank, epochs=epochs, lr=lr,
                        batch_size=batch_size, wcn_noise=0, nbest_noise=0, seed=seed,
                        threads=None)
    model, stats = fit_lora(base, items, config, tokenizer.pad_token_id or 0,
                            progress=progress, desc="ger-lora")
    out = Path(out_dir)
    model.save_pretrained(out)
    stats = {**stats, "train_seconds": round(time.monotonic() - t0, 1), "llm": llm_name}
    (out / "ger_lora.json").write_text(json.dumps(stats, indent=1) + "\n")
    return stats
