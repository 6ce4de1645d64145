"""The speech-prefix LLM: Whisper encoder states -> projector -> an LLM's input embeddings.

The LLM reads ``[BOS] [speech prefix] [prompt tokens]`` as input embeddings and writes the
transcript (greedy, through the runtime's ``generate_from_embeds``: the runtime sees
embeddings, never audio). The projector (``speechlm.llm.projector``) is trained; the encoder
(Whisper through CTranslate2) stays frozen, and so does the LLM unless ``train_llm`` (full
fine-tuning, meant for small LLMs such as the recipes' embedded LM). The loss is on the
transcript tokens and EOS, plus (``ctc_weight``) a CTC loss that reads the transcript's
tokens off the projected prefix itself, scored against the LLM's own input embedding table
(:class:`TiedCTC`). Without it the LLM, which can lower its loss by language modelling
alone, learned to ignore the prefix on a few thousand utterances (fluent in-domain text
unrelated to the audio, ~100% WER); the CTC loss pushes each prefix embedding towards the
embedding of the token spoken there (or a blank), which brings the LLM's job closer to
copying (``egs/slurp/retrieval1/RESULTS.md`` has the measured effect).

A model dir holds ``speech_llm.json`` (this config + the projector's), ``projector.pt``,
``ctc_head.pt`` (with ``ctc_weight`` > 0), ``train_report.json`` and, with ``train_llm``,
the fine-tuned LLM in ``llm/``. Its
:meth:`SpeechLLM.fingerprint` (LLM + projector weights) names what speech keys of a
retrieval datastore were made with.

>>> m = SpeechLLM.load("exp/speech_llm")                       # doctest: +SKIP
>>> m.transcribe([samples])                                    # doctest: +SKIP
['turn on the lights']
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechlm.llm.projector import Projector, ProjectorConfig

CONFIG = "speech_llm.json"
WEIGHTS = "projector.pt"
CTC_WEIGHTS = "ctc_head.pt"
REPORT = "train_report.json"
LLM_DIR = "llm"


@dataclass(frozen=True)
class SpeechLLMConfig:
    """Model and training settings (the keys of ``speech_llm.json``).

    Args:
        llm: runtime LLM (catalogue name or local checkpoint).
        encoder: Whisper model (catalogue name or CTranslate2 dir), or ``"none"`` when
            features are given directly (tests).
        prompt: text after the speech prefix, before the transcript.
        downsample, hidden: projector shape (``ProjectorConfig``).
        epochs, batch_size, lr, seed: projector training.
        train_llm: also fine-tune every LLM weight (learning rate ``llm_lr``).
        ctc_weight: weight of the tied CTC loss on the projected prefix (0: none).
        ctc_compress: feed the LLM one embedding per CTC segment (the mean of the frames
            the CTC head's best path gives one token, blank frames dropped) instead of every
            projected frame; needs ``ctc_weight`` > 0.
        max_new_tokens: transcript length cap when decoding.
    """

    llm: str = "smollm2-135m-instruct"
    encoder: str = "whisper-tiny.en"
    prompt: str = " Transcript:"
    downsample: int = 4
    hidden: int = 1024
    epochs: int = 4
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    max_new_tokens: int = 40
    train_llm: bool = False
    llm_lr: float = 5e-4
    ctc_weight: float = 1.0
    ctc_compress: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"speech-llm: epochs, batch_size >= 1 and lr > 0; got {self}")
        if not self.ctc_weight >= 0:
            raise ValueError(f"speech-llm: ctc_weight must be >= 0, got {self.ctc_weight}")
        if self.ctc_compress and self.ctc_weight == 0:
            raise ValueError("speech-llm: ctc_compress needs a CTC head (ctc_weight > 0)")
        if self.max_new_tokens < 1:
            raise ValueError(f"speech-llm: max_new_tokens >= 1, got {self.max_new_tokens}")

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> SpeechLLMConfig:
        return config_from_dict(cls, values, source, "speech-llm")


def config_from_dict(cls: Any, values: dict, source: str, what: str) -> Any:
    """``cls(**values)`` for a config dataclass, refusing keys it does not have (naming
    ``source``, e.g. the json file, and listing the known keys)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{source}: unknown {what} keys {unknown}; known: {sorted(known)}")
    return cls(**values)


def load_encoder(name: str) -> Any:
    from speechlm.asr.whisper_encoder import WhisperEncoder

    return WhisperEncoder(name, threads=max(1, torch.get_num_threads()))


class SpeechLLM:
    """A runtime ``LLM`` with a projector in front of it.

    Args:
        llm: ``speechlm.runtime.LLM``.
        projector: a trained ``Projector`` (out_dim = the LLM's hidden size).
        config: its ``SpeechLLMConfig``.
        encoder: callable ``samples -> (T, in_dim)`` states, or None (features only).
    """

    sample_rate = 16000

    def __init__(self, llm: Any, projector: Projector, config: SpeechLLMConfig,
                 encoder: Any = None, ctc_head: TiedCTC | None = None) -> None:
        hidden = llm.model.config.get_text_config(decoder=True).hidden_size
        if projector.config.out_dim != hidden:
            raise ValueError(f"projector out_dim {projector.config.out_dim} != the LLM's "
                             f"hidden size {hidden}")
        self.llm, self.projector, self.config, self.encoder = llm, projector.eval(), config, encoder
        self.ctc_head = ctc_head.eval() if ctc_head is not None else None
        if config.ctc_compress and ctc_head is None:
            raise ValueError("speech-llm: ctc_compress is set but there is no CTC head "
                             f"({CTC_WEIGHTS} missing from the model dir?)")
        tok = llm.tokenizer
        self._bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        self._prompt = list(tok(config.prompt, add_special_tokens=False)["input_ids"])

    # ---- loading ---------------------------------------------------------------------
    @classmethod
    def load(cls, model_dir: str | os.PathLike, *, llm: Any = None,
             with_encoder: bool = True) -> SpeechLLM:
        """Load a model dir written by :func:`train_speech_llm`.

        Raises:
            FileNotFoundError: no ``speech_llm.json`` or ``projector.pt`` in ``model_dir``.
        """
        from speechlm.runtime import LLM

        model_dir = Path(model_dir)
        for name in (CONFIG, WEIGHTS):
            if not (model_dir / name).is_file():
                raise FileNotFoundError(f"{model_dir}/{name} does not exist: not a speech-llm "
                                        f"model dir (speechlm speech-llm train writes one)")
        meta = json.loads((model_dir / CONFIG).read_text())
        config = SpeechLLMConfig.from_dict(meta["speech_llm"], source=str(model_dir / CONFIG))
        projector = Projector(ProjectorConfig(**meta["projector"]))
        projector.load_state_dict(torch.load(model_dir / WEIGHTS, map_location="cpu",
                                             weights_only=True))
        if llm is None:
            tuned = model_dir / LLM_DIR
            llm = LLM.from_pretrained(tuned if tuned.is_dir() else config.llm)
        encoder = load_encoder(config.encoder) if with_encoder and config.encoder != "none" \
            else None
        ctc_head = None
        if (model_dir / CTC_WEIGHTS).is_file():
            ctc_head = TiedCTC(projector.config.out_dim)
            ctc_head.load_state_dict(torch.load(model_dir / CTC_WEIGHTS, map_location="cpu",
                                                weights_only=True))
        return cls(llm, projector, config, encoder, ctc_head)

    def fingerprint(self) -> str:
        """``llm=<hash>|prefix=<hash>``: the LLM's and the projector's weights."""
        from speechlm.llm.retrieval.keys import llm_fingerprint

        h = hashlib.sha256()
        for k, v in sorted(self.projector.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().numpy().tobytes())
        return f"{llm_fingerprint(self.llm)}|prefix={h.hexdigest()[:12]}"

    # ---- inputs ----------------------------------------------------------------------
    def features(self, samples: np.ndarray, utt: str = "utt") -> np.ndarray:
        if self.encoder is None:
            raise ValueError("this SpeechLLM was loaded without an encoder: pass features")
        return self.encoder(samples, utt)

    def prompt_embeds(self, feats: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``[BOS] [projected speech] [prompt]`` as input embeddings ``(P, D)``."""
        x = torch.as_tensor(np.asarray(feats), dtype=torch.float32)[None]  # (1, T, in_dim)
        with torch.no_grad():
            speech = self.projector(x)[0]  # (T / k, D)
            if self.config.ctc_compress:
                speech = self.ctc_head.compress(
                    speech, self.llm.model.get_input_embeddings().weight.float())
        bos = self.llm.embed_tokens(self._bos) if self._bos else speech[:0]
        return torch.cat([bos, speech, self.llm.embed_tokens(self._prompt)], dim=0)

    # ---- decoding --------------------------------------------------------------------
    def ctc_log_posteriors(self, feats: np.ndarray) -> torch.Tensor:
        """``(T / k, V + 1)`` CTC log-posteriors of the projected frames (blank last)."""
        if self.ctc_head is None:
            raise ValueError("this speech-llm model has no CTC head (ctc_weight was 0)")
        table = self.llm.model.get_input_embeddings().weight
        with torch.no_grad():
            speech = self.projector(torch.as_tensor(np.asarray(feats), dtype=torch.float32)[None])
            return self.ctc_head.log_probs(speech.to(table.dtype), table)[0]

    def transcribe_features(self, feats: Sequence[np.ndarray], *,
                            logits_processor: Any = None, ctc_weight: float = 0.0) -> list[str]:
        """Greedy transcripts of encoder states (one ``(T, in_dim)`` array each).

        ``ctc_weight`` > 0 decodes jointly with the CTC head's prefix scores
        (``speechlm.llm.ctc_prefix``), on top of ``logits_processor`` if given.
        """
        from speechlm.runtime import SamplingParams

        if not feats:
            return []
        prompts = [self.prompt_embeds(f) for f in feats]
        params = SamplingParams(max_tokens=self.config.max_new_tokens)
        if ctc_weight > 0:
            from speechlm.llm.ctc_prefix import CTCJointProcessor

            logits_processor = CTCJointProcessor(
                [self.ctc_log_posteriors(f) for f in feats], self.llm.eos_ids, ctc_weight,
                inner=logits_processor)
        out = self.llm.generate_from_embeds(prompts, params, logits_processor=logits_processor)
        return [" ".join(c.text.split()) for c in out]

    def ctc_transcribe_features(self, feats: Sequence[np.ndarray]) -> list[str]:
        """Best-path CTC transcripts read off the projected prefix alone (no LLM): how much
        of the transcript the prefix carries.

        Raises:
            ValueError: the model dir has no CTC head (trained with ``ctc_weight`` 0).
        """
        if self.ctc_head is None:
            raise ValueError("this speech-llm model has no CTC head (ctc_weight was 0)")
        table = self.llm.model.get_input_embeddings().weight
        out = []
        with torch.no_grad():
            for f in feats:
                speech = self.projector(torch.as_tensor(np.asarray(f), dtype=torch.float32)[None])
                ids = self.ctc_head.greedy(speech[0].to(table.dtype), table)
                out.append(" ".join(self.llm.tokenizer.decode(ids).split()))
        return out

    def transcribe(self, signals: Sequence[np.ndarray], utts: Sequence[str] | None = None,
                   *, logits_processor: Any = None) -> list[str]:
        """Greedy transcripts of 16 kHz mono signals."""
        utts = list(utts) if utts is not None else [f"utt{i}" for i in range(len(signals))]
        feats = [self.features(x, u) for x, u in zip(signals, utts, strict=True)]
        return self.transcribe_features(feats, logits_processor=logits_processor)

    def target_ids(self, text: str) -> list[int]:
        """Transcript token ids as the model writes them (leading space, no EOS)."""
        return list(self.llm.tokenizer(" " + text.strip(), add_special_tokens=False)
                    ["input_ids"])

    def score_features(self, feats: np.ndarray, texts: Sequence[str], *,
                       logits_processor: Any = None) -> list[float]:
        """ln p(text + EOS | speech) of each text (N-best rescoring with the speech LLM)."""
        return self.llm.score([" " + t.strip() for t in texts], append_eos=True,
                              prefix_embeds=self.prompt_embeds(feats),
                              logits_processor=logits_processor)


# ---- the tied CTC head ------------------------------------------------------------------
class TiedCTC(torch.nn.Module):
    """CTC over the LLM's tokens, scored against its input embedding table.

    ``logit(t, v) = exp(log_scale) * <speech_t, table_v>`` for every token ``v`` of the
    table, and a learned blank vector as the last class. The table is used detached: the
    CTC loss moves the projector (and this head), never the LLM's embeddings.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.blank = torch.nn.Parameter(torch.zeros(dim))
        self.log_scale = torch.nn.Parameter(torch.zeros(()))

    def log_probs(self, speech: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` prefix embeddings -> ``(B, T, V + 1)`` log-probabilities."""
        w = torch.cat([table.detach(), self.blank[None].to(table.dtype)], dim=0)
        return torch.log_softmax((speech @ w.T).float() * self.log_scale.exp(), dim=-1)

    def loss(self, speech: torch.Tensor, lengths: Sequence[int], table: torch.Tensor,
             targets: Sequence[Sequence[int]]) -> torch.Tensor:
        """Mean CTC loss per target token (utterances too short for their targets add 0)."""
        logp = self.log_probs(speech, table).transpose(0, 1)  # (T, B, V + 1)
        flat = torch.tensor([t for tgt in targets for t in tgt], dtype=torch.long)
        return torch.nn.functional.ctc_loss(
            logp, flat, torch.as_tensor(list(lengths)), torch.tensor([len(t) for t in targets]),
            blank=table.shape[0], zero_infinity=True)

    def compress(self, speech: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``(T, D)`` -> ``(S, D)``: the mean of each run of frames that the best path gives
        the same non-blank token (blank frames dropped; the mean of all frames when every
        frame is blank, so no prefix is empty). Differentiable in ``speech``."""
        with torch.no_grad():
            best = self.log_probs(speech[None], table)[0].argmax(-1).tolist()
        blank = table.shape[0]
        runs: list[tuple[int, int]] = []
        for i, t in enumerate(best):
            if t == blank:
                continue
            if runs and best[i - 1] == t and runs[-1][1] == i:
                runs[-1] = (runs[-1][0], i + 1)
            else:
                runs.append((i, i + 1))
        if not runs:
            return speech.mean(0, keepdim=True)
        return torch.stack([speech[a:b].mean(0) for a, b in runs])

    def greedy(self, speech: torch.Tensor, table: torch.Tensor) -> list[int]:
        """Best-path token ids of one ``(T, D)`` prefix: repeats merged, blanks dropped."""
        best = self.log_probs(speech[None], table)[0].argmax(-1).tolist()
        blank = table.shape[0]
        return [t for i, t in enumerate(best) if t != blank and (i == 0 or best[i - 1] != t)]


# ---- training ---------------------------------------------------------------------------
# shared by the projector, the cross-attention adapters and the in-context tuning
def warmup_cosine_lr(base: float, step: int, total: int) -> float:
    """Linear warmup over the first 5% of ``total`` steps, then cosine decay to 10%."""
    lr = base * min(1.0, (step + 1) / max(1, total // 20))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / total)))


def clipped_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params: Sequence[Any],
                 lr: float) -> None:
    """Backward, clip at 1 and step at ``lr`` (times each group's ``scale``, default 1)."""
    for g in opt.param_groups:
        g["lr"] = lr * g.get("scale", 1.0)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def pad_right(rows: Sequence[torch.Tensor], labels: Sequence[Sequence[int]]
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L_i, D)`` embedding rows and their labels -> right-padded ``(B, L, D)``, mask and
    labels (-100 on the padding)."""
    width = max(r.shape[0] for r in rows)
    emb = rows[0].new_zeros(len(rows), width, rows[0].shape[1])
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    lab = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        emb[i, : r.shape[0]] = r
        mask[i, : r.shape[0]] = 1
        lab[i, : r.shape[0]] = torch.tensor(labels[i])
    return emb, mask, lab


def next_token_loss(logits: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (B, L, V) predicting ``lab`` shifted by one."""
    logits = logits[:, :-1]
    return torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), lab[:, 1:].reshape(-1), ignore_index=-100)


def _batch_embeds(model: Any, projector: Projector, feats: Sequence[np.ndarray],
                  prefix_ids: list[int], prompt_ids: list[int], targets: Sequence[list[int]],
                  pad_id: int, compress: TiedCTC | None = None) -> tuple[torch.Tensor, ...]:
    """Right-padded ``(B, L, D)`` embeddings, mask and labels (-100 outside targets), and the
    projected speech ``(B, T / k, D)`` with its lengths."""
    table = model.get_input_embeddings()
    lens = torch.tensor([f.shape[0] for f in feats])
    t = int(lens.max())
    x = torch.zeros(len(feats), t, feats[0].shape[1])
    for i, f in enumerate(feats):
        x[i, : f.shape[0]] = torch.from_numpy(np.asarray(f, dtype=np.float32))
    speech = projector(x)  # (B, T / k, D): gradients flow into the projector only
    n_speech = projector.output_lengths(lens).tolist()
    rows, labels = [], []
    for i, tgt in enumerate(targets):
        # frozen tables get no gradient anyway; a fine-tuned LLM's table gets one
        pre = table(torch.tensor(prefix_ids, dtype=torch.long))
        post = table(torch.tensor(prompt_ids + tgt, dtype=torch.long))
        mid = speech[i, : n_speech[i]]
        if compress is not None:
            mid = compress.compress(mid, table.weight)
        rows.append(torch.cat([pre, mid, post], dim=0))
        n_ctx = len(prefix_ids) + mid.shape[0] + len(prompt_ids)
        labels.append([-100] * n_ctx + tgt)
    return (*pad_right(rows, labels), speech, n_speech)


def fit_projector(model: Any, tokenizer: Any, projector: Projector,
                  feats: Sequence[np.ndarray], texts: Sequence[str], config: SpeechLLMConfig,
                  *, ctc_head: TiedCTC | None = None, progress: bool = True) -> dict:
    """Train ``projector`` in place on (encoder states, transcript) pairs; LLM frozen
    unless ``config.train_llm``.

    With ``config.ctc_weight`` > 0 the loss adds that weight times the tied CTC loss of
    ``ctc_head`` (trained too; a fresh one when None, then not kept).
    AdamW, linear warmup over 5% of the steps, cosine decay to 10%, clipping at 1.

    Returns:
        ``{"examples", "steps", "final_loss", "final_ce", "final_ctc", "trainable_params"}``
        (``final_*``: means over the last epoch's steps; ``trainable_params`` counts the
        projector and the LLM, not the CTC head).
    """
    from tqdm import tqdm

    if not feats or len(feats) != len(texts):
        raise ValueError(f"speech-llm training: {len(feats)} feature arrays for "
                         f"{len(texts)} texts")
    for p in model.parameters():
        p.requires_grad_(config.train_llm)
    model.eval()  # no dropout either way
    prefix = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    prompt = list(tokenizer(config.prompt, add_special_tokens=False)["input_ids"])
    eos = tokenizer.eos_token_id
    targets = [list(tokenizer(" " + t.strip(), add_special_tokens=False)["input_ids"]) + [eos]
               for t in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    params = [p for p in projector.parameters() if p.requires_grad]
    llm_params = [p for p in model.parameters() if p.requires_grad]
    if config.ctc_weight > 0 and ctc_head is None:
        ctc_head = TiedCTC(projector.config.out_dim)
    ctc_params = list(ctc_head.parameters()) if config.ctc_weight > 0 else []
    ctc_targets = [t[:-1] for t in targets]  # the transcript's tokens, no EOS
    table = model.get_input_embeddings().weight
    groups = [{"params": params + ctc_params, "lr": config.lr, "scale": 1.0}]
    if llm_params:
        groups.append({"params": llm_params, "lr": config.llm_lr,
                       "scale": config.llm_lr / config.lr})
    opt = torch.optim.AdamW(groups, lr=config.lr, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(feats) / config.batch_size)
    total = steps_per_epoch * config.epochs
    rng = random.Random(config.seed)
    projector.train()
    bar = tqdm(total=total, disable=not progress, unit="step", desc="projector",
               mininterval=5.0)
    step, recent = 0, []  # (loss, ce, ctc) of the last epoch's steps
    for _ in range(config.epochs):
        order = list(range(len(feats)))
        rng.shuffle(order)
        for b in range(0, len(order), config.batch_size):
            idx = order[b : b + config.batch_size]
            emb, mask, lab, speech, n_speech = _batch_embeds(
                model, projector, [feats[i] for i in idx], prefix, prompt,
                [targets[i] for i in idx], pad, ctc_head if config.ctc_compress else None)
            ce = next_token_loss(model(inputs_embeds=emb, attention_mask=mask).logits, lab)
            ctc = (ctc_head.loss(speech, n_speech, table, [ctc_targets[i] for i in idx])
                   if ctc_params else torch.zeros(()))
            loss = ce + config.ctc_weight * ctc
            clipped_step(opt, loss, params + llm_params + ctc_params,
                         warmup_cosine_lr(config.lr, step, total))
            step += 1
            recent = [*recent, (loss.item(), ce.item(), ctc.item())][-steps_per_epoch:]
            bar.update(1)
            bar.set_postfix(ce=f"{ce.item():.3f}", ctc=f"{ctc.item():.3f}", refresh=False)
    bar.close()
    projector.eval()
    means = [round(sum(r[j] for r in recent) / max(len(recent), 1), 4) for j in range(3)]
    return {"examples": len(feats), "steps": step, "final_loss": means[0],
            "final_ce": means[1], "final_ctc": means[2],
            "trainable_params": sum(p.numel() for p in params + llm_params)}


def save_speech_llm(out: str | os.PathLike, config: SpeechLLMConfig, projector: Projector,
                    report: dict, *, llm_model: Any = None, tokenizer: Any = None,
                    ctc_head: TiedCTC | None = None) -> Path:
    """Write a model dir (through a temporary sibling, renamed at the end); with
    ``llm_model`` (a fine-tuned LLM) also ``llm/`` with it and its tokenizer, with
    ``ctc_head`` its weights."""
    import shutil

    out = Path(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(projector.state_dict(), tmp / WEIGHTS)
    if ctc_head is not None:
        torch.save(ctc_head.state_dict(), tmp / CTC_WEIGHTS)
    if llm_model is not None:
        llm_model.save_pretrained(tmp / LLM_DIR)
        tokenizer.save_pretrained(tmp / LLM_DIR)
    (tmp / REPORT).write_text(json.dumps(report, indent=1) + "\n")
    (tmp / CONFIG).write_text(json.dumps({"speech_llm": asdict(config),
                                          "projector": projector.config.to_dict()},
                                         indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def train_speech_llm(feats: Sequence[np.ndarray], texts: Sequence[str], out: str | os.PathLike,
                     config: SpeechLLMConfig, *, progress: bool = True) -> dict:
    """Train a projector for ``config.llm`` on precomputed encoder states; write ``out``."""
    from speechlm.runtime.loading import load_model_and_tokenizer, resolve_model

    start = time.monotonic()
    model, tokenizer = load_model_and_tokenizer(resolve_model(config.llm), torch.float32)
    torch.manual_seed(config.seed)
    projector = Projector(ProjectorConfig(
        in_dim=int(feats[0].shape[1]), out_dim=model.config.hidden_size,
        downsample=config.downsample, hidden=config.hidden))
    ctc_head = TiedCTC(model.config.hidden_size) if config.ctc_weight > 0 else None
    stats = fit_projector(model, tokenizer, projector, feats, texts, config,
                          ctc_head=ctc_head, progress=progress)
    stats["train_seconds"] = round(time.monotonic() - start, 1)
    save_speech_llm(out, config, projector, stats,
                    llm_model=model if config.train_llm else None, tokenizer=tokenizer,
                    ctc_head=ctc_head)
    return stats


# ---- the recognizer backend ("speechlm decode --backend speech-llm") ---------------------
class SpeechLLMBackend:
    """``speechlm.asr.Recognizer`` backend: greedy 1-best of a speech-llm model dir.

    ``ctc_weight`` (``--ctc-weight``, else the model dir's ``decode.yaml``, which the
    retrieval1 recipe writes with the weight tuned on dev) sets joint CTC / LLM decoding
    for a model with a CTC head; without either, 0.5 with a head and 0 without.
    """

    default_ctc_weight = 0.5

    has_lattice = False
    am_scale = 1.0

    def __init__(self, config: Any) -> None:
        if not config.model:
            raise ValueError("decode config: the speech-llm backend needs --model-dir (a dir "
                             "from speechlm speech-llm train)")
        self.model = SpeechLLM.load(config.model)
        if self.model.ctc_head is None:
            if config.ctc_weight:
                raise ValueError(f"{config.model}: --ctc-weight {config.ctc_weight} needs a "
                                 f"model with a CTC head ({CTC_WEIGHTS}); this one has none")
            self.ctc_weight = 0.0
        else:
            self.ctc_weight = (self.default_ctc_weight if config.ctc_weight is None
                               else float(config.ctc_weight))
        self.name = Path(config.model).name
        self.sample_rate = SpeechLLM.sample_rate
        self.info = {"model": self.name, "path": str(config.model),
                     "llm": self.model.config.llm, "encoder": self.model.config.encoder,
                     "ctc_weight": self.ctc_weight}

    def prepare(self, samples: np.ndarray) -> np.ndarray:
        return self.model.features(samples)

    def data_dir_inputs(self, data_dir, d, utts, work_dir, *, nj, job):
        from speechlm.data.features import iter_utterance_audio

        for utt, x in iter_utterance_audio(d, utts, self.sample_rate):
            yield utt, self.model.features(x, utt)

    def decode(self, batch):
        from speechlm.core.hypothesis import Hypothesis

        if not batch:
            return []
        utts, feats = zip(*batch, strict=True)
        texts = self.model.transcribe_features(list(feats), ctc_weight=self.ctc_weight)
        return [([Hypothesis(text=t, score=0.0)] if t else [], None) for t in texts]


def data_dir_features(data_dir: str | os.PathLike, encoder: str,
                      cache: str | os.PathLike | None = None
                      ) -> tuple[list[str], list[np.ndarray], dict[str, str]]:
    """Encoder states of every utterance of a Kaldi data dir: ``(utts, feats, texts)``.

    With ``cache`` (an ``.npz`` path), states are read from it when it was made from the
    same data dir contents and encoder, else computed and written there.
    """
    from speechlm.core.hashing import dir_digest
    from speechlm.data.features import iter_utterance_audio
    from speechlm.data.kaldi_dir import read_data_dir

    d = read_data_dir(data_dir)
    stamp = hashlib.sha256(f"{dir_digest(data_dir)}|{encoder}".encode()).hexdigest()[:16]
    if cache is not None and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["stamp"]) == stamp:
                n = len(z["utts"])
                return list(z["utts"]), [z[f"f{i}"] for i in range(n)], dict(d.text)
    enc = load_encoder(encoder)
    utts, feats = [], []
    for utt, x in iter_utterance_audio(d, d.utterances, enc.sample_rate):
        utts.append(utt)
        feats.append(enc(x, utt).astype(np.float16))  # half the cache; fp32 when used
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{cache}.tmp.npz")
        np.savez(tmp, stamp=np.array(stamp), utts=np.array(utts),
                 **{f"f{i}": f for i, f in enumerate(feats)})
        os.replace(tmp, cache)
    return utts, feats, dict(d.text)
