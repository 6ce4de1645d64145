"""Encoders loaded once per session: loading MiniLM takes seconds, embedding milliseconds."""
from __future__ import annotations

from pathlib import Path

import pytest

from speechlm.core import catalogue

FSDD = Path("/work/shared/data/fsdd/recordings")


def _need(name: str) -> None:
    if not catalogue.installed(name):
        pytest.skip(f"{name} is not installed: {catalogue.get(name).pip_command}")


@pytest.fixture(scope="session")
def minilm():
    _need("minilm-l6")
    from speechlm.encoders import load_encoder

    return load_encoder("minilm-l6", batch_size=2)  # small batches: several per test list


@pytest.fixture(scope="session")
def speaker_encoder():
    _need("resemblyzer")
    from speechlm.encoders import load_encoder

    return load_encoder("resemblyzer", batch_size=4)


@pytest.fixture(scope="session")
def fsdd_takes() -> dict[str, list[Path]]:
    """Digits 0-4, take 0, of two speakers: the same words, so only the voice differs."""
    if not FSDD.is_dir():
        pytest.skip(f"{FSDD} is missing (shared FSDD data)")
    return {spk: [FSDD / f"{d}_{spk}_0.wav" for d in range(5)] for spk in ("george", "jackson")}
