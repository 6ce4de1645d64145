"""LoRA fine-tuning of a causal LM as an intent generator, ranked like any LM at test time.

Why a generator and not a classification head: the fine-tuned model is trained to write the
verbalized label (and EOS) after ``"<serialized input> =>"``, the exact prompt that
``speechlm.llm.slu.rank_labels`` scores, so prediction goes through the runtime's
``LLM.score`` like in-context prompting and N-best rescoring do (one code path, one prompt
format, no extra head weights to save), and label names carry meaning the LM already has
(``alarm set`` vs ``alarm query`` share a word). The loss covers only the label tokens and
EOS; the adapter is merged into the base weights for prediction (``merge_and_unload``).

Training data: each training sentence is shown in the forms the classifier will meet, built
from the reference text (no decode outputs needed): the text as is (= the 1-best and oracle
form, and a WCN's form when every bin is confident), a noised WCN (``wcn_noise``: a share
of words get one competitor with a random posterior, ``speechlm.llm.serialize.noisy_bins``)
and a noised N-best list (``noisy_nbest``). With ``extra`` (from
``--train-decode-dir``/``--train-data-dir``) real decode outputs are added as well.

>>> LoRAConfig(rank=0)
Traceback (most recent call last):
...
ValueError: rank must be >= 1, got 0
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from speechlm.llm.icl import Example
from speechlm.llm.serialize import SerializeConfig, noisy_bins, noisy_nbest, serialize_nbest
from speechlm.llm.serialize import serialize_wcn as _wcn
from speechlm.llm.slu import PromptConfig, PromptFitter
from speechlm.llm.threads import torch_threads

logger = logging.getLogger(__name__)

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoRAConfig:
    """Adapter size and schedule.

    Args:
        rank: LoRA rank r.
        alpha: LoRA scaling numerator (scale = alpha / rank).
        dropout: dropout on the LoRA path.
        target_modules: module names that get an adapter (Llama's projections).
        epochs: passes over the (expanded) training examples.
        lr: peak AdamW learning rate (linear warmup over 5% of steps, cosine decay).
        batch_size: examples per step.
        wcn_noise: share of words given a competitor in the noised WCN copy (0: no copy).
        nbest_noise: per-word substitution/deletion rate in the noised N-best copy (0: none).
        seed: seeds the adapter init, the noise and the batch order.
        threads: torch CPU threads during training (None: leave torch's setting).
    """

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = TARGETS
    epochs: int = 6
    lr: float = 3e-3
    batch_size: int = 32
    wcn_noise: float = 0.3
    nbest_noise: float = 0.2
    seed: int = 0
    threads: int | None = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        for name in ("rank", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("wcn_noise", "nbest_noise"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.target_modules:
            raise ValueError("target_modules is empty")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")


def training_inputs(examples: Sequence[Example], serialize: SerializeConfig,
                    config: LoRAConfig) -> list[tuple[str, str]]:
    """(serialized input, intent) pairs: each text as is, plus its noised WCN and N-best."""
    rng = random.Random(config.seed)
    vocab = sorted({w for e in examples for w in e.text.split()})
    out = []
    for e in examples:
        out.append((e.text, e.intent))
        if config.wcn_noise > 0:
            out.append((_wcn(noisy_bins(e.text, rng, vocab, config.wcn_noise), serialize),
                        e.intent))
        if config.nbest_noise > 0 and serialize.nbest_k > 1:
            hyps = noisy_nbest(e.text, rng, vocab, serialize.nbest_k, config.nbest_noise)
            out.append((serialize_nbest(hyps, serialize), e.intent))
    return out


class _TokenizerLM:
    """Just what ``PromptFitter`` needs from an LM: a tokenizer and a context length."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length


def _encode(pairs: Sequence[tuple[str, str]], tokenizer: Any, max_length: int,
            prompt: PromptConfig, labels: Sequence[str]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids with BOS, label ids + EOS) per pair, tokenized as ``LLM.score`` does."""
    label_ids = {lab: list(tokenizer(prompt.label_text(lab), add_special_tokens=False)
                           ["input_ids"]) + [tokenizer.eos_token_id] for lab in labels}
    reserve = max(len(v) for v in label_ids.values())
    fitter = PromptFitter(_TokenizerLM(tokenizer, max_length), reserve)
    out = []
    for i, (text, intent) in enumerate(pairs):
        p = fitter.fit(prompt, text, [], utt=f"train[{i}]")
        ids = tokenizer(p, add_special_tokens=True, verbose=False)["input_ids"]
        out.append((list(ids), label_ids[intent]))
    if fitter.cut:
        logger.warning("%d of %d training inputs were cut from the left to fit %d tokens",
                       fitter.cut, len(pairs), max_length)
    return out


def _batch(items: Sequence[tuple[list[int], list[int]]], pad_id: int):
    width = max(len(p) + len(t) for p, t in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    target = torch.full((len(items), width), -100, dtype=torch.long)
    for i, (p, t) in enumerate(items):
        seq = p + t
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        target[i, len(p) : len(seq)] = torch.tensor(t)  # loss on label + EOS only
    return ids, mask, target


def _loss(model: Any, ids: torch.Tensor, mask: torch.Tensor, target: torch.Tensor):
    """Cross-entropy on ``target`` (-100: no loss); ``ids`` are token ids ``(B, T)`` or
    input embeddings ``(B, T, D)``."""
    inputs = {"input_ids": ids} if ids.dim() == 2 else {"inputs_embeds": ids}
    logits = model(**inputs, attention_mask=mask).logits[:, :-1]  # (B, T-1, V)
    return torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), target[:, 1:].reshape(-1),
        ignore_index=-100)


def train_lora(lm_dir: str | Path, examples: Sequence[Example], labels: Sequence[str],
               out_dir: str | Path, *, prompt: PromptConfig, serialize: SerializeConfig,
               config: LoRAConfig, extra: Sequence[tuple[str, str]] = (),
               progress: bool = True) -> dict:
    """Fine-tune a LoRA adapter on ``lm_dir``; save it under ``out_dir`` (peft format).

    Args:
        lm_dir: base causal LM: a transformers checkpoint dir, a catalogue name
            (``smollm2-135m-instruct``) or a ``.gguf`` file.
        examples: training sentences; each gives the forms of ``training_inputs``.
        labels: the label set (every example's intent must be in it).
        out_dir: the adapter directory to write.
        prompt: prompt format (``shots`` is ignored: the LoRA model gets none).
        serialize: N-best/WCN serialization of the noised copies.
        config: adapter and schedule.
        extra: more (serialized input, intent) pairs, e.g. real decode outputs.

    Returns:
        ``{"examples", "steps", "train_seconds", "final_loss", "trainable_params"}``.
    """
    from speechlm.runtime.loading import context_length, load_model_and_tokenizer, resolve_model

    source = resolve_model(lm_dir)  # a missing or broken model fails before any training
    pairs = training_inputs(examples, serialize, config) + list(extra)
    unknown = sorted({lab for _, lab in pairs} - set(labels))
    if unknown:
        raise ValueError(f"training intents not in the label set: {unknown[:5]}")
    with torch_threads(config.threads):
        started = time.monotonic()
        torch.manual_seed(config.seed)
        base, tokenizer = load_model_and_tokenizer(source, torch.float32)
        items = _encode(pairs, tokenizer, context_length(base.config), prompt, labels)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        model, stats = fit_lora(base, items, config, pad, progress=progress)
        model.save_pretrained(out_dir)
        seconds = time.monotonic() - started
    return {**stats, "train_seconds": round(seconds, 1)}


def fit_lora(base: Any, items: Sequence[Any], config: LoRAConfig,
             pad_id: int, *, progress: bool = True, desc: str = "lora",
             batch_fn: Any = None, extra: torch.nn.Module | None = None,
             loss_fn: Any = None, task_type: str = "CAUSAL_LM",
             group_by_length: bool = False) -> tuple[Any, dict]:
    """Train a LoRA adapter on ``base`` (a transformers causal LM) over ``(prompt ids,
    target ids)`` pairs, the loss on the target tokens only (linear warmup over 5% of the
    steps, cosine decay to 10%, gradient clipping at 1). The adapter's initialisation
    draws from torch's RNG: seed it before loading ``base``. Returns the peft model (in
    training mode) and ``{"examples", "steps", "final_loss", "trainable_params"}``.

    ``batch_fn(model, items) -> (inputs_embeds (B, T, D), mask, target)`` replaces the
    token-id batching for items that carry more than ids (e.g. ParalinGPT's speech slots),
    and ``extra`` (e.g. a speech projector) is trained along with the adapter.
    ``loss_fn(model, items) -> loss`` replaces the causal-LM loss altogether, e.g. for a
    sequence classifier (``task_type="SEQ_CLS"``: peft then trains its head too).
    ``group_by_length``: each epoch's shuffled order is cut into chunks of 8 batches, each
    chunk sorted by length (``len(item[0]) + len(item[1])``) and its batches shuffled
    again, so a batch pads little (a padded position costs as much as a real one)."""
    from peft import LoraConfig, get_peft_model

    if not items:
        raise ValueError("no training examples")
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules), task_type=task_type)
    model = get_peft_model(base, lora)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if extra is not None:
        extra.train()
        trainable += [p for p in extra.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(items) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, total // 20)
    rng = random.Random(config.seed)
    model.train()
    bar = tqdm(total=total, disable=not progress, unit="step", desc=desc)
    step, recent = 0, []
    for _ in range(config.epochs):
        order = list(range(len(items)))
        rng.shuffle(order)
        if group_by_length:
            order = _grouped(order, items, config.batch_size, rng)
        for b in range(0, len(order), config.batch_size):
            lr = config.lr * min(1.0, (step + 1) / warmup)
            lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / total))
            for g in optimizer.param_groups:
                g["lr"] = lr
            chosen = [items[i] for i in order[b:b + config.batch_size]]
            if loss_fn is not None:
                loss = loss_fn(model, chosen)
            else:
                loss = _loss(model, *(batch_fn(model, chosen) if batch_fn is not None
                                      else _batch(chosen, pad_id)))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            recent = [*recent, loss.item()][-steps_per_epoch:]  # the last epoch's losses
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    if extra is not None:
        extra.eval()
    return model, {"examples": len(items), "steps": step,
                   "final_loss": sum(recent) / max(len(recent), 1),
                   "trainable_params": sum(p.numel() for p in trainable)}


def _grouped(order: list[int], items: Sequence[Any], batch_size: int,
             rng: random.Random) -> list[int]:
    """``order`` re-cut into batches of similar lengths (see ``fit_lora``)."""
    size = lambda i: len(items[i][0]) + len(items[i][1])  # noqa: E731
    chunk = 8 * batch_size
    batches = []
    for c in range(0, len(order), chunk):
        part = sorted(order[c:c + chunk], key=size)
        batches += [part[b:b + batch_size] for b in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return [i for batch in batches for i in batch]


def load_lora_llm(lm_dir: str | Path, adapter_dir: str | Path, **llm_kwargs: Any):
    """The runtime ``LLM`` of ``lm_dir`` (a checkpoint dir, a catalogue name or a .gguf
    file) with the adapter merged into its weights."""
    from peft import PeftModel

    from speechlm.runtime import LLM
    from speechlm.runtime.loading import load_model_and_tokenizer, resolve_model

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir}/adapter_config.json does not exist")
    base, tokenizer = load_model_and_tokenizer(resolve_model(lm_dir), torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    return LLM(model, tokenizer, **llm_kwargs)
