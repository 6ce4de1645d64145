"""The compiled MBR pass (numba) against the numpy pass it replaces (the reference).

Expected costs and alignment choices must be the reference's bit for bit (ties between
alignments are common and a last-bit difference would break them the other way); gamma
and the posterior-weighted times may differ by float rounding only.
"""

from __future__ import annotations

import numpy as np
import pytest

from speechlm.lattice import ConfusionNetwork, Lattice, _mbr_compiled, mbr
from speechlm.testing.lattice import lattice_from_text, toy_ctc_decode

needs_numba = pytest.mark.skipif(not _mbr_compiled.HAS_NUMBA, reason="numba is not installed")

ROUNDING = 1e-10  # gamma / times: sums in another order


def _graph_and_hyp(lat: Lattice):
    g = mbr._Graph(lat, 1.0, 1.0)
    wid = {w: i for i, w in enumerate(g.vocab)}
    return g, mbr._normalize_eps([wid[w] for w in lat.best_path().words])


def _toy(frames: int, beam: float, seed: int, no_eps: bool) -> Lattice:
    d = toy_ctc_decode(frames, seed=seed, lattice_beam=beam)
    lat = Lattice.from_kaldi_text(d.raw_text, utt="u", words=d.words, frame_shift=0.04)
    lat = lat.connect()
    return lat.remove_epsilons(beam=beam) if no_eps else lat


CASES = [
    pytest.param(12, 4.0, 0, False, id="f12-raw"),
    pytest.param(25, 8.0, 1, False, id="f25-b8-raw"),
    pytest.param(25, 4.0, 2, True, id="f25-noeps"),
    pytest.param(50, 8.0, 3, True, id="f50-b8-noeps"),
]


@needs_numba
@pytest.mark.parametrize("frames,beam,seed,no_eps", CASES)
def test_compiled_pass_equals_numpy_pass(frames, beam, seed, no_eps):
    g, r = _graph_and_hyp(_toy(frames, beam, seed, no_eps))
    want = mbr._acc_stats_numpy(g, r)
    got = _mbr_compiled.acc_stats(g, r, mbr.DELTA)
    assert got[3] == want[3]  # expected errors: bit for bit
    for name, a, b in zip(("gamma", "tau_b", "tau_e"), got[:3], want[:3], strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=ROUNDING, err_msg=name)
    # a perturbed hypothesis (other ties), not only the best path
    r2 = r.copy()
    r2[1::4] = (r2[1::4] % (len(g.vocab) - 1)) + 1
    want, got = mbr._acc_stats_numpy(g, r2), _mbr_compiled.acc_stats(g, r2, mbr.DELTA)
    assert got[3] == want[3]
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=ROUNDING)


@needs_numba
def test_confusion_network_is_the_same_with_either_pass(monkeypatch):
    lat = _toy(40, 8.0, 4, False)
    monkeypatch.setattr(_mbr_compiled, "MIN_CELLS", 0)  # compiled even for a small lattice
    got = ConfusionNetwork.from_lattice(lat).to_json()["bins"]
    monkeypatch.setattr(_mbr_compiled, "HAS_NUMBA", False)
    want = ConfusionNetwork.from_lattice(lat).to_json()["bins"]
    assert [[e["word"] for e in b] for b in got] == [[e["word"] for e in b] for b in want]
    for gb, wb in zip(got, want, strict=True):
        for ge, we in zip(gb, wb, strict=True):
            assert abs(ge["posterior"] - we["posterior"]) <= ROUNDING, (ge, we)
            # times are tau / gamma: rounding grows as the posterior shrinks
            tol = ROUNDING + 1e-13 / max(we["posterior"], 1e-300)
            for key in ("start", "end"):
                assert abs(ge[key] - we[key]) <= tol, (key, ge, we)


@needs_numba
def test_hand_built_lattice():
    lat = lattice_from_text("0 1 a 1.0\n0 1 b 2.0\n1 2 c 0.5\n1 2 <eps> 1.5\n2")
    g, r = _graph_and_hyp(lat)
    want, got = mbr._acc_stats_numpy(g, r), _mbr_compiled.acc_stats(g, r, mbr.DELTA)
    assert got[3] == want[3]
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=ROUNDING)


@pytest.mark.parametrize("frames,beam,seed,no_eps", CASES)
def test_graph_levels_are_longest_path_depths(frames, beam, seed, no_eps):
    """``_Graph`` levels (now one relaxation per arc) = the per-state formula they replace."""
    g = mbr._Graph(_toy(frames, beam, seed, no_eps), 1.0, 1.0)
    depth = np.zeros(g.num_states, dtype=np.int64)
    for n in range(1, g.num_states):  # states are topologically numbered
        depth[n] = depth[g.src[g.dst == n]].max() + 1
    got = np.full(g.num_states, -1)
    got[0] = 0
    for i, (k, _, ends) in enumerate(g.levels):
        assert (depth[g.dst[k]] == i + 1).all()
        got[ends] = i + 1
    np.testing.assert_array_equal(got, depth)
