"""Speaker encoder: same speaker closer than another, batching, parity with Resemblyzer."""
from __future__ import annotations

import numpy as np
import pytest

from speechlm.core import catalogue
from speechlm.data.audio import load_audio, read_audio
from speechlm.encoders import EncoderError, load_encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_same_speaker_closer_than_other_speaker(speaker_encoder, fsdd_takes):
    george, jackson = (speaker_encoder.embed(fsdd_takes[s]) for s in ("george", "jackson"))
    assert george.shape == (5, 256) and george.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(george, axis=1), 1.0, atol=1e-5)
    vecs = np.concatenate([george, jackson])
    cos = vecs @ vecs.T
    same = np.kron(np.eye(2), np.ones((5, 5))).astype(bool) & ~np.eye(10, dtype=bool)
    other = ~np.kron(np.eye(2), np.ones((5, 5))).astype(bool)
    print(f"same speaker cosine {cos[same].mean():.3f} (min {cos[same].min():.3f}), "
          f"other speaker {cos[other].mean():.3f} (max {cos[other].max():.3f})")
    assert cos[same].mean() > cos[other].mean() + 0.1
    # Every take's nearest other take is by its own speaker, though all say the same digits.
    nearest = np.where(np.eye(10, dtype=bool), -np.inf, cos).argmax(axis=1)
    assert list(nearest // 5) == [0] * 5 + [1] * 5


def test_batched_equals_unbatched_and_resemblyzer(speaker_encoder, fsdd_takes):
    from resemblyzer import VoiceEncoder, preprocess_wav

    paths = fsdd_takes["george"] + fsdd_takes["jackson"][:2]
    batched = speaker_encoder.embed(paths)  # batch_size 4 partials: several flushes
    single = np.stack([speaker_encoder.embed([p])[0] for p in paths])
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)
    # Resemblyzer's own path, on the same 16 kHz samples.
    ref = VoiceEncoder("cpu", verbose=False,
                       weights_fpath=catalogue.locate("resemblyzer") / "pretrained.pt")
    expected = np.stack([ref.embed_utterance(preprocess_wav(read_audio(str(p)))) for p in paths])
    np.testing.assert_allclose(batched, expected, atol=1e-5, rtol=0)


def test_item_forms_agree(speaker_encoder, fsdd_takes):
    path = fsdd_takes["jackson"][3]
    samples_8k, sr = load_audio(str(path))
    assert sr == 8000
    by_path, by_pair, by_16k = speaker_encoder.embed(
        [path, (samples_8k, sr), read_audio(str(path), target_sample_rate=16000)])
    np.testing.assert_allclose(by_path, by_pair, atol=1e-6)
    np.testing.assert_allclose(by_path, by_16k, atol=1e-6)


def test_bad_items_and_checkpoints(speaker_encoder, fsdd_takes, tmp_path):
    with pytest.raises(EncoderError, match="item 1: audio is silent"):
        speaker_encoder.embed([fsdd_takes["george"][0], np.zeros(16000, np.float32)])
    with pytest.raises(EncoderError, match="item 0: no speech found"):
        speaker_encoder.embed([np.full(16000, 0.1, np.float32)])  # DC: the VAD hears nothing
    with pytest.raises(EncoderError, match="item 0 is a list"):
        speaker_encoder.embed([[0.1, 0.2]])
    with pytest.raises(EncoderError, match=r"item 0: expected mono"):
        speaker_encoder.embed([np.ones((2, 16000), np.float32)])
    with pytest.raises(ValueError, match="item 0.*missing.wav"):
        speaker_encoder.embed([tmp_path / "missing.wav"])
    (tmp_path / "a.pt").write_bytes(b"")
    (tmp_path / "b.pt").write_bytes(b"")
    with pytest.raises(catalogue.ModelFileError, match="expected one .pt"):
        load_encoder(tmp_path)
    import torch

    (tmp_path / "b.pt").unlink()
    torch.save({"model_state": {"other.weight": torch.zeros(2)}}, tmp_path / "a.pt")
    with pytest.raises(catalogue.ModelFileError, match="not a Resemblyzer checkpoint"):
        load_encoder(tmp_path)
