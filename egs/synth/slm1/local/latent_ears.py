#!/usr/bin/env python3
"""Can Whisper's own decoder read the units? A check of the "latent vocoder" idea.

Units are k-means centroids of Whisper-tiny's last encoder layer, so a unit sequence can be
turned back into encoder states (each unit's centroid) and handed to Whisper's decoder in
place of a vocoder + ASR. This script transcribes held-out utterances four ways and prints
the character error rate of each:

  frames     the utterance's real encoder frames (unpadded, as units are made)
  frames+pad the same, followed by Whisper's encoder frames of silence up to 30 s (Whisper
             was trained on 30 s windows: the ceiling of this construction)
  centroids  every frame replaced by its unit's centroid (quantization only)
  units      de-duplicated units, each centroid repeated ``--repeat`` times (what a
             continuation gives)
  units+pad  the same, followed by Whisper's encoder frames of silence up to 30 s

    python local/latent_ears.py --exp exp/full --set dev --max-utts 30 \
        --out exp/full/latent_ears.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exp", default="exp/full")
    ap.add_argument("--set", default="dev")
    ap.add_argument("--max-utts", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=2, help="frames per de-duplicated unit")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import ctranslate2
    import soundfile as sf

    from speechlm.data.kaldi_dir import read_data_dir
    from speechlm.slm.evalsets import clean_turn
    from speechlm.slm.recognizer import char_error_rate
    from speechlm.slm.units import KMeansUnits, WhisperFrames, dedup

    exp = Path(args.exp)
    km = KMeansUnits.load(exp / "km")
    data = read_data_dir(exp / "data" / args.set)
    enc = WhisperFrames("whisper-tiny.en")
    km.check_encoder(enc.fingerprint)
    from speechlm.asr.whisper_asr import load_faster_whisper

    tok = load_faster_whisper("whisper-tiny.en", device="cpu", compute_type="int8",
                              threads=1).hf_tokenizer
    start = [tok.token_to_id("<|startoftranscript|>"), tok.token_to_id("<|notimestamps|>")]
    eot = tok.token_to_id("<|endoftext|>")
    silence = enc(np.zeros(16000 * 30 - 400, np.float32))

    def transcribe(states: np.ndarray) -> str:
        x = ctranslate2.StorageView.from_array(np.ascontiguousarray(states[None], np.float32))
        ids = enc._model.generate(x, [start], beam_size=1, max_length=120)[0].sequences_ids[0]
        return clean_turn(tok.decode([t for t in ids if t < eot]))

    ways = ("frames", "frames+pad", "centroids", "units", "units+pad")

    def pad(states: np.ndarray) -> np.ndarray:
        return np.concatenate([states, silence[len(states):]])
    hyps: dict[str, list[str]] = {w: [] for w in ways}
    refs = []
    started = time.monotonic()
    for utt in sorted(data.text)[: args.max_utts]:
        audio, _ = sf.read(data.wav_scp[utt].split()[-1], dtype="float32")
        frames = enc(audio, utt)
        assigned = km.assign(frames)
        units = np.repeat(km.centroids[dedup(assigned.tolist())], args.repeat, axis=0)
        for way, states in zip(ways, (frames, pad(frames), km.centroids[assigned], units,
                                      pad(units)), strict=True):
            hyps[way].append(transcribe(states))
        refs.append(clean_turn(data.text[utt]))
    res = {"set": args.set, "utterances": len(refs), "k": km.num_units, "repeat": args.repeat,
           "cer_percent": {w: round(char_error_rate(refs, hyps[w]), 1) for w in ways},
           "examples": [{"ref": refs[i], **{w: hyps[w][i] for w in ways}}
                        for i in range(min(3, len(refs)))],
           "seconds": round(time.monotonic() - started, 1)}
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res["cer_percent"]))


if __name__ == "__main__":
    main()
