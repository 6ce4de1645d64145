"""Train and run the serialized multitask model: LoRA on a causal LM (SmolLM2 by default).

Training: each window gives ``(prompt, target)``, tokenized exactly as ``LLM.score`` joins
a prefix and a text (the prompt with the tokenizer's special tokens, the target without,
then EOS), the loss on the target tokens (``speechlm.llm.lora.fit_lora``).

Prediction through the runtime, in the target's order: the current sentiment by rank
classification (``LLM.score`` of ``<cur_sentiment> X`` for each label after the prompt),
then the response sentiment given it (both from one shared-prefix ``score`` call over the
9 label pairs), then the response by greedy generation after ``... <response>``, batched
over windows. With emotion (``FormatConfig.with_emotion``) the current emotion is ranked
first and the sentiments after it; the single-task baseline (``task="response"``) only
generates.

With speech (``FormatConfig.with_speech``) the prompt holds one slot per turn
(:mod:`speechlm.paralin.serialize`); the utterance's embedding (``speechlm.paralin.speech``)
goes through the shared projector (``speechlm.llm.projector``, one state -> one LLM input
vector) into that position, and training fits the projector with the LoRA adapter. The
same token ids and slot positions are used in training and prediction
(:func:`encode_prompt`); prediction runs through the runtime's ``prefix_embeds`` /
``generate_from_embeds``.

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
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from speechlm.llm.lora import LoRAConfig, _batch, fit_lora, load_lora_llm
from speechlm.llm.projector import Projector, ProjectorConfig
from speechlm.llm.threads import torch_threads
from speechlm.paralin.meld import EMOTIONS, SENTIMENTS, Window
from speechlm.paralin.serialize import (
    CUR,
    CUR_EMO,
    RESP,
    RESPONSE,
    FormatConfig,
    SpeechSlot,
    fit_prompt,
    response_text,
    speech_turns,
    split_slots,
    window_target,
)
from speechlm.runtime.base import SamplingParams
from speechlm.runtime.suppress import SuppressTokens

logger = logging.getLogger(__name__)
META = "paralin.json"
PROJECTOR = "projector.pt"
DEFAULT_BASE = "smollm2-135m-instruct"


@dataclass(frozen=True)
class Prediction:
    """One window's outputs; a field the model does not predict is None."""

    cur: str | None
    resp: str | None
    response: str | None
    emotion: str | None = None


def _budget(context_len: int, max_tokens: int | None) -> int:
    """Prompt tokens left for the prompt: room for a target of ~64 tokens."""
    limit = min(context_len, max_tokens) if max_tokens else context_len
    return max(32, limit - 64)


@dataclass
class Speech:
    """Utterance embeddings for the speech slots and the projector into the LLM.

    Args:
        kind: what the vectors are (``whisper``, ``resemblyzer``: ``speechlm.paralin.speech``).
        vectors: ``utt -> (in_dim,)`` float32.
        projector: ``in_dim -> hidden size`` (``downsample`` 1: one vector per utterance).
    """

    kind: str
    vectors: dict[str, np.ndarray]
    projector: Projector | None = None

    def check(self, utts: Sequence[str]) -> None:
        """Raises ``ValueError`` naming the first utterance without a vector."""
        for u in utts:
            if u not in self.vectors:
                raise ValueError(f"utterance {u}: no {self.kind} speech embedding (is it in "
                                 "the wav.scp the embeddings were made from?)")

    def project(self, utts: Sequence[str]) -> torch.Tensor:
        """``(N, D)`` LLM input vectors of ``utts``."""
        self.check(utts)
        x = torch.from_numpy(np.stack([self.vectors[u] for u in utts]).astype(np.float32))
        return self.projector(x[:, None])[:, 0]  # (N, 1, in) -> (N, 1, D) -> (N, D)


def encode_prompt(tok: Any, prompt: str) -> tuple[list[int], list[tuple[int, str]]]:
    """Token ids of a prompt with speech slots, and ``(position, utt)`` of each slot.

    Text pieces are tokenized without special tokens after the tokenizer's own leading
    specials (BOS where it adds one); each slot takes one position (a placeholder id whose
    embedding is replaced by the projected speech vector)."""
    ids = list(tok("", add_special_tokens=True)["input_ids"])
    placeholder = tok.pad_token_id if tok.pad_token_id is not None else 0
    slots = []
    for part in split_slots(prompt):
        if isinstance(part, SpeechSlot):
            slots.append((len(ids), part.utt))
            ids.append(placeholder)
        else:
            ids += tok(part, add_special_tokens=False)["input_ids"]
    return ids, slots


