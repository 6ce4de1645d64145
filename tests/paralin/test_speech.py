"""ParalinGPT with speech: slots in the serialized prompt (round trip), the window builder with
embeddings (token ids, slot positions, the batch a tiny LLM trains on, the runtime prefix),
bad speech inputs, and the per-dialogue voice assignment and synthesis."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from speechlm.llm.projector import Projector, ProjectorConfig
from speechlm.paralin.meld import Turn, build_windows
from speechlm.paralin.model import Speech, _Prompt, _speech_batch, encode_prompt, predict
from speechlm.paralin.serialize import (
    FormatConfig,
    SpeechSlot,
    fit_prompt,
    join_slots,
    prompt_text,
    speech_turns,
    split_slots,
)
from speechlm.paralin.speech import SpeechInputError, wav_entries
from speechlm.paralin.synth import assign_voices, synthesize_turns, voice_pool
from speechlm.testing.llm import tiny_llm, tiny_model, tiny_tokenizer

SPEECH = FormatConfig(with_speech=True)


def dialogue(n: int = 4, dia: str = "5") -> list[Turn]:
    words = ["the cat sat", "a dog ran", "we go now", "you see it", "it is red"]
    return [Turn(dia, i, "Ann" if i % 2 else "Bob", words[i % len(words)], "neutral",
                 ("positive", "negative", "neutral")[i % 3]) for i in range(n)]


def test_serialization_round_trip_with_speech_slots():
    w = build_windows([dialogue()], 2)[-1]  # context: turns 0, 1; current 2; response 3
    prompt = prompt_text(w, SPEECH)
    assert prompt.splitlines()[0] == ("<turn> Bob: the cat sat <speech> {{speech:dia5_utt000}}"
                                      " <sentiment> positive")
    parts = split_slots(prompt)
    assert join_slots(parts) == prompt
    assert [p.utt for p in parts if isinstance(p, SpeechSlot)] == \
        ["dia5_utt000", "dia5_utt001", "dia5_utt002"] == [t.utt for t in speech_turns(w, SPEECH)]
    # without speech the prompt is the text model's, with no slot; without context, one slot
    assert split_slots(prompt_text(w, FormatConfig())) == [prompt_text(w, FormatConfig())]
    no_ctx = FormatConfig(with_context=False, with_speech=True)
    assert [p.utt for p in split_slots(prompt_text(w, no_ctx)) if isinstance(p, SpeechSlot)] \
        == ["dia5_utt002"]


def test_budget_counts_a_slot_and_drops_the_oldest_turn_with_its_speech():
    tok = tiny_tokenizer()
    w = build_windows([dialogue(5)], 3)[-1]
    count = lambda t: len(encode_prompt(tok, t)[0])  # noqa: E731
    full, dropped = fit_prompt(w, SPEECH, count, 10_000)
    cut, dropped = fit_prompt(w, SPEECH, count, count(full) - 1)
    assert dropped == 1 and "dia5_utt000" not in cut and "dia5_utt001" in cut


def test_window_builder_puts_projected_vectors_in_the_slots():
    tok = tiny_tokenizer()
    model = tiny_model()
    windows = build_windows([dialogue()], 2)
    rng = np.random.default_rng(0)
    vectors = {t.utt: rng.standard_normal(8).astype(np.float32) for t in dialogue()}
    torch.manual_seed(0)
    speech = Speech("test", vectors, Projector(ProjectorConfig(8, 64, downsample=1, hidden=16,
                                                               out_scale=1.0)))
    items = []
    for w in windows:
        ids, slots = encode_prompt(tok, prompt_text(w, SPEECH))
        assert [u for _, u in slots] == [t.utt for t in speech_turns(w, SPEECH)]
        assert all(ids[p] == tok.pad_token_id for p, _ in slots)
        items.append((ids, [5, 6, tok.eos_token_id], slots))
    emb, mask, target = _speech_batch(model, items, speech)
    table = model.get_input_embeddings()
    with torch.no_grad():
        for i, (ids, tgt, slots) in enumerate(items):
            n = len(ids) + len(tgt)
            assert mask[i].sum() == n and (target[i, len(ids):n].tolist() == tgt)
            assert (target[i, :len(ids)] == -100).all() and (target[i, n:] == -100).all()
            want = speech.project([u for _, u in slots])
            torch.testing.assert_close(emb[i, [p for p, _ in slots]], want)
            text_pos = [j for j in range(len(ids)) if j not in {p for p, _ in slots}]
            torch.testing.assert_close(emb[i, text_pos], table(torch.tensor(ids)[text_pos]))
    # gradients reach the projector through the slots
    emb.sum().backward()
    assert speech.projector.fc2.weight.grad is not None


def test_runtime_prefix_reads_the_speech_vector():
    llm = tiny_llm()
    w = build_windows([dialogue()], 2)[-1]
    rng = np.random.default_rng(1)
    vectors = {t.utt: rng.standard_normal(8).astype(np.float32) for t in dialogue()}
    torch.manual_seed(0)
    proj = Projector(ProjectorConfig(8, 64, downsample=1, hidden=16, out_scale=1.0)).eval()
    prompt = prompt_text(w, SPEECH)

    def score(vecs):
        p = _Prompt(llm, prompt, Speech("test", vecs, proj))
        return llm.score([" the cat"], prefix_embeds=p.embeds)[0]

    other = dict(vectors, **{w.current.utt: -vectors[w.current.utt]})
    assert score(vectors) == pytest.approx(score(dict(vectors)))
    assert score(vectors) != pytest.approx(score(other))
    preds, extra = predict(llm, [w], SPEECH, max_tokens=128, max_new_tokens=3,
                           speech=Speech("test", vectors, proj), progress=False)
    assert preds[0].cur in ("positive", "negative", "neutral") and extra["response_tokens"] > 0


def test_bad_speech_inputs_name_the_utterance(tmp_path):
    turns = dialogue(3)
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF")
    scp = tmp_path / "wav.scp"
    scp.write_text(f"dia5_utt000 {wav}\ndia5_utt2 {wav}\n")  # MELD's own name for turn 2
    with pytest.raises(SpeechInputError, match=r"utterance dia5_utt001 \(Dialogue_ID 5, "
                                               r"Utterance_ID 1.*has no entry in .*wav.scp"):
        wav_entries(turns, scp)
    assert wav_entries([turns[0], turns[2]], scp) == {"dia5_utt000": str(wav),
                                                      "dia5_utt002": str(wav)}
    scp.write_text(f"dia5_utt000 {tmp_path}/gone.wav\n")
    with pytest.raises(SpeechInputError, match="utterance dia5_utt000 .*gone.wav .*does not"):
        wav_entries(turns[:1], scp)
    with pytest.raises(SpeechInputError, match="does not exist"):
        wav_entries(turns, tmp_path / "none.scp")
    w = build_windows([turns], 2)[-1]
    with pytest.raises(ValueError, match="utterance dia5_utt001: no test speech embedding"):
        predict(None, [w], SPEECH, speech=Speech("test", {"dia5_utt000": np.zeros(8)},
                                                 Projector(ProjectorConfig(8, 64, 1))))
    with pytest.raises(ValueError, match="pass speech"):
        predict(None, [w], SPEECH)


def test_voices_differ_within_a_dialogue_and_synthesis_resumes(tmp_path):
    turns = dialogue(3) + dialogue(2, dia="6")
    pool = voice_pool(0, 3, seed=0)  # espeak-ng only: fast
    v = assign_voices(turns, pool, seed=0)
    assert v[("5", "Ann")] != v[("5", "Bob")] and v == assign_voices(turns, pool, seed=0)
    scp = synthesize_turns(turns, tmp_path / "d", pool=pool)
    lines = dict(line.split(maxsplit=1) for line in scp.read_text().splitlines())
    assert sorted(lines) == sorted(t.utt for t in turns)
    voices = dict(line.split() for line in (tmp_path / "d/utt2voice").read_text().splitlines())
    assert voices["dia5_utt000"] == voices["dia5_utt002"] != voices["dia5_utt001"]
    stamp = (tmp_path / "d/wav/dia5_utt000.wav").stat().st_mtime_ns
    durations = (tmp_path / "d/utt2dur").read_text()
    synthesize_turns(turns, tmp_path / "d", pool=pool)  # same settings: nothing redone
    (tmp_path / "d/.done").unlink()  # as if interrupted: the WAVs written are kept
    synthesize_turns(turns, tmp_path / "d", pool=pool)
    assert (tmp_path / "d/wav/dia5_utt000.wav").stat().st_mtime_ns == stamp
    assert (tmp_path / "d/utt2dur").read_text() == durations
    synthesize_turns(turns[:2], tmp_path / "d", pool=pool)  # other turns: starts over
    assert not (tmp_path / "d/wav/dia6_utt001.wav").exists()
    assert wav_entries(turns[:2], scp)["dia5_utt001"].endswith("dia5_utt001.wav")
