"""Shared fixtures of the serving tests: example audio, one PocketSphinx model, a tiny LLM.

PocketSphinx (the pip wheel's English model) loads in ~2 s and decodes a cards sample in
~0.4 s, so the API and HTTP tests run on a real recogniser. The LLM is the seeded tiny
Llama of ``speechlm.testing.llm`` (random weights: real runtime, meaningless scores).
"""
from __future__ import annotations

import pytest

from speechlm.testing.shared_data import shared_data_dir

CARDS = "english_speech_samples/pocketsphinx_cards"


def cards_refs() -> dict[str, str]:
    """utt -> reference text of the cards samples (Sphinx transcription format)."""
    path = shared_data_dir(CARDS) / "cards.transcription"
    refs = {}
    for line in path.read_text().splitlines():
        words = line.split()
        if words:
            refs[words[-1].strip("()")] = " ".join(w for w in words[:-1]
                                                   if w not in ("<s>", "</s>"))
    return refs


@pytest.fixture(scope="session")
def cards():
    path = shared_data_dir(CARDS)
    if path is None:
        pytest.skip(f"shared data {CARDS} not found (set SPEECHLM_DATA, or ../shared/data)")
    return path


@pytest.fixture(scope="session")
def ps_asr(cards):
    import speechlm

    pytest.importorskip("pocketsphinx")
    return speechlm.load_asr("pocketsphinx", nbest=5)


@pytest.fixture(scope="session")
def tiny():
    from speechlm.testing.llm import tiny_llm

    return tiny_llm()
