"""The one recognizer: a ``DecodeConfig`` in, ``Result`` objects out.

``speechlm decode``, the Python API (``speechlm.load_asr``), the HTTP server and the
benchmarks all build their recognizer here, so a setting means the same everywhere and the
lattice -> confusion network step happens in one place.

Backends are a plug point: a name in :data:`BACKEND_CLASSES` maps to a lazy
``"module:Class"`` path (vLLM's registry style), so a backend's dependencies load only when
it is chosen. A backend has ``name``, ``sample_rate``, ``am_scale`` (the acoustic scale of
its lattice posteriors), ``has_lattice`` and:

* ``prepare(samples) -> input``: one utterance's model input from mono float32 samples at
  ``sample_rate`` (features for ESPnet, the samples themselves for PocketSphinx);
* ``data_dir_inputs(data_dir, d, utts, work_dir, nj=, job=) -> Iterator[(utt, input)]``: the
  inputs of utterances ``utts`` of data dir ``data_dir`` (read as ``d``); ESPnet computes
  features once into ``work_dir`` and normalises each speaker by the mean over all of
  their utterances;
* ``decode(batch: list[(utt, input)]) -> list[(hypotheses best first, lattice or None)]``;
  an input of None (audio too short for one frame) decodes to no hypothesis.

>>> rec = Recognizer(DecodeConfig(backend="pocketsphinx", lattice=True, nbest=3))  # doctest: +SKIP
>>> [r.text for r in rec.recognize([("u1", samples)])]                              # doctest: +SKIP
['ten of clubs']
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechlm.asr.decode_config import DecodeConfig
from speechlm.core.hypothesis import Hypothesis

if TYPE_CHECKING:
    from speechlm.lattice import ConfusionNetwork, Lattice

__all__ = ["BACKEND_CLASSES", "DecodeConfig", "Recognizer", "Result"]

BACKEND_CLASSES = {
    "espnet": "speechlm.asr.recognizer:EspnetBackend",
    "pocketsphinx": "speechlm.asr.recognizer:PocketSphinxBackend",
    "whisper": "speechlm.asr.recognizer:WhisperBackend",
    "moonshine": "speechlm.asr.recognizer:MoonshineBackend",
    # resolved by name only when chosen: asr never imports the LLM side
    "speech-llm": "speechlm.llm.speech_llm:SpeechLLMBackend",
}


@dataclass
class Result:
    """One utterance's recognition.

    Args:
        utt: utterance id.
        hyps: hypotheses best first (empty when nothing was recognised).
        lattice: the word lattice, None where the backend or the search gives none.
        cn: the word confusion network of the lattice (None without one or when not asked).
    """

    utt: str
    hyps: list[Hypothesis]
    lattice: Lattice | None = None
    cn: ConfusionNetwork | None = None

    @property
    def text(self) -> str:
        return self.hyps[0].text if self.hyps else ""

    @property
    def ctm(self) -> list[str]:
        """CTM lines ``utt 1 start dur word confidence`` of the WCN's MBR words."""
        return self.cn.ctm_lines() if self.cn is not None else []


class Recognizer:
    """An ASR model loaded once from a :class:`DecodeConfig`.

    Attributes:
        config: the config it was built from.
        name: the model's name (backend name or the model dir's experiment tag).
        sample_rate: rate of the samples ``recognize`` takes.
        am_scale: acoustic scale of lattice posteriors (for WCNs).
        has_lattice: whether results carry lattices.
    """

    def __init__(self, config: DecodeConfig) -> None:
        config = config.with_model_defaults()
        self.config = config
        module, cls = BACKEND_CLASSES[config.backend].split(":")
        self.backend = getattr(importlib.import_module(module), cls)(config)
        self.name = self.backend.name
        self.sample_rate = int(self.backend.sample_rate)
        self.am_scale = float(self.backend.am_scale)
        self.has_lattice = bool(self.backend.has_lattice)

    def __repr__(self) -> str:
        return (f"Recognizer({self.config.backend}:{self.name}, sample_rate="
                f"{self.sample_rate}, lattice={self.has_lattice})")

    @property
    def info(self) -> dict:
        """What the server and the demo show about the model."""
        return {"backend": self.config.backend, **getattr(self.backend, "info", {})}

    def prepare(self, samples: np.ndarray) -> Any:
        """Model input of one utterance (mono float32 at ``sample_rate``)."""
        return self.backend.prepare(np.asarray(samples, dtype=np.float32))

    def data_dir_inputs(self, data_dir: str | os.PathLike, d, utts: list[str],
                        work_dir: str | os.PathLike, *, nj: int = 1, job: int = 1
                        ) -> Iterator[tuple[str, Any]]:
        """``(utt, input)`` of ``utts`` of ``data_dir`` (read as ``d``; see the module
        docstring); ``work_dir`` holds what is computed once (features)."""
        return self.backend.data_dir_inputs(Path(data_dir), d, utts, Path(work_dir),
                                            nj=nj, job=job)

    def decode(self, batch: Sequence[tuple[str, Any]], *, wcn: bool = True) -> list[Result]:
        """Decode prepared inputs; with ``wcn`` each lattice also gets its WCN."""
        outputs = self.backend.decode(list(batch))
        results = []
        for (utt, _), (hyps, lattice) in zip(batch, outputs, strict=True):
            cn = None
            if lattice is not None and wcn:
                from speechlm.lattice import ConfusionNetwork

                cn = ConfusionNetwork.from_lattice(lattice, am_scale=self.am_scale)
                cn.utt = utt
            results.append(Result(utt, list(hyps[:self.config.nbest]), lattice, cn))
        return results

    def recognize(self, batch: Iterable[tuple[str, np.ndarray]], *, wcn: bool = True
                  ) -> list[Result]:
        """Recognize ``(utt, samples)`` pairs (mono float32 at ``sample_rate``)."""
        return self.decode([(utt, self.prepare(x)) for utt, x in batch], wcn=wcn)


