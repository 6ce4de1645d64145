"""Align-SLM: a textless unit LM, semantic feedback and DPO (egs/synth/slm1 runs it all).

    speechlm slm prepare --slurp lm_train_text.txt --meld DIR --out data/text
    speechlm slm units --data-dir data/train --km exp/km [--fit --k 100] --out data/train/units
    speechlm slm lm-data --km exp/km --units data/train/units --out exp/lm_data
    speechlm lm train --text exp/lm_data/units.txt --tokenizer exp/lm_data/tokenizer --out exp/ulm
    speechlm slm train-ctc --km exp/km --units data/train/units --data-dir data/train --out exp/ctc
    speechlm slm round --policy exp/ulm --ref exp/ulm --prompts data/train/units --ctc exp/ctc \\
        --km exp/km --judge llm --margin 0.3 --out exp/round1
    speechlm slm ft --policy exp/ulm --pairs exp/round1/pairs.jsonl --out exp/ft
    speechlm slm evaluate --model exp/ulm --items data/text/items.jsonl \\
        --item-units data/eval/units --prompts data/dev/units --ctc exp/ctc --km exp/km --out X.json

``units`` runs Whisper tiny.en's encoder (CTranslate2) on each utterance, fits k-means
(faiss, seeded) with ``--fit`` when the k-means dir is empty, and writes de-duplicated
units; a k-means dir of another encoder is refused. HuBERT is not available here (no
weights on the package index), hence Whisper. ``round`` is resumable (see
``speechlm.slm.pipeline``). ``ft`` is the likelihood-only ablation on the same pairs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from speechlm.bin import command_main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("prepare", help="training text, prompt text and eval items")
    p.add_argument("--slurp", required=True, help="SLURP lm_train_text.txt")
    p.add_argument("--meld", required=True, help="dir with MELD train/dev CSVs")
    p.add_argument("--out", required=True)
    p.add_argument("--slurp-lines", type=int, default=600)
    p.add_argument("--meld-turns", type=int, default=600)
    p.add_argument("--dev-prompts", type=int, default=40)
    p.add_argument("--lexical", type=int, default=100)
    p.add_argument("--syntactic", type=int, default=100)
    p.add_argument("--cloze", type=int, default=100)
    p.add_argument("--ears-lines", type=int, default=0,
                   help="extra lines (half SLURP, half MELD train, none of the LM's, dev or "
                   "eval text) written to ears_text: more speech for the CTC recognizer only")
    p.add_argument("--seed", type=int, default=0)

    u = sub.add_parser("units", help="encoder frames -> k-means units of a data dir")
    u.add_argument("--data-dir", required=True)
    u.add_argument("--km", required=True, help="k-means dir (written with --fit)")
    u.add_argument("--out", required=True, help="units file: utt-id u1 u2 ...")
    u.add_argument("--fit", action="store_true", help="fit k-means on this data dir")
    u.add_argument("--k", type=int, default=100)
    u.add_argument("--max-frames", type=int, default=200_000, help="frames used to fit")
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--encoder", default="whisper-tiny.en")
    u.add_argument("--threads", type=int, default=1)

    d = sub.add_parser("lm-data", help="unit texts + unit tokenizer for speechlm lm train")
    d.add_argument("--km", required=True)
    d.add_argument("--units", required=True, nargs="+")
    d.add_argument("--out", required=True)
    d.add_argument("--context-length", type=int, default=256)

    c = sub.add_parser("train-ctc", help="unit -> character CTC recognizer")
    c.add_argument("--km", required=True)
    c.add_argument("--units", required=True, nargs="+", help="units files (e.g. train, ears)")
    c.add_argument("--data-dir", required=True, nargs="+", help="their data dirs, for the text")
    c.add_argument("--out", required=True)
    c.add_argument("--epochs", type=int, default=15)
    c.add_argument("--encoder", choices=("conv", "transformer"), default="conv")
    c.add_argument("--dim", type=int, default=192)
    c.add_argument("--layers", type=int, default=4)
    c.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default 1e-3 transformer, 3e-3 conv)")
    c.add_argument("--heldout", type=int, default=50, help="utterances held out for CER")
    c.add_argument("--threads", type=int, default=1)

    j = sub.add_parser("judge-check", help="does each judge prefer true continuations?")
    j.add_argument("--km", required=True)
    j.add_argument("--ctc", required=True)
    j.add_argument("--units", required=True, help="units file of held-out utterances")
    j.add_argument("--judges", default="llm,embedding")
    j.add_argument("--data-dir", help="the utterances' Kaldi data dir: also judge the "
                   "reference text's halves (perfect ears), the judge's own ceiling")
    j.add_argument("--out", required=True)
    j.add_argument("--threads", type=int, default=1)

    for name, help_text in (("round", "sample -> judge -> pairs -> DPO (one curriculum round)"),
                            ("ft", "likelihood fine-tuning on chosen continuations (ablation)"),
                            ("evaluate", "lexical/syntactic/cloze accuracy, judge, perplexity")):
        r = sub.add_parser(name, help=help_text)
        if name == "evaluate":
            r.add_argument("--out", required=True, nargs="+", help="one JSON per --model")
        else:
            r.add_argument("--out", required=True)
        r.add_argument("--threads", type=int, default=1)
        r.add_argument("--epochs", type=int, default=2)
        r.add_argument("--lr", type=float, default=5e-4)
        r.add_argument("--beta", type=float, default=0.1)
        r.add_argument("--batch-size", type=int, default=8)
        r.add_argument("--seed", type=int, default=0)
        if name in ("round", "evaluate"):
            r.add_argument("--km", required=True)
            r.add_argument("--ctc", required=True)
            r.add_argument("--judge", default="llm", choices=("llm", "embedding"))
            r.add_argument("--prompts", required=True, help="units file of prompt utterances")
            r.add_argument("--prompt-fraction", type=float, default=0.5)
            r.add_argument("--max-prompts", type=int, default=0, help="0: all")
            r.add_argument("--n", type=int, default=4, help="continuations per prompt")
            r.add_argument("--max-tokens", type=int, default=60)
        if name in ("round", "ft"):
            r.add_argument("--policy", required=True)
        if name == "round":
            r.add_argument("--ref", required=True)
            r.add_argument("--margin", type=float, default=0.0)
        if name == "ft":
            r.add_argument("--pairs", required=True, nargs="+")
        if name == "evaluate":
            r.add_argument("--model", required=True, nargs="+",
                           help="unit-LM dirs (the judge and recognizer load once)")
            r.add_argument("--items", required=True)
            r.add_argument("--item-units", required=True)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _prepare(args) -> int:
    import importlib.util
    import random

    from speechlm.paralin.meld import read_meld_csv
    from speechlm.slm.evalsets import (
        clean_turn,
        cloze_pairs,
        lexical_pairs,
        syntactic_pairs,
        write_items,
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    slurp = sorted({clean_turn(x) for x in Path(args.slurp).read_text().splitlines()} - {""})
    slurp_all = slurp
    slurp = rng.sample(slurp, min(args.slurp_lines, len(slurp)))
    meld_dir = Path(args.meld)
    train_d = read_meld_csv(meld_dir / "train_sent_emo.csv")
    turns = sorted({clean_turn(t.text) for d in train_d for t in d})
    turns = [t for t in turns if 3 <= len(t.split()) <= 20]
    turns_all = turns
    turns = rng.sample(turns, min(args.meld_turns, len(turns)))
    train = slurp + turns
    (out / "train_text").write_text("".join(f"tr{i:05d} {t}\n" for i, t in enumerate(train)))
    dev_d = read_meld_csv(meld_dir / "dev_sent_emo.csv")
    dev_dialogues = [[t.text for t in d] for d in dev_d]
    cloze = cloze_pairs(dev_dialogues, args.cloze, seed=args.seed)
    used = {it.good for it in cloze} | {it.context for it in cloze}
    dev_turns = sorted({clean_turn(x) for d in dev_dialogues for x in d} - used)
    dev_turns = [t for t in dev_turns if 6 <= len(t.split()) <= 20]
    dev = rng.sample(dev_turns, min(args.dev_prompts, len(dev_turns)))
    (out / "dev_text").write_text("".join(f"dv{i:05d} {t}\n" for i, t in enumerate(dev)))
    lexicon: set[str] = set()
    spec = importlib.util.find_spec("pocketsphinx")
    if spec and spec.origin:
        dict_path = Path(spec.origin).parent / "model" / "en-us" / "cmudict-en-us.dict"
        if dict_path.is_file():
            lexicon = {ln.split()[0].split("(")[0] for ln in
                       dict_path.read_text(errors="replace").splitlines() if ln.strip()}
    items = (lexical_pairs(train, lexicon, args.lexical, seed=args.seed)
             + syntactic_pairs(args.syntactic, seed=args.seed) + cloze)
    write_items(out / "items.jsonl", items)
    lines = [f"{it.id}_{role} {text}\n" for it in items for role, text in it.texts().items()]
    (out / "eval_text").write_text("".join(lines))
    ears: list[str] = []
    if args.ears_lines > 0:  # own generator: train, dev and items stay what they were
        ears_rng = random.Random(args.seed + 1)
        taken = set(train) | set(dev) | {clean_turn(x.split(" ", 1)[1]) for x in lines}
        for pool, n in ((slurp_all, args.ears_lines // 2),
                        (turns_all, args.ears_lines - args.ears_lines // 2)):
            free = [t for t in pool if t not in taken]
            ears += ears_rng.sample(free, min(n, len(free)))
        (out / "ears_text").write_text("".join(f"ea{i:05d} {t}\n" for i, t in enumerate(ears)))
    info = {"train_lines": len(train), "slurp_lines": len(slurp), "meld_turns": len(turns),
            "ears_lines": len(ears), "dev_prompts": len(dev), "lexicon_words": len(lexicon),
            "items": {k: sum(it.kind == k for it in items)
                      for k in ("lexical", "syntactic", "cloze")}}
    (out / "prepare.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))
    return 0


def _units(args) -> int:
    import numpy as np

    from speechlm.data.audio import read_audio
    from speechlm.data.kaldi_dir import read_data_dir
    from speechlm.slm.units import KMeansUnits, WhisperFrames, write_units

    started = time.monotonic()
    data = read_data_dir(args.data_dir)
    if data.segments is not None:
        raise ValueError(f"{args.data_dir}: segments are not supported; one recording a line")
    enc = WhisperFrames(args.encoder, threads=args.threads)
    km_dir = Path(args.km)
    km = None
    if not args.fit or (km_dir / "km.json").exists():
        km = KMeansUnits.load(km_dir)
        km.check_encoder(enc.fingerprint)  # refuse before spending time on features
    feats = {}
    for utt in data.utterances:
        feats[utt] = enc(read_audio(data.wav_scp[utt], utt=utt), utt)
    if km is None:
        allf = np.concatenate([feats[u] for u in sorted(feats)])
        if len(allf) > args.max_frames:
            keep = np.random.default_rng(args.seed).choice(len(allf), args.max_frames,
                                                           replace=False)
            allf = allf[np.sort(keep)]
        km = KMeansUnits.fit(allf, args.k, encoder_fingerprint=enc.fingerprint, seed=args.seed)
        km.save(km_dir)
    units = {u: km.units(f, enc.fingerprint) for u, f in feats.items()}
    write_units(args.out, units)
    frames = sum(len(f) for f in feats.values())
    n_units = sum(len(x) for x in units.values())
    info = {"utterances": len(units), "frames": frames, "units": n_units,
            "units_per_second": n_units / (frames * 0.02), "k": km.num_units,
            "seconds": round(time.monotonic() - started, 1)}
    Path(str(args.out) + ".json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))
    return 0


def _lm_data(args) -> int:
    from speechlm.llm.lm_train import save_tokenizer
    from speechlm.slm.units import KMeansUnits, read_units, unit_tokenizer, units_to_text

    km = KMeansUnits.load(args.km)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for f in args.units:
        units = read_units(f, km.num_units)
        lines += [units_to_text(units[u]) for u in sorted(units)]
    (out / "units.txt").write_text("".join(x + "\n" for x in lines))
    save_tokenizer(unit_tokenizer(km.num_units, args.context_length), out / "tokenizer")
    print(f"{len(lines)} unit lines, K={km.num_units} -> {out}")
    return 0


def _train_ctc(args) -> int:
    import random

    from speechlm.data.kaldi_dir import read_data_dir
    from speechlm.slm.recognizer import CTCConfig, train_ctc
    from speechlm.slm.units import KMeansUnits, read_units

    _threads(args.threads)
    km = KMeansUnits.load(args.km)
    units, text = {}, {}
    for f in args.units:
        units.update(read_units(f, km.num_units))
    for d in args.data_dir:
        text.update(read_data_dir(d).text)
    text = {u: t for u, t in text.items() if u in units}
    held = random.Random(0).sample(sorted(units), min(args.heldout, len(units) // 5))
    lr = args.lr or (1e-3 if args.encoder == "transformer" else 3e-3)
    config = CTCConfig(km.num_units, dim=args.dim, layers=args.layers, epochs=args.epochs,
                       lr=lr, encoder=args.encoder)
    model, report = train_ctc(units, text, config, held)
    model.save(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if k != "history"}))
    return 0


def _prompts(args, num_units: int) -> dict[str, list[int]]:
    from speechlm.slm.pipeline import make_prompts
    from speechlm.slm.units import read_units

    prompts = make_prompts(read_units(args.prompts, num_units), args.prompt_fraction, 8)
    if args.max_prompts and args.max_prompts < len(prompts):
        import random

        # seeded sample: sorted ids group by voice, the first N would be one speaker
        keep = random.Random(args.seed).sample(sorted(prompts), args.max_prompts)
        prompts = {k: prompts[k] for k in sorted(keep)}
    return prompts


def _config(args):
    from speechlm.slm.align import TrainConfig

    return TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                       beta=args.beta, seed=args.seed)


def _round(args) -> int:
    from speechlm.slm.pipeline import load_judge, run_round
    from speechlm.slm.recognizer import UnitCTC
    from speechlm.slm.units import KMeansUnits

    _threads(args.threads)
    km = KMeansUnits.load(args.km)
    summary = run_round(args.out, policy=args.policy, ref=args.ref,
                        prompts=_prompts(args, km.num_units), ctc=UnitCTC.load(args.ctc),
                        judge=load_judge(args.judge), num_units=km.num_units,
                        margin=args.margin, n=args.n, max_tokens=args.max_tokens,
                        config=_config(args), seed=args.seed)
    print(json.dumps({k: v for k, v in summary.items() if k != "dpo"}))
    return 0


def _ft(args) -> int:
    from speechlm.slm.align import likelihood_ft
    from speechlm.slm.feedback import Pair

    _threads(args.threads)
    if (Path(args.out) / "train.json").exists():
        print(f"{args.out}: already trained")
        return 0
    pairs = [Pair(**json.loads(x)) for f in args.pairs
             for x in Path(f).read_text().splitlines() if x.strip()]
    report = likelihood_ft(args.policy, pairs, args.out, _config(args))
    print(json.dumps(report))
    return 0


def _evaluate(args) -> int:
    from speechlm.slm.evalsets import read_items
    from speechlm.slm.pipeline import by_line_id, evaluate, load_judge
    from speechlm.slm.recognizer import UnitCTC
    from speechlm.slm.units import KMeansUnits, read_units

    _threads(args.threads)
    km = KMeansUnits.load(args.km)
    heldout = read_units(args.prompts, km.num_units)
    if len(args.model) != len(args.out):
        raise ValueError(f"{len(args.model)} --model but {len(args.out)} --out")
    items = read_items(args.items)
    item_units = by_line_id(read_units(args.item_units, km.num_units))
    prompts = _prompts(args, km.num_units)
    ctc, judge = UnitCTC.load(args.ctc), load_judge(args.judge)
    for model, out in zip(args.model, args.out, strict=True):
        started = time.monotonic()
        res = evaluate(model, items, item_units, prompts, heldout, ctc=ctc, judge=judge,
                       num_units=km.num_units, n=args.n, max_tokens=args.max_tokens)
        res["eval_seconds"] = round(time.monotonic() - started, 1)
        res["model"] = str(model)
        Path(out).write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps(res))
    return 0


def _judge_check(args) -> int:
    from speechlm.slm.pipeline import judge_accuracy, load_judge
    from speechlm.slm.recognizer import UnitCTC
    from speechlm.slm.units import KMeansUnits, read_units

    _threads(args.threads)
    km = KMeansUnits.load(args.km)
    units = read_units(args.units, km.num_units)
    ctc = UnitCTC.load(args.ctc)
    reference = None
    if args.data_dir:
        from speechlm.data.kaldi_dir import read_data_dir

        reference = read_data_dir(args.data_dir).text
    res = []
    for name in args.judges.split(","):
        judge = load_judge(name)
        res.append(judge_accuracy(units, ctc, judge))
        if reference is not None:
            res.append(judge_accuracy(units, ctc, judge, reference=reference))
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res))
    return 0


def run(args: argparse.Namespace) -> int:
    return {"prepare": _prepare, "units": _units, "lm-data": _lm_data,
            "train-ctc": _train_ctc, "judge-check": _judge_check, "round": _round, "ft": _ft,
            "evaluate": _evaluate}[args.action](args)


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm slm", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
