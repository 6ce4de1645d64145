"""Speech units: Whisper encoder frames -> k-means ids -> de-duplicated unit sequences.

Align-SLM (arXiv 2411.01834) builds on TWIST, whose units are HuBERT k-means clusters.
No HuBERT (nor wav2vec2 / WavLM) weights install here (not on the package index), so the
frame features are the last encoder layer of Whisper tiny.en through CTranslate2: 384
dims, one frame per 20 ms. The encoder is run on the utterance's own frames, *not* padded
to Whisper's 30 s window (CTranslate2 accepts that; 8x faster here, 0.03 s for 2 s of
speech), so a frame's vector depends only on the utterance.

A k-means model (``KMeansUnits``) is a directory with ``centroids.npy`` (K, D) float32
and ``km.json``: K, the seed, the number of frames it was fitted on, and the
``encoder_fingerprint`` of the features (model name, hash of ``model.bin``, layer,
padding). Assigning features from another encoder is refused: the ids would mean nothing.

Unit files are ``utt-id u1 u2 ...`` lines of ints (``read_units`` / ``write_units``, the one
reader and writer); the unit LM sees a line as the text ``"u12 u7 ..."``
(``units_to_text``), one word-level token per unit (``unit_tokenizer``).

>>> dedup([3, 3, 5, 5, 5, 3, 1, 1])
[3, 5, 3, 1]
>>> units_to_text([3, 5]), text_to_units("u3 u5", 10)
('u3 u5', [3, 5])
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechlm.asr.whisper_encoder import WhisperEncoder
from speechlm.core.errors import InputError

__all__ = ["KMeansUnits", "UnitError", "WhisperFrames", "dedup", "read_units", "text_to_units",
           "unit_tokenizer", "units_to_text", "write_units"]

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
KM_JSON, CENTROIDS = "km.json", "centroids.npy"
KM_VERSION = 1


class UnitError(InputError):
    """Units that do not fit: a k-means of another encoder, ids out of range, a bad line."""


def dedup(units: Iterable[int]) -> list[int]:
    """Collapse runs of the same unit (TWIST / GSLM de-duplication)."""
    out: list[int] = []
    for u in units:
        if not out or out[-1] != u:
            out.append(int(u))
    return out


def check_units(units: Sequence[int], num_units: int, where: str) -> list[int]:
    """``units`` as ints in ``[0, num_units)``; otherwise ``UnitError`` naming ``where``."""
    out = []
    for i, u in enumerate(units):
        if not isinstance(u, (int, np.integer)) or isinstance(u, bool):
            raise UnitError(f"{where}: unit {i} is {u!r}, not an int")
        if not 0 <= int(u) < num_units:
            raise UnitError(f"{where}: unit {i} is {u}, out of range [0, {num_units})")
        out.append(int(u))
    return out


def units_to_text(units: Sequence[int]) -> str:
    """The unit LM's text of a unit sequence: ``"u12 u7 ..."``."""
    return " ".join(f"u{int(u)}" for u in units)


def text_to_units(text: str, num_units: int, where: str = "text") -> list[int]:
    """Inverse of ``units_to_text``; anything but ``u<id>`` words in range is refused."""
    out = []
    for i, w in enumerate(text.split()):
        if len(w) < 2 or w[0] != "u" or not w[1:].isdigit():
            raise UnitError(f"{where}: word {i} ({w!r}) is not a unit u<id>")
        out.append(int(w[1:]))
    return check_units(out, num_units, where)


