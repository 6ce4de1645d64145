r"""Intent classification (SLU) through the LLM runtime from text, 1-best, N-best, WCN or oracle.

    speechlm slu train --llm exp/lm --train-jsonl train.jsonl [--dev-jsonl dev.jsonl] \
        --out exp/slu_lora --mode lora [--epochs 6] [--wcn-noise 0.3]
    speechlm slu train --llm exp/lm --train-jsonl train.jsonl --out exp/slu_icl \
        --mode icl [--shots 4] [--shot-selection similar]
    speechlm slu train --llm-url http://127.0.0.1:8000/v1 [--llm-model NAME] \
        --train-jsonl train.jsonl --out exp/slu_icl_remote --mode icl
    speechlm slu predict --model-dir exp/slu_lora --input wcn --decode-dir exp/asr/decode_dev \
        --data-dir data/dev --out exp/slu_lora/dev_wcn [--wcn-threshold 0.2]
    speechlm slu predict --model-dir exp/slu_icl --llm smollm2-135m-instruct \
        --input text 1best nbest wcn oracle --shots 8 --shot-selection embedding \
        --decode-dir exp/whisper/decode_test --data-dir data/test --out exp/slu_icl/test
    speechlm slu tune-marginal --model-dir exp/slu_icl --input wcn_marg \
        --dev exp/whisper/decode_dev_cal data/dev --out exp/whisper/marginal_wcn_marg.json
    speechlm slu predict ... --input wcn_marg --marginal-from exp/whisper/marginal_wcn_marg.json
    speechlm slu predict ... --nj 4     # 4 worker processes, each with its own LM: same labels
    speechlm slu predict ... --input 1best wcn --shot-data-dir data/pool \
        --shot-decode-dir exp/whisper/decode_pool --shot-input same   # "matched" shots
    speechlm slu predict ... --input 1best wcn_marg --knn 8   # no LM: the 8 nearest shots vote

Both modes classify by rank classification: every label (``alarm_set`` read as
``alarm set``) is scored by the LM as the continuation of the prompt, and the best wins
(``speechlm.llm.slu``). ``lora`` fine-tunes a LoRA adapter on the local LM (the embedded
default LM from ``speechlm lm train``, or any causal LM dir) to write the label after the
serialized input; it trains on the reference text in each input's form (text, a noised
WCN, a noised N-best), plus real decode outputs with ``--train-decode-dir`` and
``--train-data-dir``. ``icl`` stores a few-shot pool (the training jsonl) and prompts the
LM (a local dir, or an OpenAI-compatible server through ``RemoteLLM``) with the
``--shots`` most similar examples.

Inputs of predict: ``text`` = DATA_DIR/text (the reference), ``1best`` (``onebest``) =
DECODE_DIR/text, ``nbest`` = DECODE_DIR/nbest.jsonl, ``wcn`` = DECODE_DIR/cn.jsonl,
``oracle`` = DECODE_DIR/oracle.jsonl (``oracle_text``); ``nbest_marg`` / ``wcn_marg``: the
first ``--marginal-k`` N-best hypotheses (weights ``softmax(--nbest-scale * score)``) / the
most likely WCN paths (weights: their posteriors to the power ``--wcn-path-scale``), each
classified alone and the label posteriors averaged with those weights (one ranking per
hypothesis); ``tune-marginal`` picks k and the scale by accuracy on dev sets
(``speechlm.bin.slu_marginal``), ``--marginal-from`` reads its choice. Serialization
options given to predict override those saved in the SLU dir (sweep WCN thresholds
without retraining), and so do the prompt options (``--shots``, ``--shot-selection``...)
and, for an icl dir, ``--llm`` (a catalogue LLM such as ``smollm2-135m-instruct``, or a
local dir) or ``--llm-url``.
``--knn N`` is the baseline an in-context LM has to beat: no LM, the N pool sentences
whose embeddings (the shot encoder) are nearest the input vote for their intents; a
marginalized input votes with its hypotheses' weighted mean embedding
(``speechlm.llm.knn_slu``).
A spoken pool (``--shot-data-dir``: a data dir of training sentences with utt2intent;
``--shot-decode-dir``: the first pass's output of their speech) replaces the SLU dir's
few-shot pool: shots are chosen by their reference text as always, and shown as that text
or, with ``--shot-input same``, in the query's own form (``speechlm.llm.shot_pool``).
Several ``--input`` kinds share one loaded LLM and write OUT/<input>/ each. An utterance
of DATA_DIR with no decode output is classified from the empty hypothesis, not skipped;
reference intents that are not among the SLU dir's labels are counted in accuracy.json
(``intents_not_in_labels``, ``utts_with_unseen_intent``): they can never be right.

Outputs: SLU_DIR/{slu.json, examples.jsonl | adapter/, train_report.json};
OUT/utt2intent (``utt intent``, LC_ALL=C sorted), OUT/utt2posteriors (``utt
label:logp ...``, every label's log posterior, normalized over the labels, most likely
first: combine inputs or check calibration without the LLM), and when DATA_DIR/utt2intent
exists, the accuracy printed and written to OUT/accuracy.json.

Measured (2026-11-27, 2-core CPU shared with other jobs, one torch thread), embedded LM
(/tmp/lmproto: 1.7M parameters, 64-token context, SLURP text), SLURP split of
egs/slurp/slu1/local/prepare_slu.py (1,331 training sentences, 68 intents; dev 300, of
which 3 have intents unseen in training), dev reference text:
  lora, defaults (r=16, 6 epochs over text + noised WCN + noised N-best = 3,993 inputs,
    750 steps): 287 s training, 58.0% accuracy; 14 s to classify the 300 sentences.
    On the same dev text shown as a noised WCN (30% of words confused): 51.0%; as a
    noised 3-best: 58.7%.
  lora, text only (--wcn-noise 0 --nbest-noise 0), 10 epochs: 106 s, 55.3%; 2 epochs: 37.3%.
  lora, --no-wcn-posteriors --wcn-noise 0.5: 201 s, 57.7%.
  Simulated ASR on the dev text (30% of words substituted in the 1-best; the WCN keeps the
  reference word beside the substitute at posterior 0.4), 1-best / WCN / oracle:
  defaults 40.7 / 42.0 / 58.0%; --no-wcn-posteriors --wcn-noise 0.5: 40.3 / 44.3 / 57.7%
  (a fifth of the gap). One seed, 300 sentences: differences under ~3 points are noise.
  icl, embedded LM, 4 similar shots (those that fit the 64 tokens): 0.0%; with
    --length-norm 1.3% (chance 1.5%); with --calibrate 2.7% (it predicted the short label
    "set" for most queries before): a 3-layer LM trained on single sentences, with a
    64-token context that cuts most shots, does not learn in context; icl is meant for a
    real LLM (--llm DIR or --llm-url).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from speechlm.bin import command_main
from speechlm.bin.launch import lock_dir
from speechlm.bin.slu_marginal import add_tune_arguments, marginal_settings, run_tune

PREDICT_LOCK = ".predict.lock"  # in each OUT while it is written

_SERIALIZE = [  # (flag, field, type, help); defaults come from SerializeConfig
    ("--nbest-k", "nbest_k", int, "N-best hypotheses shown"),
    ("--nbest-separator", "nbest_separator", str, "joins N-best hypotheses"),
    ("--wcn-threshold", "wcn_threshold", float, "drop WCN entries below this posterior"),
    ("--wcn-max-alternatives", "wcn_max_alternatives", int, "at most this many entries a bin"),
    ("--wcn-separator", "wcn_separator", str, "joins the entries of a WCN bin"),
    ("--wcn-digits", "wcn_digits", int, "decimals of a shown posterior"),
    ("--marginal-k", "marginal_k", int, "hypotheses of nbest_marg / wcn_marg"),
    ("--nbest-scale", "nbest_scale", float, "nbest_marg weights: softmax(scale * score)"),
    ("--wcn-path-scale", "wcn_path_scale", float, "wcn_marg weights: path posterior ** scale"),
]
_PROMPT = [
    ("--instruction", "instruction", str, "text before the examples ('' for none)"),
    ("--arrow", "arrow", str, "written between an input and its label"),
    ("--shot-separator", "shot_separator", str, "between examples and before the query"),
    ("--shots", "shots", int, "few-shot examples per query (icl)"),
    ("--shot-selection", "shot_selection", str, "similar | embedding | random | first"),
    ("--shot-encoder", "shot_encoder", str, "sentence encoder of embedding selection"),
]
_LORA = [
    ("--rank", "rank", int, "LoRA rank"),
    ("--alpha", "alpha", float, "LoRA alpha"),
    ("--epochs", "epochs", int, "passes over the training examples"),
    ("--lr", "lr", float, "peak learning rate"),
    ("--batch-size", "batch_size", int, "examples per step"),
    ("--wcn-noise", "wcn_noise", float, "share of words confused in the noised WCN copy"),
    ("--nbest-noise", "nbest_noise", float, "per-word error rate of the noised N-best copy"),
    ("--seed", "seed", int, "seed of adapter init, noise and batch order"),
    ("--threads", "threads", int, "torch CPU threads while training"),
]


def _add(parser, options, defaults, prefix=""):
    for flag, name, type_, help_text in options:
        parser.add_argument(flag, dest=prefix + name, type=type_, default=None,
                            metavar=name.upper(),
                            help=f"{help_text} (default: {getattr(defaults, name)!r})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from speechlm.llm.lora import LoRAConfig
    from speechlm.llm.serialize import INPUT_ALIASES, INPUT_KINDS, SerializeConfig
    from speechlm.llm.shot_pool import SHOT_INPUTS
    from speechlm.llm.slu import MODES, PromptConfig

    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    fmt = argparse.RawDescriptionHelpFormatter
    train = sub.add_parser("train", help="make an SLU dir (lora adapter or icl prompt)",
                           description=__doc__, formatter_class=fmt)
    lm = train.add_mutually_exclusive_group(required=True)
    lm.add_argument("--llm", help="catalogue LLM (smollm2-135m-instruct) or local causal LM "
                    "dir (e.g. from 'speechlm lm train')")
    lm.add_argument("--llm-url", help="OpenAI-compatible server, http://host:port/v1 (icl)")
    train.add_argument("--llm-model", help="model name on the server (default: its only one)")
    train.add_argument("--train-jsonl", required=True, help='lines {"id", "text", "intent"}')
    train.add_argument("--dev-jsonl", help="dev set: accuracy on its text after training")
    train.add_argument("--out", required=True, help="the SLU dir to write")
    train.add_argument("--mode", required=True, choices=MODES)
    train.add_argument("--train-decode-dir", help="lora: also train on these decode outputs")
    train.add_argument("--train-data-dir", help="lora: utt2intent of --train-decode-dir")
    train.add_argument("--no-wcn-posteriors", dest="s_wcn_show_posteriors", action="store_false",
                       default=None, help="WCN alternatives without posteriors")
    train.add_argument("--no-verbalize", dest="p_verbalize", action="store_false", default=None,
                       help="score labels as written (alarm_set), not as words (alarm set)")
    train.add_argument("--length-norm", dest="p_length_norm", action="store_true", default=None,
                       help="rank labels by mean log-prob per token")
    train.add_argument("--calibrate", dest="p_calibrate", action="store_true", default=None,
                       help="contextual calibration: subtract label scores after 'N/A'")
    train.add_argument("--append-eos", dest="p_append_eos", action=argparse.BooleanOptionalAction,
                       default=None, help="score EOS after the label (default: lora yes, icl no)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add(train, _SERIALIZE, SerializeConfig(), "s_")
    _add(train, _PROMPT, PromptConfig(), "p_")
    _add(train, _LORA, LoRAConfig(), "l_")

    pred = sub.add_parser("predict", help="classify the utterances of a decode or data dir",
                          description=__doc__, formatter_class=fmt)
    pred.add_argument("--model-dir", required=True, help="SLU dir from 'speechlm slu train'")
    pred.add_argument("--input", required=True, nargs="+", metavar="INPUT",
                      choices=INPUT_KINDS + tuple(INPUT_ALIASES),
                      help=f"one or more of {', '.join(INPUT_KINDS + tuple(INPUT_ALIASES))}")
    pred.add_argument("--llm", help="icl: use this LLM (catalogue name or local dir) instead "
                      "of the SLU dir's")
    pred.add_argument("--llm-url", help="icl: use this OpenAI-compatible server instead")
    pred.add_argument("--llm-model", help="model name on --llm-url")
    pred.add_argument("--decode-dir", help="from 'speechlm decode --lattice' (not for text)")
    pred.add_argument("--data-dir", help="reference text and utt2intent (accuracy)")
    pred.add_argument("--out", required=True, help="writes OUT/utt2intent, OUT/accuracy.json")
    pred.add_argument("--no-wcn-posteriors", dest="s_wcn_show_posteriors", action="store_false",
                      default=None, help="WCN alternatives without posteriors")
    pred.add_argument("--threads", type=int, default=None,
                      help="torch CPU threads (default: torch's choice)")
    pred.add_argument("--nj", type=int, default=1,
                      help="worker processes, each with its own copy of the LM and --threads "
                           "threads (default: the cores shared out); the same labels as 1")
    pred.add_argument("--no-progress", action="store_true", help="no progress bar")
    pred.add_argument("--calibrate", dest="p_calibrate", action=argparse.BooleanOptionalAction,
                      default=None, help="contextual calibration (default: the SLU dir's)")
    pred.add_argument("--verbalize", dest="p_verbalize", action=argparse.BooleanOptionalAction,
                      default=None, help="score labels as words (alarm set), or as written "
                      "with --no-verbalize (default: the SLU dir's)")
    pred.add_argument("--shot-data-dir", help="icl: the few-shot pool is this data dir's "
                      "utterances (text, utt2intent), e.g. spoken training sentences")
    pred.add_argument("--shot-decode-dir", help="icl: the first pass's output of "
                      "--shot-data-dir's speech, for --shot-input other than text")
    pred.add_argument("--shot-input", choices=SHOT_INPUTS, default="text",
                      help="how --shot-data-dir's shots are shown: text (the reference), same "
                      "(as the query: 1best, nbest, wcn, oracle; a marginalized query's shots "
                      "show their 1-best) or one decode kind (default: text)")
    pred.add_argument("--knn", type=int, default=0, metavar="N",
                      help="no LM: the N few-shot pool sentences nearest the input (sentence "
                      "embeddings of --shot-encoder) vote for the intent, in one process "
                      "(default 0: the LM)")
    pred.add_argument("--marginal-from", nargs="+", metavar="REPORT",
                      help="nbest_marg / wcn_marg settings picked on dev by 'speechlm slu "
                      "tune-marginal' (flags given here win)")
    _add(pred, _SERIALIZE, SerializeConfig(), "s_")
    _add(pred, _PROMPT, PromptConfig(), "p_")

    tune = add_tune_arguments(sub, __doc__)
    grid = ("marginal_k", "nbest_scale", "wcn_path_scale")  # what --ks / --scales set
    _add(tune, [o for o in _SERIALIZE if o[1] not in grid], SerializeConfig(), "s_")
    _add(tune, _PROMPT, PromptConfig(), "p_")


def _given(args: argparse.Namespace, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in vars(args).items()
            if k.startswith(prefix) and v is not None}


def _dev_accuracy(clf, dev_jsonl: str, progress: bool) -> dict:
    from speechlm.llm.icl import read_examples
    from speechlm.llm.slu import accuracy

    dev = read_examples(dev_jsonl)
    ids = [f"{i:06d}" for i in range(len(dev))]  # jsonl ids may repeat across sets
    started = time.monotonic()
    hyp = clf.predict({u: e.text for u, e in zip(ids, dev, strict=True)}, progress=progress)
    acc = accuracy(hyp, {u: e.intent for u, e in zip(ids, dev, strict=True)})
    unseen = sorted({e.intent for e in dev} - set(clf.labels))
    return {**acc, "input": "text", "file": dev_jsonl, "seconds": round(time.monotonic() -
            started, 1), "intents_not_in_train": unseen}


def _decode_pairs(decode_dir: str, data_dir: str, serialize) -> list[tuple[str, str]]:
    from speechlm.llm.serialize import load_inputs, read_utt2intent

    ref = read_utt2intent(Path(data_dir) / "utt2intent")
    pairs = []
    for kind in ("onebest", "nbest", "wcn"):
        try:
            inputs = load_inputs(kind, serialize, decode_dir=decode_dir)
        except FileNotFoundError as e:
            print(f"speechlm slu train: skipping {kind} of {decode_dir}: {e}", file=sys.stderr)
            continue
        pairs += [(inputs[u], ref[u]) for u in inputs if u in ref]
    if not pairs:
        raise ValueError(f"{decode_dir}: no decode output matches {data_dir}/utt2intent")
    return pairs


def run_train(args: argparse.Namespace) -> int:
    from speechlm.llm.icl import ExamplePool, read_examples, write_examples
    from speechlm.llm.lora import LoRAConfig, train_lora
    from speechlm.llm.serialize import SerializeConfig
    from speechlm.llm.slu import (
        ADAPTER,
        EXAMPLES,
        REPORT,
        SLU_JSON,
        PromptConfig,
        SLUConfig,
        labels_of,
        load_classifier,
    )

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise ValueError(f"{out} exists and is not empty; pass --overwrite to replace it")
        if not (out / SLU_JSON).is_file():
            raise ValueError(f"{out} is not an SLU dir (no {SLU_JSON}); refusing to delete it")
    if args.mode == "lora" and args.llm is None:
        raise ValueError("--mode lora fine-tunes a local LM: give --llm DIR, not --llm-url")
    if (args.train_decode_dir is None) != (args.train_data_dir is None):
        raise ValueError("--train-decode-dir and --train-data-dir go together")
    examples = read_examples(args.train_jsonl)
    serialize = SerializeConfig(**_given(args, "s_"))
    prompt_kw = {"shots": 0, "append_eos": True} if args.mode == "lora" else {}
    prompt = PromptConfig(**{**prompt_kw, **_given(args, "p_")})
    if args.mode == "lora" and prompt.shots:
        raise ValueError("--shots: the LoRA model is prompted without examples (use 0)")
    lora = LoRAConfig(**_given(args, "l_"))
    llm_path = None
    if args.llm is not None:
        from speechlm.core import catalogue
        from speechlm.runtime.loading import resolve_model

        resolve_model(args.llm)  # a missing or broken LM fails before an old dir is replaced
        llm_path = args.llm if args.llm in catalogue.MODELS else str(Path(args.llm).resolve())
    config = SLUConfig(mode=args.mode, labels=labels_of(examples), serialize=serialize,
                       prompt=prompt, llm_path=llm_path, llm_url=args.llm_url,
                       llm_model=args.llm_model,
                       train={"train_jsonl": str(Path(args.train_jsonl).resolve()),
                              "examples": len(examples), "command": " ".join(sys.argv),
                              **({"lora": dataclasses.asdict(lora)} if args.mode == "lora"
                                 else {})})
    extra = []
    if args.train_decode_dir:
        extra = _decode_pairs(args.train_decode_dir, args.train_data_dir, serialize)
        config.train["decode_dir"] = str(Path(args.train_decode_dir).resolve())
    if args.mode == "icl":
        ExamplePool(examples)
    progress = not args.no_progress
    # Every option checked: only now is an old dir replaced. slu.json goes first, so a run
    # killed while training leaves a dir that --overwrite may replace; train_report.json,
    # written last, marks a finished one.
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    config.save(out)
    report: dict = {"mode": args.mode, "labels": len(config.labels)}
    if args.mode == "lora":
        report["train"] = train_lora(llm_path, examples, config.labels, out / ADAPTER,
                                     prompt=prompt, serialize=serialize, config=lora,
                                     extra=extra, progress=progress)
        print(f"trained LoRA adapter on {report['train']['examples']} examples in "
              f"{report['train']['train_seconds']:.0f} s; {out / ADAPTER}")
    else:
        write_examples(examples, out / EXAMPLES)
    if args.dev_jsonl:
        clf, _ = load_classifier(out)
        report["dev"] = _dev_accuracy(clf, args.dev_jsonl, progress)
        d = report["dev"]
        print(f"dev accuracy (text) {d['accuracy']:.4f} ({d['correct']}/{d['total']}) "
              f"in {d['seconds']:.0f} s")
    (out / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _predict_stamps(model_dir: str | Path, llm_path: str | None,
                    inputs: dict, settings: dict) -> tuple[str, str]:
    """Digests of the SLU dir (config, adapter, examples), its local LLM and the exact
    inputs: (the one written, an older one still accepted).

    slu.json counts without its ``train`` block (the training command and file paths: where
    the dir was made, not what it predicts), so stage 4 run again from another checkout does
    not make every finished prediction stale. The older digest read slu.json byte for byte;
    outputs stamped with it are kept, and restamped. LLM files over 64 MiB count by name,
    size and mtime (a real checkpoint is too big to hash on every call)."""
    from speechlm.llm.slu import SLU_JSON

    digests = hashlib.sha256(), hashlib.sha256()
    folders = [Path(model_dir), Path(model_dir) / "adapter"]
    if llm_path:
        folders.append(Path(llm_path))
    for folder in folders:
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if not f.is_file() or f.name.startswith("."):
                continue
            st = f.stat()
            content = (f.read_bytes() if st.st_size <= 64 << 20
                       else f"{st.st_size} {st.st_mtime_ns}".encode())
            what = content
            if f.name == SLU_JSON and folder == Path(model_dir):
                config = {k: v for k, v in json.loads(content).items() if k != "train"}
                what = json.dumps(config, sort_keys=True).encode()
            for h, part in zip(digests, (what, content), strict=True):
                h.update(f"{folder.name}/{f.name}\0".encode())
                h.update(part)
    for h in digests:
        h.update(json.dumps(inputs, sort_keys=True).encode())
        h.update(json.dumps(settings, sort_keys=True).encode())
    return digests[0].hexdigest(), digests[1].hexdigest()


def run_predict(args: argparse.Namespace) -> int:
    from speechlm.llm.serialize import (
        MARGINAL_KINDS,
        input_kind,
        load_input_variants,
        load_weighted_hypotheses,
    )
    from speechlm.llm.slu import SLUConfig, load_classifier

    config = SLUConfig.load(args.model_dir)  # fail on a bad dir before loading any model
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.llm is not None and args.llm_url is not None:
        raise ValueError("give either --llm or --llm-url, not both")
    if args.nj < 1:
        raise ValueError(f"--nj must be >= 1, got {args.nj}")
    given = _given(args, "s_")
    serialize = dataclasses.replace(config.serialize, **given)
    prompt = dataclasses.replace(config.prompt, **_given(args, "p_"))
    if args.knn:
        _check_knn(args)
    tuned = marginal_settings(args.marginal_from)
    per_kind = {k: dataclasses.replace(config.serialize, **{**v, **given})
                for k, v in tuned.items()}  # flags given on the command line win
    kinds = list(dict.fromkeys(input_kind(k) for k in args.input))
    names = {input_kind(k): k for k in args.input}  # OUT/<name as given>
    inputs = {}
    for kind in kinds:
        if kind in MARGINAL_KINDS:
            if args.decode_dir is None:
                raise ValueError(f"input {kind!r} needs --decode-dir")
            inputs[kind] = load_weighted_hypotheses(kind, per_kind.get(kind, serialize),
                                                    decode_dir=args.decode_dir,
                                                    data_dir=args.data_dir)
        else:
            inputs[kind] = load_input_variants(kind, serialize, decode_dir=args.decode_dir,
                                               data_dir=args.data_dir)
        if not inputs[kind]:
            raise ValueError(f"no utterances in the {kind} input")
    shots_from = _spoken_pool(args, config, prompt, serialize, kinds)
    llm_id = None if args.knn else args.llm_url or args.llm or config.llm_path or config.llm_url
    # what a prediction depends on (a kNN vote: the pool, its encoder and N, not the LM)
    settings = ({"knn": args.knn, "shot_encoder": prompt.shot_encoder} if args.knn else
                {"prompt": dataclasses.asdict(prompt), "llm": llm_id, "model": args.llm_model})
    clf = None

    def predict(kind: str) -> dict[str, list[float]]:
        nonlocal clf
        started = time.monotonic()
        load_kwargs = {"prompt": prompt, "llm": args.llm, "llm_url": args.llm_url,
                       "llm_model": args.llm_model, **shots_from.get(kind, {})}
        if args.knn:
            from speechlm.llm.knn_slu import load_knn_classifier

            if clf is None:
                clf, _ = load_knn_classifier(args.model_dir, args.knn,
                                             encoder=prompt.shot_encoder,
                                             examples=shots_from.get(kind, {}).get("examples"))
            posteriors = clf.predict_posteriors(inputs[kind], progress=not args.no_progress)
        elif args.nj > 1:
            from speechlm.llm.slu_parallel import predict_posteriors_parallel

            posteriors = predict_posteriors_parallel(
                args.model_dir, inputs[kind], args.nj, load_kwargs=load_kwargs,
                threads=args.threads, progress=not args.no_progress)
        else:
            if clf is None:
                clf, _ = load_classifier(args.model_dir, **load_kwargs)
            elif kind in shots_from:
                clf.shown = shots_from[kind]["shown"]  # the same pool, shown as this kind
            posteriors = clf.predict_posteriors(inputs[kind], progress=not args.no_progress)
        print(f"{kind}: {len(posteriors)} utterances in {time.monotonic() - started:.0f} s",
              file=sys.stderr)
        return posteriors

    for kind in kinds:
        out = Path(args.out) / names[kind] if len(kinds) > 1 else Path(args.out)
        # A finished prediction of the same model on the same serialized inputs is kept.
        # a spoken pool counts by what its shots are and show (absent: the stamp of before)
        kind_settings = settings if kind not in shots_from else {
            **settings, "shots_from": [[e.id, e.text, e.intent, shots_from[kind]["shown"][e.id]]
                                       for e in shots_from[kind]["examples"]]}
        stamps = _predict_stamps(args.model_dir, None if args.knn else args.llm or config.llm_path,
                                 inputs[kind], kind_settings)
        hyp = _kept_or_predicted(out, stamps, functools.partial(predict, kind), config.labels)
        _score(args, config, out, kind, hyp, per_kind.get(kind, serialize), prompt, llm_id)
    return 0


def _check_knn(args: argparse.Namespace) -> None:
    """--knn runs no LM: refuse the options that would change one."""
    if args.knn < 0:
        raise ValueError(f"--knn must be >= 0, got {args.knn}")
    lm_only = {"--llm": args.llm, "--llm-url": args.llm_url, "--llm-model": args.llm_model,
               "--shot-decode-dir": args.shot_decode_dir,
               "--shot-input": None if args.shot_input == "text" else args.shot_input,
               "--calibrate": args.p_calibrate or None}
    given = [flag for flag, v in lm_only.items() if v is not None]
    if given:
        raise ValueError(f"--knn runs no LM (the pool's embeddings vote); not with "
                         f"{', '.join(given)}")


def _spoken_pool(args: argparse.Namespace, config, prompt, serialize,
                 kinds: list[str]) -> dict[str, dict]:
    """``load_classifier``'s ``examples`` and ``shown`` for each input kind, from
    --shot-data-dir (and --shot-decode-dir); {} without a spoken pool."""
    from speechlm.llm.shot_pool import read_spoken_pool, shot_kind, shown_inputs

    if args.shot_data_dir is None:
        if args.shot_decode_dir is not None or args.shot_input != "text":
            raise ValueError("--shot-decode-dir and --shot-input need --shot-data-dir")
        return {}
    if config.mode != "icl" or prompt.shots == 0:
        raise ValueError(f"--shot-data-dir: {args.model_dir} prompts with no shots "
                         f"(mode {config.mode}, shots {prompt.shots})")
    examples = read_spoken_pool(args.shot_data_dir)
    shown: dict[str, dict[str, str]] = {}  # by the kind shots are shown as
    out = {}
    for kind in kinds:
        as_kind = shot_kind(args.shot_input, kind)
        if as_kind not in shown:
            shown[as_kind] = shown_inputs(as_kind, serialize, args.shot_data_dir,
                                          args.shot_decode_dir)
        out[kind] = {"examples": examples, "shown": shown[as_kind]}
    return out


def _kept_or_predicted(out: Path, stamps: tuple[str, ...], predict,
                       labels: list[str]) -> dict[str, str]:
    """OUT/utt2intent when OUT/.done holds one of ``stamps`` (restamped with the first), else
    the best labels of ``predict()``
    (label log posteriors) written to OUT/utt2intent, with the posteriors in
    OUT/utt2posteriors. A kept result from before utt2posteriors existed is kept without.

    One writer per OUT: a second ``slu predict`` on the same OUT (two recipe runs sharing
    sets) waits for the first and then finds its result done, instead of computing it again
    beside it and racing on the files."""
    lock = lock_dir(out, PREDICT_LOCK, wait=True)
    try:
        done = out / ".done"
        if (done.is_file() and done.read_text().strip() in stamps
                and (out / "utt2intent").is_file()):
            print(f"speechlm slu predict: already done ({out}/utt2intent)", file=sys.stderr)
            done.write_text(stamps[0] + "\n")
            return _read_hyp(out / "utt2intent")
        return _write_hyp(out, stamps[0], labels, predict())
    finally:
        os.close(lock)


def _read_hyp(path: Path) -> dict[str, str]:
    from speechlm.llm.serialize import read_utt2intent

    return read_utt2intent(path)


def _write_hyp(out: Path, stamp: str, labels: list[str],
               posteriors: dict[str, list[float]]) -> dict[str, str]:
    """The best label of each utterance, written to OUT with its posteriors and ``stamp``."""
    from speechlm.data.kaldi_dir import c_sorted
    from speechlm.llm.slu import best_label, write_utt2posteriors

    hyp = {u: best_label(labels, s) for u, s in posteriors.items()}
    out.mkdir(parents=True, exist_ok=True)
    done = out / ".done"
    done.unlink(missing_ok=True)
    with open(out / "utt2intent", "w", encoding="utf-8") as f:
        for utt in c_sorted(hyp):
            f.write(f"{utt} {hyp[utt]}\n")
    write_utt2posteriors(out / "utt2posteriors", labels, posteriors)
    done.write_text(stamp + "\n")
    return hyp


def _score(args, config, out: Path, kind: str, hyp: dict[str, str], serialize, prompt,
           llm_id: str | None) -> None:
    from speechlm.llm.serialize import read_utt2intent
    from speechlm.llm.slu import accuracy

    ref_path = Path(args.data_dir) / "utt2intent" if args.data_dir else None
    if ref_path is None or not ref_path.is_file():
        return
    ref = read_utt2intent(ref_path)
    acc = accuracy(hyp, ref)
    unseen = sorted(set(ref.values()) - set(config.labels))
    if args.shot_data_dir is not None:
        from speechlm.llm.shot_pool import shot_kind

        acc["shots_from"] = {"data_dir": str(args.shot_data_dir), "decode_dir":
                             args.shot_decode_dir,
                             "shown_as": shot_kind(args.shot_input, kind)}
    if args.knn:
        acc["knn"] = args.knn  # no LM: the nearest pool sentences voted
    acc.update(input=kind, model_dir=str(args.model_dir), mode=config.mode, llm=llm_id,
               intents_not_in_labels=unseen,
               utts_with_unseen_intent=sum(v in unseen for v in ref.values()),
               serialize=dataclasses.asdict(serialize), prompt=dataclasses.asdict(prompt))
    (out / "accuracy.json").write_text(json.dumps(acc, indent=2) + "\n")
    missing = f", {acc['missing']} without a hypothesis" if acc["missing"] else ""
    unseen_note = (f", {acc['utts_with_unseen_intent']} with an intent not in the labels"
                   if unseen else "")
    print(f"intent accuracy ({kind}) {acc['accuracy']:.4f} "
          f"({acc['correct']}/{acc['total']}{missing}{unseen_note})")


def run_tune_marginal(args: argparse.Namespace) -> int:
    from speechlm.llm.slu import SLUConfig

    config = SLUConfig.load(args.model_dir)
    serialize = dataclasses.replace(config.serialize, **_given(args, "s_"))
    prompt = dataclasses.replace(config.prompt, **_given(args, "p_"))
    return run_tune(args, serialize, prompt, lambda inputs, settings: _predict_stamps(
        args.model_dir, args.llm or config.llm_path, inputs, settings))


def run(args: argparse.Namespace) -> int:
    actions = {"train": run_train, "predict": run_predict, "tune-marginal": run_tune_marginal}
    return actions[args.action](args)


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm slu", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