def _with_slots(embeds: torch.Tensor, slots: Sequence[tuple[int, str]],
                speech: Speech) -> torch.Tensor:
    """``embeds`` ``(L, D)`` with each slot's row replaced by its projected vector."""
    if not slots:
        return embeds
    vecs = speech.project([u for _, u in slots]).to(embeds.device, embeds.dtype)
    return embeds.index_put((torch.tensor([p for p, _ in slots], device=embeds.device),), vecs)


def _speech_batch(model: Any, items: Sequence[tuple[list[int], list[int], list]],
                  speech: Speech) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(B, T, D)`` input embeddings, mask and targets of speech items."""
    table = model.get_input_embeddings()
    rows = [_with_slots(table(torch.tensor(ids + tgt)), slots, speech)
            for ids, tgt, slots in items]
    width = max(r.shape[0] for r in rows)
    emb = torch.zeros(len(rows), width, rows[0].shape[1])
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    target = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (r, (ids, tgt, _)) in enumerate(zip(rows, items, strict=True)):
        emb[i, : r.shape[0]] = r
        mask[i, : r.shape[0]] = 1
        target[i, len(ids): r.shape[0]] = torch.tensor(tgt)  # loss on the target only
    return emb, mask, target


def _target_loss(model: Any, items: Sequence[Any], batch_fn: Any) -> torch.Tensor:
    """``speechlm.llm.lora``'s loss (mean cross-entropy over the target tokens) with the
    LM head applied at the target positions only: the head (49k x 576 for SmolLM2) over
    every prompt position is a fifth of a step's compute for nothing."""
    x, mask, target = batch_fn(model, items)  # ids (B, T) or embeddings (B, T, D)
    causal = model.get_base_model()  # the LoRA-injected *ForCausalLM
    inputs = {"input_ids": x} if x.dim() == 2 else {"inputs_embeds": x}
    hidden = causal.model(**inputs, attention_mask=mask).last_hidden_state[:, :-1]  # (B,T-1,D)
    want = target[:, 1:]
    keep = want != -100
    logits = causal.lm_head(hidden[keep])  # (N, V)
    return torch.nn.functional.cross_entropy(logits.float(), want[keep])


def _counter(tok: Any, fmt: FormatConfig):
    if fmt.with_speech:
        return lambda t: len(encode_prompt(tok, t)[0])
    return lambda t: len(tok(t)["input_ids"])


