"""Decode audio with an ESPnet2 CTC/attention model from a speechlm model dir.

Features are computed by ``speechlm.data.features`` exactly as in training (the settings,
fbank and optional per-speaker CMN, travel in the model dir's ``frontend.yaml``); ESPnet's
``Speech2Text`` runs joint CTC/attention beam search on them.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import yaml

from speechlm.asr import model_dir as md
from speechlm.asr.whisper_features import TYPE, WhisperFeatureConfig
from speechlm.core.hypothesis import Hypothesis
from speechlm.data.audio import resample
from speechlm.data.cmn import SpeakerCMN
from speechlm.data.features import FbankConfig, compute_fbank

_SPECIAL = frozenset({"<blank>", "<sos/eos>"})

# Defaults when neither the caller nor decode.yaml says otherwise (ESPnet's asr.sh values).
DEFAULT_DECODE = {"beam_size": 10, "ctc_weight": 0.3, "penalty": 0.0, "nbest": 1}


class EspnetASR:
    """An ESPnet2 ASR model loaded from a model dir, decoding one utterance at a time.

    Args:
        model_dir: a directory written by ``export_model_dir`` (see ``model_dir.py``).
        beam_size, ctc_weight, penalty, nbest: decoding options; ``None`` takes the model
            dir's ``decode.yaml``, then ``DEFAULT_DECODE``.
        device: torch device string.

    Example (with a trained model dir)::

        asr = EspnetASR("exp/asr_conformer/model")
        hyps = asr(samples, sample_rate=8000)   # best first
        print(hyps[0].text, hyps[0].score)
    """

    def __init__(self, model_dir: str | os.PathLike, *, beam_size: int | None = None,
                 ctc_weight: float | None = None, penalty: float | None = None,
                 nbest: int | None = None, device: str = "cpu") -> None:
        self.model_dir = md.check_model_dir(model_dir)
        frontend = md.read_yaml(self.model_dir / md.FRONTEND)
        if TYPE in frontend:  # Whisper encoder frames instead of fbank
            self.fbank = WhisperFeatureConfig.from_dict(frontend[TYPE])
        else:
            self.fbank = FbankConfig.from_dict(frontend.get("fbank", frontend))
        # per-speaker mean normalisation, when the model was trained with it
        self.cmn = SpeakerCMN.from_dict(frontend.get("cmn"))
        # the model dir's decode.yaml speaks DecodeConfig's names (beam = beam_size)
        exported = md.read_yaml(self.model_dir / md.DECODE)
        if "beam" in exported:
            exported["beam_size"] = exported.pop("beam")
        options = dict(DEFAULT_DECODE, **{k: v for k, v in exported.items()
                                          if k in DEFAULT_DECODE})
        for key, value in (("beam_size", beam_size), ("ctc_weight", ctc_weight),
                           ("penalty", penalty), ("nbest", nbest)):
            if value is not None:
                options[key] = value
        if int(options["nbest"]) > int(options["beam_size"]):
            raise ValueError(f"nbest ({options['nbest']}) cannot exceed beam_size "
                             f"({options['beam_size']})")
        self.options = options
        self._speech2text = self._build(device)

    def _build(self, device: str):
        from speechlm.core.quiet import no_nltk_downloads

        with no_nltk_downloads():  # g2p_en tries nltk.download at import
            from espnet2.bin.asr_inference import Speech2Text  # heavy import: only when used

        config = md.resolved_config(self.model_dir)
        # Speech2Text reads its config from a file; give it one with absolute paths.
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump(config, f, sort_keys=False, allow_unicode=True)
            config_path = f.name
        try:
            return Speech2Text(
                asr_train_config=config_path, asr_model_file=str(self.model_dir / md.WEIGHTS),
                device=device, beam_size=int(self.options["beam_size"]),
                ctc_weight=float(self.options["ctc_weight"]),
                penalty=float(self.options["penalty"]), nbest=int(self.options["nbest"]),
                lm_weight=0.0)
        finally:
            os.unlink(config_path)

    @property
    def asr_model(self):
        """The ``ESPnetASRModel`` (encoder, CTC head, attention decoder), in eval mode."""
        return self._speech2text.asr_model

    @property
    def token_type(self) -> str:
        return str(md.resolved_config(self.model_dir).get("token_type", "char"))

    @property
    def sample_rate(self) -> int:
        return self.fbank.sample_rate

    def features(self, samples: np.ndarray, speaker_mean: np.ndarray | None = None) -> np.ndarray:
        """(T, num_mel_bins) features of 1-D float samples at ``self.sample_rate``, as the
        model expects them: fbank, then (for a model trained with speaker CMN) minus
        ``speaker_mean`` or, without one, the utterance's own mean padded with the prior."""
        if isinstance(self.fbank, WhisperFeatureConfig):
            return self.normalize(self.fbank.extract(samples), speaker_mean)
        return self.normalize(compute_fbank(samples, self.fbank), speaker_mean)

    def normalize(self, feats: np.ndarray, speaker_mean: np.ndarray | None = None) -> np.ndarray:
        """Raw fbank -> model input (identity unless the model uses speaker CMN)."""
        if self.cmn is None or not len(feats):
            return feats
        return self.cmn.apply(feats, speaker_mean)

    def decode_features(self, feats: np.ndarray) -> list[Hypothesis]:
        """Beam search over one utterance's features (T, D); returns hypotheses best first."""
        import torch

        with torch.inference_mode():
            # a copy: ESPnet's global_mvn normalises its input in place, and as_tensor would
            # share the caller's array (decoding the same features twice would then differ)
            results = self._speech2text(torch.tensor(feats, dtype=torch.float32))
        hyps = []
        for _, tokens, _, hyp in results:
            # A search stopped by the length limit keeps <sos/eos> in its tokens: drop
            # special symbols before making the text.
            tokens = tuple(t for t in tokens if t not in _SPECIAL)
            text = "".join(" " if t == "<space>" else t for t in tokens)
            scores = tuple((k, float(v)) for k, v in sorted(hyp.scores.items()))
            hyps.append(Hypothesis(text=" ".join(text.split()), score=float(hyp.score),
                                   tokens=tokens, scores=scores))
        return hyps

    def __call__(self, samples: np.ndarray, sample_rate: int | None = None) -> list[Hypothesis]:
        """Decode 1-D float samples; resampled when ``sample_rate`` differs from the model's."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 2:  # (channels, time) or (time, channels): mix down to mono
            samples = samples.mean(axis=0 if samples.shape[0] < samples.shape[1] else 1)
        if sample_rate is not None and sample_rate != self.sample_rate:
            samples = resample(samples, sample_rate, self.sample_rate)
        return self.decode_features(self.features(samples))


def count_parameters(model_dir: str | os.PathLike) -> int:
    """Number of parameters stored in a model dir's weights."""
    import torch

    state = torch.load(Path(model_dir) / md.WEIGHTS, map_location="cpu")
    return int(sum(v.numel() for k, v in state.items()
                   if hasattr(v, "numel") and not k.startswith("normalize")))
