"""The retrieval plug point: logits processors that see the final hidden state.

The runtime hands a processor the hidden state that feeds the LM head (the kNN-LM
paper's key) and the logits it produced, and uses what the processor returns as the
next-token scores, in generation and in scoring alike. The runtime does not know what a
retriever's keys mean (text, speech, anything): it only calls ``retriever.search``.

kNN-LM (Khandelwal et al., 2020): ``p = lam * p_knn + (1 - lam) * p_lm`` where
``p_knn(v) = sum over the k neighbours with value v of softmax(-d / T)``.

>>> import torch
>>> class Table:  # a two-entry store: key 0 -> token 2, key 1 -> token 3
...     fingerprint = "demo"
...     keys = torch.eye(2)
...     def search(self, q, k):
...         d = torch.cdist(q, self.keys) ** 2
...         dist, idx = d.topk(k, largest=False)
...         return dist, torch.tensor([2, 3])[idx]
>>> knn = KNNLogitsProcessor(Table(), lam=1.0, k=1, temperature=1.0)
>>> out = knn(torch.tensor([[0.9, 0.1]]), torch.zeros(1, 5))
>>> int(out.argmax()), round(float(out.exp().sum()), 4)
(2, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Retriever(Protocol):
    """Nearest neighbours of query vectors: what the kNN-LM processor asks a datastore.

    ``search(queries (N, D) float32, k) -> (distances (N, k), values (N, k) long)``;
    distances are squared L2 (smaller is nearer), values are token ids (-1: no
    neighbour, e.g. a store with fewer than k entries).
    """

    fingerprint: str

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]: ...


class LogitsProcessor:
    """Base class: ``__call__(hidden (N, D), logits (N, V)) -> scores (N, V)``.

    The scores returned are used as logits (greedy argmax, sampling, log-softmax for
    scoring). A processor that returns log-probabilities keeps scores normalised.

    A processor whose scores depend on each row's own history (e.g. a CTC prefix scorer
    holding one posteriorgram per prompt) also defines, in greedy/sampled generation:

    * ``set_rows(rows)``: called before each step's ``__call__`` with the prompt index of
      every row of the coming ``(N, V)`` logits (rows leave the batch as they finish);
    * ``observe(rows, tokens)``: called after each step with the prompt index and the
      chosen token of every row (an EOS token included, as the row's last).

    Processors without them are called exactly as before.
    """

    def __call__(self, hidden: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class KNNLogitsProcessor(LogitsProcessor):
    """kNN-LM interpolation with a ``Retriever``.

    Args:
        retriever: any object with ``search`` (and a ``fingerprint`` string).
        lam: interpolation weight of ``p_knn`` in [0, 1]; 0 returns the logits untouched
            (the plain model, bit for bit).
        k: neighbours per query.
        temperature: T of ``softmax(-d / T)`` (> 0).
    """

    retriever: Any
    lam: float = 0.25
    k: int = 8
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not callable(getattr(self.retriever, "search", None)):
            raise ValueError(f"retriever {type(self.retriever).__name__} has no search()")

    def knn_logprobs(self, hidden: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """``ln p_knn`` (N, V) from the k nearest keys of each hidden state (N, D)."""
        dist, values = self.retriever.search(hidden.detach().float().cpu(), self.k)
        dist = torch.as_tensor(dist, dtype=torch.float32)  # (N, k)
        values = torch.as_tensor(values, dtype=torch.long)  # (N, k)
        missing = values < 0
        logw = (-dist / self.temperature).masked_fill(missing, float("-inf"))
        w = torch.softmax(logw, dim=-1).nan_to_num(0.0)  # a row with no neighbour: all 0
        p = torch.zeros(hidden.shape[0], vocab_size)
        p.scatter_add_(1, values.clamp(min=0), w.masked_fill(missing, 0.0))
        return p.log().to(hidden.device)

    def __call__(self, hidden: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if self.lam == 0.0:
            return logits
        logp_lm = torch.log_softmax(logits.float(), dim=-1)
        logp_knn = self.knn_logprobs(hidden, logits.shape[-1])
        if self.lam == 1.0:
            return logp_knn
        return torch.logaddexp(
            logp_lm + math.log1p(-self.lam), logp_knn + math.log(self.lam)
        )  # (N, V)


class ExactRetriever:
    """Brute-force squared-L2 search over an in-memory key matrix (tests, tiny stores).

    Args:
        keys: (N, D) float32.
        values: (N,) token ids.
        fingerprint: what produced the keys.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, fingerprint: str = "") -> None:
        if keys.ndim != 2 or values.shape != keys.shape[:1]:
            raise ValueError(f"keys (N, D) and values (N,), got {tuple(keys.shape)}, "
                             f"{tuple(values.shape)}")
        self.keys, self.values, self.fingerprint = keys.float(), values.long(), fingerprint

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        d = torch.cdist(queries.float(), self.keys) ** 2  # (N, S)
        kk = min(k, self.keys.shape[0])
        dist, idx = d.topk(kk, dim=-1, largest=False)
        vals = self.values[idx]
        if kk < k:
            pad = k - kk
            dist = torch.cat([dist, dist.new_full((dist.shape[0], pad), float("inf"))], 1)
            vals = torch.cat([vals, vals.new_full((vals.shape[0], pad), -1)], 1)
        return dist, vals
