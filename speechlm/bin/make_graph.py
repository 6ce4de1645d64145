r"""Build a CTC decoding graph (TLG) for a model dir: lexicon and word n-gram from text.

    speechlm make-graph --model-dir exp/asr/model --text data/train/text --out exp/asr/graph \
        [--order 2 | --arpa lm.arpa] [--word-penalty 0.0]

``--text`` is a Kaldi text file (``utt-id words...``; ``--plain-text`` for one sentence per
line). Its words make the lexicon (spelled with the model's tokens) and, unless ``--arpa``
is given, an interpolated Kneser-Ney n-gram of order ``--order`` (0 = no n-gram: a free word
loop). Never give it a test set's text. Writes OUT/{TLG.fst, words.txt, tokens.txt,
lexicon.txt, lm.arpa, graph.json}; a finished graph for the same inputs is not rebuilt.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from speechlm.bin import command_main
from speechlm.core.hashing import file_sha256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", required=True, help="model dir (tokens.txt, config.yaml)")
    parser.add_argument("--text", required=True, help="training text (Kaldi text: utt-id words)")
    parser.add_argument("--plain-text", action="store_true",
                        help="--text has one sentence per line, no utterance ids")
    parser.add_argument("--out", required=True, help="graph dir to write")
    parser.add_argument("--order", type=int, default=2,
                        help="n-gram order trained from --text (0: no n-gram)")
    parser.add_argument("--arpa", default=None, help="use this ARPA n-gram instead of training")
    parser.add_argument("--word-penalty", type=float, default=0.0,
                        help="natural-log cost per word in the lexicon FST")


def read_sentences(path: str, plain: bool) -> list[str]:
    sentences = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if not plain:
                if not fields:
                    continue
                fields = fields[1:]
            if fields:
                sentences.append(" ".join(fields))
    if not sentences:
        raise ValueError(f"{path}: no sentences (is it empty, or plain text without "
                         f"--plain-text?)")
    return sentences


def run(args: argparse.Namespace) -> int:
    from speechlm.asr import model_dir as md
    from speechlm.asr.ctc_graph import Lexicon, build_graph
    from speechlm.asr.ngram import write_arpa

    model_dir = md.check_model_dir(args.model_dir)
    if not Path(args.text).is_file():
        raise FileNotFoundError(f"{args.text}: no such text file")
    if args.arpa and not Path(args.arpa).is_file():
        raise FileNotFoundError(f"{args.arpa}: no such ARPA file")
    out = Path(args.out)
    stamp = hashlib.sha256("\n".join([
        file_sha256(model_dir / md.TOKENS), file_sha256(args.text),
        file_sha256(args.arpa) if args.arpa else f"order={args.order}",
        f"penalty={args.word_penalty}", f"plain={args.plain_text}"]).encode()).hexdigest()
    if (out / "graph.json").is_file() and \
            json.loads((out / "graph.json").read_text()).get("stamp") == stamp:
        print(f"make-graph: {out} is up to date", file=sys.stderr)
        return 0

    sentences = read_sentences(args.text, args.plain_text)
    tokens = [line.split()[0] for line in
              (model_dir / md.TOKENS).read_text(encoding="utf-8").splitlines() if line.strip()]
    config = md.resolved_config(model_dir)
    token_type = str(config.get("token_type", "char"))
    bpe_model = model_dir / "bpe.model" if token_type == "bpe" else None
    if bpe_model is not None and not bpe_model.is_file():
        raise FileNotFoundError(f"{model_dir}: a bpe model dir needs bpe.model for the lexicon")
    lexicon = Lexicon.from_words((w for s in sentences for w in s.split()), tokens,
                                 token_type=token_type, bpe_model=bpe_model)
    if lexicon.skipped:
        print(f"make-graph: warning: {len(lexicon.skipped)} word(s) cannot be spelled with the "
              f"model's tokens and are left out, e.g. {', '.join(lexicon.skipped[:5])}",
              file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    arpa = args.arpa
    if arpa is None and args.order > 0:
        arpa = str(write_arpa(sentences, out / "lm.arpa", order=args.order))
    graph = build_graph(tokens, lexicon, arpa=arpa, word_penalty=args.word_penalty)
    graph.write(out)
    info = {"stamp": stamp, "text": str(args.text), "arpa": arpa, "order": args.order,
            "words": len(lexicon.prons), "skipped_words": list(lexicon.skipped),
            "states": graph.fst.num_states, "word_penalty": args.word_penalty}
    (out / "graph.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"make-graph: {len(lexicon.prons)} words, {graph.fst.num_states} states -> {out}",
          file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm make-graph", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
