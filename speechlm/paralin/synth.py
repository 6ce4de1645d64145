"""Speak MELD dialogues with synthetic voices: one voice per speaker within a dialogue.

MELD's audio is not available here, so each turn a model needs is synthesized (Piper and
espeak-ng through ``speechlm.data.tts``). A dialogue's speakers get distinct voices drawn
from the pool, reproducibly for a seed and the dialogue id, so "Monica" sounds the same
throughout a dialogue and different from "Rachel", while voices are not tied to names
across dialogues (with a pool this small that would be a speaker-id shortcut no real
recording offers). **Synthetic speech carries no emotion**: the voices read every line in
the same neutral way, so embeddings of it can only add who-speaks and what-is-said.

The output is a Kaldi data dir (``wav.scp``, ``text``, ``utt2spk`` with speakers
``dia<D>_<name>``, ``utt2voice``, ``utt2dur``) with utterance ids :attr:`Turn.utt`. Reruns
resume: ``.config`` holds a hash of the settings and the turns; with the same hash the WAVs
already written are kept, otherwise the dir starts over; ``.done`` marks a finished dir.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechlm.data.audio import audio_info, write_wav
from speechlm.data.kaldi_dir import KaldiDataDir, write_data_dir
from speechlm.data.tts import (
    EspeakVoice,
    PiperVoice,
    Synthesizer,
    piper_renditions,
    sample_voices,
)
from speechlm.paralin.meld import Turn

log = logging.getLogger(__name__)
Voice = EspeakVoice | PiperVoice
_VERSION = 1


def voice_pool(piper_renditions_n: int = 3, espeak_voices: int = 9, seed: int = 0) -> list[Voice]:
    """Piper joe in ``piper_renditions_n`` renditions plus sampled espeak-ng voices."""
    pool: list[Voice] = []
    if piper_renditions_n:
        pool += piper_renditions(PiperVoice("joe"), piper_renditions_n, seed)
    if espeak_voices:
        pool += sample_voices(espeak_voices, seed)
    if not pool:
        raise ValueError("the voice pool is empty: ask for Piper renditions or espeak voices")
    return pool


def assign_voices(turns: Sequence[Turn], pool: Sequence[Voice],
                  seed: int = 0) -> dict[tuple[str, str], Voice]:
    """``(dialogue, speaker) -> voice``: distinct within a dialogue while the pool lasts.

    >>> t = [Turn("7", 0, "A", "hi", "joy", "positive"), Turn("7", 1, "B", "yo", "joy",
    ...      "positive"), Turn("7", 2, "A", "ok", "joy", "positive")]
    >>> v = assign_voices(t, ["v1", "v2", "v3"])
    >>> len(v), v[("7", "A")] != v[("7", "B")]
    (2, True)
    """
    speakers: dict[str, list[str]] = {}
    for t in turns:
        names = speakers.setdefault(t.dialogue, [])
        if t.speaker not in names:
            names.append(t.speaker)
    out = {}
    for dialogue, names in speakers.items():
        rng = np.random.default_rng([seed, zlib.crc32(dialogue.encode())])
        order = rng.permutation(len(pool))
        if len(names) > len(pool):
            log.warning("dialogue %s has %d speakers but the pool only %d voices: some share",
                        dialogue, len(names), len(pool))
        for k, name in enumerate(names):
            out[(dialogue, name)] = pool[int(order[k % len(pool)])]
    return out


def _speaker_id(t: Turn) -> str:
    return f"dia{t.dialogue}_" + (re.sub(r"[^A-Za-z0-9.]+", ".", t.speaker).strip(".") or "x")


def synthesize_turns(turns: Sequence[Turn], out: str | Path, *, pool: Sequence[Voice],
                     seed: int = 0, sample_rate: int = 16000, threads: int = 1) -> Path:
    """Write the data dir of ``turns`` (each turn once) to ``out``; returns its wav.scp."""
    out = Path(out)
    turns = list({t.utt: t for t in turns}.values())
    voices = assign_voices(turns, pool, seed)
    key = json.dumps({"version": _VERSION, "seed": seed, "rate": sample_rate,
                      "pool": [v.id for v in pool],
                      "turns": [(t.utt, t.speaker, t.text) for t in turns]}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()
    if (out / ".done").is_file() and (out / ".done").read_text().strip() == digest:
        log.info("%s is complete (same turns and voices); nothing to do", out)
        return out / "wav.scp"
    if not ((out / ".config").is_file() and (out / ".config").read_text().strip() == digest):
        shutil.rmtree(out / "wav", ignore_errors=True)
        (out / ".done").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / ".config").write_text(digest + "\n")
    synth = Synthesizer(sample_rate, num_threads=threads, seed=seed)
    wav_scp, utt2spk, text, utt2dur, utt2voice = {}, {}, {}, {}, {}
    made = 0
    for t in turns:
        voice = voices[(t.dialogue, t.speaker)]
        wav = (out / "wav" / f"{t.utt}.wav").resolve()
        if wav.is_file():  # written by an interrupted run with the same settings
            sr, n, _ = audio_info(str(wav), t.utt)
            dur = n / sr
        else:
            samples, sr = synth.synthesize(t.text, voice)
            write_wav(wav, samples, sr)
            dur = len(samples) / sr
            made += 1
        wav_scp[t.utt], utt2spk[t.utt], text[t.utt] = str(wav), _speaker_id(t), t.text
        utt2dur[t.utt], utt2voice[t.utt] = dur, voice.id
    write_data_dir(KaldiDataDir(wav_scp=wav_scp, utt2spk=utt2spk, text=text, utt2dur=utt2dur,
                                extra={"utt2voice": utt2voice}), out)
    (out / ".done").write_text(digest + "\n")
    log.info("%s: %d turns (%d synthesized now), %d voices", out, len(turns), made,
             len(set(utt2voice.values())))
    return out / "wav.scp"
