"""speechlm serve's model options: catalogue ASR models beside PocketSphinx, a remote LLM."""
from __future__ import annotations

import argparse

import pytest

pytest.importorskip("fastapi")


def parse(*argv: str) -> argparse.Namespace:
    from speechlm.bin.serve import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_catalogue_asr_and_remote_llm_are_offered():
    from speechlm.bin.serve import build_state
    from speechlm.runtime.remote import RemoteLLM

    state = build_state(parse("--asr", "whisper-tiny.en", "--asr", "/models/my-whisper",
                              "--llm-url", "http://127.0.0.1:9/v1", "--llm-model", "m",
                              "--decode-in-threads"))
    try:
        assert state.model_names == ["pocketsphinx", "whisper-tiny.en", "my-whisper"]
        assert isinstance(state.llm, RemoteLLM) and state.llm_name == "m"
        assert state.llm.config.base_url == "http://127.0.0.1:9/v1"
    finally:
        state.close()
    with pytest.raises(ValueError, match="--llm or --llm-url"):
        build_state(parse("--llm", "x", "--llm-url", "http://127.0.0.1:9/v1"))


def test_whisper_decodes_through_the_server_state(cards):
    from speechlm.bin.serve import build_state
    from speechlm.core import catalogue

    if not catalogue.installed("whisper-tiny.en"):
        pytest.skip("whisper-tiny.en not installed")
    state = build_state(parse("--asr", "whisper-tiny.en", "--no-pocketsphinx", "--llm", "none",
                              "--decode-in-threads"))
    try:
        t = state.transcribe("whisper-tiny.en", (cards / "003.wav").read_bytes()).result(120)
        assert t.text == "seven of clubs" and t.model == "whisper-tiny.en"
        assert [w for w, _, _ in t.word_times()] == ["seven", "of", "clubs"]
    finally:
        state.close()


def test_the_default_llm_is_the_catalogue_one_when_installed(monkeypatch, capsys):
    from speechlm.api import DEFAULT_LLM
    from speechlm.bin.serve import resolve_llm
    from speechlm.core import catalogue

    monkeypatch.setattr(catalogue, "installed", lambda name: name == DEFAULT_LLM)
    assert resolve_llm(parse()) == DEFAULT_LLM
    assert "the default" in capsys.readouterr().err
    monkeypatch.setattr(catalogue, "installed", lambda name: False)
    assert resolve_llm(parse()) is None
    assert catalogue.MODELS[DEFAULT_LLM].pip_command in capsys.readouterr().err
    # explicit choices win; a URL replaces the default; none means none
    assert resolve_llm(parse("--llm", "exp/lm")) == "exp/lm"
    assert resolve_llm(parse("--llm-url", "http://127.0.0.1:9/v1")) is None
    assert resolve_llm(parse("--llm", "none")) is None
    with pytest.raises(ValueError, match="--llm or --llm-url"):
        resolve_llm(parse("--llm", "exp/lm", "--llm-url", "http://127.0.0.1:9/v1"))