def train(windows: Sequence[Window], out_dir: str | Path, *, base: str = DEFAULT_BASE,
          fmt: FormatConfig | None = None, lora: LoRAConfig | None = None,
          max_tokens: int | None = 512, speech: Speech | None = None,
          projector_hidden: int = 256, group_by_length: bool = True,
          progress: bool = True) -> dict:
    """Fit a LoRA adapter on ``windows`` (and, with ``fmt.with_speech``, a projector of
    ``speech``'s vectors); write them and ``paralin.json`` to ``out_dir``.

    ``group_by_length`` batches windows of similar length (``fit_lora``): less padding,
    but where length follows the label (a toy set) a batch may hold one label only.

    Returns the training report (examples, steps, loss, seconds, context turns dropped).
    """
    from speechlm.runtime.loading import context_length, load_model_and_tokenizer, resolve_model

    fmt, lora = fmt or FormatConfig(), lora or LoRAConfig()
    if fmt.with_speech and (speech is None or not speech.vectors):
        raise ValueError("with_speech: pass the utterances' speech embeddings")
    if speech is not None and fmt.with_speech:
        speech.check([t.utt for w in windows for t in speech_turns(w, fmt)])
    out_dir = Path(out_dir)
    started = time.monotonic()
    with torch_threads(lora.threads):
        torch.manual_seed(lora.seed)
        model, tok = load_model_and_tokenizer(resolve_model(base), torch.float32)
        budget = _budget(context_length(model.config), max_tokens)
        count = _counter(tok, fmt)
        items, dropped = [], 0
        for w in windows:
            prompt, d = fit_prompt(w, fmt, count, budget)
            dropped += d
            target = " " + window_target(w, fmt)
            tgt = list(tok(target, add_special_tokens=False)["input_ids"])[:64]
            if fmt.with_speech:
                ids, slots = encode_prompt(tok, prompt)
                items.append((ids, tgt + [tok.eos_token_id], slots))
            else:
                items.append((list(tok(prompt)["input_ids"]), tgt + [tok.eos_token_id]))
        batch_fn = None
        if fmt.with_speech:
            dim = len(next(iter(speech.vectors.values())))
            speech.projector = Projector(ProjectorConfig(
                in_dim=dim, out_dim=model.config.hidden_size, downsample=1,
                hidden=projector_hidden))
            batch_fn = partial(_speech_batch, speech=speech)
        pad = tok.pad_token_id
        loss_fn = partial(_target_loss, batch_fn=batch_fn or (lambda m, b: _batch(b, pad)))
        peft_model, stats = fit_lora(model, items, lora, pad, progress=progress,
                                     desc="paralin", loss_fn=loss_fn,
                                     group_by_length=group_by_length,
                                     extra=speech.projector if fmt.with_speech else None)
        out_dir.mkdir(parents=True, exist_ok=True)
        peft_model.save_pretrained(out_dir)
        if fmt.with_speech:
            torch.save(speech.projector.state_dict(), out_dir / PROJECTOR)
    report = {**stats, "train_seconds": round(time.monotonic() - started, 1),
              "context_turns_dropped": dropped, "windows": len(windows)}
    meta = {"base": base, "format": asdict(fmt), "lora": asdict(lora), "max_tokens": max_tokens,
            "group_by_length": group_by_length, "report": report}
    if fmt.with_speech:
        meta["speech"] = {"kind": speech.kind, "projector": speech.projector.config.to_dict()}
    (out_dir / META).write_text(json.dumps(meta, indent=1) + "\n")
    return report


def _meta(model_dir: Path) -> dict:
    if not (model_dir / META).is_file():
        raise FileNotFoundError(f"{model_dir}/{META} does not exist (not a paralin model dir)")
    return json.loads((model_dir / META).read_text())


def load(model_dir: str | Path) -> tuple[Any, FormatConfig, int | None]:
    """``(runtime LLM with the adapter merged, its format, max_tokens)``."""
    model_dir = Path(model_dir)
    meta = _meta(model_dir)
    return (load_lora_llm(meta["base"], model_dir), FormatConfig(**meta["format"]),
            meta.get("max_tokens"))


def model_kind(model_dir: str | Path) -> str:
    """``serialized`` (this module's LoRA LM) or ``seqcls`` (``speechlm.paralin.seqcls``)."""
    return _meta(Path(model_dir)).get("kind", "serialized")


def speech_kind(model_dir: str | Path) -> str | None:
    """The speech embedding kind a model was trained with (None: text only)."""
    return (_meta(Path(model_dir)).get("speech") or {}).get("kind")


def load_speech(model_dir: str | Path, vectors: dict[str, np.ndarray]) -> Speech:
    """The model's trained projector around ``vectors`` (of the model's ``speech_kind``)."""
    model_dir = Path(model_dir)
    info = _meta(model_dir).get("speech")
    if not info:
        raise ValueError(f"{model_dir}: a text-only model (no speech projector)")
    projector = Projector(ProjectorConfig(**info["projector"]))
    projector.load_state_dict(torch.load(model_dir / PROJECTOR, map_location="cpu",
                                         weights_only=True))
    return Speech(info["kind"], vectors, projector.eval())


class _Prompt:
    """One window's prompt as the runtime takes it: text (``prefix=``) or, with speech
    slots, input embeddings (``prefix_embeds=``), extended by text after it."""

    def __init__(self, llm: Any, prompt: str, speech: Speech | None) -> None:
        self.llm, self.text, self.embeds = llm, prompt, None
        if speech is not None:
            ids, slots = encode_prompt(llm.tokenizer, prompt)
            with torch.no_grad():
                self.embeds = _with_slots(llm.embed_tokens(ids), slots, speech)

    def then(self, more: str = "") -> dict:
        """``score`` keyword arguments for the prompt followed by ``more``."""
        if self.embeds is None:
            return {"prefix": self.text + more}
        if not more:
            return {"prefix_embeds": self.embeds}
        ids = self.llm.tokenizer(more, add_special_tokens=False)["input_ids"]
        return {"prefix_embeds": torch.cat([self.embeds, self.llm.embed_tokens(ids)])}


