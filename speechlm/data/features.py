"""Log-mel filterbank features, global CMVN, and Kaldi-style feature jobs.

Features come from kaldi-native-fbank rather than ``torchaudio.compliance.kaldi``:
it is Kaldi's own algorithm (the two agree to ~1e-3 on log-mels, see
``tests/data/test_features.py``), it is the extractor sherpa/icefall deploy with,
so training and serving compute identical features, it takes numpy without a
torch round trip, and it measured ~8x faster here on a 10 s clip.

Jobs follow Kaldi's ``JOB=1:nj`` convention: job ``j`` of ``nj`` takes the j-th
contiguous share of the C-sorted utterance list and writes ``feats.j.ark``,
``feats.j.scp`` and ``utt2num_frames.j``; :func:`merge_feats_jobs` joins them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import kaldi_native_fbank as knf
import kaldiio
import numpy as np
from tqdm import tqdm

from speechlm.data.audio import AudioError, read_audio
from speechlm.data.kaldi_dir import c_sorted, read_data_dir, read_table

__all__ = ["FbankConfig", "GlobalCMVN", "compute_fbank", "compute_feats_for_data_dir",
           "job_file", "merge_feats_jobs", "split_utterances"]

log = logging.getLogger(__name__)
_WINDOWS = ("povey", "hamming", "hanning", "rectangular", "blackman")


@dataclass(frozen=True)
class FbankConfig:
    """Kaldi ``compute-fbank-feats`` options (same defaults, except ``dither=0``
    so features are reproducible).

    Attributes:
        sample_rate: Audio is resampled to this rate (Hz) before analysis.
        num_mel_bins: Output dimension D.
        frame_length_ms: Window length.
        frame_shift_ms: Hop.
        dither: Gaussian dither, in int16 units when ``int16_scale``.
        preemph_coeff: Pre-emphasis.
        remove_dc_offset: Subtract each frame's mean.
        window_type: One of povey, hamming, hanning, rectangular, blackman.
        low_freq: Lowest mel-bin edge in Hz.
        high_freq: Highest edge in Hz; <= 0 means Nyquist + high_freq, as in Kaldi.
        snip_edges: Only frames that fit wholly in the signal (Kaldi's default):
            T = 1 + (N - frame_length) // frame_shift.
        int16_scale: Scale [-1, 1] samples by 32768 first, as Kaldi sees int16 PCM,
            so values match Kaldi's (otherwise every log-mel is 2 ln 32768 lower).

    >>> FbankConfig(num_mel_bins=40).frame_shift_s
    0.01
    >>> FbankConfig.from_dict({"num_mel_bins": 40}) == FbankConfig(num_mel_bins=40)
    True
    """

    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0
    preemph_coeff: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    low_freq: float = 20.0
    high_freq: float = 0.0
    snip_edges: bool = True
    int16_scale: bool = True

    def __post_init__(self):
        nyquist = self.sample_rate / 2
        high = self.high_freq if self.high_freq > 0 else nyquist + self.high_freq
        checks = [
            (self.sample_rate > 0, f"sample_rate must be positive, got {self.sample_rate}"),
            (self.num_mel_bins >= 3, f"num_mel_bins must be >= 3, got {self.num_mel_bins}"),
            (0 < self.frame_shift_ms <= self.frame_length_ms,
             f"need 0 < frame_shift_ms <= frame_length_ms, got {self.frame_shift_ms} > "
             + f"{self.frame_length_ms}"),
            (self.dither >= 0, f"dither must be >= 0, got {self.dither}"),
            (0 <= self.preemph_coeff <= 1,
             f"preemph_coeff must be in [0, 1], got {self.preemph_coeff}"),
            (self.window_type in _WINDOWS,
             f"window_type must be one of {_WINDOWS}, got {self.window_type!r}"),
            (0 <= self.low_freq < high <= nyquist,
             f"need 0 <= low_freq < high_freq <= {nyquist} (Nyquist), "
             + f"got low_freq={self.low_freq}, high_freq={high}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"FbankConfig: {msg}")

    @property
    def frame_shift_s(self) -> float:
        """Frame shift in seconds."""
        return self.frame_shift_ms / 1000

    def to_dict(self) -> dict:
        """Plain dict of all fields (YAML/JSON friendly)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FbankConfig:
        """Build from a dict; unknown keys are an error, not silently ignored."""
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"FbankConfig: unknown option(s) {sorted(unknown)}")
        return cls(**d)


