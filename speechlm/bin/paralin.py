"""ParalinGPT on MELD-form dialogue CSVs: serialized multitask training and evaluation.

    speechlm paralin train --csv train_sent_emo.csv --out exp/paralin [--context 3]
                           [--max-windows 2000] [--no-context] [--no-context-sentiment]
    speechlm paralin eval --model exp/paralin --csv dev_sent_emo.csv --out exp/paralin/dev

``train`` fits a LoRA adapter on the base LLM (default: the catalogue's SmolLM2-135M-
Instruct) to write ``<cur_sentiment> X <resp_sentiment> Y <response> text`` after a
dialogue window (``speechlm.paralin.serialize``). ``eval`` predicts the two labels by rank
classification and the response by greedy generation, and writes OUT/predictions.jsonl
and OUT/scores.json (accuracy and weighted F1 of both labels, response BLEU and
perplexity). Windows are taken in file order; ``--max-windows`` keeps the first N (a
seeded sample would mix dialogues into context the model never sees whole).

Speech (issue 17): ``synth`` speaks every turn the windows show (Piper and espeak-ng, one
voice per speaker within a dialogue) into a Kaldi data dir; ``embed`` computes and caches
(on disk, by content) one embedding per utterance of a wav.scp, ``whisper`` (pooled Whisper
encoder states) or ``resemblyzer`` (speaker embedding); ``train --speech KIND --wav-scp
FILE`` puts each turn's embedding after its text through the shared projector, and
``eval --wav-scp FILE`` reads the kind from the model.

    speechlm paralin synth --csv dev_sent_emo.csv --out data/dev --max-windows 40
    speechlm paralin embed --csv dev_sent_emo.csv --wav-scp data/dev/wav.scp --kind whisper

``train --task response`` is the single-task baseline (the response only, no labels);
``train --task heads`` the sequence classifier on the same LLM (SmolLM2 with a 2 x 3-way
classification head + LoRA, ``speechlm.paralin.seqcls``); ``train --emotion`` adds MELD's
emotion as an extra attribute (context turns show it, the current one is predicted first).
``eval`` reads what a model is from its paralin.json.

``baseline`` is the paper's sequence-classification comparison: a frozen sentence encoder
(MiniLM-L6 by default) over the window's text and a logistic-regression head per label
(``speechlm.paralin.baseline``), written in ``eval``'s layout (OUT/<NAME>/scores.json).

    speechlm paralin baseline --csv train_sent_emo.csv --eval dev=dev_sent_emo.csv \
        --out exp/minilm_head --max-windows 2000
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechlm.bin import command_main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    t = sub.add_parser("train", help="fit the LoRA adapter")
    t.add_argument("--csv", required=True, help="MELD-form training CSV")
    t.add_argument("--out", required=True, help="model dir to write")
    t.add_argument("--base", default="smollm2-135m-instruct",
                   help="base LLM: a catalogue name or a checkpoint dir")
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--rank", type=int, default=8)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--seed", type=int, default=0,
                   help="seeds the adapter (and head / projector) init and the batch order")
    t.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    x = sub.add_parser("export-base", help="write the base LLM as a transformers dir "
                       "(float32 safetensors, the GGUF dequantized)")
    x.add_argument("--base", default="smollm2-135m-instruct")
    x.add_argument("--out", required=True)
    c = sub.add_parser("check", help="read a CSV: dialogues, windows, label counts")
    c.add_argument("--csv", required=True)
    e = sub.add_parser("eval", help="predict and score a CSV")
    e.add_argument("--model", required=True, nargs="+",
                   help="model dir(s) from `paralin train` (several: one process)")
    e.add_argument("--csv", required=True, help="MELD-form CSV to evaluate")
    e.add_argument("--out", required=True,
                   help="dir for scores.json and predictions.jsonl; {model} becomes the "
                   "model dir")
    e.add_argument("--max-new-tokens", type=int, default=40)
    e.add_argument("--batch-size", type=int, default=8,
                   help="windows generated together (and classified together by heads)")
    c.add_argument("--context", type=int, default=3, help="previous turns shown")
    y = sub.add_parser("synth", help="speak the windows' turns into a Kaldi data dir")
    y.add_argument("--csv", required=True)
    y.add_argument("--out", required=True, help="data dir to write (wav/, wav.scp, ...)")
    y.add_argument("--piper-renditions", type=int, default=3,
                   help="Piper joe renditions in the voice pool")
    y.add_argument("--espeak-voices", type=int, default=9,
                   help="sampled espeak-ng voices in the voice pool")
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--threads", type=int, default=1)
    m = sub.add_parser("embed", help="compute (and cache) the turns' speech embeddings")
    m.add_argument("--csv", required=True)
    m.add_argument("--kind", required=True, help="whisper or resemblyzer")
    for p in (y, m):
        p.add_argument("--context", type=int, default=3, help="previous turns shown")
        p.add_argument("--max-windows", type=int, default=None,
                       help="the turns of the first N windows only")
    for p in (t, e, m):
        p.add_argument("--wav-scp", default=None,
                       help="wav.scp with one entry per turn (ids dia<D>_utt<III>)")
        p.add_argument("--emb-cache", default=None,
                       help="embedding cache dir (default: the catalogue's cache)")
    t.add_argument("--speech", default="none",
                   help="speech embeddings after each turn: none, whisper or resemblyzer")
    for p in (t, e):
        p.add_argument("--context", type=int, default=3, help="previous turns shown")
        p.add_argument("--max-windows", type=int, default=None,
                       help="use the first N windows only")
        p.add_argument("--max-tokens", type=int, default=512,
                       help="prompt + target budget; the oldest context turns go first")
        p.add_argument("--no-progress", action="store_true")
    b = sub.add_parser("baseline", help="sequence classifiers: a frozen sentence encoder + "
                       "logistic-regression heads for both sentiments")
    b.add_argument("--csv", required=True, help="MELD-form training CSV")
    b.add_argument("--eval", nargs="+", required=True, metavar="NAME=CSV",
                   help="sets to score, e.g. dev=dev_sent_emo.csv")
    b.add_argument("--out", required=True, help="dir: paralin.json, <NAME>/scores.json")
    b.add_argument("--encoder", default="minilm-l6", help="speechlm.encoders name or dir")
    b.add_argument("--context", type=int, default=3, help="previous turns shown")
    b.add_argument("--max-windows", type=int, default=None, help="first N training windows")
    b.add_argument("--eval-max-windows", type=int, default=None, help="first N of each set")
    b.add_argument("--emb-cache", default=None, help="embedding cache dir")
    t.add_argument("--task", default="multitask", choices=("multitask", "response", "heads"),
                   help="multitask: labels then response (ParalinGPT); response: the "
                   "response only (single-task baseline); heads: a classification head per "
                   "sentiment on the same LLM (sequence-classifier baseline)")
    t.add_argument("--emotion", action="store_true",
                   help="context turns show their emotion; the current emotion is "
                   "predicted first")
    t.add_argument("--no-context", action="store_true", help="ablation: current turn only")
    t.add_argument("--no-context-sentiment", action="store_true",
                   help="ablation: context turns without their sentiment")


def _windows(args: argparse.Namespace):
    from speechlm.paralin.meld import build_windows, read_meld_csv

    windows = build_windows(read_meld_csv(args.csv), args.context)
    return windows[:args.max_windows] if args.max_windows else windows


def _speech_vectors(args: argparse.Namespace, windows, kind: str, stats: dict | None = None):
    """``utt -> vector`` of every turn the windows' prompts show (cached embeddings)."""
    from speechlm.paralin.serialize import FormatConfig, speech_turns
    from speechlm.paralin.speech import utterance_embeddings, wav_entries

    if not args.wav_scp:
        raise ValueError(f"speech embeddings ({kind}) need --wav-scp")
    fmt = FormatConfig(with_speech=True)
    entries = wav_entries([t for w in windows for t in speech_turns(w, fmt)], args.wav_scp)
    return utterance_embeddings(entries, kind, args.emb_cache, stats=stats)


