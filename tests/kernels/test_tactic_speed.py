"""The CPU speed changes of the Tactic reference keep its results.

``_assign`` computes ``argmax(x.c - |c|^2 / 2)`` in place instead of
``argmax(2 x.c - |c|^2)``: bitwise the same scores up to a factor 2, so the same labels.
``_argsort_desc`` sorts cluster scores with numpy on the CPU instead of ``torch.argsort``:
same order wherever scores are not exactly tied, so the same selection.
"""

from __future__ import annotations

import pytest
import torch
from speechlm_kernels.tactic import build_index, ref, tactic_select
from speechlm_kernels.tactic.synthetic import DEFAULT_MIX, make_batch


def _assign_before(x, c, chunk=8192):  # the formula before the change
    c2 = (c * c).sum(-1)
    return torch.cat([(2 * x[s : s + chunk] @ c.T - c2).argmax(-1)
                      for s in range(0, x.shape[0], chunk)])  # fmt: skip


@pytest.mark.parametrize("n,c,d", [(1000, 63, 16), (5000, 300, 128), (9000, 17, 32)])
def test_assign_equals_the_previous_formula(n, c, d):
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, d, generator=gen)
    cen = x[torch.randperm(n, generator=gen)[:c]] + 0.01 * torch.randn(c, d, generator=gen)
    assert torch.equal(ref._assign(x, cen, chunk=4096), _assign_before(x, cen))


def test_argsort_desc_orders_like_torch_without_ties():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 257, generator=gen).double()  # float64: no ties
    x[0, 1, 2, :10] = float("-inf")  # empty clusters sort last
    got = ref._argsort_desc(x)
    assert torch.equal(x.gather(-1, got), x.sort(-1, descending=True).values)
    assert torch.equal(got[:, :, :, :-10], x.argsort(-1, descending=True)[:, :, :, :-10])


@pytest.mark.parametrize("p", [0.75, 0.9])
def test_selection_equals_torch_argsort_selection(monkeypatch, p):
    q, k, _ = make_batch(2, 1500, mix=DEFAULT_MIX[:4], r=3, d=32, seed=1)
    index = build_index(k[:, :, :1400], cluster_size=16, iters=3)
    got = tactic_select(q, k, index, p=p, impl="ref")
    monkeypatch.setattr(ref, "_argsort_desc", lambda x: x.argsort(-1, descending=True))
    want = tactic_select(q, k, index, p=p, impl="ref")
    for name in ("idx", "counts", "budget", "est_total"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name


# ---- the two-level index (method="two_level") ----------------------------------------------
def test_lloyd_index_unchanged_by_the_method_argument():
    _, k, _ = make_batch(2, 700, mix=DEFAULT_MIX[:2], r=2, d=16, seed=3)
    valid = torch.ones(2, 700, dtype=torch.bool)
    valid[1, :50] = False
    a = build_index(k, valid, cluster_size=8, iters=3, seed=5)
    b = build_index(k, valid, cluster_size=8, iters=3, seed=5, method="lloyd")
    for x, y in zip(a[:-1], b[:-1], strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("n,cluster_size", [(700, 8), (2000, 16), (37, 16)])
def test_two_level_index_is_a_partition_with_member_means(n, cluster_size):
    _, k, _ = make_batch(2, n, mix=DEFAULT_MIX[:2], r=2, d=16, seed=2)
    valid = torch.ones(2, n, dtype=torch.bool)
    valid[1, : n // 7] = False
    index = build_index(k, valid, cluster_size=cluster_size, iters=4, method="two_level")
    c = index.centroids.shape[2]
    c_lloyd = -(-n // cluster_size)
    assert c <= c_lloyd + round(c_lloyd**0.5)
    for b in range(2):
        for g in range(2):
            end = int(index.offsets[b, g, -1])
            assert sorted(index.perm[b, g, :end].tolist()) == valid[b].nonzero()[:, 0].tolist()
            assert int(index.sizes[b, g].sum()) == int(valid[b].sum())
            for ci in torch.nonzero(index.sizes[b, g]).flatten().tolist():
                s, e = index.offsets[b, g, ci], index.offsets[b, g, ci + 1]
                mean = k[b, g, index.perm[b, g, s:e]].mean(0)
                torch.testing.assert_close(index.centroids[b, g, ci], mean, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["retrieval", "streaming", "clustered", "diffuse"])
def test_two_level_index_captures_about_p(kind):
    from speechlm_kernels.tactic import captured_mass, dense_probs

    q, k, _ = make_batch(1, 3000, mix=(kind, kind), r=4, d=32, seed=1)
    index = build_index(k[:, :, :2980], cluster_size=16, method="two_level")
    sel = tactic_select(q, k, index, p=0.9, impl="ref")
    mass = captured_mass(dense_probs(q, k, None, 32**-0.5), sel)
    assert mass.mean() >= 0.85, (kind, mass)


def test_unknown_index_method_is_refused():
    with pytest.raises(ValueError, match="two_level"):
        build_index(torch.randn(1, 1, 10, 4), method="kd")
