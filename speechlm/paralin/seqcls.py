"""The paper's sequence-classification baseline on the same LLM: SmolLM2 with a
classification head.

One model with two heads: ``AutoModelForSequenceClassification`` on the Llama with
``num_labels = 6``, read as two 3-way heads (logits 0-2 the current utterance's sentiment,
3-5 the response's), pooled at the last non-pad token (the tokenizer's pad token, EOS,
never occurs inside a prompt). The loss is the sum of the two cross-entropies. Sharing the
backbone keeps the training budget equal to the serialized model's (one LoRA fit over the
same windows, epochs, batch size, rank and learning rate) instead of doubling it. The input
is the serialized model's prompt (``speechlm.paralin.serialize.prompt_text``: the same
turns, with the context's sentiments), so the two differ only in how the labels are read
out: a head on the last state versus rank classification of written labels. The head is
trained with the LoRA adapter (peft ``SEQ_CLS`` keeps it in ``modules_to_save``).
"""
from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from speechlm.llm.lora import LoRAConfig, fit_lora
from speechlm.llm.threads import torch_threads
from speechlm.paralin.meld import SENTIMENTS, Window
from speechlm.paralin.serialize import FormatConfig, fit_prompt

KIND = "seqcls"
META = "paralin.json"
N = len(SENTIMENTS)


def _classifier(base: str) -> tuple[Any, Any]:
    """(Llama sequence classifier with 2 x 3 outputs and the base's weights, tokenizer);
    the head's initialisation draws from torch's RNG."""
    from transformers import AutoModelForSequenceClassification

    from speechlm.runtime.loading import load_model_and_tokenizer, resolve_model

    lm, tok = load_model_and_tokenizer(resolve_model(base), torch.float32)
    config = copy.deepcopy(lm.config)
    config.num_labels = 2 * N
    config.pad_token_id = tok.pad_token_id
    clf = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32,
                                                         attn_implementation="sdpa")
    clf.model.load_state_dict(lm.model.state_dict())
    return clf, tok


def _encode(windows: Sequence[Window], tok: Any, fmt: FormatConfig,
            max_tokens: int) -> tuple[list[list[int]], int]:
    """Prompt ids of each window (oldest context turns dropped to fit the serialized
    model's prompt budget: ``max_tokens`` less 64 for its target), turns dropped."""
    budget = max(32, max_tokens - 64)
    count = lambda t: len(tok(t)["input_ids"])  # noqa: E731
    out, dropped = [], 0
    for w in windows:
        prompt, d = fit_prompt(w, fmt, count, budget)
        dropped += d
        out.append(list(tok(prompt)["input_ids"])[-budget:])
    return out, dropped


def _pad(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T) right-padded
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    return ids, mask


def _loss(model: Any, items: Sequence[tuple[list[int], tuple[int, int]]], pad_id: int):
    ids, mask = _pad([i for i, _ in items], pad_id)
    logits = model(input_ids=ids, attention_mask=mask).logits  # (B, 6)
    cur = torch.tensor([c for _, (c, _) in items])
    resp = torch.tensor([r for _, (_, r) in items])
    ce = torch.nn.functional.cross_entropy
    return ce(logits[:, :N], cur) + ce(logits[:, N:], resp)


def train(windows: Sequence[Window], out_dir: str | Path, *, base: str,
          fmt: FormatConfig | None = None, lora: LoRAConfig | None = None,
          max_tokens: int = 512, group_by_length: bool = True, progress: bool = True) -> dict:
    """Fit the heads and a LoRA adapter; write them and ``paralin.json`` to ``out_dir``
    (``group_by_length``: as in ``speechlm.paralin.model.train``)."""
    fmt, lora = fmt or FormatConfig(), lora or LoRAConfig()
    if fmt.with_speech or fmt.with_emotion or fmt.task != "multitask":
        raise ValueError("the sequence classifier reads text prompts and predicts the two "
                         "sentiments only (no speech, emotion or response task)")
    out_dir = Path(out_dir)
    started = time.monotonic()
    with torch_threads(lora.threads):
        torch.manual_seed(lora.seed)
        model, tok = _classifier(base)
        prompts, dropped = _encode(windows, tok, fmt, max_tokens)
        items = [(p, (SENTIMENTS.index(w.current.sentiment),
                      SENTIMENTS.index(w.response.sentiment)))
                 for p, w in zip(prompts, windows, strict=True)]
        pad = tok.pad_token_id
        peft_model, stats = fit_lora(model, items, lora, pad, progress=progress, desc="heads",
                                     loss_fn=lambda m, b: _loss(m, b, pad), task_type="SEQ_CLS",
                                     group_by_length=group_by_length)
        out_dir.mkdir(parents=True, exist_ok=True)
        peft_model.save_pretrained(out_dir)
    report = {**stats, "train_seconds": round(time.monotonic() - started, 1),
              "context_turns_dropped": dropped, "windows": len(windows)}
    meta = {"kind": KIND, "base": base, "format": asdict(fmt), "lora": asdict(lora),
            "max_tokens": max_tokens, "labels": list(SENTIMENTS),
            "group_by_length": group_by_length, "report": report}
    (out_dir / META).write_text(json.dumps(meta, indent=1) + "\n")
    return report


def load(model_dir: str | Path) -> tuple[Any, Any, FormatConfig, int]:
    """``(classifier with the adapter merged, tokenizer, format, max_tokens)``."""
    from peft import PeftModel

    model_dir = Path(model_dir)
    meta = json.loads((model_dir / META).read_text())
    if meta.get("kind") != KIND:
        raise ValueError(f"{model_dir}: not a sequence-classifier model (kind "
                         f"{meta.get('kind')!r})")
    clf, tok = _classifier(meta["base"])
    model = PeftModel.from_pretrained(clf, model_dir).merge_and_unload().eval()
    return model, tok, FormatConfig(**meta["format"]), meta["max_tokens"]


def predict(model: Any, tok: Any, windows: Sequence[Window], fmt: FormatConfig, *,
            max_tokens: int = 512, batch_size: int = 8) -> tuple[list[dict], int]:
    """``[{"cur": label, "resp": label}, ...]`` in window order, and context turns dropped."""
    prompts, dropped = _encode(windows, tok, fmt, max_tokens)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # little padding
    out: list[dict] = [{} for _ in prompts]
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            rows = order[b:b + batch_size]
            ids, mask = _pad([prompts[i] for i in rows], tok.pad_token_id)
            logits = model(input_ids=ids, attention_mask=mask).logits  # (B, 6)
            for r, i in enumerate(rows):
                out[i] = {"cur": SENTIMENTS[int(logits[r, :N].argmax())],
                          "resp": SENTIMENTS[int(logits[r, N:].argmax())]}
    return out, dropped