def run(args: argparse.Namespace) -> int:
    from speechlm.core.errors import InputError

    if args.action == "synth":
        from speechlm.paralin.serialize import FormatConfig, speech_turns
        from speechlm.paralin.synth import synthesize_turns, voice_pool

        fmt = FormatConfig(with_speech=True)
        turns = [t for w in _windows(args) for t in speech_turns(w, fmt)]
        pool = voice_pool(args.piper_renditions, args.espeak_voices, args.seed)
        scp = synthesize_turns(turns, args.out, pool=pool, seed=args.seed,
                               threads=args.threads)
        print(json.dumps({"wav_scp": str(scp), "turns": len({t.utt for t in turns}),
                          "voices": len(pool)}))
        return 0
    if args.action == "embed":
        import time

        started = time.monotonic()
        stats: dict = {}
        vectors = _speech_vectors(args, _windows(args), args.kind, stats)
        print(json.dumps({"kind": args.kind, "utterances": len(vectors),
                          "dim": len(next(iter(vectors.values()))), **stats,
                          "seconds": round(time.monotonic() - started, 1)}))
        return 0

    if args.action == "baseline":
        from speechlm.encoders import load_encoder
        from speechlm.paralin import baseline
        from speechlm.paralin.meld import build_windows, read_meld_csv

        evals = {}
        for spec in args.eval:
            name, sep, csv = spec.partition("=")
            if not sep or not name or not csv:
                raise InputError(f"--eval {spec!r}: give NAME=CSV, e.g. dev=dev_sent_emo.csv")
            evals[name] = build_windows(read_meld_csv(csv), args.context)[:args.eval_max_windows]
        encoder = load_encoder(args.encoder, cache=args.emb_cache or True)
        scores = baseline.run(_windows(args), evals, encoder, Path(args.out),
                              context=args.context > 0)
        print(json.dumps(scores))
        return 0
    if args.action == "export-base":
        import torch

        from speechlm.runtime.gguf_cache import export_plain
        from speechlm.runtime.loading import load_model_and_tokenizer, resolve_model

        model, tok = load_model_and_tokenizer(resolve_model(args.base), torch.float32)
        export_plain(model, tok, Path(args.out))
        print(json.dumps({"base": args.base, "out": args.out}))
        return 0
    if args.action == "check":
        from collections import Counter

        from speechlm.paralin.meld import build_windows, read_meld_csv

        dialogues = read_meld_csv(args.csv)
        turns = [t for d in dialogues for t in d]
        print(json.dumps({"csv": args.csv, "dialogues": len(dialogues), "turns": len(turns),
                          "windows": len(build_windows(dialogues, args.context)),
                          "sentiment": dict(Counter(t.sentiment for t in turns)),
                          "emotion": dict(Counter(t.emotion for t in turns))}))
        return 0
    if args.action == "train":
        from speechlm.llm.lora import LoRAConfig
        from speechlm.paralin.model import META, Speech, train
        from speechlm.paralin.serialize import FormatConfig
        from speechlm.paralin.speech import SPEECH_KINDS

        out = Path(args.out)
        if (out / META).exists() and not args.overwrite:
            raise InputError(f"{out} holds a trained model; choose another --out or pass "
                             "--overwrite")
        if args.speech not in ("none", *SPEECH_KINDS):
            raise InputError(f"--speech {args.speech!r}: one of none, "
                             f"{', '.join(SPEECH_KINDS)}")
        if args.task == "heads" and (args.speech != "none" or args.emotion):
            raise InputError("--task heads reads the text only: no --speech or --emotion")
        if args.task == "response" and args.emotion:
            raise InputError("--emotion is a label of --task multitask (response writes none)")
        fmt = FormatConfig(with_context=not args.no_context,
                           with_context_sentiment=not args.no_context_sentiment,
                           with_speech=args.speech != "none", with_emotion=args.emotion,
                           task="response" if args.task == "response" else "multitask")
        windows = _windows(args)
        speech = None if args.speech == "none" else \
            Speech(args.speech, _speech_vectors(args, windows, args.speech))
        lora = LoRAConfig(rank=args.rank, alpha=2 * args.rank, epochs=args.epochs, lr=args.lr,
                          batch_size=args.batch_size, threads=args.threads, wcn_noise=0.0,
                          nbest_noise=0.0, seed=args.seed)
        if args.task == "heads":
            from speechlm.paralin import seqcls

            report = seqcls.train(windows, out, base=args.base, fmt=fmt, lora=lora,
                                  max_tokens=args.max_tokens, progress=not args.no_progress)
        else:
            report = train(windows, out, base=args.base, fmt=fmt, lora=lora,
                           max_tokens=args.max_tokens, speech=speech,
                           progress=not args.no_progress)
        print(json.dumps(report))
        return 0
    if len(args.model) > 1 and "{model}" not in args.out:
        raise InputError(f"--out {args.out!r}: with several --model dirs, put {{model}} in "
                         "it (e.g. {model}/dev)")
    windows = _windows(args)
    for model_dir in args.model:  # one process: imports and the base's page cache shared
        _evaluate_one(args, model_dir, windows, Path(args.out.replace("{model}", model_dir)))
    return 0


