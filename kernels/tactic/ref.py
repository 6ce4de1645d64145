"""Tactic sparse decode attention in plain PyTorch: the spec (arXiv 2502.12216).

Everything here is float32 and vectorised over ``(B, G, R)`` = (batch, KV head, query
head within the KV head's GQA group); ``H = G * R`` query heads. It is also the CPU path
(``impl="auto"`` picks it off CUDA), so it gathers instead of masking: a step reads the
centroids, the exactly scored leading tokens, two sampled segments, and the selected
tokens, never the whole cache.

Pieces, in the order a decode step uses them:

1. ``build_index`` (prefill / refresh): k-means on the keys of each ``(b, g)``;
   ``C = ceil(N / cluster_size)`` clusters, ``iters`` Lloyd iterations from one seeded
   init (C distinct tokens), Euclidean distance on the raw keys (what ``q . k`` sees).
   Stored as centroids ``(B, G, C, D)``, sizes ``(B, G, C)``, and a cluster-sorted token
   list ``perm (B, G, N)`` with ``offsets (B, G, C + 1)``: cluster ``c`` of ``(b, g)`` is
   ``perm[b, g, offsets[c]:offsets[c+1]]``. Padding tokens (``key_valid`` False) get no
   cluster (they sit after ``offsets[C]``).
2. ``tactic_select`` (every decode step, per query head):
   a. rank clusters by ``q . centroid``; walking clusters in that order gives an
      approximately sorted token order (rank position x = 1, 2, ...);
   b. exact scores for the leading clusters covering ``head_frac`` (default 1.5 %) of the
      valid tokens (at least ``min_head`` tokens) and for the dense recent tokens;
   c. two sampled segments of ``sample_width`` tokens centred at ``sample_at`` = (10 %,
      60 %) of the order give mean unnormalised weights ``y1, y2`` at ``x1, x2``; the
      tail of the sorted weights is modelled as ``y = a / x + b`` through those points
      (``a < 0`` falls back to the flat ``b = mean(y)``; the curve is clipped at 0);
   d. estimated total = exact head mass + integral of the fit over the tail + exact
      recent mass; the clusters are walked in rank order, head clusters with their exact
      mass and tail clusters with the fitted integral over their rank span, until the
      cumulative estimate reaches ``p * total - recent mass``;
   e. the chosen clusters of the ``R`` query heads of a group are united, so each KV
      token is read once per group; the dense recent tokens are appended.
3. ``sparse_decode_attention``: softmax attention of the ``R`` query heads over the
   group's token list; returns ``(out, lse)`` so partial results (split-K chunks, or a
   sparse part and a dense part) merge exactly by log-sum-exp (``merge_lse``).

``oracle_select`` (exact top-p per query head, united over the group) and
``quest_select`` (pages of 16, per-page min/max key bounds, top-K pages per query head)
return the same ``Selection`` so the same attention and instrumentation serve all three.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

NEG_INF = float("-inf")


class ClusterIndex(NamedTuple):
    """k-means clusters of the first ``n_tokens`` cached keys of one layer.

    Attributes:
        centroids: ``(B, G, C, D)`` float32 cluster means.
        sizes: ``(B, G, C)`` int64 valid tokens per cluster (0 for an empty cluster).
        offsets: ``(B, G, C + 1)`` int64 start of each cluster in ``perm``.
        perm: ``(B, G, N)`` int64 token positions sorted by cluster id (padding last).
        labels: ``(B, G, N)`` int64 cluster of each token position (C: padding).
        n_tokens: N, the cache length the index covers; later tokens are "recent".
    """

    centroids: torch.Tensor
    sizes: torch.Tensor
    offsets: torch.Tensor
    perm: torch.Tensor
    labels: torch.Tensor
    n_tokens: int


class Selection(NamedTuple):
    """Which cached tokens one decode step attends, per ``(b, g)`` (GQA group).

    Attributes:
        idx: ``(B, G, L)`` int64 token positions (selected clusters in cluster-id order,
            then the recent tokens); entries at ``>= counts`` are 0 and unused.
        counts: ``(B, G)`` int64 valid entries of ``idx``.
        budget: ``(B, H)`` int64 tokens each query head chose on its own (recent
            included), before the group union.
        est_total: ``(B, H)`` float32 estimated total softmax mass relative to
            ``exp(max exact score)`` (NaN for the oracle / Quest, which do not estimate).
    """

    idx: torch.Tensor
    counts: torch.Tensor
    budget: torch.Tensor
    est_total: torch.Tensor


# ---------------------------------------------------------------------------------------
# 1. clustering
# ---------------------------------------------------------------------------------------
def _assign(x: torch.Tensor, c: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Nearest centroid of each row: (N, D), (C, D) -> (N,) by argmax(2 x.c - |c|^2)."""
    # argmax(x.c - |c|^2 / 2) = argmax(2 x.c - |c|^2) exactly (halving and doubling are
    # exact in binary floating point), computed in place: one pass over the (chunk, C)
    # scores instead of three; at 32K tokens those passes cost as much as the matmul.
    half_c2 = (c * c).sum(-1) * 0.5  # (C,)
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for s in range(0, x.shape[0], chunk):  # chunks keep the (N, C) scores small
        out[s : s + chunk] = (x[s : s + chunk] @ c.T).sub_(half_c2).argmax(-1)
    return out


