"""Whisper as a teacher-forced scorer, on real FSDD digits (shared data)."""
import math

import numpy as np
import pytest

from speechlm.asr.whisper_score import WhisperScorer, written_form
from speechlm.core import catalogue
from speechlm.data.audio import read_audio
from speechlm.testing.shared_data import shared_data_dir

FSDD = shared_data_dir("fsdd")
DIGITS = "zero one two three four five six seven eight nine".split()


def test_written_form():
    assert written_form("six") == " Six."
    assert written_form("  set an alarm ") == " Set an alarm."
    assert written_form("") == ""


@pytest.mark.skipif(FSDD is None, reason="shared FSDD not found")
@pytest.mark.skipif(not catalogue.installed("whisper-tiny.en"),
                    reason="whisper-tiny.en not installed")
def test_forced_choice_among_the_ten_digits():
    scorer = WhisperScorer("whisper-tiny.en", window_s=10)
    right = 0
    for digit in range(len(DIGITS)):
        x = read_audio(str(FSDD / "recordings" / f"{digit}_jackson_7.wav"))
        scores = scorer.score(x, DIGITS, utt=f"{digit}_jackson_7")
        assert all(s < 0 for s in scores)  # log-probabilities of at least one token
        right += int(np.argmax(scores)) == digit
    # forced choice is 97% right on an unseen FSDD speaker (egs/fsdd/asr1/README.md)
    assert right >= 8, right

    x = read_audio(str(FSDD / "recordings" / "6_jackson_7.wav"))
    empty, six = scorer.score(x, ["", "six"])
    assert empty == -math.inf and math.isfinite(six)
    assert scorer.score(x, []) == []
    with pytest.raises(ValueError, match="u1.*over the scoring window"):
        scorer.score(np.zeros(16000 * 11, np.float32), ["six"], utt="u1")
    with pytest.raises(ValueError, match="u2.*not all finite"):
        scorer.score(np.full(1600, np.nan, np.float32), ["six"], utt="u2")
    with pytest.raises(ValueError, match="window_s"):
        WhisperScorer("whisper-tiny.en", window_s=31)
