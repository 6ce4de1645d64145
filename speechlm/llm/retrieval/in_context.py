"""Retrieved transcripts as an in-context prefix of the speech-prefix LLM.

The cheaper comparison to cross-attention (``speechlm.llm.retrieval.augmented``): the prompt
becomes ``[BOS] Similar requests: a; b; ... . [speech] Transcript:`` with no new weights
(:func:`transcribe_in_context`). A speech LLM whose LLM was fine-tuned on
``[BOS] [speech] Transcript:`` alone may never have learnt to read such a prefix;
:func:`fit_in_context` fine-tunes its LLM (every weight, projector frozen) on prompts with
the retrieved texts, the speech LLM's loss on the transcript tokens + EOS.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from speechlm.llm.speech_llm import clipped_step, next_token_loss, pad_right, warmup_cosine_lr


def in_context_embeds(speech_llm: Any, feats: np.ndarray, texts: Sequence[str], *,
                      intro: str = " Similar requests:", sep: str = ";") -> torch.Tensor:
    """``[BOS] intro t1; t2; ... . [speech] [prompt]`` as input embeddings ``(P, D)``.

    Retrieved texts are dropped from the end until the prompt leaves room for
    ``max_new_tokens`` within the LLM's context length.
    """
    llm, tok = speech_llm.llm, speech_llm.llm.tokenizer
    base = speech_llm.prompt_embeds(feats)  # [BOS] [speech] [prompt]
    n_bos = 1 if tok.bos_token_id is not None else 0
    room = llm.max_length - speech_llm.config.max_new_tokens - base.shape[0]
    kept = list(texts)
    while kept:
        ids = tok(f"{intro} {f'{sep} '.join(t.strip() for t in kept)}.",
                  add_special_tokens=False)["input_ids"]
        if len(ids) <= room:
            return torch.cat([base[:n_bos], llm.embed_tokens(ids), base[n_bos:]])
        kept.pop()
    return base


def transcribe_in_context(speech_llm: Any, feats: Sequence[np.ndarray],
                          neighbour_texts: Sequence[Sequence[str]], batch_size: int = 8
                          ) -> list[str]:
    """Greedy transcripts with the retrieved texts as a prompt prefix (no new weights)."""
    from speechlm.runtime import SamplingParams

    if len(feats) != len(neighbour_texts):
        raise ValueError(f"{len(feats)} utterances but {len(neighbour_texts)} neighbour lists")
    params = SamplingParams(max_tokens=speech_llm.config.max_new_tokens)
    out = []
    for s in range(0, len(feats), batch_size):
        prompts = [in_context_embeds(speech_llm, f, t)
                   for f, t in zip(feats[s : s + batch_size],
                                   neighbour_texts[s : s + batch_size], strict=True)]
        out += [" ".join(c.text.split())
                for c in speech_llm.llm.generate_from_embeds(prompts, params)]
    return out


def fit_in_context(speech_llm: Any, feats: Sequence[np.ndarray], texts: Sequence[str],
                   neighbour_texts: Sequence[Sequence[str]], *, epochs: int = 1,
                   batch_size: int = 8, lr: float = 5e-4, seed: int = 0,
                   progress: bool = True) -> dict:
    """Fine-tune ``speech_llm``'s LLM in place on in-context prompts (projector frozen).

    AdamW, linear warmup over 5% of the steps, cosine decay to 10%, clipping at 1.

    Returns:
        ``{"examples", "steps", "first_loss", "final_loss", "trainable_params"}``.
    """
    from tqdm import tqdm

    if not feats or not len(feats) == len(texts) == len(neighbour_texts):
        raise ValueError(f"in-context training: {len(feats)} feature arrays, {len(texts)} "
                         f"texts, {len(neighbour_texts)} neighbour lists")
    model = speech_llm.llm.model
    table = model.get_input_embeddings()
    eos = speech_llm.llm.tokenizer.eos_token_id
    targets = [speech_llm.target_ids(t) + [eos] for t in texts]
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(feats) / batch_size)
    total = steps_per_epoch * epochs
    rng = random.Random(seed)
    model.eval()  # no dropout
    bar = tqdm(total=total, disable=not progress, unit="step", desc="in-context",
               mininterval=5.0)
    step, recent, first = 0, [], None
    try:
        for _ in range(epochs):
            order = list(range(len(feats)))
            rng.shuffle(order)
            for b in range(0, len(order), batch_size):
                idx = order[b : b + batch_size]
                rows, labels = [], []
                for i in idx:
                    prompt = in_context_embeds(speech_llm, feats[i], neighbour_texts[i])
                    rows.append(torch.cat([prompt, table(torch.tensor(targets[i]))]))
                    labels.append([-100] * prompt.shape[0] + targets[i])
                emb, mask, lab = pad_right(rows, labels)
                loss = next_token_loss(model(inputs_embeds=emb, attention_mask=mask).logits,
                                       lab)
                clipped_step(opt, loss, params, warmup_cosine_lr(lr, step, total))
                step += 1
                first = loss.item() if first is None else first
                recent = [*recent, loss.item()][-steps_per_epoch:]
                bar.update(1)
    finally:
        bar.close()
        for p in params:
            p.requires_grad_(False)
    return {"examples": len(feats), "steps": step, "first_loss": round(first, 4),
            "final_loss": round(sum(recent) / max(len(recent), 1), 4),
            "trainable_params": sum(p.numel() for p in params)}
