import math

import numpy as np
import pytest

from speechlm.core.hypothesis import Hypothesis as H
from speechlm.lattice import ConfusionNetwork, cn_oracle, lattice_oracle
from speechlm.lattice.nbest_lattice import concat_lattices, lattice_from_nbest, nbest_posteriors

HYPS = [H("ten of clubs", -1.0), H("ten of cups", -2.0), H("tan of clubs", -3.5)]
TIMES = [(0.1, 0.4), (0.4, 0.5), (0.5, 0.9)]


def final_arc_posteriors(lat, am_scale):
    """Posterior of the arc that ends each hypothesis (the arcs into final states)."""
    post = lat.arc_posteriors(am_scale=am_scale)
    return [float(post[k]) for k, a in enumerate(lat.arcs) if a.dst in lat.finals]


def test_posteriors_are_softmax_of_scaled_scores_by_hand():
    # scale 0.5: exp(-0.5), exp(-1), exp(-1.75) = 0.6065307, 0.3678794, 0.1737739; sum 1.148184
    assert nbest_posteriors([-1.0, -2.0, -3.5], 0.5) == pytest.approx(
        [0.528252, 0.320401, 0.151347], abs=1e-6)
    lat = lattice_from_nbest(HYPS, word_times=TIMES, utt="u")
    assert final_arc_posteriors(lat, 0.5) == pytest.approx([0.528252, 0.320401, 0.151347],
                                                           abs=1e-5)
    # scale 1: e^-1 / (e^-1 + e^-2 + e^-3.5)
    want = math.exp(-1) / (math.exp(-1) + math.exp(-2) + math.exp(-3.5))
    assert final_arc_posteriors(lat, 1.0)[0] == pytest.approx(want, abs=1e-5)


def test_prefixes_shared_and_paths_score_their_hypotheses():
    lat = lattice_from_nbest(HYPS, word_times=TIMES, utt="u")
    # "ten of" shared by the first two: ten, of, clubs, cups, tan, of, clubs
    assert lat.num_arcs == 7 and len(lat.finals) == 3
    paths = lat.nbest(10)
    assert [(p.words, p.tot_score) for p in paths] == [
        (("ten", "of", "clubs"), -1.0), (("ten", "of", "cups"), -2.0),
        (("tan", "of", "clubs"), -3.5)]
    # first hypothesis keeps its word times; the others spread to the end (0.9 s)
    assert paths[0].starts == (0.1, 0.4, 0.5) and paths[0].ends == (0.4, 0.5, 0.9)
    assert paths[1].starts[-1] == 0.5 and paths[1].ends[-1] == pytest.approx(0.9)
    assert paths[2].starts == pytest.approx((0.0, 0.3, 0.6))


def test_duplicate_word_sequences_add_up_and_empty_hypothesis_is_epsilon():
    hyps = [H("seven", -1.0), H("seven", -1.5), H("", -2.0)]
    lat = lattice_from_nbest(hyps, utt="d", duration=0.6)
    cn = ConfusionNetwork.from_lattice(lat, am_scale=1.0)
    cn.check()
    p = nbest_posteriors([-1.0, -1.5, -2.0])
    assert cn.bins[0][0].word == "seven"
    assert cn.bins[0][0].posterior == pytest.approx(p[0] + p[1], abs=1e-5)
    assert [x.words for x in lat.nbest(5)] == [("seven",), ()]


def test_wcn_and_oracles_on_nbest_lattice():
    lat = lattice_from_nbest(HYPS, word_times=TIMES, utt="u")
    cn = ConfusionNetwork.from_lattice(lat, am_scale=1.0)
    cn.check()
    assert cn.mbr_words() == ["ten", "of", "clubs"]
    assert len(cn.bins) == 3
    # "tan of cups" is on no path but in the sausage
    assert lattice_oracle(lat, "tan of cups".split())[0] == 1
    assert cn_oracle(cn, "tan of cups".split())[0] == 0
    assert cn.ctm_lines()[0].startswith("u 1 0.100 0.300 ten")


def test_concat_segments():
    a = lattice_from_nbest([H("a", -1.0), H("b", -2.0)], utt="x", duration=1.0)
    b = lattice_from_nbest([H("c", -0.5), H("d", -3.0)], utt="x", start_time=1.0,
                           duration=2.0)
    lat = concat_lattices([a, b], utt="x")
    got = [(p.words, p.tot_score) for p in lat.nbest(4)]
    assert got == [(("a", "c"), -1.5), (("b", "c"), -2.5), (("a", "d"), -4.0),
                   (("b", "d"), -5.0)]
    assert lat.best_path().starts == (0.0, 1.0)
    post = lat.arc_posteriors()
    c_arc = next(k for k, x in enumerate(lat.arcs) if x.word == "c")
    assert post[c_arc] == pytest.approx(nbest_posteriors([-0.5, -3.0])[0], abs=1e-5)


def test_bad_input_names_the_utterance():
    with pytest.raises(ValueError, match="'u7'.*no hypotheses"):
        lattice_from_nbest([], utt="u7")
    with pytest.raises(ValueError, match="'u7'.*2 word times.*3 words"):
        lattice_from_nbest(HYPS, word_times=TIMES[:2], utt="u7")
    with pytest.raises(ValueError, match="'u7'.*non-finite"):
        lattice_from_nbest([H("a", float("nan"))], utt="u7")
    with pytest.raises(ValueError, match="no segment"):
        concat_lattices([], utt="u7")
    assert np.isclose(nbest_posteriors([-1e4, -1e4 - 1]).sum(), 1.0)


def test_docstring_examples_run():
    import doctest

    import speechlm.lattice.nbest_lattice as mod

    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0