def _options(config: FbankConfig) -> knf.FbankOptions:
    o = knf.FbankOptions()
    fo, mo = o.frame_opts, o.mel_opts
    fo.samp_freq = float(config.sample_rate)
    fo.frame_length_ms, fo.frame_shift_ms = config.frame_length_ms, config.frame_shift_ms
    fo.dither, fo.preemph_coeff = config.dither, config.preemph_coeff
    fo.remove_dc_offset, fo.window_type = config.remove_dc_offset, config.window_type
    fo.snip_edges = config.snip_edges
    mo.num_bins, mo.low_freq, mo.high_freq = config.num_mel_bins, config.low_freq, config.high_freq
    o.energy_floor = 0.0  # no energy term is used (use_energy=False); Kaldi's default
    return o


def compute_fbank(samples: np.ndarray, config: FbankConfig = FbankConfig()) -> np.ndarray:
    """Log-mel filterbank of one utterance.

    Args:
        samples: (N,) float signal in [-1, 1] at ``config.sample_rate``.
        config: Options.

    Returns:
        (T, num_mel_bins) float32; T = 0 when the signal is shorter than one frame.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"compute_fbank: expected a 1-D signal, got shape {x.shape}")
    fb = knf.OnlineFbank(_options(config))
    fb.accept_waveform(float(config.sample_rate), x * 32768 if config.int16_scale else x)
    fb.input_finished()
    n = fb.num_frames_ready
    if n == 0:
        return np.zeros((0, config.num_mel_bins), dtype=np.float32)
    return np.stack([fb.get_frame(i) for i in range(n)]).astype(np.float32, copy=False)


@dataclass
class GlobalCMVN:
    """Global mean/variance statistics, stored like ESPnet's ``feats_stats.npz``.

    Mutable because it accumulates. Sums are float64 (float32 loses digits over
    hours of frames).

    >>> cmvn = GlobalCMVN()
    >>> cmvn.accumulate(np.array([[1.0, 2.0], [3.0, 6.0]]))
    >>> cmvn.count, cmvn.mean.tolist(), cmvn.apply(np.array([[3.0, 6.0]])).tolist()
    (2, [2.0, 4.0], [[1.0, 1.0]])
    """

    count: int = 0
    sum: np.ndarray | None = None  # (D,)
    sum_square: np.ndarray | None = None  # (D,)

    def accumulate(self, feats: np.ndarray) -> None:
        """Add a (T, D) feature matrix."""
        f = np.asarray(feats, dtype=np.float64)
        if self.sum is None:
            self.sum, self.sum_square = np.zeros(f.shape[1]), np.zeros(f.shape[1])
        if f.ndim != 2 or f.shape[1] != self.sum.shape[0]:
            raise ValueError(f"GlobalCMVN: expected (T, {self.sum.shape[0]}), got {f.shape}")
        self.count += f.shape[0]
        self.sum += f.sum(axis=0)
        self.sum_square += (f * f).sum(axis=0)

    @property
    def mean(self) -> np.ndarray:
        """(D,) mean."""
        if not self.count:
            raise ValueError("GlobalCMVN: no frames accumulated")
        return self.sum / self.count

    def std(self, eps: float = 1e-20) -> np.ndarray:
        """(D,) standard deviation, with the variance floored at ``eps`` as ESPnet's
        ``GlobalMVN`` does, so both normalise identically."""
        mean = self.mean
        return np.sqrt(np.maximum(self.sum_square / self.count - mean * mean, eps))

    def apply(self, feats: np.ndarray, eps: float = 1e-20) -> np.ndarray:
        """(x - mean) / std of a (T, D) matrix, returned as float32."""
        return ((np.asarray(feats) - self.mean) / self.std(eps)).astype(np.float32)

    def save(self, path: str | Path) -> None:
        """Write ``.npz`` with keys ``count``, ``sum``, ``sum_square`` (ESPnet's layout)."""
        if self.sum is None:
            raise ValueError("GlobalCMVN: nothing to save, no frames accumulated")
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")  # np.savez appends .npz otherwise
        np.savez(tmp, count=np.int64(self.count), sum=self.sum, sum_square=self.sum_square)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> GlobalCMVN:
        """Read a file written by :meth:`save` or by ESPnet's ``--collect_stats``."""
        with np.load(path) as z:
            return cls(int(z["count"]), np.asarray(z["sum"], dtype=np.float64),
                       np.asarray(z["sum_square"], dtype=np.float64))

    @classmethod
    def from_feats_scp(cls, scp: str | Path) -> GlobalCMVN:
        """Accumulate every matrix listed in a Kaldi ``feats.scp``."""
        cmvn = cls()
        for _, feats in kaldiio.load_scp_sequential(str(scp)):
            cmvn.accumulate(feats)
        return cmvn


# --- jobs --------------------------------------------------------------------------


def split_utterances(utts: list[str], nj: int, job: int) -> list[str]:
    """Job ``job`` (1-based) of ``nj`` contiguous, near-equal shares (Kaldi's split_scp)."""
    if not 1 <= job <= nj:
        raise ValueError(f"need 1 <= job <= nj, got job={job}, nj={nj}")
    base, extra = divmod(len(utts), nj)
    start = (job - 1) * base + min(job - 1, extra)
    return utts[start:start + base + (job <= extra)]


def job_file(out_dir: str | Path, stem: str, job: int) -> Path:
    """``out_dir/feats.3.ark`` style name: stem ``"feats.ark"`` -> ``feats.3.ark``."""
    name, _, ext = stem.partition(".")
    return Path(out_dir) / (f"{name}.{job}.{ext}" if ext else f"{name}.{job}")


def _fingerprint(config: FbankConfig, utts: list[str], data_dir: Path) -> str:
    h = hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode())
    h.update("\n".join(utts).encode())
    for name in ("wav.scp", "segments"):
        if (data_dir / name).is_file():
            h.update((data_dir / name).read_bytes())
    return h.hexdigest()


