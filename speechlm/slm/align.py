"""Sample continuations through the runtime, then DPO (trl) or likelihood fine-tuning.

A model dir is the LM trainer's checkpoint (transformers ``LlamaForCausalLM`` + the unit
tokenizer). ``dpo`` trains a copy of the policy against a frozen reference (the base unit
LM) with trl's ``DPOTrainer`` (sigmoid loss, ``beta``); ``likelihood_ft`` is the ablation:
the same prompts and chosen continuations, plain next-token NLL on the continuation,
same epochs and learning rate. Both write a plain checkpoint dir plus ``train.json``
(seconds, losses), written last, so its presence marks the dir finished.
"""
from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from speechlm.slm.feedback import Pair
from speechlm.slm.units import units_to_text

__all__ = ["TrainConfig", "dpo", "likelihood_ft", "load_unit_lm", "sample_continuations"]

NUM_SPECIAL = 4  # <pad> <s> </s> <unk> come before u0 in the unit tokenizer


def ids_to_units(ids: Sequence[int], num_units: int, counts: Counter | None = None) -> list[int]:
    """Token ids of the unit tokenizer -> unit ids; specials (never trained on, but a
    sampler can draw them) are dropped and counted under ``special_tokens_dropped``."""
    out = []
    for i in ids:
        if NUM_SPECIAL <= i < NUM_SPECIAL + num_units:
            out.append(i - NUM_SPECIAL)
        elif counts is not None:
            counts["special_tokens_dropped"] += 1
    return out


def load_unit_lm(model_dir: str | Path):
    """The runtime's ``LLM`` over a unit-LM checkpoint dir."""
    from speechlm.runtime import LLM

    return LLM.from_pretrained(str(model_dir))


def sample_continuations(lm, prompts: dict[str, list[int]], n: int, *, max_tokens: int,
                         temperature: float = 1.0, top_k: int = 0, seed: int = 0,
                         num_units: int) -> tuple[dict[str, list[list[int]]], Counter]:
    """``n`` sampled unit continuations of each prompt (seeded per prompt).

    Returns:
        (prompt id -> n unit lists, counts of dropped special tokens).
    """
    from speechlm.runtime import SamplingParams

    out, counts = {}, Counter()
    for k, pid in enumerate(sorted(prompts)):
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                                seed=seed * 100_003 + k)
        comps = lm.generate([units_to_text(prompts[pid])] * n, params)
        out[pid] = [ids_to_units(c.token_ids, num_units, counts) for c in comps]
    return out, counts


@dataclass(frozen=True)
class TrainConfig:
    """Schedule shared by DPO and the likelihood ablation (same data, same steps)."""

    epochs: int = 2
    lr: float = 5e-4
    batch_size: int = 8
    beta: float = 0.1
    seed: int = 0
    max_length: int = 256

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or not self.beta > 0:
            raise ValueError(f"bad TrainConfig {self}")


def _finish(model, tokenizer, out_dir: Path, report: dict) -> dict:
    from speechlm.llm.lm_train import save_tokenizer

    model.save_pretrained(out_dir)
    save_tokenizer(tokenizer, out_dir)
    (out_dir / "train.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def dpo(policy_dir: str | Path, ref_dir: str | Path, pairs: Sequence[Pair],
        out_dir: str | Path, config: TrainConfig) -> dict:
    """DPO of ``policy_dir`` against ``ref_dir`` on ``pairs`` with trl; saves ``out_dir``."""
    from speechlm.core.extras import require

    require("trl", "llm")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from trl import DPOConfig, DPOTrainer

    if not pairs:
        raise ValueError("no preference pairs: nothing to train on")
    out_dir = Path(out_dir)
    started = time.monotonic()
    tok = PreTrainedTokenizerFast.from_pretrained(str(policy_dir), local_files_only=True)
    policy = AutoModelForCausalLM.from_pretrained(str(policy_dir), local_files_only=True)
    ref = AutoModelForCausalLM.from_pretrained(str(ref_dir), local_files_only=True)
    args = DPOConfig(
        output_dir=str(out_dir / "trl"), beta=config.beta, learning_rate=config.lr,
        num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
        max_length=config.max_length, seed=config.seed, data_seed=config.seed,
        use_cpu=True, bf16=False, report_to="none", save_strategy="no", logging_steps=1,
        lr_scheduler_type="constant", warmup_steps=0, disable_tqdm=True,
        dataloader_num_workers=0)
    data = Dataset.from_list([p.trl_row() for p in pairs])
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=data,
                         processing_class=tok)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    report = {"method": "dpo", "pairs": len(pairs), "config": asdict(config),
              "steps": trainer.state.global_step,
              "train_seconds": round(time.monotonic() - started, 1),
              "first_loss": logs[0]["loss"] if logs else None,
              "last_loss": logs[-1]["loss"] if logs else None,
              "last_reward_margin": logs[-1].get("rewards/margins") if logs else None}
    return _finish(trainer.model, tok, out_dir, report)


def likelihood_ft(policy_dir: str | Path, pairs: Sequence[Pair], out_dir: str | Path,
                  config: TrainConfig) -> dict:
    """The ablation: NLL of the chosen continuation after its prompt; saves ``out_dir``."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    if not pairs:
        raise ValueError("no pairs: nothing to train on")
    out_dir = Path(out_dir)
    started = time.monotonic()
    tok = PreTrainedTokenizerFast.from_pretrained(str(policy_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(policy_dir), local_files_only=True)
    rows = []
    for p in pairs:
        prompt = tok(p.prompt)["input_ids"]
        comp = tok(p.chosen, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append((prompt, comp))
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    model.train()
    losses, steps = [], 0
    for _ in range(config.epochs):
        rng.shuffle(rows)
        for s in range(0, len(rows), config.batch_size):
            batch = rows[s:s + config.batch_size]
            seqs = [(p + c)[: config.max_length] for p, c in batch]
            width = max(len(x) for x in seqs)
            ids = torch.full((len(seqs), width), tok.pad_token_id)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            labels = torch.full((len(seqs), width), -100)
            for i, ((p, _), x) in enumerate(zip(batch, seqs, strict=True)):
                ids[i, : len(x)] = torch.tensor(x)
                mask[i, : len(x)] = 1
                labels[i, len(p): len(x)] = torch.tensor(x[len(p):])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            steps += 1
            losses.append(float(loss.detach()))
    report = {"method": "likelihood_ft", "pairs": len(pairs), "config": asdict(config),
              "steps": steps, "train_seconds": round(time.monotonic() - started, 1),
              "first_loss": losses[0], "last_loss": losses[-1],
              "last_perplexity": math.exp(losses[-1])}
    return _finish(model.eval(), tok, out_dir, report)
