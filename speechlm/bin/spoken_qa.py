r"""Extractive spoken QA from text, 1-best, N-best, WCN or oracle, by an LLM in context.

    speechlm spoken-qa --annotations slurp-=devel.jsonl --pool-jsonl data/local/slu_train.jsonl \
        --data-dir data/test_piper --decode-dir exp/whisper-tiny.en/decode_test_piper \
        --input text 1best nbest wcn oracle --llm smollm2-135m-instruct --out OUT

The questions come from slot annotations (``speechlm.llm.spoken_qa``: one question per slot
type of a sentence, its answer the span's words). ``--annotations PREFIX=FILE`` (repeatable)
reads SLURP-form JSONL (``sentence_annotation``) or rows with SNIPS-style ``spans``
(``[[slot type, value], ...]``, as egs/slurp/icl1 --corpus snips writes its sets); sentence
ids are PREFIX + ``slurp_id`` (or ``id``). A data-dir utterance belongs
to the sentence whose id ends it (``<speaker>-<sentence id>``, how the recipes name them).
``--pool-jsonl`` (``{"id", "text"}`` rows, e.g. the SLU training split) gives the
demonstrations: their reference text and their own questions.

Writes OUT/<input>.jsonl (question, answer, prediction, em, f1 per line), OUT/scores.json
(EM / F1 per input, question counts, counts of dropped shots, empty contexts and failures)
and prints one line per input. A finished input with the same settings is kept.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from speechlm.bin import command_main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", action="append", required=True, metavar="PREFIX=FILE",
                        help="JSONL with sentence_annotation (SLURP) or spans (SNIPS-style); "
                        "ids PREFIX+slurp_id (or id)")
    parser.add_argument("--pool-jsonl", required=True,
                        help="demonstration sentences: {id, text} rows (e.g. slu_train.jsonl)")
    parser.add_argument("--data-dir", required=True, help="the set's Kaldi data dir")
    parser.add_argument("--decode-dir", help="a decode dir (every input but text)")
    parser.add_argument("--input", nargs="+", default=["text", "1best", "nbest", "wcn"],
                        choices=("text", "1best", "onebest", "nbest", "wcn", "oracle",
                                 "nbest_marg", "wcn_marg"),
                        help="contexts the questions are asked about (the _marg kinds: "
                        "asked about each hypothesis, answers voted by hypothesis weight)")
    parser.add_argument("--llm", default="smollm2-135m-instruct",
                        help="catalogue LLM or local Hugging Face dir")
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--wcn-threshold", type=float, default=0.1)
    parser.add_argument("--wcn-no-posteriors", action="store_true",
                        help="write WCN alternatives without their probabilities")
    parser.add_argument("--marginal-k", type=int, default=4,
                        help="hypotheses of nbest_marg / wcn_marg")
    parser.add_argument("--nbest-scale", type=float, default=1.0,
                        help="nbest_marg weights: softmax(scale * score)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-progress", action="store_true")


def _annotations(specs: list[str]) -> dict[str, str]:
    from speechlm.llm.spoken_qa import read_annotations

    out: dict[str, str] = {}
    for spec in specs:
        prefix, sep, path = spec.partition("=")
        if not sep:
            raise ValueError(f"--annotations {spec!r}: expected PREFIX=FILE")
        out.update(read_annotations(path, prefix))
    return out


def _sentence_of(utts, sentences: dict[str, str]) -> dict[str, str]:
    """utterance id -> sentence id, by the sentence id that ends it after a '-'."""
    out = {}
    for utt in utts:
        for k in range(len(utt)):
            if (k == 0 or utt[k - 1] == "-") and utt[k:] in sentences:
                out[utt] = utt[k:]
                break
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from speechlm.data.kaldi_dir import read_data_dir
    from speechlm.llm.serialize import (
        MARGINAL_KINDS,
        SerializeConfig,
        input_kind,
        load_inputs,
        load_weighted_hypotheses,
    )
    from speechlm.llm.spoken_qa import QAItem, answer_questions, build_items, items_jsonl, score
    from speechlm.runtime import LLM

    torch.set_num_threads(args.threads)
    annotations = _annotations(args.annotations)
    pool_rows = [json.loads(x) for x in Path(args.pool_jsonl).read_text().splitlines()
                 if x.strip()]
    pool_text = {r["id"]: r["text"] for r in pool_rows}
    pool, _ = build_items((i, annotations[i]) for i in pool_text if i in annotations)
    if not pool:
        raise ValueError(f"{args.pool_jsonl}: none of its sentences has an annotation in "
                         f"{', '.join(args.annotations)}")
    data = read_data_dir(args.data_dir)
    utt2sent = _sentence_of(sorted(data.text), annotations)
    missing = sorted(set(data.text) - set(utt2sent))
    if len(missing) == len(data.text):
        raise ValueError(f"{args.data_dir}: no utterance matches an annotated sentence of "
                         f"{', '.join(args.annotations)}, e.g. {missing[0]!r}")
    if missing:
        print(f"{args.data_dir}: {len(missing)} utterance(s) without an annotation get no "
              f"question, e.g. {missing[0]!r}")
    per_sentence, counts = build_items((s, annotations[s]) for s in sorted(set(utt2sent.values())))
    by_sentence: dict[str, list[QAItem]] = {}
    for it in per_sentence:
        by_sentence.setdefault(it.utt, []).append(it)
    items = [QAItem(u, it.slot, it.question, it.answer)
             for u in sorted(utt2sent) for it in by_sentence.get(utt2sent[u], [])]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scores_path = out / "scores.json"
    scores = json.loads(scores_path.read_text()) if scores_path.is_file() else {}
    settings = {"llm": args.llm, "shots": args.shots, "max_tokens": args.max_tokens,
                "wcn_threshold": args.wcn_threshold,
                "wcn_posteriors": not args.wcn_no_posteriors, "seed": args.seed,
                "questions": len(items), "pool": len(pool)}
    config = SerializeConfig(wcn_threshold=args.wcn_threshold,
                             wcn_show_posteriors=not args.wcn_no_posteriors,
                             marginal_k=args.marginal_k, nbest_scale=args.nbest_scale)
    llm = None
    for name in args.input:
        kind = input_kind(name)
        these = dict(settings)  # what a kept result must have been run with
        if kind in MARGINAL_KINDS:  # (added here only: results kept from before stay valid)
            these.update(marginal_k=args.marginal_k, decode_dir=str(Path(args.decode_dir or "")))
            if kind == "nbest_marg":
                these["nbest_scale"] = args.nbest_scale
        if scores.get(name, {}).get("settings") == these:
            print(f"{name}: kept ({out / (name + '.jsonl')})")
            continue
        if kind == "text":
            contexts = dict(data.text)
        else:
            if not args.decode_dir:
                raise ValueError(f"input {name!r} needs --decode-dir")
            load = load_weighted_hypotheses if kind in MARGINAL_KINDS else load_inputs
            contexts = load(kind, config, decode_dir=args.decode_dir, data_dir=args.data_dir)
        if llm is None:
            llm = LLM.from_pretrained(args.llm)
        started = time.monotonic()
        preds, run_counts = answer_questions(llm, items, contexts, pool, pool_text,
                                             shots=args.shots, max_tokens=args.max_tokens,
                                             seed=args.seed, progress=not args.no_progress)
        (out / f"{name}.jsonl").write_text(items_jsonl(items, preds))
        res = score(items, preds)
        res.update(settings=these, counts=dict(run_counts), build=dict(counts),
                   seconds=round(time.monotonic() - started, 1))
        scores[name] = res
        tmp = scores_path.with_name("scores.json.tmp")
        tmp.write_text(json.dumps(scores, indent=2) + "\n")
        tmp.replace(scores_path)
        print(f"{name}: EM {res['exact_match']:.1f} F1 {res['f1']:.1f} "
              f"({res['questions']} questions, {res['seconds']} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm spoken-qa", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
