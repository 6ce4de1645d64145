"""Triton kernels for Tactic's hot parts; each mirrors a function of ``ref.py``.

* ``centroid_scores``: ``scale * q . centroid`` for every query head of a group against
  that group's centroids (one program per ``(b, g)`` and block of clusters; the ``R``
  query heads share each centroid load).
* ``gather_clusters``: the selection gather: copies the token positions of each
  selected cluster (``perm[offsets[c]:offsets[c+1]]``) to its slot of the group's token
  list (one program per selected cluster; the list is in cluster order, the
  reference's in position order: same set, and attention is order-free). The list is a
  plain array of positions, so the attention kernel can sit behind a paged cache
  (positions -> page table) unchanged.
* ``sparse_decode_attention``: split-K decode attention over a token list with the GQA
  group in the M dimension of ``tl.dot`` (each KV token is loaded once for the ``R``
  query heads); the splits' partials are merged by log-sum-exp on the host.

Launchers take CPU tensors under ``TRITON_INTERPRET=1`` (no ``is_cuda`` checks). Ranking,
fitting and the walk stay in PyTorch: they are small ``(B, H, C)`` tensor operations,
and a sort is no kernel's strength.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from speechlm_kernels.tactic.ref import ClusterIndex


def _pow2(x: int, floor: int = 16) -> int:
    return max(floor, triton.next_power_of_2(int(x)))


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs: exact products (tf32 would drift from the reference); others: native
    return "ieee" if dtype == torch.float32 else "tf32"


# ---------------------------------------------------------------------------------------
@triton.jit
def _centroid_scores_kernel(
    q_ptr, c_ptr, out_ptr,
    sqb, sqh, sqd,
    scb, scg, scc, scd,
    sob, soh, soc,
    G, R, C, D, scale,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
    PREC: tl.constexpr,
):  # fmt: skip
    pid_bg = tl.program_id(0)
    pid_c = tl.program_id(1)
    b = pid_bg // G
    g = pid_bg % G
    rr = tl.arange(0, BLOCK_R)
    cc = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    dd = tl.arange(0, BLOCK_D)
    heads = g * R + rr
    q = tl.load(
        q_ptr + b * sqb + heads[:, None] * sqh + dd[None, :] * sqd,
        mask=(rr[:, None] < R) & (dd[None, :] < D),
        other=0.0,
    )  # (BLOCK_R, BLOCK_D)
    c = tl.load(
        c_ptr + b * scb + g * scg + cc[None, :] * scc + dd[:, None] * scd,
        mask=(cc[None, :] < C) & (dd[:, None] < D),
        other=0.0,
    )  # (BLOCK_D, BLOCK_C)
    s = tl.dot(q.to(c.dtype), c, input_precision=PREC) * scale  # (BLOCK_R, BLOCK_C)
    tl.store(
        out_ptr + b * sob + heads[:, None] * soh + cc[None, :] * soc,
        s,
        mask=(rr[:, None] < R) & (cc[None, :] < C),
    )


def centroid_scores(q: torch.Tensor, centroids: torch.Tensor, scale: float) -> torch.Tensor:
    """Triton ``ref.centroid_scores``: q ``(B, H, D)``, centroids ``(B, G, C, D)`` -> ``(B, H, C)``
    float32."""
    b, h, d = q.shape
    g, c = centroids.shape[1], centroids.shape[2]
    r = h // g
    out = torch.empty(b, h, c, dtype=torch.float32, device=q.device)
    block_c = 64
    grid = (b * g, triton.cdiv(c, block_c))
    _centroid_scores_kernel[grid](
        q, centroids, out,
        *q.stride(), *centroids.stride(), *out.stride(),
        g, r, c, d, float(scale),
        BLOCK_R=_pow2(r), BLOCK_C=block_c, BLOCK_D=_pow2(d),
        PREC=_precision(centroids.dtype),
    )  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------
@triton.jit
def _gather_clusters_kernel(
    sel_ptr, dst_ptr, nsel_ptr, off_ptr, perm_ptr, idx_ptr,
    s_sel_bg, s_off_bg, s_perm_bg, s_idx_bg,
    BLOCK: tl.constexpr,
):  # fmt: skip
    pid_bg = tl.program_id(0)
    j = tl.program_id(1)
    nsel = tl.load(nsel_ptr + pid_bg)
    if j < nsel:
        c = tl.load(sel_ptr + pid_bg * s_sel_bg + j)
        dst = tl.load(dst_ptr + pid_bg * s_sel_bg + j)
        start = tl.load(off_ptr + pid_bg * s_off_bg + c)
        end = tl.load(off_ptr + pid_bg * s_off_bg + c + 1)
        for i in range(0, end - start, BLOCK):
            o = i + tl.arange(0, BLOCK)
            ok = o < end - start
            tok = tl.load(perm_ptr + pid_bg * s_perm_bg + start + o, mask=ok, other=0)
            tl.store(idx_ptr + pid_bg * s_idx_bg + dst + o, tok, mask=ok)


def gather_clusters(
    sel_clusters: torch.Tensor, index: ClusterIndex, recent: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton ``ref._union_to_idx``: token list of the selected clusters, then recent tokens.

    Args:
        sel_clusters: ``(B, G, C)`` bool group union.
        recent: ``(B, Tr)`` bool validity of the recent tokens.

    Returns:
        ``idx (B, G, L)`` int64 and ``counts (B, G)``: the reference's tokens, but in
        cluster-id order (one program copies one cluster), then the recent positions.
        Attention does not depend on the order.
    """
    b, g, c = sel_clusters.shape
    n = index.n_tokens
    dev = sel_clusters.device
    sizes = index.sizes * sel_clusters
    nsel = sel_clusters.sum(-1)  # (B, G)
    # selected cluster ids first, in id order (stable sort of "not selected")
    sel_ids = torch.sort((~sel_clusters).to(torch.int8), dim=-1, stable=True).indices
    sel_sizes = sizes.gather(-1, sel_ids)
    dst = sel_sizes.cumsum(-1) - sel_sizes  # exclusive prefix sum: slot of each cluster
    n_sparse = sizes.sum(-1)  # (B, G)
    n_rec = recent.sum(-1)  # (B,)
    counts = n_sparse + n_rec[:, None]
    width = max(1, int(counts.max()))
    idx = torch.zeros(b, g, width, dtype=torch.long, device=dev)
    perm = index.perm.contiguous()
    offsets = index.offsets.contiguous()
    sel_ids, dst, nsel = sel_ids.contiguous(), dst.contiguous(), nsel.contiguous()
    if c:
        _gather_clusters_kernel[(b * g, c)](
            sel_ids, dst, nsel, offsets, perm, idx,
            c, offsets.shape[-1], perm.shape[-1], width,
            BLOCK=16,
        )  # fmt: skip
    tr = recent.shape[-1]
    if tr:  # recent tokens: a handful, appended on the host
        rec_pos = torch.arange(n, n + tr, device=dev).expand(b, tr)
        rank = recent.long().cumsum(-1) - 1  # (B, Tr)
        slot = n_sparse[..., None] + rank[:, None, :]  # (B, G, Tr)
        slot = torch.where(recent[:, None, :], slot, width)
        ext = torch.cat([idx, idx.new_zeros(b, g, 1)], -1)
        ext.scatter_(-1, slot, rec_pos[:, None, :].expand(b, g, tr).contiguous())
        idx = ext[..., :width]
    return idx, counts


