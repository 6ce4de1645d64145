"""Pseudo-log-likelihood (PLL) scoring with a bidirectional masked LM: the baseline beside
discriminative MWER for MiniLM and mpnet (arXiv 2310.06248, after Salazar et al. 2020).

``PLL(w) = sum_t ln p(w_t | w without w_t)``: each real token is masked in turn and the
masked LM's probability of the original token read off. All the masked copies of a batch
of hypotheses go through the encoder together, and the vocabulary head runs only on the
masked position of each copy (no (rows, T, V) logits).

The sentence-transformers checkpoints of the catalogue (``minilm-l6``, ``mpnet-base``) hold
the encoder only: no MLM head weights (``cls.predictions.*`` / ``lm_head.*`` are absent).
The head is therefore built the way ``BertForMaskedLM`` / ``MPNetForMaskedLM`` build theirs
(``AutoModelForMaskedLM`` on the encoder checkpoint): a dense + GELU + LayerNorm transform,
newly initialised, and a decoder tied to the input word embeddings, plus a new bias. A PLL
without fine-tuning would read a random transform: there is no "no fine-tuning" PLL row.
:func:`train_pll` fine-tunes head and encoder with masked-LM on the training split's
references (BERT's recipe: 15% of the tokens chosen, of those 80% ``[MASK]``, 10% a random
token, 10% kept).

A trained PLL scorer is a directory: ``pll.json`` (the :class:`PllConfig`, training stats,
the head keys that were newly initialised) and ``mlm/`` (the masked LM and its tokenizer).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechlm.llm.second_pass.mwer import decayed_step, loss_summary
from speechlm.llm.second_pass.nbest import NbestItem

logger = logging.getLogger(__name__)

__all__ = ["PllConfig", "PllScorer", "build_pll_scorer", "load_pll_scorer", "save_pll_scorer",
           "train_pll"]


@dataclass(frozen=True)
class PllConfig:
    """How a PLL scorer is built and fine-tuned (saved in ``pll.json``).

    Args:
        model: catalogue name or dir of the bidirectional encoder (BERT / MPNet family).
        lr: learning rate of the new head transform and bias.
        backbone_lr: learning rate of the encoder (the tied decoder is the embeddings).
        epochs: passes over the training references.
        sents_per_step: references per optimiser step.
        mask_prob: share of the tokens chosen for prediction (at least one per sentence).
        rows_per_batch: masked copies per forward pass when scoring.
        max_length: tokens per sentence (longer ones are truncated, and said so).
        seed: head init, masking and batch order.
    """

    model: str = "minilm-l6"
    lr: float = 1e-3
    backbone_lr: float = 5e-5
    epochs: int = 1
    sents_per_step: int = 16
    mask_prob: float = 0.15
    rows_per_batch: int = 64
    max_length: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "sents_per_step", "rows_per_batch", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")

    @property
    def key(self) -> str:
        return f"pll_{Path(self.model).name}"


def _head_of(mlm: Any) -> nn.Module:
    """The vocabulary head of a ``*ForMaskedLM`` (BERT: ``cls``, MPNet/RoBERTa: ``lm_head``),
    applied to (..., D) states."""
    for name in ("cls", "lm_head"):
        if isinstance(getattr(mlm, name, None), nn.Module):
            return getattr(mlm, name)
    raise ValueError(f"{type(mlm).__name__}: no masked-LM head (cls / lm_head) found")


class PllScorer(nn.Module):
    """Costs (minus PLL, natural log) of texts under a masked LM.

    Args:
        mlm: a transformers ``*ForMaskedLM`` (BERT or MPNet family).
        tokenizer: its tokenizer; it must have a mask token.
        config: the :class:`PllConfig`.
    """

    def __init__(self, mlm: Any, tokenizer: Any, config: PllConfig) -> None:
        super().__init__()
        if tokenizer.mask_token_id is None:
            raise ValueError(f"{config.model}: the tokenizer has no mask token: PLL needs one")
        self.mlm, self.tokenizer, self.config = mlm, tokenizer, config
        self.head = _head_of(mlm)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else 0
        self.truncated = 0  # sentences cut at max_length (counted, reported by callers)

    def tokens(self, text: str) -> tuple[list[int], list[int]]:
        """(ids with the tokenizer's special tokens, positions of the real tokens)."""
        enc = self.tokenizer(text, return_special_tokens_mask=True)
        if len(enc["input_ids"]) > self.config.max_length:
            self.truncated += 1
            enc = self.tokenizer(text, truncation=True, max_length=self.config.max_length,
                                 return_special_tokens_mask=True)
        ids = list(enc["input_ids"])
        return ids, [i for i, s in enumerate(enc["special_tokens_mask"]) if not s]

    def _rows(self, texts: Sequence[str]) -> list[tuple[int, list[int], int, int]]:
        """(text index, ids with one position masked, that position, the original token)
        for every real token of every text."""
        rows = []
        for k, t in enumerate(texts):
            ids, pos = self.tokens(t)
            for p in pos:
                masked = list(ids)
                masked[p] = self.tokenizer.mask_token_id
                rows.append((k, masked, p, ids[p]))
        return rows

    def _logp_at(self, seqs: Sequence[list[int]], pos: Sequence[int],
                 targets: Sequence[int]) -> torch.Tensor:
        """ln p(target at pos) for each right-padded sequence: (R,)."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
        hidden = self.mlm.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        at = hidden[torch.arange(len(seqs)), torch.tensor(pos)]  # (R, D): masked slots only
        logp = torch.log_softmax(self.head(at).float(), dim=-1)  # (R, V)
        return logp.gather(-1, torch.tensor(targets)[:, None]).squeeze(-1)

    def costs(self, texts: Sequence[str]) -> list[float]:
        """Minus the PLL of each text (an empty text of no real token costs 0)."""
        self.eval()
        rows = self._rows(texts)
        total = [0.0] * len(texts)
        step = self.config.rows_per_batch
        with torch.inference_mode():
            for b in range(0, len(rows), step):
                chunk = rows[b : b + step]
                lp = self._logp_at([r[1] for r in chunk], [r[2] for r in chunk],
                                   [r[3] for r in chunk])
                for (k, *_), v in zip(chunk, lp.tolist(), strict=True):
                    total[k] -= v
        return total

    def score(self, items: Sequence[NbestItem], *, progress: bool = False) -> dict:
        """``{utt: methods.Scored}`` with score = PLL, timed per utterance."""
        from tqdm import tqdm

        from speechlm.llm.second_pass.methods import Scored

        out = {}
        for it in tqdm(items, desc=self.config.key, disable=not progress, mininterval=5.0):
            t0 = time.perf_counter()
            cut = self.truncated
            vals = [-c for c in self.costs(list(it.hyps))] if it.hyps else []
            out[it.utt] = Scored(vals, time.perf_counter() - t0)
            if self.truncated > cut:
                logger.warning("utterance %s: %d hypotheses over %d tokens: PLL of their "
                               "first %d tokens", it.utt, self.truncated - cut,
                               self.config.max_length, self.config.max_length)
        return out


# ---- building, fine-tuning, saving ------------------------------------------------------
def build_pll_scorer(config: PllConfig, mlm: Any = None, tokenizer: Any = None
                     ) -> tuple[PllScorer, list[str]]:
    """A PLL scorer whose MLM head is built on the encoder checkpoint (or ``mlm`` given),
    and the parameter names that were newly initialised (the head, for the catalogue's
    sentence-transformers checkpoints)."""
    torch.manual_seed(config.seed)
    new: list[str] = []
    if mlm is None:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        from speechlm.core import catalogue

        path = Path(config.model) if catalogue.is_local_dir(config.model) else \
            catalogue.locate(config.model)
        mlm, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
        new = sorted(info["missing_keys"])
        tokenizer = AutoTokenizer.from_pretrained(path)
    return PllScorer(mlm, tokenizer, config), new


def _mask_for_training(ids: list[int], pos: list[int], mask_id: int, vocab: int,
                       prob: float, rng: random.Random) -> tuple[list[int], list[int]]:
    """BERT's masking of one sentence: (input ids, labels with -100 where not predicted)."""
    n = max(1, round(prob * len(pos)))
    chosen = rng.sample(pos, min(n, len(pos)))
    inp, labels = list(ids), [-100] * len(ids)
    for p in chosen:
        labels[p] = ids[p]
        r = rng.random()
        if r < 0.8:
            inp[p] = mask_id
        elif r < 0.9:
            inp[p] = rng.randrange(vocab)
    return inp, labels


def train_pll(scorer: PllScorer, train: Sequence[NbestItem], *, progress: bool = True) -> dict:
    """Fine-tune the masked LM on the references of ``train`` (utterances without one are
    skipped). Returns ``{"sentences", "steps", "train_seconds", "first_loss", "final_loss",
    "trainable_params"}``."""
    from tqdm import tqdm

    cfg = scorer.config
    sents = [scorer.tokens(it.ref) for it in train if it.ref]
    sents = [(ids, pos) for ids, pos in sents if pos]
    if not sents:
        raise ValueError("no training utterance with a reference to fine-tune the masked LM on")
    head_ids = {id(p) for p in scorer.head.parameters()}
    emb = scorer.mlm.get_input_embeddings().weight
    head = [p for p in scorer.head.parameters() if p is not emb]
    body = [p for p in scorer.mlm.parameters() if id(p) not in head_ids or p is emb]
    opt = torch.optim.AdamW([{"params": head, "lr": cfg.lr},
                             {"params": body, "lr": cfg.backbone_lr}], weight_decay=0.0)
    base_lrs = [g["lr"] for g in opt.param_groups]
    rng = random.Random(cfg.seed)
    vocab = scorer.mlm.get_output_embeddings().weight.shape[0]
    steps = cfg.epochs * math.ceil(len(sents) / cfg.sents_per_step)
    scorer.train()
    t0, step, losses = time.monotonic(), 0, []
    bar = tqdm(total=steps, disable=not progress, desc=cfg.key, mininterval=5.0)
    for _ in range(cfg.epochs):
        order = list(range(len(sents)))
        rng.shuffle(order)
        for b in range(0, len(order), cfg.sents_per_step):
            batch = [_mask_for_training(*sents[i], scorer.tokenizer.mask_token_id, vocab,
                                        cfg.mask_prob, rng)
                     for i in order[b : b + cfg.sents_per_step]]
            width = max(len(x) for x, _ in batch)
            ids = torch.full((len(batch), width), scorer.pad_id, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, (x, y) in enumerate(batch):
                ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = (
                    torch.tensor(x), torch.tensor(y), 1)
            hidden = scorer.mlm.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
            sel = labels != -100  # (B, T): only the chosen positions reach the head
            logits = scorer.head(hidden[sel]).float()  # (M, V)
            loss = nn.functional.cross_entropy(logits, labels[sel])
            losses.append(decayed_step(opt, base_lrs, loss, list(scorer.mlm.parameters()),
                                       step, steps))
            step += 1
            bar.update(1)
    bar.close()
    return {"sentences": len(sents), "steps": step,
            "train_seconds": round(time.monotonic() - t0, 1), **loss_summary(losses),
            "trainable_params": sum(p.numel() for p in scorer.mlm.parameters())}


def save_pll_scorer(scorer: PllScorer, out_dir: str | Path, stats: dict | None = None,
                    new_keys: Sequence[str] = ()) -> Path:
    """Write the scorer dir (see the module doc)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scorer.mlm.save_pretrained(out / "mlm")
    scorer.tokenizer.save_pretrained(out / "mlm")
    (out / "pll.json").write_text(json.dumps(
        {"config": dataclasses.asdict(scorer.config), "train": stats or {},
         "newly_initialised": list(new_keys)}, indent=1) + "\n")
    return out


def load_pll_scorer(model_dir: str | Path) -> PllScorer:
    """A scorer dir written by :func:`save_pll_scorer` (``speechlm rescore train --method
    pll``)."""
    d = Path(model_dir)
    if not (d / "pll.json").is_file():
        other = " (it holds mwer.json: use --method mwer)" if (d / "mwer.json").is_file() else ""
        raise FileNotFoundError(f"{d}: no pll.json (not a scorer dir from 'speechlm rescore "
                                f"train --method pll'){other}")
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    cfg = PllConfig(**json.loads((d / "pll.json").read_text())["config"])
    mlm = AutoModelForMaskedLM.from_pretrained(d / "mlm")
    return PllScorer(mlm, AutoTokenizer.from_pretrained(d / "mlm"), cfg).eval()
