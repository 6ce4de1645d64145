"""Units from the real Whisper tiny.en encoder on espeak speech (slow: loads the model)."""
from __future__ import annotations

import numpy as np
import pytest

from speechlm.core.errors import InputError


@pytest.mark.slow
def test_whisper_frames_to_units_are_deterministic():
    pytest.importorskip("faster_whisper")
    from speechlm.data.tts import Synthesizer, parse_voice
    from speechlm.slm.units import KMeansUnits, UnitError, WhisperFrames

    synth = Synthesizer(16000)
    audio = [synth.synthesize(t, parse_voice("espeak:en-us"))[0]
             for t in ("turn on the kitchen lights", "play some jazz music please")]
    enc = WhisperFrames("whisper-tiny.en")
    feats = [enc(x, f"u{i}") for i, x in enumerate(audio)]
    for x, f in zip(audio, feats, strict=True):
        assert f.shape[1] == 384
        assert abs(f.shape[0] - len(x) / 16000 / 0.02) <= 2  # one frame per 20 ms
    np.testing.assert_array_equal(enc(audio[0]), feats[0])
    allf = np.concatenate(feats)
    km1 = KMeansUnits.fit(allf, 20, encoder_fingerprint=enc.fingerprint, seed=0)
    km2 = KMeansUnits.fit(allf, 20, encoder_fingerprint=enc.fingerprint, seed=0)
    u1 = [km1.units(f, enc.fingerprint) for f in feats]
    assert u1 == [km2.units(f, enc.fingerprint) for f in feats]
    assert all(a != b for u in u1 for a, b in zip(u, u[1:], strict=False))  # de-duplicated
    assert enc.fingerprint.startswith("whisper-ct2:whisper-tiny.en:")
    other = KMeansUnits(km1.centroids, "whisper-ct2:whisper-base:0000", 0)
    with pytest.raises(UnitError, match="refit"):
        other.units(feats[0], enc.fingerprint)
    with pytest.raises(InputError, match="u9.*25 ms"):
        enc(np.zeros(100, np.float32), "u9")
