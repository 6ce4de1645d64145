"""WCN word-confidence calibration: NCE and ECE by hand, and the scale tuner."""
from __future__ import annotations

import math

import pytest

from speechlm.core.hypothesis import Hypothesis
from speechlm.lattice import ConfusionNetwork, lattice_from_nbest
from speechlm.lattice.calibration import ece, nce, scored_words, tune_am_scale


def test_nce_by_hand():
    # 2 of 3 right: H = -(2 ln 2/3 + ln 1/3) = 1.9095; model log-lik = ln .9 + ln .8 + ln .7
    h = -(2 * math.log(2 / 3) + math.log(1 / 3))
    expected = (h + math.log(0.9) + math.log(0.8) + math.log(0.7)) / h
    assert nce([0.9, 0.8, 0.3], [True, True, False]) == pytest.approx(expected)
    # the constant confidence equal to the accuracy is the zero point
    assert nce([2 / 3] * 3, [True, True, False]) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(nce([0.5, 0.5], [True, True]))
    with pytest.raises(ValueError, match="2 confidences for 3 words"):
        nce([0.5, 0.5], [True, True, False])


def test_ece_by_hand():
    # bin [0.9, 1.0): confidences .95 .95, accuracy .5 -> |.5 - .95| = .45 over 2 words;
    # bin [0.2, 0.3): confidence .25, accuracy 0 -> .25 over 1 word
    assert ece([0.95, 0.95, 0.25], [True, False, False]) == pytest.approx((2 * .45 + .25) / 3)
    assert ece([0.5, 0.5], [True, False]) == pytest.approx(0.0)


def test_scored_words_align_to_the_reference():
    cn = ConfusionNetwork([[("set", 0.9, 0, 1)], [("a", 0.6, 1, 2), ("<eps>", 0.4, 1, 2)],
                           [("lamp", 0.7, 2, 3), ("alarm", 0.3, 2, 3)]])
    # ref "set alarm": "a" is an insertion, "lamp" a substitution
    conf, ok = scored_words(cn, ["set", "alarm"])
    assert conf == [0.9, 0.6, 0.7] and ok == [True, False, False]
    # a deletion gives no word
    conf, ok = scored_words(ConfusionNetwork([[("set", 1.0, 0, 1)]]), ["set", "alarm"])
    assert conf == [1.0] and ok == [True]


def test_tuner_prefers_the_scale_that_makes_confidences_honest():
    # The first pass is sure (score gap 10) but half of its second words are wrong:
    # at scale 1 the second word has posterior ~1.0 (over-confident); a small scale
    # brings it toward 0.5, its real accuracy.
    lats, refs = [], []
    for i in range(20):
        hyps = [Hypothesis("turn on lights", 0.0), Hypothesis("turn off lights", -10.0)]
        lats.append(lattice_from_nbest(hyps, utt=f"u{i}"))
        refs.append(["turn", "on" if i % 2 else "off", "lights"])
    best, reports = tune_am_scale(lats, refs, scales=[0.05, 0.1, 1.0])
    by_scale = {r.am_scale: r for r in reports}
    assert best in (0.05, 0.1)
    assert by_scale[best].nce > by_scale[1.0].nce
    assert by_scale[best].ece < by_scale[1.0].ece
    assert all(r.mbr_wer == pytest.approx(100 * 10 / 60) for r in reports)
    assert all(r.words == 60 for r in reports)
    with pytest.raises(ValueError, match="2 lattices for 1 references"):
        tune_am_scale(lats[:2], refs[:1])