# ---- backends -------------------------------------------------------------------------
class PocketSphinxBackend:
    """PocketSphinx's US-English pip model (or ``ps_*`` files); always through a lattice."""

    has_lattice = True

    def __init__(self, config: DecodeConfig) -> None:
        from speechlm.asr.pocketsphinx_asr import PocketSphinxASR

        self.asr = PocketSphinxASR(hmm=config.ps_hmm, lm=config.ps_lm,
                                   dictionary=config.ps_dict, jsgf=config.ps_jsgf,
                                   lw=config.ps_lw, nbest=config.nbest)
        self.name = "pocketsphinx"
        self.sample_rate = self.asr.sample_rate
        self.am_scale = self.asr.posterior_am_scale
        self.info = {"lw": self.asr.lw}

    def prepare(self, samples: np.ndarray) -> np.ndarray:
        return samples

    def data_dir_inputs(self, data_dir, d, utts, work_dir, *, nj, job):
        from speechlm.data.features import iter_utterance_audio

        return iter_utterance_audio(d, utts, self.sample_rate)

    def decode(self, batch):
        out = []
        for utt, x in batch:
            # The decoder carries feature state (its cepstral mean) from one utterance into
            # the next even with batch CMN, so a result would depend on what was decoded
            # before (job splits, another user's request): every utterance starts afresh.
            self.asr.decoder.reinit_feat()
            out.append(self.asr(x, utt=utt))
        return out


class _PretrainedBackend:
    """A pretrained model of the catalogue (or a user's directory of the same format)
    decoding whole utterances; its lattice is built from its N-best."""

    has_lattice = True
    default_model = ""

    def __init__(self, config: DecodeConfig) -> None:
        self.model = config.model or self.default_model
        self.asr = self._load(config)
        self.name = self.asr.name
        self.sample_rate = self.asr.sample_rate
        self.am_scale = self.asr.posterior_am_scale
        self.info = {"model": self.name, "path": str(self.asr.path)}

    def _load(self, config: DecodeConfig):
        raise NotImplementedError

    def prepare(self, samples: np.ndarray) -> np.ndarray:
        return samples

    def data_dir_inputs(self, data_dir, d, utts, work_dir, *, nj, job):
        from speechlm.data.features import iter_utterance_audio

        return iter_utterance_audio(d, utts, self.sample_rate)

    def decode(self, batch):
        if not batch:
            return []
        utts, signals = zip(*batch, strict=True)
        return self.asr.decode_batch(list(signals), list(utts))


class WhisperBackend(_PretrainedBackend):
    """Whisper through CTranslate2 (``speechlm.asr.whisper_asr``): padded batches through
    the encoder, beam search with ``nbest`` hypotheses, an N-best lattice."""

    default_model = "whisper-tiny.en"

    def _load(self, config: DecodeConfig):
        import torch

        from speechlm.asr.whisper_asr import WhisperASR

        beam = max(config.beam or 5, config.nbest)
        device = "cuda" if config.device.startswith("cuda") else "cpu"
        return WhisperASR(self.model, nbest=config.nbest, beam_size=beam, device=device,
                          compute_type="int8" if device == "cpu" else "float16",
                          threads=torch.get_num_threads())  # decode jobs set it per job