def _generate(llm: Any, contexts: Sequence[dict], params: SamplingParams,
              no_tag_first: SuppressTokens) -> list[str]:
    """Greedy continuations of a batch of prompts (all text or all embeddings) whose first
    token cannot open a tag: right after ``<response>`` a briefly tuned model would rather
    open another tag (an empty response, cut at the stop string) than write a turn; a tag
    later ends the response, as the stop string."""
    if "prefix" in contexts[0]:
        outs = llm.generate([c["prefix"] for c in contexts], params,
                            logits_processor=no_tag_first.fresh())
    else:
        outs = llm.generate_from_embeds([c["prefix_embeds"] for c in contexts], params,
                                        logits_processor=no_tag_first.fresh())
    return [" ".join(o.text.split()) for o in outs]


def _n_tokens(tok: Any, head: str, whole: str) -> int:
    """How many of ``whole``'s tokens spell ``head`` (its start); raises if ``whole``
    does not tokenize as ``head`` followed by more (then joint scoring would be wrong)."""
    a = tok(head, add_special_tokens=False)["input_ids"]
    b = tok(whole, add_special_tokens=False)["input_ids"]
    if list(b[:len(a)]) != list(a):
        raise RuntimeError(f"the tokenizer splits {whole!r} differently from its start "
                           f"{head!r}: labels cannot be scored jointly")
    return len(a)


def _rank_labels(llm: Any, p: _Prompt, fmt: FormatConfig,
                 window: Window) -> tuple[dict, list[float]]:
    """Rank classification of the window's labels in the target's order, and the
    log-probs of the reference response's tokens (after the reference labels).

    Each label is the best of its set given the labels chosen before it, exactly as one
    ``score`` call per label would choose, but with fewer tokens run: the tag every option
    starts with (`` <cur_sentiment>``) goes into the shared prefix, the current and the
    response sentiment are scored as the 9 pairs `` X <resp_sentiment> Y`` in one call (the
    current label's score is the sum over its own tokens), and the reference target rides
    along in the first call."""
    tok = llm.tokenizer
    ref = " " + window_target(window, fmt)
    resp_at = ref.index(RESPONSE) + len(RESPONSE)  # ref[:resp_at]: the labels and the tag
    pairs = [(c, r) for c in SENTIMENTS for r in SENTIMENTS]
    pair_texts = [f" {c} {RESP} {r}" for c, r in pairs]  # after "... <cur_sentiment>"
    out: dict[str, str] = {}
    if fmt.with_emotion:
        lead = f" {CUR_EMO}"
        res = llm.score([*(f" {e}" for e in EMOTIONS), ref[len(lead):]], per_token=True,
                        **p.then(lead))
        out["emotion"] = EMOTIONS[max(range(len(EMOTIONS)), key=lambda i: res[i].total)]
        ref_scored = res[-1]
        res = llm.score(pair_texts, per_token=True,
                        **p.then(f" {CUR_EMO} {out['emotion']} {CUR}"))
    else:
        lead = f" {CUR}"
        res = llm.score([*pair_texts, ref[len(lead):]], per_token=True, **p.then(lead))
        ref_scored = res[-1]
    cur_score = {}
    for (c, _), text, sc in zip(pairs, pair_texts, res, strict=False):
        n = _n_tokens(tok, f" {c}", text)
        cur_score[c] = sum(sc.token_logprobs[:n])  # the same for the 3 pairs of c
    out["cur"] = max(SENTIMENTS, key=lambda c: cur_score[c])
    out["resp"] = max(SENTIMENTS, key=lambda r: res[pairs.index((out["cur"], r))].total)
    k = _n_tokens(tok, ref[len(lead):resp_at], ref[len(lead):])
    return out, list(ref_scored.token_logprobs[k:])


