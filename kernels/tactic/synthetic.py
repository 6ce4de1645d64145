"""Synthetic decode-attention heads with the shapes of attention seen in long-context LLMs.

No pretrained long-context model is available here, so accuracy and speed are measured
on keys/queries built to produce the attention patterns reported for such models. Each
KV head gets one type; its ``R`` query heads are independent draws of that type.

* ``retrieval``: a few "needle" keys (8 per head) aligned with the query dominate.
* ``streaming``: an attention sink at position 0 plus a decaying recency bias (the
  scores rise over the last ~0.5 % of tokens).
* ``clustered``: the query points at one or two key topics.
* ``diffuse``: a weak query: weights spread over most tokens.

All generators are seeded (``torch.Generator``) and return float32
``q (B, H, D)``, ``k``, ``v (B, G, T, D)``.
"""

from __future__ import annotations

import torch

HEAD_TYPES = ("retrieval", "streaming", "clustered", "diffuse")
# Llama-3-8B-like mix over 8 KV heads; see README ("benchmark data")
DEFAULT_MIX = ("retrieval", "streaming", "clustered", "clustered",
               "retrieval", "streaming", "clustered", "diffuse")  # fmt: skip


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def make_head(
    kind: str, t: int, d: int, r: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One KV head of type ``kind``: ``q (R, D)``, ``k (T, D)``, ``v (T, D)`` float32.

    Keys of every type share the structure measured in LLM key caches: anisotropic and
    grouped by topic (a mixture of 64 Gaussian means plus noise; 1 % of tokens are
    outliers with 2x norm). The ``R`` queries of a group share a direction ``u`` (plus
    30 % per-head noise), and relevance is written into the keys along ``u``: a bonus of
    ``s`` score units (``q . k / sqrt(D)``) is ``s * sqrt(D) / |q|`` along ``u``. The
    unstructured part of the scores has a spread of about 0.5.
    """
    sd = d**0.5
    topics = 64
    means = torch.randn(topics, d, generator=gen)
    lab = torch.randint(0, topics, (t,), generator=gen)
    k = means[lab] + 0.6 * torch.randn(t, d, generator=gen)
    out = torch.randperm(t, generator=gen)[: max(1, t // 100)]
    k[out] *= 2.0
    v = torch.randn(t, d, generator=gen)
    u = _unit(torch.randn(d, generator=gen))
    qn = 0.4 * sd
    noise = _unit(torch.randn(r, d, generator=gen)) * 0.3
    q = _unit(u[None] + noise) * qn
    unit_bonus = u * sd / qn  # adds ~1 score unit

    def bonus(tokens, score) -> None:
        k[tokens] += unit_bonus * score

    topic = torch.randperm(topics, generator=gen)[:2]
    if kind == "retrieval":
        bonus(torch.randperm(t, generator=gen)[:8], 12.0)  # needles
        bonus(lab == topic[0], 4.0)  # the related topic
    elif kind == "streaming":
        bonus(0, 12.0)  # sink
        w = max(8, t // 200)
        recency = torch.exp(-torch.arange(t - 1, -1, -1, dtype=torch.float32) / w)  # (T,)
        k += recency[:, None] * unit_bonus * 9.0
        bonus(lab == topic[0], 3.0)
    elif kind == "clustered":
        bonus(lab == topic[0], 7.0)
        bonus(lab == topic[1], 4.0)
    elif kind != "diffuse":
        raise ValueError(f"unknown head type {kind!r}; choose from {HEAD_TYPES}")
    return q, k, v


def make_batch(
    batch: int,
    t: int,
    *,
    mix: tuple[str, ...] = DEFAULT_MIX,
    r: int = 4,
    d: int = 128,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``q (B, G*R, D)``, ``k, v (B, G, T, D)`` with KV head ``g`` of type ``mix[g]``."""
    gen = torch.Generator().manual_seed(seed)
    g = len(mix)
    q = torch.empty(batch, g * r, d)
    k = torch.empty(batch, g, t, d, dtype=dtype)
    v = torch.empty(batch, g, t, d, dtype=dtype)
    for b in range(batch):
        for gi, kind in enumerate(mix):
            qh, kh, vh = make_head(kind, t, d, r, gen)
            q[b, gi * r : (gi + 1) * r] = qh
            k[b, gi] = kh
            v[b, gi] = vh
    return q.to(dtype), k, v
