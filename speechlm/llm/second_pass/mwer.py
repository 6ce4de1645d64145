"""Discriminative MWER scorers of N-best hypotheses (arXiv 2310.06248).

A scorer gives each hypothesis a cost ``s`` (lower is better). Training minimises the
expected word errors under the softmax over each N-best, with the mean error subtracted
(the usual variance reduction, which does not change the gradient's expectation)::

    loss = sum_i softmax(-s)_i * (err_i - mean_j err_j)

Scorers (``kind`` x ``pooling``):

* causal, ``prob``: ``s = -ln p(BOS hyp EOS)`` of a causal LM (probability-based MWER);
* causal or bidirectional, ``mean`` / ``last`` / ``attention``: a scalar head on the pooled
  last-layer states (``last`` is the last real token: for a causal LM it has seen the whole
  sentence; for a bidirectional one, ``[SEP]``).

Causal LMs are adapted with LoRA (peft); bidirectional encoders are fine-tuned whole, or
frozen (``train_backbone=False``: only the head learns, the "no fine-tuning" row).
``objective="likelihood"`` trains a causal ``prob`` scorer by plain cross-entropy on the
references instead (the likelihood baseline).

A trained scorer is a directory: ``mwer.json`` (the :class:`MwerConfig`), ``head.pt``, and
the adapter (``adapter/``, causal) or the encoder (``encoder/``, bidirectional).

>>> import torch
>>> round(mwer_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 2.0]])).item(), 4)
0.0
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechlm.llm.second_pass.evaluate import errors
from speechlm.llm.second_pass.nbest import NbestItem

__all__ = ["MwerConfig", "Pooling", "Scorer", "load_scorer", "mwer_loss", "train_scorer"]

POOLINGS = ("prob", "mean", "last", "attention")
KINDS = ("causal", "bidirectional")


def mwer_loss(costs: torch.Tensor, errs: torch.Tensor, mask: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Mean over utterances of ``sum_i softmax(-s)_i * (err_i - mean err)``.

    Args:
        costs: (B, N) hypothesis costs ``s`` (lower is better).
        errs: (B, N) word errors of each hypothesis.
        mask: (B, N) 1 for real hypotheses (lists shorter than N are padded).
    """
    if mask is None:
        mask = torch.ones_like(costs)
    mask = mask.to(costs.dtype)
    logits = (-costs).masked_fill(mask == 0, float("-inf"))
    p = torch.softmax(logits, dim=-1)  # (B, N)
    mean = (errs * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)
    return (p * (errs - mean) * mask).sum(-1).mean()


class Pooling(nn.Module):
    """Pool (B, T, D) states into (B, D) over the real tokens (``mask`` 1), right-padded."""

    def __init__(self, mode: str, dim: int) -> None:
        super().__init__()
        if mode not in POOLINGS[1:]:
            raise ValueError(f"pooling must be one of {POOLINGS[1:]}, got {mode!r}")
        self.mode = mode
        # attention pooling: one learned query scoring every token
        self.query = nn.Linear(dim, 1) if mode == "attention" else None

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(hidden.dtype)  # (B, T)
        if self.mode == "mean":
            return (hidden * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)
        if self.mode == "last":
            last = mask.long().sum(1) - 1  # (B,)
            return hidden[torch.arange(hidden.size(0)), last]
        w = self.query(hidden).squeeze(-1).masked_fill(m == 0, float("-inf"))  # (B, T)
        return (torch.softmax(w, dim=-1)[..., None] * hidden).sum(1)


