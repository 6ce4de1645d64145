"""WER of a hypothesis text against a reference text, as an ESPnet RESULTS.md table.

    speechlm score --ref data/test/text --hyp exp/asr/decode_test/text [--name test]

Prints ``|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|`` and Kaldi's ``%WER`` line.
Both texts are normalised first (``--normalize``, on by default: lower case, punctuation
removed, numbers as words, hyphens split; the rules are in ``speechlm.core.normalize``),
so that a pretrained recogniser's written output ("7 of clubs.") is scored against
Kaldi-style references ("seven of clubs"); on references that are already lower-case
words it changes nothing. ``--no-normalize`` scores the words exactly as written.
``--out DIR`` also writes DIR/wer (the %WER line), DIR/result.md (the table) and
DIR/errs (per-utterance error counts, worst first).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechlm.bin import command_main
from speechlm.core.wer import TABLE_HEADER, normalize_words, read_kaldi_text, score_texts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ref", required=True, help="reference Kaldi text file")
    parser.add_argument("--hyp", required=True, help="hypothesis Kaldi text file")
    parser.add_argument("--name", default=None, help="row name (default: the ref's folder)")
    parser.add_argument("--out", default=None, help="also write wer, result.md, errs here")
    parser.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True,
                        help="normalise both texts before scoring (speechlm.core.normalize)")


def run(args: argparse.Namespace) -> int:
    for path in (args.ref, args.hyp):
        if not Path(path).is_file():
            print(f"score: {path} does not exist", file=sys.stderr)
            return 1
    try:
        ref, hyp = read_kaldi_text(args.ref), read_kaldi_text(args.hyp)
        stats = score_texts(ref, hyp, ref_name=args.ref, hyp_name=args.hyp,
                            normalize=args.normalize)
        if args.normalize:  # the errs file shows what was scored
            ref = {u: normalize_words(w) for u, w in ref.items()}
            hyp = {u: normalize_words(w) for u, w in hyp.items()}
    except ValueError as e:
        print(f"score: {e}", file=sys.stderr)
        return 1
    missing = sorted(set(ref) - set(hyp))
    if missing:
        print(f"score: warning: {len(missing)} reference utterance(s) have no hypothesis "
              f"(counted as deletions), e.g. {', '.join(missing[:3])}", file=sys.stderr)
    name = args.name or Path(args.ref).resolve().parent.name
    table = f"{TABLE_HEADER}\n{stats.table_row(name)}"
    print(table)
    print(stats.kaldi_line(args.hyp))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "wer").write_text(stats.kaldi_line(args.hyp) + "\n")
        (out / "result.md").write_text(table + "\n")
        worst = sorted(stats.per_utt.items(), key=lambda kv: (-kv[1][0], kv[0]))
        with open(out / "errs", "w", encoding="utf-8") as f:
            for utt, (errors, words) in worst:
                if errors:
                    f.write(f"{utt} errors={errors} words={words} "
                            f"ref={' '.join(ref[utt])!r} hyp={' '.join(hyp.get(utt, []))!r}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm score", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
