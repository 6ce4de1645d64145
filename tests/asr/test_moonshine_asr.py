"""Moonshine tiny-en backend on real English speech (1-best and its one-path lattice)."""
import numpy as np
import pytest

from speechlm.asr.moonshine_asr import MoonshineASR
from speechlm.core import catalogue
from speechlm.core.wer import score_texts
from speechlm.data.audio import read_audio, resample
from speechlm.lattice import ConfusionNetwork
from speechlm.testing.shared_data import shared_data_dir

SAMPLES = shared_data_dir("english_speech_samples")
pytestmark = [
    pytest.mark.skipif(SAMPLES is None, reason="shared English samples not found"),
    pytest.mark.skipif(not catalogue.installed("moonshine-tiny-en"),
                       reason="moonshine-tiny-en not installed"),
]


def sphinx_refs(folder: str, listing: str) -> dict[str, tuple[np.ndarray, list[str]]]:
    out = {}
    for line in (SAMPLES / folder / listing).read_text().splitlines():
        words = line.split()
        utt = words[-1].strip("()")
        out[utt] = (read_audio(str(SAMPLES / folder / f"{utt}.wav")),
                    [w for w in words[:-1] if w not in ("<s>", "</s>")])
    return out


@pytest.fixture(scope="module")
def asr():
    return MoonshineASR("moonshine-tiny-en")


def test_card_one_best_with_lattice_and_wcn(asr):
    x = read_audio(str(SAMPLES / "pocketsphinx_cards" / "003.wav"))
    hyps, lat = asr(x, "003")
    assert len(hyps) == 1 and hyps[0].text == "seven of clubs"
    assert lat.best_path().words == ("seven", "of", "clubs")
    starts = lat.best_path().starts
    assert list(starts) == sorted(starts) and lat.best_path().ends[-1] <= len(x) / 16000 + 0.1
    cn = ConfusionNetwork.from_lattice(lat)
    cn.check()
    assert cn.mbr_words() == ["seven", "of", "clubs"]
    assert all(b[0].posterior == pytest.approx(1.0) for b in cn.bins)


def test_bad_input(asr, tmp_path):
    with pytest.raises(catalogue.ModelFileError, match="encoder_model.ort"):
        MoonshineASR(tmp_path)
    with pytest.raises(ValueError, match="model_arch"):
        MoonshineASR(model_arch="huge")
    with pytest.raises(ValueError, match="'e'"):
        asr(np.zeros(0, np.float32), "e")


@pytest.mark.slow
def test_wer_on_cards_and_librivox(asr):
    for folder, listing, max_wer in (("pocketsphinx_cards", "cards.transcription", 30.0),
                                     ("pocketsphinx_librivox", "transcription", 20.0)):
        data = sphinx_refs(folder, listing)
        out = asr.decode_batch([x for x, _ in data.values()], list(data))
        hyp = {u: hs[0].text.split() for u, (hs, _) in zip(data, out, strict=True)}
        stats = score_texts({u: r for u, (_, r) in data.items()}, hyp, normalize=True)
        assert stats.wer < max_wer, (folder, stats.wer, hyp)


@pytest.mark.slow
def test_long_audio_and_other_rates(asr):
    books = sphinx_refs("pocketsphinx_librivox", "transcription")
    cards = sphinx_refs("pocketsphinx_cards", "cards.transcription")
    parts = list(books.values()) + list(cards.values())
    x = np.concatenate([p[0] for p in parts])
    ref = [w for p in parts for w in p[1]]
    hyps, lat = asr(resample(x, 16000, 8000), "long", sample_rate=8000)  # 34 s at 8 kHz
    assert score_texts({"l": ref}, {"l": hyps[0].text.split()}).wer < 30.0
    assert lat.best_path().ends[-1] > 30.0
