"""Benchmark: batched decoding through the one Recognizer, batch 1 against batch B.

The same utterances are decoded by one ``speechlm.asr.Recognizer`` (model loaded once, the
load time reported apart) with ``decode`` called on batches of 1 and of B, interleaved over
``--rounds`` rounds (the order of the two alternates), one thread by default. Per round the
ratio is time(batch 1) / time(batch B); the bench prints utterances/s of each and the
median ratio with its min-max spread, and checks that both give the same 1-best texts
(padded batches must not change results). Backends without a batched path (PocketSphinx,
Moonshine) decode one utterance at a time whatever the batch: their ratio is ~1 by design.

Data: FSDD speaker ``yweweler`` (takes 0-4 of each digit, 50 short files) and the
English samples (cards, LibriVox, 12 files up to 30 s), from ``$SPEECHLM_DATA`` or the
shared data beside the checkout.

    python tools/bench/batch_decode.py                              # whisper-tiny.en, B = 8
    python tools/bench/batch_decode.py --backend pocketsphinx --batch 8
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def utterances(limit: int) -> list[tuple[str, np.ndarray]]:
    from speechlm.core.paths import data_dir
    from speechlm.data.audio import read_audio

    files = []
    fsdd = data_dir("fsdd")
    if fsdd is not None:
        files += sorted((fsdd / "recordings").glob("*_yweweler_[0-4].wav"))
    samples = data_dir("english_speech_samples")
    if samples is not None:
        files += sorted(samples.glob("pocketsphinx_*/*.wav"))
    if not files:
        raise SystemExit("batch_decode: no data: set SPEECHLM_DATA to the shared data root")
    files = files[:limit]
    return [(f"{p.parent.name}_{p.stem}", read_audio(str(p), target_sample_rate=16000))
            for p in files]


def decode_all(recognizer, items, batch: int) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    texts = []
    for k in range(0, len(items), batch):
        texts += [r.text for r in recognizer.decode(items[k:k + batch], wcn=False)]
    return time.perf_counter() - t0, texts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="whisper")
    parser.add_argument("--model", default=None, help="catalogue name or dir (backend default)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--utts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from speechlm.asr.decode_config import DecodeConfig
    from speechlm.asr.recognizer import Recognizer

    t0 = time.perf_counter()
    recognizer = Recognizer(DecodeConfig(backend=args.backend, model=args.model, nbest=1))
    load_s = time.perf_counter() - t0
    items = [(u, recognizer.prepare(x)) for u, x in utterances(args.utts)]
    audio_s = sum(len(x) for _, x in items) / recognizer.sample_rate
    decode_all(recognizer, items[:2], args.batch)  # warm-up: first-call allocations
    times: dict[int, list[float]] = {1: [], args.batch: []}
    texts: dict[int, list[str]] = {}
    for r in range(args.rounds):
        for b in ((1, args.batch) if r % 2 == 0 else (args.batch, 1)):
            seconds, texts[b] = decode_all(recognizer, items, b)
            times[b].append(seconds)
    ratios = [a / b for a, b in zip(times[1], times[args.batch], strict=True)]
    same = texts[1] == texts[args.batch]
    print(f"{recognizer!r}: {len(items)} utterances, {audio_s:.1f} s of audio, "
          f"{args.threads} thread(s), load {load_s:.1f} s (not in the ratios)")
    for b in (1, args.batch):
        med = statistics.median(times[b])
        print(f"  batch {b:>2}: {len(items) / med:6.2f} utt/s  (median of {args.rounds} "
              f"rounds, {min(times[b]):.2f}-{max(times[b]):.2f} s per round)")
    print(f"  batch {args.batch} vs 1: {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}); same 1-best texts: {same}")


if __name__ == "__main__":
    main()