# ---------------------------------------------------------------------------------------
@triton.jit
def _sparse_decode_kernel(
    q_ptr, k_ptr, v_ptr, idx_ptr, cnt_ptr, o_ptr, lse_ptr,
    sqb, sqh, sqd,
    skb, skg, skt, skd,
    svb, svg, svt, svd,
    s_idx_bg, sob, soh, sos, sod, slb, slh, sls,
    G, R, D, chunk, scale,
    BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    PREC: tl.constexpr,
):  # fmt: skip
    pid_bg = tl.program_id(0)
    split = tl.program_id(1)
    b = pid_bg // G
    g = pid_bg % G
    rr = tl.arange(0, BLOCK_R)
    dd = tl.arange(0, BLOCK_D)
    heads = g * R + rr
    rmask = rr < R
    dmask = dd < D
    q = tl.load(
        q_ptr + b * sqb + heads[:, None] * sqh + dd[None, :] * sqd,
        mask=rmask[:, None] & dmask[None, :],
        other=0.0,
    )
    q = (q.to(tl.float32) * scale).to(k_ptr.dtype.element_ty)  # (BLOCK_R, BLOCK_D)
    count = tl.load(cnt_ptr + pid_bg)
    lo = split * chunk
    hi = tl.minimum(lo + chunk, count)
    m_i = tl.full((BLOCK_R,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_R,), tl.float32)
    acc = tl.zeros((BLOCK_R, BLOCK_D), tl.float32)
    k_base = k_ptr + b * skb + g * skg
    v_base = v_ptr + b * svb + g * svg
    for start in range(lo, hi, BLOCK_N):
        nn = start + tl.arange(0, BLOCK_N)
        nmask = nn < hi
        tok = tl.load(idx_ptr + pid_bg * s_idx_bg + nn, mask=nmask, other=0)
        kt = tl.load(
            k_base + tok[None, :] * skt + dd[:, None] * skd,
            mask=nmask[None, :] & dmask[:, None],
            other=0.0,
        )  # (BLOCK_D, BLOCK_N)
        s = tl.dot(q, kt, input_precision=PREC)  # (BLOCK_R, BLOCK_N)
        s = tl.where(nmask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        pw = tl.exp(s - m_safe[:, None])
        vt = tl.load(
            v_base + tok[:, None] * svt + dd[None, :] * svd,
            mask=nmask[:, None] & dmask[None, :],
            other=0.0,
        )  # (BLOCK_N, BLOCK_D)
        acc = acc * alpha[:, None] + tl.dot(pw.to(vt.dtype), vt, input_precision=PREC)
        l_i = l_i * alpha + tl.sum(pw, 1)
        m_i = m_new
    ok = l_i > 0
    out = acc / tl.where(ok, l_i, 1.0)[:, None]
    lse = tl.where(ok, m_i + tl.log(tl.where(ok, l_i, 1.0)), float("-inf"))
    tl.store(
        o_ptr + b * sob + heads[:, None] * soh + split * sos + dd[None, :] * sod,
        out,
        mask=rmask[:, None] & dmask[None, :],
    )
    tl.store(lse_ptr + b * slb + heads * slh + split * sls, lse, mask=rmask)


def sparse_decode_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    idx: torch.Tensor,
    counts: torch.Tensor,
    scale: float | None = None,
    *,
    splits: int | None = None,
    block_n: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton ``ref.sparse_decode_attention`` (split-K, partials merged by log-sum-exp).

    Args:
        splits: chunks of the token list run in parallel per ``(b, g)``; default aims at
            ~4 programs per SM-sized unit of work (at most 64 splits, >= 256 tokens each).
    """
    b, h, d = q.shape
    g, width = k.shape[1], idx.shape[-1]
    r = h // g
    scale = d**-0.5 if scale is None else scale
    if splits is None:
        splits = max(1, min(64, triton.cdiv(width, 256)))
    chunk = triton.cdiv(triton.cdiv(width, splits), block_n) * block_n
    splits = max(1, triton.cdiv(width, chunk))
    idx = idx.contiguous()
    counts = counts.contiguous()
    o = torch.empty(b, h, splits, d, dtype=torch.float32, device=q.device)
    lse = torch.empty(b, h, splits, dtype=torch.float32, device=q.device)
    _sparse_decode_kernel[(b * g, splits)](
        q, k, v, idx, counts, o, lse,
        *q.stride(), *k.stride(), *v.stride(),
        idx.shape[-1], *o.stride(), *lse.stride(),
        g, r, d, chunk, float(scale),
        BLOCK_R=_pow2(r), BLOCK_N=block_n, BLOCK_D=_pow2(d),
        PREC=_precision(k.dtype),
    )  # fmt: skip
    if splits == 1:
        return o[:, :, 0], lse[:, :, 0]
    return merge_splits(o, lse)


def merge_splits(o: torch.Tensor, lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-sum-exp merge of split partials ``o (B, H, S, D)``, ``lse (B, H, S)`` (as
    ``ref.merge_lse`` applied S - 1 times)."""
    total = torch.logsumexp(lse, -1)  # (B, H)
    safe = torch.where(torch.isfinite(total), total, 0)
    w = torch.exp(lse - safe[..., None])  # (B, H, S), 0 for empty splits
    return (w[..., None] * o).sum(2), total
