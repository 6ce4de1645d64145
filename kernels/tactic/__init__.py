"""Tactic sparse decode attention (arXiv 2502.12216): clustering + distribution fitting.

>>> import torch
>>> from speechlm_kernels.tactic import build_index, tactic_decode
>>> k = torch.randn(1, 2, 100, 16); v = torch.randn(1, 2, 100, 16); q = torch.randn(1, 4, 16)
>>> index = build_index(k[:, :, :90], cluster_size=8)
>>> out, sel = tactic_decode(q, k, v, index, p=0.9)
>>> out.shape, sel.idx.shape[:2]
(torch.Size([1, 4, 16]), torch.Size([1, 2]))

``impl="auto"`` runs the Triton kernels on CUDA and the PyTorch reference (``ref.py``, the
spec) elsewhere; ``impl="triton"`` forces the kernels (on CPU only with
``TRITON_INTERPRET=1``). See ``README.md`` for the choices the paper leaves open.
"""

from __future__ import annotations

import importlib.util

from speechlm_kernels.tactic import ref
from speechlm_kernels.tactic.ref import (
    ClusterIndex,
    PageIndex,
    Selection,
    build_index,
    build_pages,
    captured_mass,
    dense_probs,
    merge_lse,
    oracle_select,
    quest_select,
)

# find_spec, not ``import triton``: that name would shadow this package's ``triton`` module
HAS_TRITON = importlib.util.find_spec("triton") is not None


def _use_triton(impl: str, x) -> bool:
    if impl not in ("auto", "triton", "ref"):
        raise ValueError(f"impl must be 'auto', 'triton' or 'ref', got {impl!r}")
    if impl == "triton" and not HAS_TRITON:
        raise RuntimeError("impl='triton' but triton is not installed")
    return impl == "triton" or (impl == "auto" and HAS_TRITON and x.is_cuda)


def sparse_decode_attention(q, k, v, idx, counts, scale=None, *, impl: str = "auto"):
    """Attention over per-group token lists; see ``ref.sparse_decode_attention``."""
    if _use_triton(impl, q):
        from speechlm_kernels.tactic import triton as tk

        return tk.sparse_decode_attention(q, k, v, idx, counts, scale)
    return ref.sparse_decode_attention(q, k, v, idx, counts, scale)


def tactic_select(q, keys, index, key_valid=None, *, impl: str = "auto", **kwargs) -> Selection:
    """Tactic's per-step selection; see ``ref.tactic_select`` for the arguments."""
    if _use_triton(impl, q):
        from speechlm_kernels.tactic import triton as tk

        kwargs.update(scores_fn=tk.centroid_scores, gather_fn=tk.gather_clusters)
    return ref.tactic_select(q, keys, index, key_valid, **kwargs)


def tactic_decode(q, k, v, index, key_valid=None, *, p=0.9, scale=None, impl="auto", **kwargs):
    """Select (``tactic_select``) then attend (``sparse_decode_attention``).

    Args:
        q: ``(B, H, D)``; k, v: ``(B, G, T, D)`` cached keys/values (this step's included);
            index: ``build_index`` of the first ``index.n_tokens`` keys.

    Returns:
        ``(out (B, H, D) float32, Selection)``.
    """
    sel = tactic_select(q, k, index, key_valid, p=p, scale=scale, impl=impl, **kwargs)
    out, _ = sparse_decode_attention(q, k, v, sel.idx, sel.counts, scale, impl=impl)
    return out, sel


__all__ = [
    "HAS_TRITON",
    "ClusterIndex",
    "PageIndex",
    "Selection",
    "build_index",
    "build_pages",
    "captured_mass",
    "dense_probs",
    "merge_lse",
    "oracle_select",
    "quest_select",
    "sparse_decode_attention",
    "tactic_decode",
    "tactic_select",
]