def iter_utterance_audio(d, utts, sample_rate: int):
    """Yield ``(utt, samples)`` for ``utts`` of data dir ``d``, segments cut out.

    Samples are mono float32 at ``sample_rate``. A recording is read once for all its
    adjacent segments; a segment ending past its recording is cut at the recording's end.

    Raises:
        AudioError: unreadable audio, or a segment that starts after its recording ends.
    """
    cache: tuple[str, np.ndarray] | None = None  # segments of a recording are adjacent
    for utt in utts:
        rec, start, end = d.recording_of(utt)
        if cache is None or cache[0] != rec:
            cache = (rec, read_audio(d.wav_scp[rec], utt=rec, target_sample_rate=sample_rate))
        audio = cache[1]
        a = round(start * sample_rate)
        b = len(audio) if end is None else min(round(end * sample_rate), len(audio))
        if a >= len(audio):
            raise AudioError(f"utterance {utt!r}: segment starts at {start} s, after the end "
                             f"of recording {rec!r} ({len(audio) / sample_rate:.3f} s)")
        yield utt, audio[a:b]


def compute_feats_for_data_dir(data_dir: str | Path, out_dir: str | Path,
                               config: FbankConfig = FbankConfig(), *, nj: int = 1,
                               job: int = 1, progress: bool = True,
                               utts: list[str] | None = None) -> None:
    """Compute fbank for job ``job`` of ``nj`` (Kaldi's ``JOB``), resumably.

    Writes ``feats.JOB.ark``, ``feats.JOB.scp`` (pointing into the ark by the path
    as given in ``out_dir``), ``utt2num_frames.JOB`` and the marker
    ``feats.JOB.done``. Files are written under ``.tmp`` names and renamed at the end,
    so a killed job leaves only temp files, which the next run discards. A job
    whose marker matches the config, utterance list, ``wav.scp`` and ``segments``
    (and whose outputs exist) is skipped. Utterances shorter than one frame are
    skipped with a warning, as Kaldi does; a segment ending past its recording is
    cut at the recording's end.

    Args:
        data_dir: Kaldi data dir (segments are honoured).
        out_dir: Output folder (no whitespace in the path: scp lines split on it).
        config: Fbank options; audio is resampled to ``config.sample_rate``. Any config
            with ``sample_rate``, ``to_dict()`` and ``extract(samples) -> (T, D)`` (e.g.
            ``speechlm.asr.whisper_features.WhisperFeatureConfig``) is used the same way.
        nj: Number of jobs the utterances are split into.
        job: This job, 1-based.
        progress: Show a tqdm bar.
        utts: This job's utterances, when the caller splits (e.g. by speaker); default
            Kaldi's contiguous split of all utterances.

    Raises:
        AudioError: A recording cannot be read, or a segment starts after its end.
    """
    data_dir, out = Path(data_dir), Path(out_dir)
    if any(c.isspace() for c in str(out)):
        raise ValueError(f"out_dir {str(out)!r} contains whitespace; scp files cannot hold it")
    d = read_data_dir(data_dir)
    if utts is None:
        utts = split_utterances(d.utterances, nj, job)
    marker = job_file(out, "feats.done", job)
    stamp = _fingerprint(config, utts, data_dir)
    final = {s: job_file(out, s, job) for s in ("feats.ark", "feats.scp", "utt2num_frames")}
    if (marker.is_file() and marker.read_text().strip() == stamp
            and all(p.is_file() for p in final.values())):
        log.info("fbank job %d/%d already done (%s); skipping", job, nj, marker)
        return
    out.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    tmp = {s: p.with_name(p.name + ".tmp") for s, p in final.items()}
    for p in tmp.values():
        p.unlink(missing_ok=True)  # leftovers of a killed run

    sr = config.sample_rate
    with kaldiio.WriteHelper(f"ark,scp:{tmp['feats.ark']},{tmp['feats.scp']}") as writer, \
            open(tmp["utt2num_frames"], "w") as nf:
        for utt, samples in iter_utterance_audio(d, tqdm(utts, desc=f"fbank {job}/{nj}",
                                                         disable=not progress), sr):
            # a config with its own extractor (Whisper encoder frames) computes itself
            extract = getattr(config, "extract", None)
            feats = extract(samples) if extract else compute_fbank(samples, config)
            if len(feats) == 0:
                log.warning("utterance %r: %d samples, shorter than one frame; skipped",
                            utt, len(samples))
                continue
            writer(utt, feats)
            nf.write(f"{utt} {len(feats)}\n")
    commit_outputs(tmp, final)
    marker.write_text(stamp + "\n")


