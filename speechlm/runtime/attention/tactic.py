"""``tactic``: adaptive sparse decode attention (Tactic, arXiv 2502.12216) as a backend.

Prefill and multi-token steps (scoring) run dense SDPA. At a decode step (one query
token) with at least ``min_tokens`` cached, the backend keeps, per layer, a k-means
index of the cached keys (``speechlm_kernels.tactic.build_index``) built at the first
decode step over the tokens cached before it, and rebuilt once ``refresh`` tokens have
been appended since (the paper's "refresh every N steps"); tokens after the index are
attended densely. Each step then selects, per query head, clusters until the estimated
softmax mass reaches ``p`` (``mode="tactic"``), or the exact top-p tokens
(``mode="oracle"``, reads every key: evaluation only), unites the selections over each
GQA group and attends over them.

The index lives in the backend, keyed by layer, and is tied to the cache layer object
it was built from; a new cache (a new call, a fork), a different batch size, or keys that
no longer match (``reorder_cache`` in beam search; checked on a few sampled positions
each step) rebuild it.

Instrumentation (``record=True``): per layer, step and query head the budget (tokens
the head chose, recent included), the group union actually read, the true attention
mass those tokens carry (against dense softmax) and the relative output error
``|o - o_dense| / |o_dense|`` (dense attention is computed for this: slow).

>>> backend = TacticBackend(p=0.9, cluster_size=16)
>>> backend.config.refresh
2048
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from speechlm.runtime.attention.base import AttentionBackend


@dataclass(frozen=True)
class TacticConfig:
    """Settings of the ``tactic`` backend (``attention_conf``).

    Args:
        p: target fraction of each head's softmax mass (``p >= 1``: keep all = dense).
        cluster_size: average tokens per k-means cluster.
        kmeans_iters: Lloyd iterations at (re)indexing.
        index_method: ``"lloyd"`` (k-means over all clusters, ~N^2 D / 16 per iteration)
            or ``"two_level"`` (coarse then fine k-means, ~2 sqrt(N / 16) centroids per
            key: seconds instead of minutes at 32K on a CPU; see ``build_index``).
        refresh: re-cluster once this many tokens were appended after the index.
        min_tokens: below this many cached tokens a decode step runs dense.
        mode: ``"tactic"`` (clusters + fitted mass) or ``"oracle"`` (exact top-p).
        head_frac, min_head: leading part of the cluster order scored exactly.
        sample_at, sample_width: the two sampled segments of the tail fit.
        record: keep per head/layer/step instrumentation in ``backend.records``.
        impl: kernel implementation (``"auto"``: Triton on CUDA, PyTorch otherwise).
        seed: seed of the k-means init.
    """

    p: float = 0.9
    cluster_size: int = 16
    kmeans_iters: int = 10
    index_method: str = "lloyd"
    refresh: int = 2048
    min_tokens: int = 1024
    mode: str = "tactic"
    head_frac: float = 0.015
    min_head: int = 16
    sample_at: tuple[float, float] = (0.1, 0.6)
    sample_width: int = 32
    record: bool = False
    impl: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.p <= 1.0:
            raise ValueError(f"p must be in (0, 1], got {self.p}")
        for name in ("cluster_size", "refresh", "min_tokens", "min_head", "sample_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kmeans_iters < 0:
            raise ValueError(f"kmeans_iters must be >= 0, got {self.kmeans_iters}")
        if self.index_method not in ("lloyd", "two_level"):
            raise ValueError(
                f"index_method must be 'lloyd' or 'two_level', got {self.index_method!r}"
            )
        if self.mode not in ("tactic", "oracle"):
            raise ValueError(f"mode must be 'tactic' or 'oracle', got {self.mode!r}")
        if not 0.0 < self.head_frac < 1.0:
            raise ValueError(f"head_frac must be in (0, 1), got {self.head_frac}")
        if len(self.sample_at) != 2 or not 0.0 < self.sample_at[0] < self.sample_at[1] < 1.0:
            raise ValueError(f"sample_at must be two increasing fractions, got {self.sample_at}")
        if self.impl not in ("auto", "triton", "ref"):
            raise ValueError(f"impl must be 'auto', 'triton' or 'ref', got {self.impl!r}")


@dataclass
class _LayerIndex:
    """One layer's index and what it was built from."""

    index: Any  # ClusterIndex / PageIndex
    n_tokens: int
    batch: int
    layer: Any  # weakref to the cache layer
    probe_pos: torch.Tensor  # (P,) sampled positions
    probe: torch.Tensor  # (B, G, P, D) keys there at build time


