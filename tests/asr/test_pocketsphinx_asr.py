"""PocketSphinx backend on real English speech (the wheel's model, ../shared/data samples)."""
import math

import pytest
import soundfile as sf

from speechlm.asr.pocketsphinx_asr import PocketSphinxASR, _prune_slf, normalize_word
from speechlm.lattice.confusion_network import ConfusionNetwork
from speechlm.testing.shared_data import shared_data_dir

CARDS = shared_data_dir("english_speech_samples/pocketsphinx_cards")
pytestmark = pytest.mark.skipif(CARDS is None, reason="shared English samples not found")


@pytest.fixture(scope="module")
def asr():
    return PocketSphinxASR()


def test_normalize_word():
    assert normalize_word("clubs(2)") == "clubs"
    assert normalize_word("<sil>") == normalize_word("[NOISE]") == "<eps>"
    assert normalize_word("++UH++") == normalize_word("!NULL") == "<eps>"


def test_decodes_cards_with_a_lattice_that_agrees(asr):
    x, sr = sf.read(CARDS / "001.wav", dtype="float32")
    hyps, lattice = asr(x, sr, utt="001")
    assert hyps[0].text == "ten of clubs"
    # the lattice, with the LM put back, ranks paths like the decoder
    assert " ".join(lattice.best_path(am_scale=asr.posterior_am_scale).words) == hyps[0].text
    assert len({h.text for h in hyps}) == len(hyps) > 1
    cn = ConfusionNetwork.from_lattice(lattice, am_scale=asr.posterior_am_scale)
    cn.check()
    assert cn.mbr_words() == ["ten", "of", "clubs"]
    assert all(math.isfinite(a.lm_score) and a.lm_score <= 0 for a in lattice.arcs
               if a.word != "<eps>")


def test_resamples_other_rates(asr):
    from speechlm.data.audio import resample

    x, sr = sf.read(CARDS / "003.wav", dtype="float32")
    hyps, _ = asr(resample(x, sr, 8000), 8000, utt="003")
    assert hyps[0].text == "seven of clubs"


def test_prune_slf_keeps_header_consistent(tmp_path):
    slf = tmp_path / "x.slf"
    slf.write_text("VERSION=1.0\nstart=0\nend=2\nN=3\tL=3\nI=0\tt=0.0\tW=a\nI=1\tt=0.1\tW=b\n"
                   "I=2\tt=0.2\tW=!NULL\nJ=0\tS=0\tE=1\ta=-1.0\tp=0.9\n"
                   "J=1\tS=1\tE=2\ta=-1.0\tp=0.9\nJ=2\tS=0\tE=2\ta=-5.0\tp=1e-9\n")
    text = _prune_slf(str(slf), 1e-4)
    assert "L=2" in text and "p=1e-9" not in text


def test_missing_model_file():
    with pytest.raises(FileNotFoundError, match="lm"):
        PocketSphinxASR(lm="/nonexistent/lm.arpa")