def commit_outputs(tmp: dict[str, Path], final: dict[str, Path]) -> None:
    """Rename finished temp outputs (keys ``feats.ark``, ``feats.scp``, ...) into place.

    The scp was written pointing into the temp ark: it is first pointed at the final name.
    """
    ark_tmp, ark = str(tmp["feats.ark"]), str(final["feats.ark"])
    lines = tmp["feats.scp"].read_text().splitlines()
    tmp["feats.scp"].write_text("".join(
        f"{k} {ark}{v[len(ark_tmp):]}\n" for k, v in (ln.split(" ", 1) for ln in lines)))
    for s, path in final.items():
        os.replace(tmp[s], path)


def merge_feats_jobs(out_dir: str | Path, nj: int) -> None:
    """Join jobs 1..nj into sorted ``feats.scp`` and ``utt2num_frames``.

    Raises:
        FileNotFoundError: A job has not finished (no marker); names the jobs.
        ValueError: An utterance appears in two jobs.
    """
    out = Path(out_dir)
    missing = [j for j in range(1, nj + 1) if not job_file(out, "feats.done", j).is_file()]
    if missing:
        raise FileNotFoundError(f"{out}: fbank job(s) {missing} of {nj} have not finished")
    for stem in ("feats.scp", "utt2num_frames"):
        rows: dict[str, str] = {}
        for j in range(1, nj + 1):
            f = job_file(out, stem, j)
            for ln, key, value in read_table(f):
                if key in rows:
                    raise ValueError(f"{f}:{ln}: utterance {key!r} is in more than one job")
                rows[key] = value
        tmp = out / f".{stem}.tmp"
        tmp.write_text("".join(f"{k} {rows[k]}\n" for k in c_sorted(rows)))
        os.replace(tmp, out / stem)