class MoonshineBackend(_PretrainedBackend):
    """Moonshine (``speechlm.asr.moonshine_asr``): a 1-best only."""

    default_model = "moonshine-tiny-en"

    def _load(self, config: DecodeConfig):
        from speechlm.asr.moonshine_asr import MoonshineASR

        return MoonshineASR(self.model)


def espnet_options(config: DecodeConfig) -> dict:
    """Beam-search options of an ESPnet model dir: the config's (after
    ``DecodeConfig.with_model_defaults``), else ESPnet's asr.sh defaults; ``nbest`` is
    capped by the beam."""
    from speechlm.asr.espnet_asr import DEFAULT_DECODE

    options = dict(DEFAULT_DECODE)
    for key, value in (("beam_size", config.beam), ("ctc_weight", config.ctc_weight),
                       ("penalty", config.penalty)):
        if value is not None:
            options[key] = value
    options["nbest"] = min(config.nbest, int(options["beam_size"]))
    return options


class EspnetBackend:
    """An ESPnet2 CTC/attention model dir: joint beam search, or with ``lattice`` a CTC
    lattice over the graph whose N-best is rescored by the attention decoder."""

    def __init__(self, config: DecodeConfig) -> None:
        from speechlm.asr.espnet_asr import EspnetASR
        from speechlm.asr.model_dir import check_model_dir

        model_dir = check_model_dir(config.model)
        self.config = config
        options = espnet_options(config)
        self.asr = EspnetASR(model_dir, beam_size=int(options["beam_size"]),
                             ctc_weight=float(options["ctc_weight"]),
                             penalty=float(options["penalty"]), nbest=int(options["nbest"]),
                             device=config.device)
        self.name = (model_dir.resolve().parent.name if model_dir.name == "model"
                     else model_dir.name)
        self.sample_rate = self.asr.sample_rate
        self.has_lattice = config.lattice
        self.lattice_asr = None
        self.am_scale = 1.0
        self.info = {"search": "beam", **self.asr.options}
        if config.lattice:
            from speechlm.asr.ctc_graph import DecodingGraph
            from speechlm.asr.ctc_lattice import EspnetLatticeASR, LatticeDecodeConfig

            given = {"beam": config.search_beam, "lattice_beam": config.lattice_beam,
                     "lm_scale": config.lm_scale, "lm_weight": config.lm_weight}
            lattice_config = LatticeDecodeConfig.from_dict({
                **{k: v for k, v in given.items() if v is not None},
                # the rescored list must hold at least the N-best asked for
                "nbest": max(config.rescore_nbest or 10, config.nbest),
                "ctc_weight": float(options["ctc_weight"]),
                "penalty": float(options["penalty"])})
            self.lattice_asr = EspnetLatticeASR(self.asr, DecodingGraph.read(config.graph),
                                                lattice_config)
            # lattices keep unscaled scores; the search weighed acoustics by 1 / lm_scale
            self.am_scale = 1.0 / lattice_config.lm_scale
            self.info = {"search": "lattice", **lattice_config.__dict__}

    def prepare(self, samples: np.ndarray) -> np.ndarray | None:
        # one utterance alone: its own mean, padded with the training prior (speaker CMN)
        feats = self.asr.features(samples)
        return feats if len(feats) else None

    def data_dir_inputs(self, data_dir, d, utts, work_dir, *, nj, job):
        import kaldiio

        from speechlm.data.features import compute_feats_for_data_dir, job_file

        feats_dir = work_dir / "feats"
        compute_feats_for_data_dir(data_dir, feats_dir, self.asr.fbank, nj=nj, job=job,
                                   progress=False, utts=utts)
        feats = kaldiio.load_scp(str(job_file(feats_dir, "feats.scp", job)))
        # A model trained with speaker CMN gets each speaker's mean over all their
        # utterances (jobs hold whole speakers); speakers too short for a mean of their own
        # (e.g. one utterance each, when utt2spk was made up) are padded with the job's mean.
        means = {} if self.asr.cmn is None else self.asr.cmn.speaker_means(
            ((u, feats[u]) for u in utts if u in feats), d.utt2spk, set_prior=True)
        # An utterance too short for one frame has no features: it decodes to nothing.
        return ((utt, self.asr.normalize(feats[utt], means.get(d.utt2spk[utt]))
                 if utt in feats else None) for utt in utts)

    def decode(self, batch):
        out = []
        for utt, feats in batch:
            if feats is None:
                out.append(([], None))
            elif self.lattice_asr is None:
                out.append((self.asr.decode_features(feats), None))
            else:
                out.append(self.lattice_asr(feats, utt))
        return out