def _evaluate_one(args: argparse.Namespace, model_dir: str, windows, out: Path) -> None:
    import time

    from speechlm.paralin import seqcls
    from speechlm.paralin.model import (
        Prediction,
        evaluate,
        load,
        load_speech,
        model_kind,
        predict,
        speech_kind,
    )

    started = time.monotonic()
    if model_kind(model_dir) == seqcls.KIND:
        model, tok, fmt, max_tokens = seqcls.load(model_dir)
        labels, dropped = seqcls.predict(model, tok, windows, fmt, max_tokens=max_tokens,
                                         batch_size=args.batch_size)
        preds = [Prediction(lab["cur"], lab["resp"], None) for lab in labels]
        scores = {**evaluate(windows, preds, fmt), "context_turns_dropped": dropped}
    else:
        kind = speech_kind(model_dir)
        speech = None if kind is None else \
            load_speech(model_dir, _speech_vectors(args, windows, kind))
        llm, fmt, max_tokens = load(model_dir)
        preds, extra = predict(llm, windows, fmt, max_tokens=max_tokens, speech=speech,
                               max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                               progress=not args.no_progress)
        scores = evaluate(windows, preds, fmt, extra)
    scores["eval_seconds"] = round(time.monotonic() - started, 1)  # with model loading
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for w, p in zip(windows, preds, strict=True):
            row = {"utt": w.current.utt, "cur": p.cur, "cur_ref": w.current.sentiment,
                   "resp": p.resp, "resp_ref": w.response.sentiment, "response": p.response,
                   "response_ref": w.response.text}
            if p.emotion is not None:
                row.update(emotion=p.emotion, emotion_ref=w.current.emotion)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "scores.json").write_text(json.dumps(scores, indent=1) + "\n")
    print(json.dumps({"model": model_dir, **scores}), flush=True)


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm paralin", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
