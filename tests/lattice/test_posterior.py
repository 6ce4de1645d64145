import math

import numpy as np
import pytest

from speechlm.lattice import Lattice
from speechlm.lattice.posterior import arc_best_scores, final_posteriors, forward_backward
from speechlm.testing.lattice import all_paths, lattice_from_text, logsumexp, toy_ctc_decode


@pytest.mark.parametrize("am_scale, lm_scale", [(1.0, 1.0), (0.1, 1.0), (1.0, 0.5)])
def test_arc_posteriors_match_brute_force_enumeration(diamond, am_scale, lm_scale):
    paths = all_paths(diamond, am_scale, lm_scale)
    total = logsumexp([s for _, _, s in paths])
    want = np.zeros(diamond.num_arcs)
    for ids, _, score in paths:
        for k in ids:
            want[k] += math.exp(score - total)
    got = diamond.arc_posteriors(am_scale, lm_scale)
    np.testing.assert_allclose(got, want, atol=1e-5)
    _, _, tot = forward_backward(diamond, am_scale, lm_scale)
    assert tot == pytest.approx(total, abs=1e-5)


def test_best_scores_through_arcs_match_brute_force(diamond):
    paths = all_paths(diamond)
    through, best = arc_best_scores(diamond)
    assert best == pytest.approx(max(s for _, _, s in paths), abs=1e-5)
    for k in range(diamond.num_arcs):
        assert through[k] == pytest.approx(max(s for ids, _, s in paths if k in ids), abs=1e-5)


def test_posteriors_through_every_cut_sum_to_one(diamond):
    # Every path crosses each topological cut once, or has ended at a final state before it.
    post = diamond.arc_posteriors()
    fin = final_posteriors(diamond)
    assert sum(fin.values()) == pytest.approx(1.0, abs=1e-5)
    pos = {s: i for i, s in enumerate(diamond.topo_order)}
    for k in range(len(pos) - 1):
        crossing = sum(p for a, p in zip(diamond.arcs, post, strict=True)
                       if pos[a.src] <= k < pos[a.dst])
        ended = sum(p for s, p in fin.items() if pos[s] <= k)
        assert crossing + ended == pytest.approx(1.0, abs=1e-5), k


def test_posteriors_of_each_time_slice_sum_to_one_on_a_decoder_lattice():
    d = toy_ctc_decode(16, seed=3)
    lat = Lattice.from_kaldi_text(d.raw_text, utt="toy", words=d.words, frame_shift=0.04)
    post = lat.arc_posteriors()
    for frame in range(16):
        t = (frame + 0.5) * 0.04
        mass = sum(p for a, p in zip(lat.arcs, post, strict=True) if a.start < t < a.end)
        assert mass == pytest.approx(1.0, abs=1e-4), frame
    # Epsilon removal keeps the posterior of each word sequence's best alignment, so the
    # per-frame mass stays a distribution there too.
    noeps = lat.remove_epsilons()
    post2 = noeps.arc_posteriors()
    assert post2.max() <= 1.0 and post2.min() >= 0.0


def test_dead_arcs_get_zero_posterior():
    lat = lattice_from_text("0 1 a -1\n1 2 b -1\n0 3 dead -0.1\n2\n", utt="d")
    np.testing.assert_allclose(lat.arc_posteriors(), [1.0, 1.0, 0.0], atol=1e-6)
