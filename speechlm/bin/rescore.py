r"""LLM N-best rescoring of a decode dir (weight sweep), or a second-pass method on N-best files.

Second pass on HyPoradise-form N-best files (``speechlm.llm.second_pass``; set specs
``FILE[@1|@2][:N]``: a speaker-disjoint half of FILE, its first N utterances):

    speechlm rescore --method lm|lm_norm|prompt|tap|ger-select|ger-free \
        --llm smollm2-135m-instruct --dev other.json@1:100 --nbest other.json@2 \
        [--train clean.json@1 --shots 3 --demos similar] [--adapter GER_LORA_DIR] --out OUT
    speechlm rescore train --method mwer --model minilm-l6 --pooling mean \
        --train clean.json@1 --out DIR          (or --model smollm2-135m-instruct --pooling prob)
    speechlm rescore --method mwer --model DIR --dev ... --nbest ... --out OUT
    speechlm rescore train --method pll --model minilm-l6 --train clean.json@1 --out DIR
    speechlm rescore --method pll --model DIR --dev ... --nbest ... --out OUT
    speechlm rescore train --method ger-lora --llm smollm2-135m-instruct --train ... --out DIR

Each tunes its weight on --dev (GER free: the guard threshold) and writes OUT/result.json,
OUT/hyp-<set>.txt, OUT/tuning.txt and OUT/notes.txt (bad input, by utterance).

Decode dirs (the first pass's own scores):

    speechlm rescore --decode-dir exp/asr/decode_lattice_dev --llm exp/lm --out OUT \
        --llm-scales "0 0.1 0.2 0.3 0.5" --length-bonuses "0 0.5 1" --ref data/dev/text
    speechlm rescore --decode-dir DEC --llm-url http://127.0.0.1:8000/v1 --out OUT ...

tot_score = first-pass score + llm_scale * LLM log-prob(words, </s> | prompt)
            + length_bonus * words; see ``speechlm.llm.rescore``.

Writes OUT/hyp-llm_scale_S_bonus_B.txt for every setting (Kaldi text), OUT/llm_scores.jsonl
(the LLM's log-prob of every hypothesis: a re-run only scores what is missing) and, with
--ref, OUT/wer-summary.txt (settings by WER, best first, icefall's form), OUT/best.json and
OUT/text (the best setting's hypotheses). Without --ref OUT/text holds the first setting's
hypotheses: give one setting (chosen on dev) to apply it to a test set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from speechlm.bin import command_main


def _floats(text: str, name: str) -> list[float]:
    try:
        values = [float(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"{name}: expected numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"{name}: no values")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=["train"],
                        help="'train': fit an MWER or PLL scorer or a GER LoRA adapter")
    parser.add_argument("--decode-dir", default=None, help="holds nbest.jsonl")
    parser.add_argument("--out", required=True)
    sp = parser.add_argument_group("second pass on N-best files")
    sp.add_argument("--method", default=None,
                    choices=["lm", "lm_norm", "prompt", "tap", "ger-select", "ger-free", "mwer",
                             "pll", "ger-lora"])
    sp.add_argument("--nbest", nargs="+", default=[], help="eval set specs FILE[@1|@2][:N]")
    sp.add_argument("--dev", default=None, help="tuning set spec")
    sp.add_argument("--train", default=None, help="training set spec (demos, MWER, LoRA)")
    sp.add_argument("--shots", type=int, default=0)
    sp.add_argument("--demos", default="random", choices=["random", "similar"])
    sp.add_argument("--encoder", default="minilm-l6", help="sentence encoder (similar demos)")
    sp.add_argument("--adapter", default=None, help="GER LoRA adapter dir for --llm")
    sp.add_argument("--model", default=None,
                    help="mwer/pll: backbone to train (catalogue name/dir) or scorer dir to use")
    sp.add_argument("--pooling", default="mean", choices=["prob", "mean", "last", "attention"])
    sp.add_argument("--objective", default="mwer", choices=["mwer", "likelihood"])
    sp.add_argument("--freeze", action="store_true", help="train the head only")
    sp.add_argument("--with-first-pass", action="store_true",
                    help="MWER on the interpolated cost: scorer cost - first-pass score (or "
                         "the rank prior -rank), so the scorer learns what the first pass "
                         "misses")
    sp.add_argument("--epochs", type=int, default=1)
    sp.add_argument("--lr", type=float, default=None, help="head (or LoRA) learning rate")
    sp.add_argument("--backbone-lr", type=float, default=5e-5,
                    help="learning rate of a fine-tuned bidirectional encoder")
    sp.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--llm", default=None,
                        help="local Hugging Face model dir or a catalogue LLM "
                             "(smollm2-135m-instruct)")
    parser.add_argument("--llm-url", default=None, help="OpenAI-compatible server base URL")
    parser.add_argument("--llm-model", default=None, help="model name on that server")
    parser.add_argument("--llm-scales", default="0 0.1 0.2 0.3 0.5 0.7 1.0")
    parser.add_argument("--length-bonuses", default="0 0.5 1.0 2.0")
    parser.add_argument("--prompt", default="", help="text before every hypothesis")
    parser.add_argument("--max-hyps", type=int, default=None, help="top hypotheses used")
    parser.add_argument("--ref", default=None, help="reference Kaldi text: WER per setting")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")


def _load_llm(args):
    if (args.llm is None) == (args.llm_url is None):
        raise ValueError("give exactly one of --llm (a local model dir) and --llm-url")
    if args.llm_url:
        from speechlm.runtime.remote import RemoteLLM

        return RemoteLLM(args.llm_url, model=args.llm_model)
    from speechlm.runtime import LLM

    return LLM.from_pretrained(args.llm, dtype=args.dtype)


def _write_text(path: Path, hyps: dict[str, str]) -> None:
    from speechlm.data.kaldi_dir import c_sorted

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{u} {hyps[u]}".rstrip() + "\n" for u in c_sorted(hyps)),
                   encoding="utf-8")
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    from speechlm.core.errors import UsageError

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.action == "train" or args.method:
        from speechlm.bin.second_pass import run_second_pass

        return run_second_pass(args)
    if args.decode_dir is None:
        raise UsageError("give --decode-dir (weight sweep) or --method (second pass)")
    return run_sweep(args)


def run_sweep(args: argparse.Namespace) -> int:
    from speechlm.core.wer import read_kaldi_text, score_texts
    from speechlm.llm.rescore import RescoreConfig, llm_scores, read_nbest_jsonl, sweep

    scales = _floats(args.llm_scales, "--llm-scales")
    bonuses = _floats(args.length_bonuses, "--length-bonuses")
    nbest_path = Path(args.decode_dir) / "nbest.jsonl"
    if not nbest_path.is_file():
        raise FileNotFoundError(f"{nbest_path}: no N-best list (run speechlm decode first)")
    if args.ref and not Path(args.ref).is_file():
        raise FileNotFoundError(f"{args.ref}: no such reference text")
    nbest = read_nbest_jsonl(nbest_path, args.max_hyps)
    llm = _load_llm(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lm = llm_scores(llm, nbest, RescoreConfig(prompt=args.prompt),
                    cache=out / "llm_scores.jsonl")
    results = sweep(nbest, lm, scales, bonuses)
    for key, hyps in results.items():
        _write_text(out / f"hyp-{key}.txt", hyps)
    if hasattr(llm, "metrics"):
        (out / "metrics.prom").write_text(llm.metrics.prometheus_text())
    chosen = next(iter(results))
    if args.ref:
        ref = read_kaldi_text(args.ref)
        wers = {}
        for key, hyps in results.items():
            stats = score_texts(ref, {u: h.split() for u, h in hyps.items()})
            wers[key] = (stats.wer, stats.errors, stats.ref_words)
        # ties go to the smaller change from the first pass (results keep sweep order)
        order = {k: i for i, k in enumerate(results)}
        ranked = sorted(wers.items(), key=lambda kv: (round(kv[1][0], 6), order[kv[0]]))
        (out / "wer-summary.txt").write_text(
            "settings\tWER\n" + "".join(f"{k}\t{w:.2f}\n" for k, (w, _, _) in ranked))
        chosen = ranked[0][0]
        first = setting_key_of(scales, bonuses)
        best = {"setting": chosen, "wer": wers[chosen][0], "errors": wers[chosen][1],
                "words": wers[chosen][2],
                "first_pass_wer": wers[first][0] if first in wers else None}
        (out / "best.json").write_text(json.dumps(best, indent=1) + "\n")
        print(f"rescore: best {chosen}: WER {wers[chosen][0]:.2f}% "
              f"(first pass {best['first_pass_wer']})", file=sys.stderr)
    _write_text(out / "text", results[chosen])
    return 0


def setting_key_of(scales: list[float], bonuses: list[float]) -> str:
    """The setting that is the first pass alone (llm_scale 0, bonus 0), when swept."""
    from speechlm.llm.rescore import setting_key

    return setting_key(0.0, 0.0) if 0.0 in scales and 0.0 in bonuses else ""


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm rescore", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
