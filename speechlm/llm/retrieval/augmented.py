"""Retrieval-augmented speech-prefix LLM: retrieved utterances through cross-attention or as
an in-context prefix (arXiv 2406.09618's multi-modal retrieval, Flamingo/RETRO-style reading).

For each utterance, the top-k store utterances (by speech or text similarity,
``speechlm.llm.retrieval.neighbours``) become *memory items*:

* ``text``: the retrieved transcript read by the LLM itself, as the (key, value) pairs of a
  kNN-LM datastore: at each position of ``BOS + " " + text``, the LLM's final hidden state
  (what it predicts next) beside the input embedding of the token that does come next (the
  text's tokens, then EOS); every pair, or their mean with ``text_pooling = "mean"``. The
  memory lives in the LLM's own spaces and costs no new encoder;
* ``speech``: the retrieved utterance's mean-pooled encoder states through a trainable
  linear layer to one (key, value) pair.

Memory vectors are ``2 D`` wide (key half, value half); the blocks start by attending with
their state to the keys and adding the values (``GatedCrossAttention``'s identity start).

:class:`CrossAttentionSpeechLLM` attaches gated cross-attention blocks
(``speechlm.llm.retrieval.cross_attention``) to the speech-prefix LLM's decoder layers and
trains them (and the speech item projection) with the speech LLM's own loss, the transcript
tokens + EOS, while the LLM and the projector stay frozen: at initialisation it transcribes
exactly as the speech LLM does, whatever trained change follows is the retrieval's, and the
store's memory is encoded once (a fine-tuned LLM would have to re-encode it every step).
Decoding is greedy through the runtime (``LLM.generate_from_embeds``), one utterance at a
time: the runtime drops finished rows from a batch without telling forward hooks, so a
batched memory would lose its alignment.

The cheaper comparison, the retrieved texts as an in-context prefix, is
``speechlm.llm.retrieval.in_context``.

A model dir holds ``cross_attention.json`` (this config, the speech LLM's fingerprint),
``adapters.pt`` and ``train_report.json``; it is loaded on top of the speech-llm model dir
it was trained for.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from speechlm.llm.retrieval.cross_attention import (
    CrossAttentionAdapters,
    CrossAttentionConfig,
    llm_dims,
    pad_memory,
)
from speechlm.llm.speech_llm import (
    clipped_step,
    config_from_dict,
    next_token_loss,
    warmup_cosine_lr,
)

CONFIG = "cross_attention.json"
WEIGHTS = "adapters.pt"
REPORT = "train_report.json"
ITEM_KINDS = ("text", "speech", "text+speech")
POOLINGS = ("tokens", "mean")


@dataclass(frozen=True)
class RetrievalAugmentConfig:
    """Settings of the cross-attention model (the keys of ``cross_attention.json``).

    Args:
        retrieve_by: how neighbours were found (``speech`` or ``text``; recorded only).
        k: retrieved utterances per query.
        items: what each retrieved utterance adds to the memory (``ITEM_KINDS``).
        text_pooling: ``tokens`` (every token state) or ``mean`` (one vector per text).
        layers, heads, ff_mult: the blocks (``CrossAttentionConfig``).
        speech_dim: encoder state width (speech items; set from the features).
        epochs, batch_size, lr, seed: adapter training; the gates learn ``gate_lr_scale``
            times faster (a tanh gate at 0 otherwise opens slowly on small data).
    """

    retrieve_by: str = "speech"
    k: int = 4
    items: str = "text"
    text_pooling: str = "tokens"
    layers: tuple[int, ...] = (-1,)
    heads: int = 0
    ff_mult: int = 0
    speech_dim: int = 0
    epochs: int = 4
    batch_size: int = 8
    lr: float = 2e-3
    gate_lr_scale: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        if self.retrieve_by not in ("speech", "text"):
            raise ValueError(f"retrieve_by must be speech or text, got {self.retrieve_by!r}")
        if self.items not in ITEM_KINDS:
            raise ValueError(f"items must be one of {ITEM_KINDS}, got {self.items!r}")
        if self.text_pooling not in POOLINGS:
            raise ValueError(f"text_pooling must be one of {POOLINGS}, got "
                             f"{self.text_pooling!r}")
        if self.k < 1 or self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"cross-attention: k, epochs, batch_size >= 1 and lr > 0; got {self}")

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> RetrievalAugmentConfig:
        return config_from_dict(cls, values, source, "cross-attention")

    def to_dict(self) -> dict:
        return {**asdict(self), "layers": list(self.layers)}


class ItemStore:
    """The utterances one can retrieve: id -> transcript (and pooled speech vector).

    Text pairs are computed once (:meth:`text_pairs`), since the LLM is frozen.
    """

    def __init__(self, texts: Mapping[str, str],
                 speech: Mapping[str, np.ndarray] | None = None) -> None:
        if not texts:
            raise ValueError("retrieval item store is empty: no utterances to retrieve")
        for u, t in texts.items():
            if not t.strip():
                raise ValueError(f"retrieval item store: utterance {u!r} has an empty text")
        if speech is not None:
            missing = sorted(set(texts) - set(speech))
            if missing:
                raise ValueError(f"retrieval item store: no speech vector for {len(missing)} "
                                 f"utterances, e.g. {missing[0]!r}")
        self.texts, self.speech = dict(texts), dict(speech) if speech is not None else None
        self._states: dict[str, torch.Tensor] = {}

    def text_pairs(self, llm: Any, ids: Sequence[str], batch_size: int = 16
                   ) -> list[torch.Tensor]:
        """``(T_i, 2 D)`` per item: [final hidden state at each position of ``BOS + " " +
        text``, input embedding of the next token (text tokens, then EOS)]."""
        todo = sorted({u for u in ids if u not in self._states})
        for u in todo:
            if u not in self.texts:
                raise KeyError(f"retrieval item store: unknown utterance {u!r}")
        if todo:
            tok = llm.tokenizer
            if tok.eos_token_id is None:
                raise ValueError("text memory needs an EOS token (the value after each text)")
            spaced = [" " + self.texts[u].strip() for u in todo]
            states = llm.hidden_states(spaced, layer=-1, batch_size=batch_size)
            for u, text, s in zip(todo, spaced, states, strict=True):
                nxt = list(tok(text, add_special_tokens=False)["input_ids"]) + [tok.eos_token_id]
                nxt = nxt[len(nxt) - len(s):]  # without BOS the first token has no state
                # clone: out of inference mode, usable in training
                self._states[u] = torch.cat([s, llm.embed_tokens(nxt).float()], dim=1).clone()
        return [self._states[u] for u in ids]


class CrossAttentionSpeechLLM:
    """A speech-prefix LLM (``speechlm.llm.speech_llm.SpeechLLM``) reading retrieved
    utterances through gated cross-attention.

    Args:
        speech_llm: the (frozen) speech LLM; its LLM gets the adapters' hooks.
        config: the model's settings.
        modules: trained ``{"adapters", "speech_in"}`` (None: fresh, gates at 0).
    """

    def __init__(self, speech_llm: Any, config: RetrievalAugmentConfig,
                 modules: nn.ModuleDict | None = None) -> None:
        self.slm, self.config = speech_llm, config
        model = speech_llm.llm.model
        self.dim = llm_dims(model)[0]
        if modules is None:
            torch.manual_seed(config.seed)
            modules = nn.ModuleDict({"adapters": CrossAttentionAdapters(model, CrossAttentionConfig(
                layers=config.layers, heads=config.heads, mem_dim=2 * self.dim,
                ff_mult=config.ff_mult))})
            if "speech" in config.items:
                if config.speech_dim < 1:
                    raise ValueError("speech items need speech_dim (the encoder state width)")
                modules["speech_in"] = nn.Linear(config.speech_dim, 2 * self.dim)
        self.modules = modules
        self.adapters: CrossAttentionAdapters = modules["adapters"]
        self.adapters.attach(model)

    def close(self) -> None:
        """Take the hooks out of the LLM (it is the plain speech LLM again)."""
        self.adapters.detach()

    # ---- memory ---------------------------------------------------------------------------
    def item_memory(self, ids: Sequence[str], store: ItemStore) -> torch.Tensor:
        """Memory ``(M, 2 D)`` of retrieved utterances ``ids`` (in retrieval order)."""
        c, parts = self.config, []
        states = store.text_pairs(self.slm.llm, ids) if "text" in c.items else [None] * len(ids)
        for u, s in zip(ids, states, strict=True):
            if s is not None:
                parts.append(s if c.text_pooling == "tokens" else s.mean(dim=0, keepdim=True))
            if "speech" in c.items:
                if store.speech is None:
                    raise ValueError("speech items need an item store with speech vectors")
                x = torch.as_tensor(np.asarray(store.speech[u], dtype=np.float32))
                if x.shape != (c.speech_dim,):
                    raise ValueError(f"speech vector of {u!r} has shape {tuple(x.shape)}, the "
                                     f"model expects ({c.speech_dim},)")
                parts.append(self.modules["speech_in"](x)[None])
        return torch.cat(parts) if parts else torch.zeros(0, 2 * self.dim)

    # ---- decoding -------------------------------------------------------------------------
    def transcribe_features(self, feats: Sequence[np.ndarray],
                            neighbours: Sequence[Sequence[str]], store: ItemStore, *,
                            ctc_weight: float = 0.0) -> list[str]:
        """Greedy transcripts, each utterance reading its neighbours' memory; with
        ``ctc_weight`` > 0 jointly with the speech LLM's CTC prefix scores."""
        from speechlm.llm.ctc_prefix import CTCJointProcessor
        from speechlm.runtime import SamplingParams

        if len(feats) != len(neighbours):
            raise ValueError(f"{len(feats)} utterances but {len(neighbours)} neighbour lists")
        params = SamplingParams(max_tokens=self.slm.config.max_new_tokens)
        out = []
        with torch.no_grad():
            for f, ids in zip(feats, neighbours, strict=True):
                mem = self.item_memory(list(ids), store)
                prompt = self.slm.prompt_embeds(f)
                joint = (CTCJointProcessor([self.slm.ctc_log_posteriors(f)],
                                           self.slm.llm.eos_ids, ctc_weight)
                         if ctc_weight > 0 else None)
                with self.adapters.memory(mem[None]):
                    c = self.slm.llm.generate_from_embeds([prompt], params,
                                                          logits_processor=joint)[0]
                out.append(" ".join(c.text.split()))
        return out

    # ---- training -------------------------------------------------------------------------
    def _batch(self, feats, targets, neighbours, store):
        """Right-padded embeddings ``(B, L, D)``, mask, labels, memory ``(B, M, D)``, mask."""
        table = self.slm.llm.model.get_input_embeddings()
        rows, labels, mems = [], [], []
        for f, tgt, ids in zip(feats, targets, neighbours, strict=True):
            prefix = self.slm.prompt_embeds(f)  # (P, D), frozen projector
            with torch.no_grad():
                post = table(torch.tensor(tgt, dtype=torch.long))
            rows.append(torch.cat([prefix, post]))
            labels.append([-100] * prefix.shape[0] + tgt)
            mems.append(self.item_memory(list(ids), store))
        width = max(r.shape[0] for r in rows)
        emb = rows[0].new_zeros(len(rows), width, rows[0].shape[1])
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        lab = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            emb[i, : len(r)], mask[i, : len(r)] = r, 1
            lab[i, : len(r)] = torch.tensor(labels[i])
        mem, mem_mask = pad_memory(mems, 2 * self.dim)
        return emb, mask, lab, mem, mem_mask

    def fit(self, feats: Sequence[np.ndarray], texts: Sequence[str],
            neighbours: Sequence[Sequence[str]], store: ItemStore, *,
            progress: bool = True) -> dict:
        """Train the adapters (LLM and projector frozen) on (speech, transcript, neighbours).

        AdamW, linear warmup over 5% of the steps, cosine decay to 10%, clipping at 1.

        Returns:
            ``{"examples", "steps", "first_loss", "final_loss", "trainable_params", "gates"}``.
        """
        from tqdm import tqdm

        c = self.config
        if not feats or not len(feats) == len(texts) == len(neighbours):
            raise ValueError(f"cross-attention training: {len(feats)} feature arrays, "
                             f"{len(texts)} texts, {len(neighbours)} neighbour lists")
        model = self.slm.llm.model
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        eos = self.slm.llm.tokenizer.eos_token_id
        targets = [self.slm.target_ids(t) + [eos] for t in texts]
        gates = [p for n, p in self.modules.named_parameters() if n.endswith("_gate")]
        rest = [p for n, p in self.modules.named_parameters() if not n.endswith("_gate")]
        groups = [{"params": rest, "scale": 1.0},
                  {"params": gates, "scale": c.gate_lr_scale, "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=c.lr, weight_decay=0.01)
        steps_per_epoch = math.ceil(len(feats) / c.batch_size)
        total = steps_per_epoch * c.epochs
        rng = random.Random(c.seed)
        self.modules.train()
        bar = tqdm(total=total, disable=not progress, unit="step", desc="cross-attention",
                   mininterval=5.0)
        step, recent, first = 0, [], None
        for _ in range(c.epochs):
            order = list(range(len(feats)))
            rng.shuffle(order)
            for b in range(0, len(order), c.batch_size):
                idx = order[b : b + c.batch_size]
                emb, mask, lab, mem, mem_mask = self._batch(
                    [feats[i] for i in idx], [targets[i] for i in idx],
                    [neighbours[i] for i in idx], store)
                with self.adapters.memory(mem, mem_mask):
                    logits = model(inputs_embeds=emb, attention_mask=mask).logits
                loss = next_token_loss(logits, lab)
                clipped_step(opt, loss, rest + gates, warmup_cosine_lr(c.lr, step, total))
                step += 1
                first = loss.item() if first is None else first
                recent = [*recent, loss.item()][-steps_per_epoch:]
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.close()
        self.modules.eval()
        return {"examples": len(feats), "steps": step, "first_loss": round(first, 4),
                "final_loss": round(sum(recent) / max(len(recent), 1), 4),
                "trainable_params": sum(p.numel() for p in rest + gates),
                "gates": self.adapters.gates()}

    # ---- files ----------------------------------------------------------------------------
    def save(self, out: str | os.PathLike, report: dict) -> Path:
        """Write a model dir (through a temporary sibling, renamed at the end)."""
        out = Path(out)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(self.modules.state_dict(), tmp / WEIGHTS)
        (tmp / REPORT).write_text(json.dumps(report, indent=1) + "\n")
        (tmp / CONFIG).write_text(json.dumps({
            "cross_attention": self.config.to_dict(), "hidden_size": self.dim,
            "speech_llm_fingerprint": self.slm.fingerprint()}, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        return out

    @classmethod
    def load(cls, model_dir: str | os.PathLike, speech_llm: Any) -> CrossAttentionSpeechLLM:
        """Load a model dir written by :meth:`save` on top of the speech LLM it was trained for.

        Raises:
            FileNotFoundError: not a cross-attention model dir.
            ValueError: the speech LLM (LLM or projector weights) is not the one trained with.
        """
        model_dir = Path(model_dir)
        for name in (CONFIG, WEIGHTS):
            if not (model_dir / name).is_file():
                raise FileNotFoundError(f"{model_dir}/{name} does not exist: not a "
                                        "cross-attention model dir")
        meta = json.loads((model_dir / CONFIG).read_text())
        want, have = meta["speech_llm_fingerprint"], speech_llm.fingerprint()
        if want != have:
            raise ValueError(f"{model_dir}: trained on the speech LLM {want!r}, given {have!r}: "
                             "retrain the adapters for this speech LLM")
        config = RetrievalAugmentConfig.from_dict(meta["cross_attention"],
                                                  source=str(model_dir / CONFIG))
        model = cls(speech_llm, config)
        model.modules.load_state_dict(torch.load(model_dir / WEIGHTS, map_location="cpu",
                                                 weights_only=True))
        model.modules.eval()
        return model


def train_cross_attention(speech_llm: Any, feats: Sequence[np.ndarray], texts: Sequence[str],
                          neighbours: Sequence[Sequence[str]], store: ItemStore,
                          out: str | os.PathLike, config: RetrievalAugmentConfig, *,
                          progress: bool = True) -> CrossAttentionSpeechLLM:
    """Train adapters for ``speech_llm`` and write the model dir ``out``."""
    start = time.monotonic()
    model = CrossAttentionSpeechLLM(speech_llm, config)
    stats = model.fit(feats, texts, neighbours, store, progress=progress)
    stats["train_seconds"] = round(time.monotonic() - start, 1)
    model.save(out, stats)
    return model