def predict(llm: Any, windows: Sequence[Window], fmt: FormatConfig, *,
            max_tokens: int | None = 512, max_new_tokens: int = 40,
            speech: Speech | None = None, batch_size: int = 8,
            progress: bool = True) -> tuple[list[Prediction], dict]:
    """Predictions in the target's order, and ``{"context_turns_dropped", "response_nll",
    "response_tokens"}`` (the reference responses' log-loss under the model).

    Labels by rank classification (:func:`_rank_labels`, one window at a time); the
    responses by greedy generation in batches of ``batch_size`` windows (left-padded by
    the runtime, each row independent of the others)."""
    if fmt.with_speech:
        if speech is None or speech.projector is None:
            raise ValueError("this model reads speech embeddings: pass speech (load_speech)")
        speech.check([t.utt for w in windows for t in speech_turns(w, fmt)])
    else:
        speech = None
    tok = llm.tokenizer
    budget = _budget(llm.max_length, max_tokens)
    count = _counter(tok, fmt)
    labels, gen_ctx, dropped, nll, n_tok = [], [], 0, 0.0, 0
    params = SamplingParams(max_tokens=max_new_tokens, stop=("\n", "<"))
    no_tag_first = SuppressTokens.containing(tok, "<", at_begin=True)
    texts: list[str] = []
    bar = tqdm(total=len(windows), disable=not progress, desc="paralin predict", unit="win")
    for w in windows:
        prompt, d = fit_prompt(w, fmt, count, budget)
        dropped += d
        p = _Prompt(llm, prompt, speech)
        if fmt.task == "response":
            lab, gen_head = {}, f" {RESPONSE}"
            logprobs = llm.score([" " + response_text(w, fmt)], per_token=True,
                                 **p.then(gen_head))[0].token_logprobs
        else:
            lab, logprobs = _rank_labels(llm, p, fmt, w)
            emo = f"{CUR_EMO} {lab['emotion']} " if fmt.with_emotion else ""
            gen_head = f" {emo}{CUR} {lab['cur']} {RESP} {lab['resp']} {RESPONSE}"
        nll -= sum(logprobs)
        n_tok += len(logprobs)
        labels.append(lab)
        gen_ctx.append(p.then(gen_head))
        if len(gen_ctx) == batch_size:
            texts += _generate(llm, gen_ctx, params, no_tag_first)
            bar.update(len(gen_ctx))
            gen_ctx = []
    if gen_ctx:
        texts += _generate(llm, gen_ctx, params, no_tag_first)
        bar.update(len(gen_ctx))
    bar.close()
    out = [Prediction(lab.get("cur"), lab.get("resp"), text, lab.get("emotion"))
           for lab, text in zip(labels, texts, strict=True)]
    return out, {"context_turns_dropped": dropped, "response_nll": nll,
                 "response_tokens": n_tok}


def weighted_f1(refs: Sequence[str], hyps: Sequence[str]) -> float:
    from sklearn.metrics import f1_score

    return round(float(f1_score(list(refs), list(hyps), average="weighted", zero_division=0)), 4)


def _acc(r: Sequence[str], h: Sequence[str]) -> float:
    return round(100 * sum(a == b for a, b in zip(r, h, strict=True)) / max(len(r), 1), 2)


def evaluate(windows: Sequence[Window], preds: Sequence[Prediction], fmt: FormatConfig,
             extra: dict | None = None) -> dict:
    """Accuracy / weighted F1 of the labels the model predicts (emotion where it does),
    response BLEU and perplexity where it writes responses."""
    import sacrebleu

    if len(windows) != len(preds):
        raise ValueError(f"{len(windows)} windows but {len(preds)} predictions")
    out: dict[str, Any] = {"windows": len(windows)}
    for key, ref_of in (("emotion", lambda w: w.current.emotion),
                        ("cur", lambda w: w.current.sentiment),
                        ("resp", lambda w: w.response.sentiment)):
        hyp = [getattr(p, key) for p in preds]
        if all(h is None for h in hyp):
            continue
        ref = [ref_of(w) for w in windows]
        hyp = [h or "" for h in hyp]
        name = "emo" if key == "emotion" else key
        out[f"{name}_acc"], out[f"{name}_f1"] = _acc(ref, hyp), weighted_f1(ref, hyp)
    if any(p.response is not None for p in preds):
        bleu = sacrebleu.corpus_bleu([p.response or "" for p in preds],
                                     [[response_text(w, fmt) for w in windows]]).score
        out["response_bleu"] = round(bleu, 2)
        out["responses_empty"] = sum(not (p.response or "").strip() for p in preds)
    if extra and extra.get("response_tokens"):
        out["response_ppl"] = round(math.exp(extra["response_nll"] / extra["response_tokens"]), 2)
        out["context_turns_dropped"] = extra["context_turns_dropped"]
    return out
