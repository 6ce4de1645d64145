#!/usr/bin/env python3
"""Combine two systems' N-best lists through word confusion networks (ROVER-style).

Each system's N-best becomes a lattice (``speechlm.lattice.lattice_from_nbest``) and a
confusion network (lattice MBR, posteriors ``softmax(scale * scores)``). Where both
networks have the same number of bins, the bins are merged word by word,
``p(w) = (1 - weight) * p_a(w) + weight * p_b(w)``, and the best word of each bin is
kept (epsilon = no word); otherwise (or when one system has no hypothesis) the other
system's network is used alone. Isolated digits give one bin each, so this is a weighted
vote of the two posteriors. With ``--ref`` the WER of every weight in ``--weights`` is
printed, and OUT/text is written for ``--weight``.

    python local/combine_wcn.py --a exp/asr/decode_dev/nbest.jsonl \
        --b exp/whisper_digits/dev/nbest.jsonl --ref data/dev/text --weights 0 0.2 0.4 \
        --weight 0.2 --out exp/combine/dev
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechlm.core.nbest_jsonl import read_nbest_jsonl
from speechlm.core.wer import ErrorStats
from speechlm.lattice import EPS, ConfusionNetwork, lattice_from_nbest


def confusion_network(hyps, scale: float, utt: str) -> ConfusionNetwork | None:
    if not hyps:
        return None
    return ConfusionNetwork.from_lattice(lattice_from_nbest(hyps, utt=utt), am_scale=scale)


def combine(a: ConfusionNetwork | None, b: ConfusionNetwork | None, weight: float) -> list[str]:
    """The words of the merged network (see the module docstring)."""
    if a is None or b is None or len(a) != len(b):
        keep = a if a is not None else b
        return [] if keep is None else keep.mbr_words()
    words = []
    for bin_a, bin_b in zip(a.bins, b.bins, strict=True):
        post: dict[str, float] = {}
        for entries, w in ((bin_a, 1.0 - weight), (bin_b, weight)):
            for e in entries:
                post[e.word] = post.get(e.word, 0.0) + w * e.posterior
        best = max(post, key=lambda k: (post[k], k))
        if best != EPS:
            words.append(best)
    return words


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, type=Path, help="nbest.jsonl of system A")
    p.add_argument("--b", required=True, type=Path, help="nbest.jsonl of system B")
    p.add_argument("--scale-a", type=float, default=1.0, help="posterior scale of A's scores")
    p.add_argument("--scale-b", type=float, default=1.0, help="posterior scale of B's scores")
    p.add_argument("--weights", type=float, nargs="*", default=[])
    p.add_argument("--weight", type=float, default=0.3, help="weight of B in OUT/text")
    p.add_argument("--ref", type=Path, default=None, help="reference text (Kaldi form)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    na, nb = read_nbest_jsonl(args.a), read_nbest_jsonl(args.b)
    missing = sorted(set(na) ^ set(nb))
    if missing:
        print(f"combine_wcn: {len(missing)} utterance(s) in only one of {args.a}, {args.b}, "
              f"e.g. {missing[0]}", file=sys.stderr)
        return 1
    cns = {u: (confusion_network(na[u], args.scale_a, u), confusion_network(nb[u], args.scale_b, u))
           for u in sorted(na)}
    refs = {}
    if args.ref:
        for line in args.ref.read_text(encoding="utf-8").splitlines():
            utt, _, text = line.partition(" ")
            refs[utt] = text.split()
    for w in args.weights:
        stats = ErrorStats()
        for u, (a, b) in cns.items():
            stats.add(refs[u], combine(a, b, w))
        print(f"weight {w:.2f}: WER {100 * stats.errors / max(stats.ref_words, 1):.2f} "
              f"({stats.errors}/{stats.ref_words})")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "text", "w", encoding="utf-8") as f:
            for u, (a, b) in cns.items():
                f.write(f"{u} {' '.join(combine(a, b, args.weight))}".rstrip() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