def kmeans(
    x: torch.Tensor, n_clusters: int, iters: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with one init (``n_clusters`` distinct rows drawn at random).

    Args:
        x: ``(N, D)`` float32 points (N >= n_clusters).
        n_clusters: C.
        iters: Lloyd iterations (assignment + update); empty clusters keep their centroid.

    Returns:
        ``(centroids (C, D), labels (N,))``, centroids the means of the final labels
        (an empty cluster keeps its last centroid and gets size 0).
    """
    n = x.shape[0]
    init = torch.randperm(n, generator=generator)[:n_clusters].to(x.device)
    c = x[init].clone()
    ones = torch.ones(n, dtype=x.dtype, device=x.device)
    labels = _assign(x, c)
    for _ in range(iters):
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        cnt = torch.zeros(n_clusters, dtype=x.dtype, device=x.device).index_add_(0, labels, ones)
        c = torch.where(cnt[:, None] > 0, sums / cnt.clamp(min=1)[:, None], c)
        labels = _assign(x, c)
    sums = torch.zeros_like(c).index_add_(0, labels, x)
    cnt = torch.zeros(n_clusters, dtype=x.dtype, device=x.device).index_add_(0, labels, ones)
    c = torch.where(cnt[:, None] > 0, sums / cnt.clamp(min=1)[:, None], c)
    return c, labels


def kmeans_two_level(
    x: torch.Tensor, n_clusters: int, iters: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means in two levels (as an IVF index is built): ``~sqrt(C)`` coarse clusters over
    all points, then each coarse cluster split by its own k-means into a share of the
    ``C`` fine clusters proportional to its size (at least 1).

    A point is compared with ``~sqrt(C)`` coarse centroids and the fine centroids of its
    coarse cluster only: ``~2 sqrt(C)`` distances per point and iteration instead of
    ``C`` (Lloyd's), e.g. ~90 instead of 2048 at 32K keys and 16 per cluster. Fine
    clusters never straddle coarse ones, so the clustering is coarser than Lloyd's at
    equal ``C``; the captured mass it leads to is measured, not assumed.

    Returns:
        ``(centroids (C', D), labels (N,))`` with ``C' <= C + sqrt(C)`` (the rounding up
        of small coarse clusters); labels index the centroids.
    """
    n = x.shape[0]
    c1 = min(n, max(1, round(math.sqrt(n_clusters))))
    if c1 <= 1 or n_clusters <= c1:
        return kmeans(x, n_clusters, iters, generator)
    _, coarse = kmeans(x, c1, iters, generator)
    members = torch.sort(coarse, stable=True).indices
    counts = torch.bincount(coarse, minlength=c1).tolist()
    cents, labels, start, base = [], torch.empty_like(coarse), 0, 0
    for n_j in counts:
        if n_j == 0:
            continue
        idx = members[start : start + n_j]
        start += n_j
        f_j = min(n_j, max(1, (n_j * n_clusters) // n))
        cen, lab = kmeans(x[idx], f_j, iters, generator)
        cents.append(cen)
        labels[idx] = lab + base
        base += f_j
    return torch.cat(cents), labels


def build_index(
    keys: torch.Tensor,
    key_valid: torch.Tensor | None = None,
    *,
    cluster_size: int = 16,
    iters: int = 10,
    seed: int = 0,
    method: str = "lloyd",
) -> ClusterIndex:
    """k-means index of ``keys`` per ``(b, g)``.

    Args:
        keys: ``(B, G, N, D)`` cached keys (any float dtype; clustered in float32).
        key_valid: ``(B, N)`` bool, False for padding (left-padded batches); None = all.
        cluster_size: average valid tokens per cluster (C = ceil(valid / cluster_size)).
        iters: Lloyd iterations.
        seed: seed of the init draw (same seed -> same index).
        method: ``"lloyd"`` (``kmeans``: every point against every centroid, ~N^2 D / 16
            per iteration) or ``"two_level"`` (``kmeans_two_level``: ~2 sqrt(N / 16)
            centroids per point; minutes -> seconds at 32K keys on a CPU).
    """
    if method not in ("lloyd", "two_level"):
        raise ValueError(f"method must be 'lloyd' or 'two_level', got {method!r}")
    fit = kmeans if method == "lloyd" else kmeans_two_level
    b, g, n, d = keys.shape
    valid = (
        torch.ones(b, n, dtype=torch.bool, device=keys.device) if key_valid is None else key_valid
    )
    gen = torch.Generator().manual_seed(seed)
    fits = {}  # (bi, gi) -> (valid positions, centroids, labels)
    for bi in range(b):
        pos = valid[bi].nonzero().squeeze(-1)  # (Nv,)
        if pos.numel() == 0:
            continue
        c_b = max(1, math.ceil(pos.numel() / cluster_size))
        for gi in range(g):
            fits[bi, gi] = (pos, *fit(keys[bi, gi, pos].float(), c_b, iters, gen))
    c_max = max([1] + [cen.shape[0] for _, cen, _ in fits.values()])
    centroids = keys.new_zeros(b, g, c_max, d, dtype=torch.float32)
    labels = torch.full((b, g, n), c_max, dtype=torch.long, device=keys.device)
    for (bi, gi), (pos, cen, lab) in fits.items():
        centroids[bi, gi, : cen.shape[0]] = cen
        labels[bi, gi, pos] = lab
    # cluster-sorted token list; label c_max (padding / no cluster) sorts last
    perm = torch.sort(labels, dim=-1, stable=True).indices  # (B, G, N)
    sizes = torch.zeros(b, g, c_max + 1, dtype=torch.long, device=keys.device)
    sizes.scatter_add_(-1, labels, torch.ones_like(labels))
    sizes = sizes[..., :c_max]
    offsets = torch.zeros(b, g, c_max + 1, dtype=torch.long, device=keys.device)
    offsets[..., 1:] = sizes.cumsum(-1)
    return ClusterIndex(centroids, sizes, offsets, perm, labels, n)


# ---------------------------------------------------------------------------------------
# 2. selection
# ---------------------------------------------------------------------------------------
def centroid_scores(q: torch.Tensor, centroids: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * q . centroid``: q ``(B, H, D)``, centroids ``(B, G, C, D)`` -> ``(B, H, C)``."""
    b, h, d = q.shape
    g = centroids.shape[1]
    qg = q.float().view(b, g, h // g, d)  # (B, G, R, D)
    return (qg @ centroids.float().transpose(-1, -2)).view(b, h, -1) * scale


def _tokens_at(
    pos: torch.Tensor,
    cum_end: torch.Tensor,
    cum_start: torch.Tensor,
    order: torch.Tensor,
    offsets: torch.Tensor,
    perm: torch.Tensor,
) -> torch.Tensor:
    """Token at rank positions ``pos (B, G, R, M)`` of each query head's cluster order."""
    b, g, r, _ = pos.shape
    rank = torch.searchsorted(cum_end, pos.contiguous(), right=True).clamp(
        max=cum_end.shape[-1] - 1
    )
    cid = order.gather(-1, rank)  # (B, G, R, M) cluster id
    start = offsets[:, :, None, :].expand(b, g, r, -1).gather(-1, cid)
    slot = start + pos - cum_start.gather(-1, rank)
    slot = slot.clamp(0, perm.shape[-1] - 1)
    return take_rows(perm[..., None], slot)[..., 0]


def _argsort_desc(x: torch.Tensor) -> torch.Tensor:
    """Indices sorting the last axis in descending order.

    On the CPU numpy's introsort is ~5x faster than ``torch.argsort`` on these short
    rows (a few thousand clusters); the sorted values are the same, only exactly tied
    scores may come out in another order.
    """
    if x.device.type != "cpu":
        return x.argsort(-1, descending=True)
    return torch.from_numpy(np.argsort(-x.detach().numpy(), axis=-1))


def take_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``x[b, g, idx[b, g, ...]]``: x ``(B, G, T, D)``, idx ``(B, G, ...)``.

    Returns ``(B, G, ..., D)``.

    Rows are copied whole with ``index_select`` on a 2D view of the buffer (no copy of
    the cache, strides of a larger cache buffer are honoured); ``gather`` with an index
    expanded over D, or plain advanced indexing, go element by element and are several
    times slower on the CPU.
    """
    b, g, _, d = x.shape
    s0, s1, s2, s3 = x.stride()
    shape = idx.shape
    ar_b = torch.arange(b, device=idx.device).view(b, *([1] * (idx.dim() - 1)))
    ar_g = torch.arange(g, device=idx.device).view(1, g, *([1] * (idx.dim() - 2)))
    if s3 == 1 and s2 == d and s0 % d == 0 and s1 % d == 0:
        rows = (b - 1) * (s0 // d) + (g - 1) * (s1 // d) + x.shape[2]
        flat = x.as_strided((rows, d), (d, 1))
        row = ar_b * (s0 // d) + ar_g * (s1 // d) + idx
        return flat.index_select(0, row.reshape(-1)).view(*shape, d)
    return x[ar_b, ar_g, idx]


def _gather_scores(q4: torch.Tensor, keys: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
    """Scores of q4 ``(B, G, R, D)`` with keys at ``tok (B, G, R, M)`` -> ``(B, G, R, M)``."""
    b, g, r, m = tok.shape
    d = keys.shape[-1]
    k = take_rows(keys, tok.reshape(b, g, r * m)).float()
    return (k.view(b, g, r, m, d) @ q4.unsqueeze(-1)).squeeze(-1)


def _tail_integral(a, b, n0, n):
    """Integral of ``max(a / x + b, 0)`` over ``x in [n0, n]`` (elementwise tensors)."""
    # where b < 0 the curve reaches 0 at x = a / -b: integrate only up to there
    stop = torch.where(b < 0, a / (-b).clamp(min=1e-30), torch.full_like(a, float("inf")))
    hi = torch.minimum(n, stop).clamp(min=n0)
    return a * torch.log(hi / n0) + b * (hi - n0)


def union_to_idx(
    sel_clusters: torch.Tensor,
    index: ClusterIndex,
    recent: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token list of the selected clusters and the valid recent tokens, in position order.

    Position order (not cluster order) makes the reads of a CPU gather as sequential as
    the selection allows: a diffuse head that keeps most clusters reads almost linearly.

    Args:
        sel_clusters: ``(B, G, C)`` bool, the group union.
        recent: ``(B, Tr)`` bool, which recent tokens (positions ``n_tokens + j``) are valid.
    """
    b, g, _ = sel_clusters.shape
    sel_ext = torch.cat([sel_clusters, sel_clusters.new_zeros(b, g, 1)], -1)  # C: padding
    take = sel_ext.gather(-1, index.labels)  # (B, G, N) by position
    take = torch.cat([take, recent[:, None, :].expand(b, g, recent.shape[-1])], -1)
    return _mask_to_idx(take)


def tactic_select(
    q: torch.Tensor,
    keys: torch.Tensor,
    index: ClusterIndex,
    key_valid: torch.Tensor | None = None,
    *,
    p: float = 0.9,
    scale: float | None = None,
    head_frac: float = 0.015,
    min_head: int = 16,
    sample_at: tuple[float, float] = (0.1, 0.6),
    sample_width: int = 32,
    scores_fn=None,
    gather_fn=None,
) -> Selection:
    """Tactic's per-step token selection (see the module docstring, step 2).

    Args:
        q: ``(B, H, D)`` decode queries.
        keys: ``(B, G, T, D)`` all cached keys, ``T >= index.n_tokens``; positions
            ``index.n_tokens .. T-1`` are the dense recent tokens.
        index: ``build_index`` of ``keys[:, :, :index.n_tokens]``.
        key_valid: ``(B, T)`` bool (padding False); None = all valid.
        p: target fraction of the softmax mass (``p >= 1`` keeps every cluster: dense).
        scale: softmax scale (default ``D ** -0.5``).
        head_frac, min_head: the exactly scored leading part of the cluster order.
        sample_at, sample_width: the two sampled segments of the tail fit.
        scores_fn: optional ``centroid_scores`` replacement (the Triton kernel).
        gather_fn: optional ``union_to_idx`` replacement (the Triton kernel).
    """
    b, h, d = q.shape
    g, t = keys.shape[1], keys.shape[2]
    r = h // g
    n = index.n_tokens
    scale = d**-0.5 if scale is None else scale
    dev = q.device
    valid = torch.ones(b, t, dtype=torch.bool, device=dev) if key_valid is None else key_valid
    q4 = q.float().view(b, g, r, d) * scale  # scale folded into q
    c = index.centroids.shape[2]

    # a. rank clusters per query head
    cs = (scores_fn or centroid_scores)(q, index.centroids, scale).view(b, g, r, c)
    cs = cs.masked_fill(index.sizes[:, :, None, :] == 0, NEG_INF)  # empty clusters last
    order = _argsort_desc(cs)  # (B, G, R, C)
    sizes_sorted = index.sizes[:, :, None, :].expand(b, g, r, c).gather(-1, order)
    cum_end = sizes_sorted.cumsum(-1)
    cum_start = cum_end - sizes_sorted
    n_valid = cum_end[..., -1:]  # (B, G, R, 1) clustered valid tokens

    # b. exact scores: leading clusters and recent tokens
    n_head = (n_valid.float() * head_frac).ceil().long().clamp(min=min_head)
    head_rank = cum_start < n_head  # (B, G, R, C) prefix of the order
    n_head_tok = (sizes_sorted * head_rank).sum(-1, keepdim=True)  # tokens actually scored
    lh = max(1, int(n_head_tok.max()))
    pos = torch.arange(lh, device=dev).expand(b, g, r, lh).contiguous()
    tok = _tokens_at(pos, cum_end, cum_start, order, index.offsets, index.perm)
    s_head = _gather_scores(q4, keys, tok).masked_fill(pos >= n_head_tok, NEG_INF)
    rec_valid = valid[:, n:t]  # (B, Tr)
    s_rec = (keys[:, :, n:t].float()[:, :, None] @ q4.unsqueeze(-1)).squeeze(-1)  # (B,G,R,Tr)
    s_rec = s_rec.masked_fill(~rec_valid[:, None, None, :], NEG_INF)
    m = s_head.amax(-1)
    if s_rec.shape[-1]:
        m = torch.maximum(m, s_rec.amax(-1))
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))[..., None]  # (B, G, R, 1)
    e_head = torch.exp(s_head - m)
    head_mass = e_head.sum(-1)
    rec_mass = torch.exp(s_rec - m).sum(-1)
    # exact mass per head cluster (by rank)
    rank_of = torch.searchsorted(cum_end, pos, right=True).clamp(max=c - 1)
    cl_mass = torch.zeros(b, g, r, c, dtype=torch.float32, device=dev)
    cl_mass.scatter_add_(-1, rank_of, e_head)

    # c. fit y = a / x + b on two sampled segments of the tail
    nv = n_valid.float()
    half = sample_width // 2
    xs, ys = [], []
    for frac in sample_at:
        centre = torch.maximum((nv * frac).floor(), n_head_tok.float() + half)
        centre = torch.minimum(centre, nv - half - 1).clamp(min=0)
        seg = centre.long() + torch.arange(-half, sample_width - half, device=dev)
        seg_ok = (seg >= n_head_tok) & (seg < n_valid)
        seg_tok = _tokens_at(
            seg.clamp(0, None), cum_end, cum_start, order, index.offsets, index.perm
        )
        e_seg = torch.exp(_gather_scores(q4, keys, seg_tok) - m) * seg_ok
        xs.append(centre.squeeze(-1) + 1.0)  # 1-based rank of the segment centre
        ys.append(e_seg.sum(-1) / seg_ok.sum(-1).clamp(min=1))
    (x1, x2), (y1, y2) = xs, ys
    a = (y1 - y2) / (1.0 / x1 - 1.0 / x2).clamp(min=1e-12)
    flat = (a < 0) | ~torch.isfinite(a) | (x2 <= x1)
    a = torch.where(flat, torch.zeros_like(a), a)
    b_fit = torch.where(flat, (y1 + y2) / 2, y1 - a / x1)
    n0 = n_head_tok.squeeze(-1).float().clamp(min=1.0)
    tail_mass = torch.where(
        n_valid.squeeze(-1) > n_head_tok.squeeze(-1),
        _tail_integral(a, b_fit, n0, nv.squeeze(-1)),
        torch.zeros_like(a),
    )

    # d. walk clusters in rank order until the estimate reaches p * total
    est_total = head_mass + tail_mass + rec_mass
    target = p * est_total - rec_mass  # (B, G, R)
    lo = torch.maximum(cum_start.float(), n0[..., None])
    hi = torch.maximum(cum_end.float(), n0[..., None])
    fit_mass = _tail_integral(a[..., None], b_fit[..., None], lo, hi) - 0.0
    est_cl = torch.where(head_rank, cl_mass, fit_mass.clamp(min=0))
    before = est_cl.cumsum(-1) - est_cl
    chosen_rank = (before < target[..., None]) | (p >= 1.0)  # p >= 1: keep every cluster
    chosen_rank &= sizes_sorted > 0
    chosen = torch.zeros_like(chosen_rank).scatter_(-1, order, chosen_rank)  # by cluster id
    budget = (index.sizes[:, :, None, :] * chosen).sum(-1) + rec_valid.sum(-1)[:, None, None]

    # e. union over the group, then the token list
    idx, counts = (gather_fn or union_to_idx)(chosen.any(2), index, rec_valid)
    return Selection(idx, counts, budget.view(b, h), est_total.view(b, h))


def oracle_select(
    q: torch.Tensor,
    keys: torch.Tensor,
    key_valid: torch.Tensor | None = None,
    *,
    p: float = 0.9,
    scale: float | None = None,
) -> Selection:
    """Exact top-p: per query head the fewest tokens whose true mass reaches ``p``.

    Reads every key (it is the evaluation oracle, not a fast path); the group union
    is returned in position order.
    """
    b, h, d = q.shape
    g, t = keys.shape[1], keys.shape[2]
    r = h // g
    scale = d**-0.5 if scale is None else scale
    prob = dense_probs(q, keys, key_valid, scale).view(b, g, r, t)
    sp, si = prob.sort(-1, descending=True)
    before = sp.cumsum(-1) - sp
    keep_sorted = (before < p) & (sp > 0)
    keep = torch.zeros_like(keep_sorted).scatter_(-1, si, keep_sorted)  # (B, G, R, T)
    budget = keep.sum(-1).view(b, h)
    idx, counts = _mask_to_idx(keep.any(2))
    nan = torch.full((b, h), float("nan"), device=q.device)
    return Selection(idx, counts, budget, nan)


def _mask_to_idx(take: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, G, T)`` bool -> position-ordered token list ``(B, G, L)`` and counts."""
    b, g, t = take.shape
    counts = take.sum(-1)
    width = max(1, int(counts.max()))
    dst = torch.where(take, take.long().cumsum(-1) - 1, width)
    idx = torch.zeros(b, g, width + 1, dtype=torch.long, device=take.device)
    idx.scatter_(-1, dst, torch.arange(t, device=take.device).expand(b, g, t).contiguous())
    return idx[..., :width], counts


# ---------------------------------------------------------------------------------------
# Quest-style fixed-budget baseline
# ---------------------------------------------------------------------------------------
class PageIndex(NamedTuple):
    """Per-page elementwise key bounds of the first ``n_tokens`` keys.

    Attributes:
        kmin, kmax: ``(B, G, P, D)`` float32 min / max over the page's valid keys
            (+inf / -inf for a page with none).
        page_size: tokens per page (the last page may be partial).
        n_tokens: cache length covered; later tokens are "recent" (dense).
    """

    kmin: torch.Tensor
    kmax: torch.Tensor
    page_size: int
    n_tokens: int


def build_pages(
    keys: torch.Tensor, key_valid: torch.Tensor | None = None, *, page_size: int = 16
) -> PageIndex:
    """Quest's page summaries of ``keys (B, G, N, D)``; N need not be a page multiple."""
    b, g, n, d = keys.shape
    pages = math.ceil(n / page_size)
    pad = pages * page_size - n
    k = keys.float()
    valid = (
        torch.ones(b, n, dtype=torch.bool, device=keys.device) if key_valid is None else key_valid
    )
    ok = torch.nn.functional.pad(valid, (0, pad), value=False)[:, None, :, None]
    kp = torch.nn.functional.pad(k, (0, 0, 0, pad))
    kmin = kp.masked_fill(~ok, float("inf")).view(b, g, pages, page_size, d).amin(3)
    kmax = kp.masked_fill(~ok, NEG_INF).view(b, g, pages, page_size, d).amax(3)
    return PageIndex(kmin, kmax, page_size, n)


def quest_select(
    q: torch.Tensor,
    keys: torch.Tensor,
    pages: PageIndex,
    key_valid: torch.Tensor | None = None,
    *,
    top_k: int = 64,
    scale: float | None = None,
) -> Selection:
    """Top-``top_k`` pages per query head by the upper bound ``sum_d max(q_d min_d, q_d max_d)``,
    united over the group, plus the dense recent tokens (position order)."""
    b, h, d = q.shape
    g, t = keys.shape[1], keys.shape[2]
    r = h // g
    n, ps = pages.n_tokens, pages.page_size
    n_pages = pages.kmin.shape[2]
    dev = q.device
    valid = torch.ones(b, t, dtype=torch.bool, device=dev) if key_valid is None else key_valid
    qg = q.float().view(b, g, r, d)
    empty = ~torch.isfinite(pages.kmin).all(-1)  # (B, G, P)
    lo = pages.kmin.masked_fill(empty[..., None], 0.0)
    hi = pages.kmax.masked_fill(empty[..., None], 0.0)
    # sum_d max(q_d lo_d, q_d hi_d) = q+ . hi + q- . lo: two matmuls, no (R, P, D) tensor
    ub = qg.clamp(min=0) @ hi.transpose(-1, -2) + qg.clamp(max=0) @ lo.transpose(-1, -2)
    ub = ub.masked_fill(empty[:, :, None], NEG_INF)  # (B, G, R, P)
    kk = min(top_k, n_pages)
    top = ub.topk(kk, dim=-1).indices
    chosen = torch.zeros(b, g, r, n_pages, dtype=torch.bool, device=dev)
    chosen.scatter_(-1, top, True)
    chosen &= ~empty[:, :, None]
    tok_page = torch.arange(n, device=dev) // ps
    take_r = chosen[..., tok_page] & valid[:, None, None, :n]  # (B, G, R, N)
    rec = valid[:, None, None, n:t].expand(b, g, r, t - n)
    take_r = torch.cat([take_r, rec], -1)
    budget = take_r.sum(-1).view(b, h)
    idx, counts = _mask_to_idx(take_r.any(2))
    nan = torch.full((b, h), float("nan"), device=dev)
    return Selection(idx, counts, budget, nan)


# ---------------------------------------------------------------------------------------
# 3. attention over a selection
# ---------------------------------------------------------------------------------------
def sparse_decode_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    idx: torch.Tensor,
    counts: torch.Tensor,
    scale: float | None = None,
    *,
    dense_above: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of each group's query heads over that group's token list.

    One ``(b, g)`` at a time, reading exactly ``counts[b, g]`` rows: lists are ragged
    (a diffuse head may need most of the context while its neighbours need 1 %), and
    padding every list to the longest would read the longest list for every group. A
    list longer than ``dense_above`` of the cache is attended as a masked dense pass
    over the group's keys (same result; a copy of most rows would cost more).

    Args:
        q: ``(B, H, D)``; k, v: ``(B, G, T, D)`` (any strides); idx: ``(B, G, L)`` token
            positions, valid below ``counts (B, G)``.

    Returns:
        ``out (B, H, D)`` in float32 and ``lse (B, H)`` (natural log of the sum of
        ``exp(scale * q.k)``; -inf and out 0 for an empty list).
    """
    b, h, d = q.shape
    g = k.shape[1]
    r = h // g
    scale = d**-0.5 if scale is None else scale
    qs = q.float().view(b, g, r, d) * scale
    out = torch.zeros(b, g, r, v.shape[-1], dtype=torch.float32, device=q.device)
    lse = torch.full((b, g, r), NEG_INF, dtype=torch.float32, device=q.device)
    t = k.shape[2]
    for bi, gi in torch.nonzero(counts > 0).tolist():
        rows = idx[bi, gi, : counts[bi, gi]]
        if rows.numel() > dense_above * t:
            # most of the context: reading all of it once beats copying most of it
            keep = torch.zeros(t, dtype=torch.bool, device=q.device).index_fill_(0, rows, True)
            ks, vs = k[bi, gi].float(), v[bi, gi].float()
            s = (qs[bi, gi] @ ks.T).masked_fill(~keep, NEG_INF)  # (R, T)
        else:
            ks = k[bi, gi].index_select(0, rows).float()  # (L, D)
            vs = v[bi, gi].index_select(0, rows).float()
            s = qs[bi, gi] @ ks.T  # (R, L)
        lse[bi, gi] = torch.logsumexp(s, -1)
        out[bi, gi] = torch.softmax(s, -1) @ vs
    return out.view(b, h, -1), lse.view(b, h)


def merge_lse(
    o1: torch.Tensor, lse1: torch.Tensor, o2: torch.Tensor, lse2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact merge of two softmax-attention partials over disjoint token sets."""
    lse = torch.logaddexp(lse1, lse2)
    safe = torch.where(torch.isfinite(lse), lse, 0)
    w1 = torch.exp(lse1 - safe)[..., None]
    w2 = torch.exp(lse2 - safe)[..., None]
    return o1 * w1 + o2 * w2, lse


def dense_probs(
    q: torch.Tensor, keys: torch.Tensor, key_valid: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """True softmax weights ``(B, H, T)`` of decode queries over all keys (evaluation)."""
    b, h, d = q.shape
    g, t = keys.shape[1], keys.shape[2]
    s = (q.float().view(b, g, h // g, d) * scale) @ keys.float().transpose(-1, -2)
    if key_valid is not None:
        s = s.masked_fill(~key_valid[:, None, None, :], NEG_INF)
    return torch.softmax(s, -1).view(b, h, t)


def captured_mass(probs: torch.Tensor, sel: Selection) -> torch.Tensor:
    """True mass ``(B, H)`` of the tokens a selection attends (the group union)."""
    b, h, t = probs.shape
    g = sel.idx.shape[1]
    ok = torch.arange(sel.idx.shape[-1], device=probs.device) < sel.counts[..., None]
    slot = torch.where(ok, sel.idx, t)  # unused slots go to a dropped bin
    take = torch.zeros(b, g, t + 1, dtype=torch.bool, device=probs.device)
    take = take.scatter_(-1, slot, True)[..., :t]
    return (probs.view(b, g, h // g, t) * take[:, :, None]).sum(-1).view(b, h)


def tactic_decode_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    index: ClusterIndex,
    key_valid: torch.Tensor | None = None,
    *,
    p: float = 0.9,
    scale: float | None = None,
    **select_kwargs,
) -> tuple[torch.Tensor, Selection]:
    """One Tactic decode step: select, then attend. Returns ``(out (B, H, D), selection)``."""
    sel = tactic_select(q, k, index, key_valid, p=p, scale=scale, **select_kwargs)
    out, _ = sparse_decode_attention(q, k, v, sel.idx, sel.counts, scale)
    return out, sel
