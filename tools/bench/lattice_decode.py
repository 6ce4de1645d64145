"""Benchmark: lattice decoding real-time factor for the fsdd model, beside ESPnet beam search.

One process, the same utterances and features, on this machine's CPU threads. For every
utterance the lattice path is timed stage by stage, so the table says where the time goes:
encoder + CTC head, kaldi-decoder search, reading the raw lattice into our type, the CTC
word-lattice conversion, N-best, attention rescoring, and the confusion network (MBR).
ESPnet's joint CTC/attention beam search (``Speech2Text``, beam from the model dir's
decode.yaml or --beam) is the baseline; the ratio is printed.

    python tools/bench/lattice_decode.py            # the recipe's model, dev set (first 100)
    python tools/bench/lattice_decode.py --model-dir M --graph G --data-dir D --max-utts 50

Needs a trained model dir and graph (``egs/fsdd/asr1/run.sh --stop_stage 7``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "fsdd" / "asr1"


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-dir", default=str(RECIPE / "exp/asr_train_asr/model"))
    p.add_argument("--graph", default=str(RECIPE / "exp/asr_train_asr/graph"))
    p.add_argument("--data-dir", default=str(RECIPE / "data/dev"))
    p.add_argument("--max-utts", type=int, default=100)
    p.add_argument("--beam", type=int, default=4, help="ESPnet beam size (baseline)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    for path in (args.model_dir, args.graph, args.data_dir):
        if not Path(path).exists():
            print(
                f"{path} does not exist: train the recipe first "
                f"(cd egs/fsdd/asr1 && ./run.sh --stop_stage 7)",
                file=sys.stderr,
            )
            return 1

    import torch

    from speechlm.asr.ctc_lattice import ctc_word_lattice
    from speechlm.asr.decode_config import DecodeConfig
    from speechlm.asr.recognizer import Recognizer
    from speechlm.data.features import iter_utterance_audio
    from speechlm.data.kaldi_dir import read_data_dir
    from speechlm.lattice import ConfusionNetwork, Lattice

    torch.set_num_threads(args.threads)
    # the recognizer speechlm decode builds, in both of its modes
    beam_rec = Recognizer(DecodeConfig(model=args.model_dir, beam=args.beam))
    lat_rec = Recognizer(DecodeConfig(model=args.model_dir, graph=args.graph, lattice=True,
                                      beam=args.beam))
    asr = beam_rec.backend.asr
    lat_asr = lat_rec.backend.lattice_asr
    graph, config = lat_asr.graph, lat_asr.config
    d = read_data_dir(args.data_dir)
    utts = d.utterances[: args.max_utts]
    feats = [(u, asr.features(x)) for u, x in iter_utterance_audio(d, utts, asr.sample_rate)]
    audio_s = sum(len(f) for _, f in feats) * asr.fbank.frame_shift_s

    import kaldi_decoder

    search_config = kaldi_decoder.LatticeSimpleDecoderConfig(
        beam=config.beam, lattice_beam=config.lattice_beam
    )
    t = defaultdict(float)
    arcs = 0
    for utt, f in feats:
        t0 = time.perf_counter()
        enc, logp = lat_asr.logprobs(f)
        t1 = time.perf_counter()
        dec = kaldi_decoder.LatticeSimpleDecoder(graph.fst, search_config)
        dec.decode(kaldi_decoder.DecodableCtc(logp))
        _, raw = dec.get_raw_lattice()
        t2 = time.perf_counter()
        lat = Lattice.from_kaldi_text(
            raw.to_str(),
            utt=utt,
            words=dict(enumerate(graph.words)),
            frame_shift=lat_asr.frame_shift,
        )
        t3 = time.perf_counter()
        words = ctc_word_lattice(lat)
        t4 = time.perf_counter()
        paths = words.nbest(config.nbest)
        t5 = time.perf_counter()
        lat_asr.rescore(enc, logp, paths)
        t6 = time.perf_counter()
        ConfusionNetwork.from_lattice(words)
        t7 = time.perf_counter()
        arcs += words.num_arcs
        for name, a, b in (
            ("encoder + CTC", t0, t1),
            ("kaldi-decoder search", t1, t2),
            ("raw lattice -> Lattice", t2, t3),
            ("CTC word lattice", t3, t4),
            ("N-best (OpenFst)", t4, t5),
            ("attention rescoring", t5, t6),
            ("WCN (lattice MBR)", t6, t7),
        ):
            t[name] += b - a
    t0 = time.perf_counter()
    for _, f in feats:
        asr.decode_features(f)
    beam_time = time.perf_counter() - t0

    lattice_total = sum(t.values())
    print(
        f"{len(feats)} utterances, {audio_s:.1f} s of audio, {args.threads} thread(s), "
        f"{arcs / len(feats):.1f} word arcs per lattice"
    )
    print(f"{'stage':28s} {'seconds':>8s} {'share':>6s} {'RTF':>8s}")
    for name, sec in t.items():
        print(f"{name:28s} {sec:8.3f} {100 * sec / lattice_total:5.1f}% {sec / audio_s:8.4f}")
    total_rtf = lattice_total / audio_s
    print(f"{'lattice path, total':28s} {lattice_total:8.3f} {'':6s} {total_rtf:8.4f}")
    print(f"{'ESPnet beam search':28s} {beam_time:8.3f} {'':6s} {beam_time / audio_s:8.4f}")
    print(
        f"ratio: lattice path is {beam_time / lattice_total:.2f}x the speed of beam search "
        f"(beam {args.beam})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
