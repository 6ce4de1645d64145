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