@dataclass(frozen=True)
class MwerConfig:
    """How a scorer is built and trained (saved as ``mwer.json``).

    Args:
        model: catalogue name or model dir of the backbone.
        kind: ``causal`` or ``bidirectional``.
        pooling: ``prob`` (causal only) or a pooling head.
        objective: ``mwer`` or ``likelihood`` (causal ``prob`` only).
        train_backbone: fine-tune the backbone (LoRA for causal, whole for bidirectional).
        lora_rank: LoRA rank of a causal backbone.
        lr: head learning rate; the backbone gets ``backbone_lr``.
        epochs, utts_per_step: schedule (a step is ``utts_per_step`` whole N-bests).
        max_hyps: hypotheses per N-best used in training.
        seed: head init and batch order.
        with_first_pass: train on the interpolated cost ``s_i - first_pass_i`` (the decoder's
            score, or the rank prior ``-rank``), as the paper trains with the first-pass
            score: the scorer learns what the first pass misses, and rescoring at
            ``llm_scale`` 1 is the trained ranking. Without it the scorer learns to rank
            alone and must then be mixed with a strong first pass it never saw.
    """

    model: str = "minilm-l6"
    kind: str = "bidirectional"
    pooling: str = "mean"
    objective: str = "mwer"
    train_backbone: bool = True
    lora_rank: int = 8
    lr: float = 1e-3
    backbone_lr: float = 5e-5
    epochs: int = 1
    utts_per_step: int = 4
    max_hyps: int = 5
    seed: int = 0
    with_first_pass: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.pooling == "prob" and self.kind != "causal":
            raise ValueError("pooling 'prob' needs a causal LM (bidirectional models have no "
                             "sentence probability; use a pooling head)")
        if self.objective not in ("mwer", "likelihood"):
            raise ValueError(f"objective must be 'mwer' or 'likelihood', got {self.objective!r}")
        if self.objective == "likelihood" and self.pooling != "prob":
            raise ValueError("the likelihood objective trains a causal 'prob' scorer")
        if self.objective == "likelihood" and self.with_first_pass:
            raise ValueError("with_first_pass is for the MWER objective (likelihood training "
                             "sees references only, no N-best)")
        for name in ("epochs", "utts_per_step", "max_hyps", "lora_rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def key(self) -> str:
        tag = "lik" if self.objective == "likelihood" else "mwer"
        frozen = "" if self.train_backbone else "_frozen"
        fp = "_fp" if self.with_first_pass else ""
        return f"{tag}_{Path(self.model).name}_{self.pooling}{frozen}{fp}"


class Scorer(nn.Module):
    """Costs of texts: a backbone (transformers model) plus a pooling head, or the causal
    LM's negative log-probability.

    Args:
        backbone: ``*ForCausalLM`` (causal) or an encoder ``AutoModel`` (bidirectional).
        tokenizer: its tokenizer.
        config: the :class:`MwerConfig` (kind, pooling).
    """

    def __init__(self, backbone: Any, tokenizer: Any, config: MwerConfig) -> None:
        super().__init__()
        self.backbone, self.tokenizer, self.config = backbone, tokenizer, config
        dim = backbone.config.get_text_config().hidden_size
        self.pool = None if config.pooling == "prob" else Pooling(config.pooling, dim)
        self.head = None if config.pooling == "prob" else nn.Linear(dim, 1)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, mask), both (B, T), right-padded. Causal: BOS + text + EOS (as the
        runtime scores a text); bidirectional: the tokenizer's own special tokens."""
        tok = self.tokenizer
        seqs = []
        for t in texts:
            if self.config.kind == "causal":
                ids = list(tok(t, add_special_tokens=False)["input_ids"])
                if tok.bos_token_id is not None:
                    ids = [tok.bos_token_id, *ids]
                seqs.append([*ids, tok.eos_token_id])
            else:
                seqs.append(list(tok(t, truncation=True, max_length=256)["input_ids"]))
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
        return ids, mask

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Costs (B,) of right-padded sequences."""
        if self.config.pooling == "prob":
            logits = self.backbone(input_ids=ids, attention_mask=mask).logits[:, :-1]
            logp = torch.log_softmax(logits.float(), -1)  # (B, T-1, V)
            tok = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
            return -(tok * mask[:, 1:]).sum(-1)
        if self.config.kind == "causal":
            out = self.backbone(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                                logits_to_keep=1)  # no (B, T, V) logits: the head's saving
            hidden = out.hidden_states[-1]
        else:
            hidden = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.head(self.pool(hidden.float(), mask)).squeeze(-1)  # (B,)

    def costs(self, texts: Sequence[str], batch_size: int = 16) -> list[float]:
        """Costs of texts, in eval mode, without gradients."""
        self.eval()
        out: list[float] = []
        with torch.inference_mode():
            for b in range(0, len(texts), batch_size):
                out += self(*self.encode(texts[b : b + batch_size])).tolist()
        return out

    def score(self, items: Sequence[NbestItem], *, batch_size: int = 16,
              progress: bool = False) -> dict:
        """``{utt: methods.Scored}`` with score = -cost, timed per utterance."""
        from tqdm import tqdm

        from speechlm.llm.second_pass.methods import Scored

        out = {}
        for it in tqdm(items, desc=self.config.key, disable=not progress, mininterval=5.0):
            t0 = time.perf_counter()
            vals = [-c for c in self.costs(list(it.hyps), batch_size)] if it.hyps else []
            out[it.utt] = Scored(vals, time.perf_counter() - t0)
        return out


# ---- building, training, saving ---------------------------------------------------------
def _load_backbone(config: MwerConfig) -> tuple[Any, Any]:
    if config.kind == "causal":
        from speechlm.runtime.loading import load_model_and_tokenizer, resolve_model

        return load_model_and_tokenizer(resolve_model(config.model), torch.float32)
    from transformers import AutoModel, AutoTokenizer

    from speechlm.core import catalogue

    path = Path(config.model) if catalogue.is_local_dir(config.model) else \
        catalogue.locate(config.model)
    return AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def build_scorer(config: MwerConfig, backbone: Any = None, tokenizer: Any = None) -> Scorer:
    """A scorer ready to train: the backbone loaded (or given), LoRA attached to a causal
    one, a bidirectional one left whole; frozen when ``train_backbone`` is off."""
    torch.manual_seed(config.seed)
    if backbone is None:
        backbone, tokenizer = _load_backbone(config)
    if config.kind == "causal" and config.train_backbone:
        from peft import LoraConfig, get_peft_model

        from speechlm.llm.lora import TARGETS

        names = {n.rsplit(".", 1)[-1] for n, _ in backbone.named_modules()}
        lora = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                          lora_dropout=0.0, target_modules=[t for t in TARGETS if t in names])
        backbone = get_peft_model(backbone, lora)
    elif not config.train_backbone:
        backbone.requires_grad_(False)
    return Scorer(backbone, tokenizer, config)


def _nbest_errors(items: Sequence[NbestItem], max_hyps: int
                  ) -> list[tuple[list[str], list[int], list[float]]]:
    """(hypotheses, word errors, first-pass scores) of each usable training N-best."""
    out = []
    for it in items:
        if it.ref is None or len(it.hyps) < 2:
            continue  # one hypothesis (or no reference) carries no ranking signal
        hyps = list(it.hyps[:max_hyps])
        out.append((hyps, [errors(it.ref, h) for h in hyps],
                    [float(x) for x in it.first_pass[:max_hyps]]))
    return out


def train_scorer(scorer: Scorer, train: Sequence[NbestItem], *, progress: bool = True
                 ) -> dict:
    """Train ``scorer`` on the N-bests of ``train`` (MWER or likelihood, per its config).

    Returns ``{"utterances", "steps", "train_seconds", "first_loss", "final_loss",
    "trainable_params"}``.
    """
    from tqdm import tqdm

    cfg = scorer.config
    if cfg.objective == "likelihood":
        data = [([it.ref], [0], [0.0]) for it in train if it.ref]
    else:
        data = _nbest_errors(train, cfg.max_hyps)
    if not data:
        raise ValueError("no training N-best with a reference and at least 2 hypotheses")
    head = [p for m in (scorer.pool, scorer.head) if m is not None for p in m.parameters()]
    body = [p for p in scorer.backbone.parameters() if p.requires_grad]
    groups = [g for g in ({"params": head, "lr": cfg.lr},
                          {"params": body, "lr": cfg.backbone_lr if cfg.kind == "bidirectional"
                           else cfg.lr}) if g["params"]]
    if not groups:
        raise ValueError("nothing to train: a frozen backbone with the prob scorer")
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    base_lrs = [g["lr"] for g in opt.param_groups]
    rng = random.Random(cfg.seed)
    steps = cfg.epochs * math.ceil(len(data) / cfg.utts_per_step)
    scorer.train()
    t0, step, losses = time.monotonic(), 0, []
    bar = tqdm(total=steps, disable=not progress, desc=cfg.key, mininterval=5.0)
    for _ in range(cfg.epochs):
        order = list(range(len(data)))
        rng.shuffle(order)
        for b in range(0, len(order), cfg.utts_per_step):
            batch = [data[i] for i in order[b : b + cfg.utts_per_step]]
            n = max(len(h) for h, _, _ in batch)
            texts = [t for h, _, _ in batch for t in h]
            costs_flat = scorer(*scorer.encode(texts))  # (sum of N_b,)
            if cfg.objective == "likelihood":
                ntok = scorer.encode(texts)[1].sum(1).clamp(min=1)
                loss = (costs_flat / ntok).mean()
            else:
                costs = costs_flat.new_zeros(len(batch), n)
                errs = torch.zeros(len(batch), n)
                mask = torch.zeros(len(batch), n)
                k = 0
                for r, (h, e, fp) in enumerate(batch):
                    costs[r, : len(h)] = costs_flat[k : k + len(h)]
                    if cfg.with_first_pass:  # rescoring's tot = first_pass - llm_scale * s
                        costs[r, : len(h)] -= torch.tensor(fp, dtype=costs.dtype)
                    errs[r, : len(h)], mask[r, : len(h)] = torch.tensor(e, dtype=torch.float), 1
                    k += len(h)
                loss = mwer_loss(costs, errs, mask)
            losses.append(decayed_step(opt, base_lrs, loss,
                                       [p for g in groups for p in g["params"]], step, steps))
            step += 1
            bar.update(1)
    bar.close()
    return {"utterances": len(data), "steps": step,
            "train_seconds": round(time.monotonic() - t0, 1), **loss_summary(losses),
            "trainable_params": sum(p.numel() for g in groups for p in g["params"])}


def decayed_step(opt, base_lrs: Sequence[float], loss: torch.Tensor, params, step: int,
                 steps: int) -> float:
    """One clipped optimizer step at the learning rate decayed linearly to 10% of
    ``base_lrs`` over ``steps``; returns the loss value."""
    frac = step / max(steps - 1, 1)
    for g, lr in zip(opt.param_groups, base_lrs, strict=True):
        g["lr"] = lr * (1 - 0.9 * frac)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def loss_summary(losses: Sequence[float]) -> dict[str, float]:
    """Mean loss of the first and of the last tenth of the steps."""
    k = max(1, len(losses) // 10)
    return {"first_loss": sum(losses[:k]) / k, "final_loss": sum(losses[-k:]) / k}


def save_scorer(scorer: Scorer, out_dir: str | Path, stats: dict | None = None) -> Path:
    """Write the scorer dir (see the module doc)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = scorer.config
    if cfg.train_backbone:
        sub = "adapter" if cfg.kind == "causal" else "encoder"
        scorer.backbone.save_pretrained(out / sub)
        if cfg.kind == "bidirectional":
            scorer.tokenizer.save_pretrained(out / sub)
    heads = {n: m.state_dict() for n, m in (("pool", scorer.pool), ("head", scorer.head))
             if m is not None}
    torch.save(heads, out / "head.pt")
    (out / "mwer.json").write_text(json.dumps(
        {"config": dataclasses.asdict(cfg), "train": stats or {}}, indent=1) + "\n")
    return out


def load_scorer(model_dir: str | Path) -> Scorer:
    """A scorer dir written by :func:`save_scorer` (``speechlm rescore train``)."""
    d = Path(model_dir)
    if not (d / "mwer.json").is_file():
        raise FileNotFoundError(f"{d}: no mwer.json (not a scorer dir from "
                                "'speechlm rescore train --method mwer')")
    cfg = MwerConfig(**json.loads((d / "mwer.json").read_text())["config"])
    if cfg.kind == "bidirectional" and cfg.train_backbone:
        from transformers import AutoModel, AutoTokenizer

        backbone = AutoModel.from_pretrained(d / "encoder")
        tokenizer = AutoTokenizer.from_pretrained(d / "encoder")
    else:
        backbone, tokenizer = _load_backbone(cfg)
        if cfg.kind == "causal" and cfg.train_backbone:
            from peft import PeftModel

            backbone = PeftModel.from_pretrained(backbone, d / "adapter").merge_and_unload()
    scorer = Scorer(backbone, tokenizer, cfg)
    heads = torch.load(d / "head.pt", weights_only=True)
    for name, state in heads.items():
        getattr(scorer, name).load_state_dict(state)
    return scorer.eval()