def read_units(path: str | Path, num_units: int) -> dict[str, list[int]]:
    """``utt-id u1 u2 ...`` lines -> utt -> units, each id checked against ``num_units``.

    Raises:
        UnitError: a line without units, a non-integer, an id out of range, a repeated
            utterance (the message names the file, line and utterance).
    """
    path = Path(path)
    out: dict[str, list[int]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{n} (utterance {parts[0]})"
        if len(parts) < 2:
            raise UnitError(f"{where}: no units")
        if parts[0] in out:
            raise UnitError(f"{where}: utterance repeated")
        try:
            ids = [int(x) for x in parts[1:]]
        except ValueError:
            raise UnitError(f"{where}: units must be integers") from None
        out[parts[0]] = check_units(ids, num_units, where)
    if not out:
        raise UnitError(f"{path}: no unit lines")
    return out


def write_units(path: str | Path, units: dict[str, Sequence[int]]) -> None:
    """Write ``utt-id u1 u2 ...`` lines, sorted by utterance, atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for utt in sorted(units):
            f.write(utt + " " + " ".join(str(int(u)) for u in units[utt]) + "\n")
    os.replace(tmp, path)


def unit_tokenizer(num_units: int, context_length: int = 256):
    """A word-level tokenizer over ``u0 .. u{K-1}``: ids 0..3 are ``<pad> <s> </s> <unk>``.

    Like the LM trainer's BPE, ``tokenizer(text)`` prepends ``<s>``; ``</s>`` ends a line.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if num_units < 2:
        raise ValueError(f"num_units must be >= 2, got {num_units}")
    vocab = {PAD: 0, BOS: 1, EOS: 2, UNK: 3}
    vocab.update({f"u{i}": 4 + i for i in range(num_units)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS,
                                   pad_token=PAD, unk_token=UNK,
                                   model_max_length=context_length)
    return fast


# --------------------------------------------------------------------------- features
class WhisperFrames(WhisperEncoder):
    """Last-layer Whisper encoder frames (T, D) of an utterance, via CTranslate2
    (``speechlm.asr.whisper_encoder``: the utterance's own log-mel frames, not padded to
    30 s), with the fingerprint a k-means model records.

    Args:
        model: catalogue name or CTranslate2 Whisper directory.
        threads: CTranslate2 CPU threads.
    """

    def __init__(self, model: str = "whisper-tiny.en", *, threads: int = 1) -> None:
        from speechlm.asr.whisper_asr import resolve_model_dir

        super().__init__(model, threads=threads, compute_type="int8")
        self.path = resolve_model_dir(model)
        h = hashlib.sha256()
        with open(self.path / "model.bin", "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        self.fingerprint = (f"whisper-ct2:{Path(str(model)).name}:{h.hexdigest()[:16]}"
                            ":layer=last:pad=none:int8")

    def __call__(self, samples: np.ndarray, utt: str = "utt") -> np.ndarray:
        """(T_frames, D) float32 features; T_frames = mel frames // 2 (20 ms a frame)."""
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1 or len(x) < 400:
            raise InputError(f"utterance {utt!r}: need mono audio of at least 25 ms, "
                             f"got shape {x.shape}")
        if len(x) > 30 * self.sample_rate:
            raise InputError(f"utterance {utt!r}: {len(x) / self.sample_rate:.1f} s is over "
                             f"Whisper's 30 s window; cut it first")
        return super().__call__(x, utt).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- k-means
@dataclass
class KMeansUnits:
    """Centroids of a k-means over encoder frames and the encoder they belong to.

    >>> km = KMeansUnits.fit(np.random.default_rng(0).normal(size=(500, 4)).astype("f4"),
    ...                      k=3, encoder_fingerprint="test", seed=0)
    >>> km.num_units, km.assign(km.centroids).tolist()
    (3, [0, 1, 2])
    """

    centroids: np.ndarray  # (K, D) float32
    encoder_fingerprint: str
    seed: int = 0
    num_frames: int = 0

    @property
    def num_units(self) -> int:
        return int(self.centroids.shape[0])

    @classmethod
    def fit(cls, feats: np.ndarray, k: int, *, encoder_fingerprint: str, seed: int = 0,
            niter: int = 20) -> KMeansUnits:
        """faiss k-means on (N, D) features, single-threaded so a seed fixes the result."""
        from speechlm.core.extras import require

        faiss = require("faiss", "llm")

        feats = np.ascontiguousarray(feats, dtype=np.float32)
        if feats.ndim != 2:
            raise ValueError(f"features must be (N, D), got shape {feats.shape}")
        if not 2 <= k <= feats.shape[0]:
            raise ValueError(f"k must be in [2, {feats.shape[0]}] (frames), got {k}")
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # multi-threaded reductions change the float sums
        try:
            km = faiss.Kmeans(feats.shape[1], k, niter=niter, seed=seed, verbose=False,
                              max_points_per_centroid=100_000)
            km.train(feats)
        finally:
            faiss.omp_set_num_threads(threads)
        return cls(np.asarray(km.centroids, dtype=np.float32), encoder_fingerprint, seed,
                   int(feats.shape[0]))

    def assign(self, feats: np.ndarray) -> np.ndarray:
        """(T,) nearest-centroid ids of (T, D) features."""
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.centroids.shape[1]:
            raise UnitError(f"features of shape {feats.shape} do not fit centroids of "
                            f"dim {self.centroids.shape[1]}")
        d = ((feats ** 2).sum(1)[:, None] - 2 * feats @ self.centroids.T
             + (self.centroids ** 2).sum(1)[None])
        return d.argmin(1)

    def units(self, feats: np.ndarray, encoder_fingerprint: str) -> list[int]:
        """De-duplicated units of features from the encoder named by its fingerprint."""
        self.check_encoder(encoder_fingerprint)
        return dedup(self.assign(feats).tolist())

    def check_encoder(self, encoder_fingerprint: str) -> None:
        if encoder_fingerprint != self.encoder_fingerprint:
            raise UnitError(f"k-means was fitted on features of {self.encoder_fingerprint!r}, "
                            f"not {encoder_fingerprint!r}: refit it (--fit) for this encoder")

    def save(self, out_dir: str | Path) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        np.save(out_dir / CENTROIDS, self.centroids)
        meta = {"version": KM_VERSION, "num_units": self.num_units,
                "dim": int(self.centroids.shape[1]), "seed": self.seed,
                "num_frames": self.num_frames, "encoder_fingerprint": self.encoder_fingerprint}
        (out_dir / KM_JSON).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, km_dir: str | Path) -> KMeansUnits:
        km_dir = Path(km_dir)
        meta_path = km_dir / KM_JSON
        if not meta_path.is_file() or not (km_dir / CENTROIDS).is_file():
            raise UnitError(f"{km_dir}: not a k-means dir (needs {KM_JSON} and {CENTROIDS})")
        meta = json.loads(meta_path.read_text())
        if meta.get("version") != KM_VERSION:
            raise UnitError(f"{meta_path}: version {meta.get('version')}, expected {KM_VERSION}")
        c = np.load(km_dir / CENTROIDS)
        if c.shape != (meta["num_units"], meta["dim"]):
            raise UnitError(f"{km_dir / CENTROIDS}: shape {c.shape}, but {KM_JSON} says "
                            f"({meta['num_units']}, {meta['dim']})")
        return cls(c.astype(np.float32), meta["encoder_fingerprint"], meta["seed"],
                   meta["num_frames"])
