"""The demo's handler (what the Gradio page shows), without a browser."""
from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="module")
def state(ps_asr, tiny):
    from speechlm.serve.state import ServeConfig, ServeState

    s = ServeState(ServeConfig(decode_processes=False), llm=tiny, llm_name="tiny")
    s._asr["pocketsphinx"] = ps_asr  # loaded once for the session
    yield s
    s.close()


@pytest.fixture
def upload_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    return tmp_path


def test_demo_shows_everything(state, cards, upload_dir):
    from speechlm.serve.demo import OUTPUTS, transcribe

    wav = shutil.copy(cards / "001.wav", upload_dir / "001.wav")
    out = transcribe(state, str(wav), "pocketsphinx", 3, "")
    assert set(out) == set(OUTPUTS)
    html = out["transcript"]
    assert html.count("class='word'") == 3 and "data-posterior=" in html
    assert ">ten<" in html and ">clubs<" in html
    assert out["wcn"] is not None and out["wcn"].size[0] > 100  # the PNG, as an image
    assert [row[1] for row in out["nbest"]][0] == "ten of clubs" and len(out["nbest"]) == 3
    assert out["rescored_text"] == out["rescored"][0][1]
    assert "no SLU model" in out["intent"]
    figures = out["figures"]
    assert figures["asr_model"] == "pocketsphinx" and figures["attention_backend"] == "sdpa"
    assert figures["tokens_per_s"] > 0 and figures["asr_latency_s"] > 0


def test_demo_refuses_with_a_message(state, upload_dir, tmp_path_factory):
    from serve_helpers import tone, wav_bytes

    from speechlm.serve.demo import transcribe

    assert "Record or upload" in transcribe(state, None, "pocketsphinx", 3, "")["transcript"]
    silent = upload_dir / "silent.wav"
    silent.write_bytes(wav_bytes(tone(amplitude=0.0), 16000))
    assert "silent" in transcribe(state, str(silent), "pocketsphinx", 3, "")["transcript"]
    outside = tmp_path_factory.mktemp("elsewhere") / "a.wav"
    outside.write_bytes(wav_bytes(tone(), 16000))
    out = transcribe(state, str(outside), "pocketsphinx", 3, "")
    assert "Cannot read" in out["transcript"] and out["wcn"] is None
    assert "Unknown model" in transcribe(state, str(silent), "../x", 3, "")["transcript"]


def test_app_docstring_runs():
    import doctest

    pytest.importorskip("fastapi")
    import speechlm.serve.app as app

    result = doctest.testmod(app)
    assert result.attempted > 0 and result.failed == 0
