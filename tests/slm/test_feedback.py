"""Preference pairs: best vs worst of one prompt, margins, counted fallbacks, no wrong pairing."""
from __future__ import annotations

import math

import pytest

from speechlm.core.errors import InputError
from speechlm.slm.feedback import Candidate, build_pairs

PROMPTS = {"p1": [1, 2, 3], "p2": [4, 5]}


def _c(pid, units, text, score):
    return Candidate(pid, units, text, score)


def test_best_and_worst_of_the_same_prompt():
    groups = {
        "p1": [_c("p1", [7], "a", -2.0), _c("p1", [8, 9], "b", -0.5), _c("p1", [6], "c", -3.0)],
        "p2": [_c("p2", [1], "d", 0.9), _c("p2", [2], "e", 0.1)],
    }
    pairs, counts = build_pairs(groups, PROMPTS, margin=0.5)
    assert [(p.prompt_id, p.prompt, p.chosen, p.rejected) for p in pairs] == [
        ("p1", "u1 u2 u3", " u8 u9", " u6"), ("p2", "u4 u5", " u1", " u2")]
    assert pairs[0].chosen_score == -0.5 and pairs[0].rejected_score == -3.0
    assert pairs[0].chosen_text == "b" and pairs[0].rejected_text == "c"
    assert counts["pairs"] == 2


def test_margin_threshold_drops_close_pairs():
    groups = {"p1": [_c("p1", [7], "a", -1.0), _c("p1", [8], "b", -1.2)]}
    assert build_pairs(groups, PROMPTS, margin=0.1)[1]["pairs"] == 1
    pairs, counts = build_pairs(groups, PROMPTS, margin=0.3)
    assert pairs == [] and counts["below_margin"] == 1


def test_unjudged_candidates_are_counted_not_guessed():
    groups = {"p1": [_c("p1", [], "", None), _c("p1", [5], "", None),
                     _c("p1", [6], "x", None), _c("p1", [7], "y", math.nan),
                     _c("p1", [8], "z", -1.0)]}
    pairs, counts = build_pairs(groups, PROMPTS, margin=0.0)
    assert pairs == []
    assert counts["empty_continuation"] == 1 and counts["empty_transcript"] == 1
    assert counts["judge_failed"] == 2 and counts["too_few_judged"] == 1


def test_identical_continuations_make_no_pair():
    groups = {"p1": [_c("p1", [7, 8], "a", -1.0), _c("p1", [7, 8], "a", -1.0)]}
    pairs, counts = build_pairs(groups, PROMPTS, margin=0.0)
    assert pairs == [] and counts["identical"] == 1


def test_a_candidate_filed_under_another_prompt_is_an_error():
    groups = {"p1": [_c("p1", [7], "a", -1.0), _c("p2", [8], "b", -3.0)]}
    with pytest.raises(InputError, match="of prompt 'p2' is filed under 'p1'"):
        build_pairs(groups, PROMPTS, margin=0.0)
    with pytest.raises(InputError, match="no prompt units"):
        build_pairs({"p9": [_c("p9", [1], "a", 0.0)]}, PROMPTS, margin=0.0)
    with pytest.raises(ValueError, match="margin"):
        build_pairs({}, PROMPTS, margin=-1.0)