class IndexedDecodeBackend(AttentionBackend):
    """Shared skeleton: dense prefill, per-layer key index, sparse decode, instrumentation.

    Subclasses implement ``build(keys, key_valid)`` and ``select(q, keys, state,
    key_valid)`` (returning a ``speechlm_kernels.tactic.Selection``).
    """

    mask: ClassVar[str] = "sdpa"
    config: Any

    def __init__(self) -> None:
        super().__init__()
        self._layers: dict[int, _LayerIndex] = {}
        self.records: list[dict[str, Any]] = []
        self._steps: dict[int, int] = {}
        self.index_builds = 0

    def validate(self, config: Any) -> list[str]:
        reasons = super().validate(config)
        window = getattr(config, "sliding_window", None)
        if window is not None and getattr(config, "use_sliding_window", True):
            reasons.append(
                f"{self.name}: sliding-window attention ({window}) is not applied by a "
                "sparse decode backend"
            )
        return reasons

    # ---- subclass hooks -----------------------------------------------------------------
    def build(self, keys: torch.Tensor, key_valid: torch.Tensor | None) -> Any:
        raise NotImplementedError

    def select(self, q, keys, index, key_valid):
        raise NotImplementedError

    # ---- index bookkeeping ------------------------------------------------------------------
    def _index_for(self, layer_idx: int, cache_layer: Any, keys: torch.Tensor, valid):
        t = keys.shape[2]
        st = self._layers.get(layer_idx)
        fresh = (
            st is not None
            and st.layer() is cache_layer
            and st.batch == keys.shape[0]
            and st.n_tokens < t
            and t - st.n_tokens <= self.config.refresh
            and torch.equal(keys[:, :, st.probe_pos], st.probe)
        )
        if fresh:
            return st.index
        n = t - 1  # everything cached before this step; the new token stays dense
        index = self.build(keys[:, :, :n], None if valid is None else valid[:, :n])
        probe_pos = torch.linspace(0, n - 1, steps=min(8, n), device=keys.device).long()
        self._layers[layer_idx] = _LayerIndex(
            index, n, keys.shape[0], weakref.ref(cache_layer), probe_pos,
            keys[:, :, probe_pos].clone(),
        )  # fmt: skip
        self.index_builds += 1
        return index

    def forward(
        self,
        module,
        query,  # (B, H, Tq, D)
        key,  # (B, G, T, D)
        value,
        attention_mask,
        *,
        layer_idx: int,
        cache_layer: Any,
        scaling: float | None = None,
        dropout: float = 0.0,
        **kwargs: Any,
    ):
        t = key.shape[2]
        if query.shape[2] != 1 or cache_layer is None or t < max(2, self.config.min_tokens):
            from transformers.integrations.sdpa_attention import sdpa_attention_forward

            return sdpa_attention_forward(
                module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                **kwargs,
            )  # fmt: skip
        scale = query.shape[-1] ** -0.5 if scaling is None else scaling
        valid = None
        if attention_mask is not None:  # sdpa mask: bool (B, 1, 1, T), True = attend
            m = attention_mask[:, 0, -1, :t]
            valid = m if m.dtype == torch.bool else m == 0
        q = query[:, :, 0]  # (B, H, D)
        index = self._index_for(layer_idx, cache_layer, key, valid)
        sel = self.select(q, key, index, valid, scale)
        from speechlm_kernels.tactic import sparse_decode_attention

        out, _ = sparse_decode_attention(
            q, key, value, sel.idx, sel.counts, scale, impl=self.config.impl
        )  # (B, H, D)
        if self.config.record:
            self._record(layer_idx, q, key, value, valid, scale, sel, out)
        return out.to(query.dtype)[:, None], None  # (B, 1, H, D)

    # ---- instrumentation --------------------------------------------------------------
    def _record(self, layer_idx, q, key, value, valid, scale, sel, out) -> None:
        from speechlm_kernels.tactic import captured_mass, dense_probs

        b, h, _ = q.shape
        g = key.shape[1]
        probs = dense_probs(q, key, valid, scale)  # (B, H, T)
        dense = (probs.view(b, g, h // g, -1) @ value.float()).view(b, h, -1)
        err = (out.float() - dense).norm(dim=-1) / dense.norm(dim=-1).clamp(min=1e-30)
        step = self._steps.get(layer_idx, 0)
        self._steps[layer_idx] = step + 1
        self.records.append(
            {
                "layer": layer_idx,
                "step": step,
                "context": key.shape[2],
                "budget": sel.budget.cpu(),  # (B, H)
                "union": sel.counts.repeat_interleave(h // g, dim=1).cpu(),  # (B, H)
                "mass": captured_mass(probs, sel).cpu(),  # (B, H)
                "rel_error": err.cpu(),  # (B, H)
            }
        )

    def reset_records(self) -> None:
        self.records.clear()
        self._steps.clear()


class TacticBackend(IndexedDecodeBackend):
    """Tactic sparse decode attention (see the module docstring and ``TacticConfig``)."""

    name: ClassVar[str] = "tactic"

    def __init__(self, **conf: Any) -> None:
        super().__init__()
        if isinstance(conf.get("sample_at"), list):
            conf["sample_at"] = tuple(conf["sample_at"])  # from YAML
        self.config = TacticConfig(**conf)

    def build(self, keys, key_valid):
        if self.config.mode == "oracle":
            return None
        from speechlm_kernels.tactic import build_index

        return build_index(
            keys, key_valid, cluster_size=self.config.cluster_size,
            iters=self.config.kmeans_iters, seed=self.config.seed,
            method=self.config.index_method,
        )  # fmt: skip

    def select(self, q, keys, index, key_valid, scale):
        from speechlm_kernels.tactic import oracle_select, tactic_select

        c = self.config
        if c.mode == "oracle":
            return oracle_select(q, keys, key_valid, p=c.p, scale=scale)
        return tactic_select(
            q, keys, index, key_valid, p=c.p, scale=scale, head_frac=c.head_frac,
            min_head=c.min_head, sample_at=c.sample_at, sample_width=c.sample_width,
            impl=c.impl,
        )  # fmt: skip
