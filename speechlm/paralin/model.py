"""Train and run the serialized multitask model: LoRA on a causal LM (SmolLM2 by default).

Training: each window gives ``(prompt, target)``, tokenized exactly as ``LLM.score`` joins
a prefix and a text (the prompt with the tokenizer's special tokens, the target without,
then EOS), the loss on the target tokens (``speechlm.llm.lora.fit_lora``).

Prediction, one window at a time through the runtime, in the target's order: the current
sentiment by rank classification (``LLM.score`` of ``<cur_sentiment> X`` for each label
after the prompt), then the response sentiment given it, then the response by greedy
generation after ``... <response>``.

Metrics: accuracy and weighted F1 of both labels (scikit-learn), corpus BLEU of the
responses (sacrebleu, 13a tokenisation), and the response's perplexity under the model.

>>> weighted_f1(["a", "b", "b"], ["a", "b", "a"])
0.6667
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from speechlm.llm.lora import LoRAConfig, fit_lora, load_lora_llm
from speechlm.paralin.meld import SENTIMENTS, Window
from speechlm.paralin.serialize import (
    CUR,
    RESP,
    RESPONSE,
    FormatConfig,
    fit_prompt,
    response_text,
    target_text,
)
from speechlm.runtime.base import SamplingParams

logger = logging.getLogger(__name__)
META = "paralin.json"
DEFAULT_BASE = "smollm2-135m-instruct"


@dataclass(frozen=True)
class Prediction:
    cur: str
    resp: str
    response: str


def _budget(context_len: int, max_tokens: int | None) -> int:
    """Prompt tokens left for the prompt: room for a target of ~64 tokens."""
    limit = min(context_len, max_tokens) if max_tokens else context_len
    return max(32, limit - 64)


def train(windows: Sequence[Window], out_dir: str | Path, *, base: str = DEFAULT_BASE,
          fmt: FormatConfig | None = None, lora: LoRAConfig | None = None,
          max_tokens: int | None = 512, progress: bool = True) -> dict:
    """Fit a LoRA adapter on ``windows``; write it and ``paralin.json`` to ``out_dir``.

    Returns the training report (examples, steps, loss, seconds, context turns dropped).
    """
    from speechlm.runtime.loading import context_length, load_model_and_tokenizer, resolve_model

    fmt, lora = fmt or FormatConfig(), lora or LoRAConfig()
    out_dir = Path(out_dir)
    started = time.monotonic()
    old_threads = torch.get_num_threads()
    if lora.threads is not None:
        torch.set_num_threads(lora.threads)
    try:
        torch.manual_seed(lora.seed)
        model, tok = load_model_and_tokenizer(resolve_model(base), torch.float32)
        budget = _budget(context_length(model.config), max_tokens)
        items, dropped = [], 0
        for w in windows:
            prompt, d = fit_prompt(w, fmt, lambda t: len(tok(t)["input_ids"]), budget)
            dropped += d
            target = " " + target_text(w.current.sentiment, w.response.sentiment,
                                       response_text(w, fmt))
            ids = list(tok(prompt)["input_ids"])
            tgt = list(tok(target, add_special_tokens=False)["input_ids"])[:64]
            items.append((ids, tgt + [tok.eos_token_id]))
        peft_model, stats = fit_lora(model, items, lora, tok.pad_token_id, progress=progress,
                                     desc="paralin")
        out_dir.mkdir(parents=True, exist_ok=True)
        peft_model.save_pretrained(out_dir)
    finally:
        torch.set_num_threads(old_threads)
    report = {**stats, "train_seconds": round(time.monotonic() - started, 1),
              "context_turns_dropped": dropped, "windows": len(windows)}
    (out_dir / META).write_text(json.dumps(
        {"base": base, "format": asdict(fmt), "lora": asdict(lora), "max_tokens": max_tokens,
         "report": report}, indent=1) + "\n")
    return report


def load(model_dir: str | Path) -> tuple[Any, FormatConfig, int | None]:
    """``(runtime LLM with the adapter merged, its format, max_tokens)``."""
    model_dir = Path(model_dir)
    if not (model_dir / META).is_file():
        raise FileNotFoundError(f"{model_dir}/{META} does not exist (not a paralin model dir)")
    meta = json.loads((model_dir / META).read_text())
    return (load_lora_llm(meta["base"], model_dir), FormatConfig(**meta["format"]),
            meta.get("max_tokens"))


def _best(llm: Any, options: Sequence[str], prefix: str) -> str:
    scores = llm.score([f" {o}" for o in options], prefix=prefix)
    return options[max(range(len(options)), key=lambda i: scores[i])]


def predict(llm: Any, windows: Sequence[Window], fmt: FormatConfig, *,
            max_tokens: int | None = 512, max_new_tokens: int = 40,
            progress: bool = True) -> tuple[list[Prediction], dict]:
    """Predictions in the target's order, and ``{"context_turns_dropped", "response_nll",
    "response_tokens"}`` (the reference responses' log-loss under the model)."""
    tok = llm.tokenizer
    budget = _budget(llm.max_length, max_tokens)
    out, dropped, nll, n_tok = [], 0, 0.0, 0
    for w in tqdm(windows, disable=not progress, desc="paralin predict", unit="win"):
        prompt, d = fit_prompt(w, fmt, lambda t: len(tok(t)["input_ids"]), budget)
        dropped += d
        cur = _best(llm, [f"{CUR} {s}" for s in SENTIMENTS], prompt).split()[-1]
        resp = _best(llm, [f"{RESP} {s}" for s in SENTIMENTS],
                     f"{prompt} {CUR} {cur}").split()[-1]
        lead = f"{prompt} {CUR} {cur} {RESP} {resp} {RESPONSE}"
        text = llm.generate(lead, SamplingParams(max_tokens=max_new_tokens,
                                                 stop=("\n", "<")))[0].text
        out.append(Prediction(cur, resp, " ".join(text.split())))
        ref = f"{prompt} {CUR} {w.current.sentiment} {RESP} {w.response.sentiment} {RESPONSE}"
        scored = llm.score([" " + response_text(w, fmt)], prefix=ref, per_token=True)[0]
        nll -= scored.total
        n_tok += len(scored.token_logprobs)
    return out, {"context_turns_dropped": dropped, "response_nll": nll,
                 "response_tokens": n_tok}


def weighted_f1(refs: Sequence[str], hyps: Sequence[str]) -> float:
    from sklearn.metrics import f1_score

    return round(float(f1_score(list(refs), list(hyps), average="weighted", zero_division=0)), 4)


def evaluate(windows: Sequence[Window], preds: Sequence[Prediction], fmt: FormatConfig,
             extra: dict | None = None) -> dict:
    """Accuracy / weighted F1 of both labels, response BLEU and perplexity."""
    import sacrebleu

    if len(windows) != len(preds):
        raise ValueError(f"{len(windows)} windows but {len(preds)} predictions")
    cur_ref = [w.current.sentiment for w in windows]
    resp_ref = [w.response.sentiment for w in windows]
    cur_hyp = [p.cur for p in preds]
    resp_hyp = [p.resp for p in preds]

    def acc(r, h):
        return round(100 * sum(a == b for a, b in zip(r, h, strict=True)) / max(len(r), 1), 2)

    bleu = sacrebleu.corpus_bleu([p.response for p in preds],
                                 [[response_text(w, fmt) for w in windows]]).score
    out = {"windows": len(windows),
           "cur_acc": acc(cur_ref, cur_hyp), "cur_f1": weighted_f1(cur_ref, cur_hyp),
           "resp_acc": acc(resp_ref, resp_hyp), "resp_f1": weighted_f1(resp_ref, resp_hyp),
           "response_bleu": round(bleu, 2)}
    if extra and extra.get("response_tokens"):
        out["response_ppl"] = round(math.exp(extra["response_nll"] / extra["response_tokens"]), 2)
        out["context_turns_dropped"] = extra["context_turns_dropped"]
    return out
