"""Speech-prefix LLM: train a projector from Whisper encoder states into an LLM's embeddings.

    speechlm speech-llm train --data-dir data/train --out exp/speech_llm \
        [--llm smollm2-135m-instruct] [--encoder whisper-tiny.en] [--epochs 4] ...

Encoder states are cached in ``--feats-dir`` (``<data dir name>.npz``). Decode with
``speechlm decode --backend speech-llm --model-dir exp/speech_llm --data-dir ... --out ...``
or in Python with ``speechlm.llm.speech_llm.SpeechLLM.load(dir).transcribe(signals)``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from speechlm.bin import command_main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from speechlm.llm.speech_llm import SpeechLLMConfig

    sub = parser.add_subparsers(dest="action", required=True)
    train = sub.add_parser("train", help="train the projector on a Kaldi data dir")
    train.add_argument("--data-dir", required=True, help="Kaldi data dir with text")
    train.add_argument("--out", required=True, help="model dir to write")
    train.add_argument("--feats-dir", default=None, help="encoder-state cache dir "
                       "(default: OUT/../feats)")
    train.add_argument("--max-utts", type=int, default=0, help="use the first N utterances")
    for f in fields(SpeechLLMConfig):
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(f.default, bool):
            train.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=f.default)
        else:
            train.add_argument(flag, dest=f.name, type=type(f.default), default=f.default,
                               help=f"(default {f.default!r})")


def run(args: argparse.Namespace) -> int:
    from speechlm.llm.speech_llm import SpeechLLMConfig, data_dir_features, train_speech_llm

    config = SpeechLLMConfig(**{f.name: getattr(args, f.name)
                                for f in fields(SpeechLLMConfig)})
    out = Path(args.out)
    feats_dir = Path(args.feats_dir) if args.feats_dir else out.parent / "feats"
    cache = feats_dir / f"{Path(args.data_dir).name}.{config.encoder.replace('/', '_')}.npz"
    utts, feats, texts = data_dir_features(args.data_dir, config.encoder, cache)
    missing = [u for u in utts if u not in texts]
    if missing:
        raise ValueError(f"{args.data_dir}: no text for {len(missing)} utterances, e.g. "
                         f"{missing[0]}")
    if args.max_utts:
        utts, feats = utts[: args.max_utts], feats[: args.max_utts]
    stats = train_speech_llm(feats, [texts[u] for u in utts], out, config)
    print(json.dumps(stats))
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm speech-llm", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
