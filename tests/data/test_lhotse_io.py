import dataclasses

import pytest

from speechlm.data.kaldi_dir import DataDirError, read_data_dir, validate_data_dir
from speechlm.data.lhotse_io import cuts_to_data_dir, data_dir_to_cuts
from speechlm.testing import make_data_dir


def without_utt2dur(d):
    # Export always adds utt2dur (lhotse's export_to_kaldi writes it).
    return dataclasses.replace(d, utt2dur=None)


@pytest.mark.parametrize("kw", [{}, {"segments": True}, {"piped": True}],
                         ids=["plain", "segments", "piped"])
def test_round_trip(tmp_path, kw):
    src = make_data_dir(tmp_path / "src", 4, extra={"utt2intent": list("abcd")}, **kw)
    cuts = data_dir_to_cuts(src)
    assert [c.id for c in cuts] == read_data_dir(src).utterances
    sup = cuts[0].supervisions[0]
    assert (sup.id, sup.text, sup.speaker, sup.custom) == (
        "spk0-utt0000", "ZERO ONE", "spk0", {"utt2intent": "a"})
    assert cuts[0].duration == pytest.approx(0.5)
    assert cuts[0].load_audio().shape == (1, 8000)

    cuts_to_data_dir(cuts, tmp_path / "out")
    validate_data_dir(tmp_path / "out", expected_sample_rate=16000)
    a, b = read_data_dir(src), read_data_dir(tmp_path / "out")
    assert without_utt2dur(a) == without_utt2dur(b)
    assert b.utt2dur["spk0-utt0000"] == pytest.approx(0.5)


def test_true_sample_rate_is_read_not_assumed(tmp_path):
    # lhotse's loader trusts its sampling_rate argument; an 8 kHz file would load as
    # half its samples at "16 kHz". We read the header instead.
    src = make_data_dir(tmp_path / "src", 2, sample_rate=8000)
    cut = data_dir_to_cuts(src)[0]
    assert cut.sampling_rate == 8000 and cut.load_audio().shape == (1, 4000)
    cut = data_dir_to_cuts(src, sample_rate=16000)[0]
    assert cut.sampling_rate == 16000 and cut.load_audio().shape == (1, 8000)


def test_resampled_cuts_export_the_original_file(tmp_path):
    src = make_data_dir(tmp_path / "src", 2, sample_rate=8000)
    cuts_to_data_dir(data_dir_to_cuts(src, sample_rate=16000), tmp_path / "out")
    assert read_data_dir(tmp_path / "out").wav_scp == read_data_dir(src).wav_scp  # no ffmpeg


def test_missing_text_and_empty_transcripts(tmp_path):
    src = make_data_dir(tmp_path / "src", 2)
    (src / "text").write_text("spk0-utt0000\nspk1-utt0001 ONE\n")
    cuts = data_dir_to_cuts(src)
    assert [c.supervisions[0].text for c in cuts] == ["", "ONE"]
    (src / "text").unlink()
    cuts = data_dir_to_cuts(src)
    assert cuts[0].supervisions[0].text is None
    cuts_to_data_dir(cuts, tmp_path / "out")
    assert not (tmp_path / "out" / "text").exists()


def test_utterance_without_recording_is_a_clear_error(tmp_path):
    src = make_data_dir(tmp_path / "src", 2)
    (src / "wav.scp").write_text((src / "wav.scp").read_text().splitlines()[0] + "\n")
    with pytest.raises(DataDirError, match=r"wav.scp: utterance 'spk1-utt0001' has no recording"):
        data_dir_to_cuts(src)
