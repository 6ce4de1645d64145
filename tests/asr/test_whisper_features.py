"""Whisper encoder frames as ASR features: config forms, and frames of a real FSDD digit."""
import numpy as np
import pytest
import yaml

from speechlm.asr.whisper_features import (
    WhisperFeatureConfig,
    feature_config_from_dict,
    frontend_entry,
)
from speechlm.core import catalogue
from speechlm.data.audio import read_audio
from speechlm.data.features import FbankConfig
from speechlm.testing.shared_data import shared_data_dir

RECIPE_CONF = "egs/fsdd/asr1/conf"


def test_config_forms_round_trip_and_errors():
    with open(f"{RECIPE_CONF}/whisper_feats.yaml") as f:
        cfg = feature_config_from_dict(yaml.safe_load(f))
    assert isinstance(cfg, WhisperFeatureConfig) and cfg.window == "utterance"
    assert WhisperFeatureConfig.from_dict(cfg.to_dict()) == cfg
    assert frontend_entry(cfg) == {"whisper_encoder": cfg.to_dict()}
    with open(f"{RECIPE_CONF}/fbank.yaml") as f:
        fb = feature_config_from_dict(yaml.safe_load(f))
    assert isinstance(fb, FbankConfig) and frontend_entry(fb) == {"fbank": fb.to_dict()}
    with pytest.raises(ValueError, match="window"):
        WhisperFeatureConfig(window="30s")
    with pytest.raises(ValueError, match="unknown option"):
        feature_config_from_dict({"type": "whisper_encoder", "layers": 2})


FSDD = shared_data_dir("fsdd")


@pytest.mark.slow
@pytest.mark.skipif(FSDD is None or not catalogue.installed("whisper-tiny.en"),
                    reason="FSDD or whisper-tiny.en missing")
def test_frames_of_a_digit_utterance_and_padded_windows():
    x = read_audio(str(FSDD / "recordings" / "6_yweweler_7.wav"), target_sample_rate=16000)
    mel_frames = len(x) // 160  # Whisper's 10 ms log-mel hop
    short = WhisperFeatureConfig().extract(x)
    padded = WhisperFeatureConfig(window="padded").extract(x)
    assert short.shape == padded.shape == (mel_frames // 2, 384)
    assert np.isfinite(short).all() and short.std() > 0.1
    # the two windows see different context, so their frames differ (a model keeps one)
    assert not np.allclose(short, padded, atol=1e-2)
    # too short for two log-mel frames: no frames, not an error
    assert WhisperFeatureConfig().extract(np.zeros(100, np.float32)).shape[0] == 0
