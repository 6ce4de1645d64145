"""ParalinGPT reads speech slots (slow: synthesizes with espeak-ng, embeds with Resemblyzer,
fine-tunes SmolLM2-135M with a projector)."""
from __future__ import annotations

import numpy as np
import pytest

from speechlm.core import catalogue
from speechlm.paralin.meld import Turn, build_windows

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (catalogue.installed("smollm2-135m-instruct") and catalogue.installed("resemblyzer")),
    reason="SmolLM2 or Resemblyzer not installed")]


def test_sentiment_carried_only_by_the_voice_is_learned(tmp_path):
    from speechlm.data.audio import write_wav
    from speechlm.data.tts import Synthesizer, parse_voice
    from speechlm.llm.lora import LoRAConfig
    from speechlm.paralin.model import Speech, evaluate, load, load_speech, predict, train
    from speechlm.paralin.serialize import FormatConfig
    from speechlm.paralin.speech import utterance_embeddings, wav_entries

    # every text is said with both sentiments; only the voice tells them apart
    voices = {"positive": parse_voice("espeak:en-us+f2"), "negative": parse_voice("espeak:en+m3")}
    lines = ["where is it", "over there", "see you later", "fine thanks"]
    labels = np.random.default_rng(0).permutation(["positive", "negative"] * 16).reshape(8, 4)
    synth = Synthesizer(16000)
    dialogues, scp = [], []
    for d in range(8):
        turns = []
        for i in range(4):
            sentiment = str(labels[d, i])  # balanced: a constant guess gets about 50%
            t = Turn(str(d), i, "A", lines[(d + i) % 4], "neutral", sentiment)
            samples, sr = synth.synthesize(t.text, voices[sentiment])
            write_wav(tmp_path / f"{t.utt}.wav", samples, sr)
            scp.append(f"{t.utt} {tmp_path / t.utt}.wav")
            turns.append(t)
        dialogues.append(turns)
    (tmp_path / "wav.scp").write_text("\n".join(scp) + "\n")
    windows = build_windows(dialogues, 0)
    vectors = utterance_embeddings(wav_entries([w.current for w in windows],
                                               tmp_path / "wav.scp"),
                                   "resemblyzer", tmp_path / "cache")
    fmt = FormatConfig(with_context=False, with_speaker=False, with_speech=True)
    lora = LoRAConfig(rank=4, alpha=8, epochs=6, lr=3e-3, batch_size=6, threads=1,
                      wcn_noise=0.0, nbest_noise=0.0)
    train(windows, tmp_path / "m", fmt=fmt, lora=lora, speech=Speech("resemblyzer", vectors),
          progress=False)
    llm, fmt2, max_tokens = load(tmp_path / "m")
    assert fmt2 == fmt
    preds, extra = predict(llm, windows, fmt2, max_tokens=max_tokens, max_new_tokens=4,
                           speech=load_speech(tmp_path / "m", vectors), progress=False)
    scores = evaluate(windows, preds, fmt2, extra)
    assert scores["cur_acc"] >= 90.0, (scores, preds)
