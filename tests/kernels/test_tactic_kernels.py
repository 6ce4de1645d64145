"""Tactic kernels: Triton against the PyTorch reference (``ref.py``, the spec), and the
reference against dense attention and the method's guarantees.

Shapes are small and deliberately awkward: token counts that are not multiples of the
cluster, page or block size, head dims that are not powers of two, GQA groups of 1-4,
left padding.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from speechlm_kernels.tactic import (
    build_index,
    build_pages,
    captured_mass,
    dense_probs,
    merge_lse,
    oracle_select,
    quest_select,
    ref,
    tactic_decode,
    tactic_select,
)
from speechlm_kernels.tactic.synthetic import HEAD_TYPES, make_batch

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
GPU = torch.cuda.is_available()

ATOL_F32 = 2e-5  # float32, same math in a different order
RTOL_F32 = 2e-5
BOUND_SLACK = 1e-5  # error-bound check: float rounding of the norms


def assert_close(name, ref_t, tri_t, atol=ATOL_F32, rtol=RTOL_F32):
    torch.testing.assert_close(tri_t, ref_t, atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


def _data(b, g, r, d, t, seed=0, dtype=torch.float32, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(b, g, t, d, generator=gen).to(device, dtype)
    v = torch.randn(b, g, t, d, generator=gen).to(device, dtype)
    q = (torch.randn(b, g * r, d, generator=gen) * 2).to(device, dtype)
    return q, k, v


def _left_pad(b, t, pads):
    valid = torch.ones(b, t, dtype=torch.bool)
    for i, p in enumerate(pads):
        valid[i, :p] = False
    return valid


def _dense(q, k, v, valid=None):
    b, h, d = q.shape
    g = k.shape[1]
    probs = dense_probs(q, k, valid, d**-0.5)
    return (probs.view(b, g, h // g, -1) @ v.float()).view(b, h, d), probs


SHAPES = [  # (B, G, R, D, T, indexed)
    pytest.param(1, 1, 1, 16, 37, 30, id="b1-g1-r1-d16-t37"),
    pytest.param(2, 2, 3, 24, 101, 90, id="b2-g2-r3-d24-t101"),
    pytest.param(1, 2, 4, 32, 130, 130, id="b1-g2-r4-d32-t130-norecent"),
]


# ---- reference: index ---------------------------------------------------------------------
def test_index_is_a_partition_and_skips_padding():
    q, k, v = _data(2, 2, 2, 16, 77)
    valid = _left_pad(2, 77, [0, 13])
    index = build_index(k, valid, cluster_size=8, iters=5)
    assert index.centroids.shape[2] == math.ceil(77 / 8)
    assert index.offsets[..., -1].tolist() == [[77, 77], [64, 64]]
    for b in range(2):
        for g in range(2):
            members = index.perm[b, g, : index.offsets[b, g, -1]]
            assert sorted(members.tolist()) == valid[b].nonzero().squeeze(-1).tolist()
            # every member is nearest to its own centroid (k-means fixed point of labels)
            for c in range(index.centroids.shape[2]):
                s, e = index.offsets[b, g, c], index.offsets[b, g, c + 1]
                if e > s:
                    x = k[b, g, index.perm[b, g, s:e]]
                    assert_close(f"centroid {c}", x.mean(0), index.centroids[b, g, c], 1e-5, 1e-5)


def test_index_is_seeded():
    _, k, _ = _data(1, 2, 1, 16, 64)
    a, b = build_index(k, cluster_size=4, seed=3), build_index(k, cluster_size=4, seed=3)
    assert torch.equal(a.perm, b.perm) and torch.equal(a.centroids, b.centroids)


# ---- reference: selection and attention -----------------------------------------------------
@pytest.mark.parametrize("b,g,r,d,t,n", SHAPES)
def test_keep_all_equals_dense(b, g, r, d, t, n):
    q, k, v = _data(b, g, r, d, t)
    index = build_index(k[:, :, :n], cluster_size=8)
    out, sel = tactic_decode(q, k, v, index, p=1.0, impl="ref")
    assert sel.counts.tolist() == [[t] * g] * b
    assert_close("out", _dense(q, k, v)[0], out, 1e-5, 1e-5)


def test_merge_lse_of_two_halves_is_the_whole():
    q, k, v = _data(2, 2, 2, 16, 50)
    all_idx = torch.arange(50).expand(2, 2, 50)
    cnt = torch.full((2, 2), 50)
    o, lse = ref.sparse_decode_attention(q, k, v, all_idx, cnt)
    perm = torch.randperm(50)
    o1, l1 = ref.sparse_decode_attention(q, k, v, perm[:21].expand(2, 2, 21), cnt.clamp(max=21))
    o2, l2 = ref.sparse_decode_attention(q, k, v, perm[21:].expand(2, 2, 29), cnt.clamp(max=29))
    om, lm = merge_lse(o1, l1, o2, l2)
    assert_close("out", o, om)
    assert_close("lse", lse, lm)
    assert_close("dense", _dense(q, k, v)[0], o)


@pytest.mark.parametrize("kind", HEAD_TYPES)
@pytest.mark.parametrize("p", [0.75, 0.9])
def test_captured_mass_and_error_bound_on_synthetic_heads(kind, p):
    """Tactic reaches about p of the true mass; every method obeys |o - o_hat| <=
    2 (1 - mass) max|v| with its true captured mass."""
    q, k, v = make_batch(1, 1500, mix=(kind, kind), r=4, d=32, seed=1)
    n = 1480
    index = build_index(k[:, :, :n], cluster_size=16)
    dense, probs = _dense(q, k, v)
    vmax = v.norm(dim=-1).amax(-1).repeat_interleave(4, dim=1)  # (B, H)
    sels = {
        "tactic": tactic_select(q, k, index, p=p, impl="ref"),
        "oracle": oracle_select(q, k, p=p),
        "quest": quest_select(q, k, build_pages(k[:, :, :n]), top_k=8),
    }
    for name, sel in sels.items():
        out, _ = ref.sparse_decode_attention(q, k, v, sel.idx, sel.counts)
        mass = captured_mass(probs, sel)
        err = (out - dense).norm(dim=-1)
        assert (err <= 2 * (1 - mass) * vmax + BOUND_SLACK).all(), name
    oracle_mass = captured_mass(probs, sels["oracle"])
    assert (oracle_mass >= p - 1e-5).all()
    # Tactic estimates the mass: on average it must land close to p or above
    tactic_mass = captured_mass(probs, sels["tactic"])
    assert tactic_mass.mean() >= p - 0.05, (kind, tactic_mass)


def test_oracle_budget_is_the_exact_top_p():
    q, k, _ = _data(1, 1, 2, 16, 200, seed=4)
    probs = dense_probs(q, k, None, 16**-0.5)
    sel = oracle_select(q, k, p=0.8)
    for h in range(2):
        sp = probs[0, h].sort(descending=True).values
        need = int((sp.cumsum(0) < 0.8).sum()) + 1
        assert sel.budget[0, h] == need


def test_padding_is_never_selected():
    q, k, v = _data(2, 2, 2, 16, 90)
    valid = _left_pad(2, 90, [0, 25])
    index = build_index(k[:, :, :80], valid[:, :80], cluster_size=8)
    for sel in (
        tactic_select(q, k, index, valid, p=1.0, impl="ref"),
        oracle_select(q, k, valid, p=1.0),
        quest_select(
            q, k, build_pages(k[:, :, :80], valid[:, :80], page_size=16), valid, top_k=100
        ),
    ):
        for g in range(2):
            taken = sel.idx[1, g, : sel.counts[1, g]]
            assert (taken >= 25).all() and len(taken) == 65
    out, _ = tactic_decode(q, k, v, index, valid, p=1.0, impl="ref")
    assert_close("padded", _dense(q, k, v, valid)[0], out, 1e-5, 1e-5)


def test_quest_bounds_are_upper_bounds_and_all_pages_is_dense():
    q, k, v = _data(1, 2, 2, 16, 53)  # 53 = 3 pages of 16 + a partial page
    pages = build_pages(k[:, :, :50], page_size=16)
    assert pages.kmin.shape[2] == 4
    qg = q.view(1, 2, 2, 1, 16)
    ub = torch.maximum(qg * pages.kmin[:, :, None], qg * pages.kmax[:, :, None]).sum(-1)
    s = q.view(1, 2, 2, 16) @ k[:, :, :50].transpose(-1, -2)  # (1, 2, 2, 50)
    for pg in range(4):
        assert (s[..., pg * 16 : (pg + 1) * 16].amax(-1) <= ub[..., pg] + 1e-5).all()
    sel = quest_select(q, k, pages, top_k=4)
    out, _ = ref.sparse_decode_attention(q, k, v, sel.idx, sel.counts)
    assert sel.counts.tolist() == [[53, 53]]
    assert_close("quest all pages", _dense(q, k, v)[0], out)
    assert quest_select(q, k, pages, top_k=1).budget.max() == 16 + 3  # one page + recent


# ---- Triton against the reference ------------------------------------------------------------
@needs_triton
@pytest.mark.parametrize("b,g,r,d,t,n", SHAPES)
def test_triton_centroid_scores(b, g, r, d, t, n):
    from speechlm_kernels.tactic import triton as tk

    q, k, _ = _data(b, g, r, d, t)
    index = build_index(k[:, :, :n], cluster_size=3)  # C not a multiple of the block
    assert_close(
        "scores", ref.centroid_scores(q, index.centroids, 0.3),
        tk.centroid_scores(q, index.centroids, 0.3),
    )  # fmt: skip


@needs_triton
@pytest.mark.parametrize("b,g,r,d,t,n", SHAPES)
def test_triton_gather_matches_reference(b, g, r, d, t, n):
    from speechlm_kernels.tactic import triton as tk

    _, k, _ = _data(b, g, r, d, t)
    valid = _left_pad(b, t, [0, 7][:b])
    index = build_index(k[:, :, :n], valid[:, :n], cluster_size=8)
    c = index.centroids.shape[2]
    sel = torch.rand(b, g, c, generator=torch.Generator().manual_seed(1)) < 0.4
    want = ref.union_to_idx(sel, index, valid[:, n:])
    got = tk.gather_clusters(sel, index, valid[:, n:])
    assert torch.equal(got[1], want[1])
    for bi in range(b):
        for gi in range(g):
            m = int(want[1][bi, gi])
            # same tokens; the kernel lists them cluster by cluster, the reference by position
            assert torch.equal(got[0][bi, gi, :m].sort().values, want[0][bi, gi, :m])


@needs_triton
@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("b,g,r,d,t,n", SHAPES)
def test_triton_sparse_attention(b, g, r, d, t, n, splits):
    from speechlm_kernels.tactic import triton as tk

    q, k, v = _data(b, g, r, d, t)
    gen = torch.Generator().manual_seed(2)
    width = t - 3
    idx = torch.stack([torch.randperm(t, generator=gen)[:width] for _ in range(b * g)])
    idx = idx.view(b, g, width)
    counts = torch.randint(1, width + 1, (b, g), generator=gen)  # ragged lists
    counts[0, 0] = 1
    want_o, want_l = ref.sparse_decode_attention(q, k, v, idx, counts)
    got_o, got_l = tk.sparse_decode_attention(q, k, v, idx, counts, splits=splits)
    assert_close("out", want_o, got_o)
    assert_close("lse", want_l, got_l)


@needs_triton
def test_triton_sparse_attention_reads_strided_cache_views():
    """The runtime passes views of a larger cache buffer: strides must be honoured."""
    from speechlm_kernels.tactic import triton as tk

    q, kbuf, vbuf = _data(2, 2, 2, 16, 64)
    k, v = kbuf[:, :, :45], vbuf[:, :, :45]
    idx = torch.arange(45).expand(2, 2, 45).contiguous()
    counts = torch.full((2, 2), 45)
    got, _ = tk.sparse_decode_attention(q, k, v, idx, counts, splits=2)
    assert_close("strided", _dense(q, k, v)[0], got)


@needs_triton
@pytest.mark.parametrize("b,g,r,d,t,n", SHAPES)
def test_triton_tactic_decode_matches_reference(b, g, r, d, t, n):
    q, k, v = _data(b, g, r, d, t, seed=5)
    index = build_index(k[:, :, :n], cluster_size=8)
    want, wsel = tactic_decode(q, k, v, index, p=0.8, impl="ref")
    got, gsel = tactic_decode(q, k, v, index, p=0.8, impl="triton")
    assert torch.equal(gsel.counts, wsel.counts) and torch.equal(gsel.budget, wsel.budget)
    assert_close("out", want, got)


# ---- GPU: the full grid in bf16 (run with -m gpu) ------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not (GPU and HAS_TRITON), reason="needs CUDA and triton")
@pytest.mark.parametrize("t", [4097, 32768])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_tactic_matches_reference(t, dtype):
    q, k, v = make_batch(2, t, r=4, d=128, seed=0)
    q, k, v = (x.to("cuda", dtype) for x in (q, k, v))
    index = build_index(k[:, :, : t - 17], cluster_size=16)
    want, wsel = tactic_decode(q, k, v, index, p=0.9, impl="ref")
    got, gsel = tactic_decode(q, k, v, index, p=0.9, impl="triton")
    tol = {torch.float32: 1e-4, torch.bfloat16: 2e-2}[dtype]
    # bf16 centroid scores may rank near-ties differently: compare against the ref's
    # attention over the Triton selection, and the selection sizes loosely
    o_ref, _ = ref.sparse_decode_attention(q, k, v, gsel.idx, gsel.counts)
    assert_close("out", o_ref, got, tol, tol)
    if dtype == torch.float32:
        assert torch.equal(gsel.counts, wsel.counts)
        assert_close("out vs ref selection", want, got, tol, tol)
