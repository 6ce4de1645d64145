"""``speechlm rescore --method ...`` and ``speechlm rescore train``: the second pass on
N-best files (see ``speechlm.bin.rescore`` for the usage, ``speechlm.llm.second_pass``
for the methods). Not a command of its own."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechlm.core.errors import UsageError


def _kind(model: str) -> str:
    """causal for a catalogue LLM or a dir whose config names a *ForCausalLM, else
    bidirectional."""
    from speechlm.core import catalogue

    if model in catalogue.MODELS:
        return "causal" if catalogue.get(model).task == "llm" else "bidirectional"
    cfg = Path(model) / "config.json"
    if cfg.is_file():
        archs = json.loads(cfg.read_text()).get("architectures") or []
        return "causal" if any(a.endswith("ForCausalLM") for a in archs) else "bidirectional"
    return "causal" if str(model).endswith(".gguf") else "bidirectional"


def _train(args: argparse.Namespace) -> int:
    from speechlm.llm.second_pass.run import load_set

    if not args.train:
        raise UsageError("train needs --train (a set spec)")
    notes: list = []
    train = load_set(args.train, notes).items
    if args.method == "ger-lora":
        from speechlm.llm.second_pass.ger_lora import train_ger_lora

        if not args.llm:
            raise UsageError("train --method ger-lora needs --llm")
        stats = train_ger_lora(args.llm, train, args.out, rank=args.lora_rank,
                               epochs=args.epochs, lr=args.lr or 1e-3)
    elif args.method == "mwer":
        from speechlm.llm.second_pass.mwer import (
            MwerConfig,
            build_scorer,
            save_scorer,
            train_scorer,
        )

        if not args.model:
            raise UsageError("train --method mwer needs --model (a backbone name or dir)")
        kind = _kind(args.model)
        lr = args.lr or (1e-3 if kind == "bidirectional" else 5e-4)
        cfg = MwerConfig(model=args.model, kind=kind, pooling=args.pooling,
                         objective=args.objective, train_backbone=not args.freeze,
                         lora_rank=args.lora_rank, lr=lr, backbone_lr=args.backbone_lr,
                         epochs=args.epochs, with_first_pass=args.with_first_pass)
        scorer = build_scorer(cfg)
        stats = train_scorer(scorer, train)
        save_scorer(scorer, args.out, stats)
    elif args.method == "pll":
        from speechlm.llm.second_pass.pll import (
            PllConfig,
            build_pll_scorer,
            save_pll_scorer,
            train_pll,
        )

        if not args.model:
            raise UsageError("train --method pll needs --model (a bidirectional encoder: "
                             "minilm-l6, mpnet-base or a dir)")
        if _kind(args.model) != "bidirectional":
            raise UsageError(f"train --method pll: {args.model} is a causal LM; PLL is the "
                             "bidirectional baseline (use --method mwer --objective "
                             "likelihood --pooling prob for a causal one)")
        cfg = PllConfig(model=args.model, lr=args.lr or 1e-3, backbone_lr=args.backbone_lr,
                        epochs=args.epochs)
        scorer, new_keys = build_pll_scorer(cfg)
        if new_keys:
            print(f"rescore train: {args.model} has no MLM head weights; newly initialised: "
                  f"{', '.join(new_keys)}", file=sys.stderr)
        stats = train_pll(scorer, train)
        save_pll_scorer(scorer, args.out, stats, new_keys)
    else:
        raise UsageError("train takes --method mwer, pll or ger-lora")
    print(f"rescore train: {json.dumps(stats)}", file=sys.stderr)
    return 0


def run_second_pass(args: argparse.Namespace) -> int:
    if args.action == "train":
        return _train(args)
    from speechlm.llm.second_pass.methods import MethodConfig
    from speechlm.llm.second_pass.run import TRAINED, load_set, load_trained_scorer, run_method

    if args.method == "ger-lora":
        raise UsageError("ger-lora is trained (speechlm rescore train --method ger-lora); use "
                         "it with --method ger-select|ger-free --adapter DIR")
    if not args.dev or not args.nbest:
        raise UsageError("--method needs --dev (tuning set) and --nbest (eval sets)")
    notes: list = []
    refs = None
    if args.ref:  # references of nbest.jsonl sets (a Kaldi text)
        from speechlm.core.wer import read_kaldi_text

        refs = {u: " ".join(w) for u, w in read_kaldi_text(args.ref).items()}
    dev = load_set(args.dev, notes, refs=refs)
    evals = [load_set(s, notes, refs=refs) for s in args.nbest]
    train = load_set(args.train, notes, refs=refs).items if args.train else []
    config = MethodConfig(args.method, shots=args.shots, demos=args.demos)
    llm = scorer = encoder = None
    extra: dict = {}
    if args.method in TRAINED:
        if not args.model:
            raise UsageError(f"--method {args.method} needs --model (a scorer dir from "
                             f"'speechlm rescore train --method {args.method}')")
        scorer, extra = load_trained_scorer(args.method, args.model)
    else:
        if args.adapter:
            from speechlm.llm.lora import load_lora_llm

            if not args.llm:
                raise UsageError("--adapter needs --llm (its base model)")
            llm = load_lora_llm(args.llm, args.adapter)
            stats = Path(args.adapter) / "ger_lora.json"
            extra = {"adapter": args.adapter,
                     "train": json.loads(stats.read_text()) if stats.is_file() else {}}
        else:
            from speechlm.bin.rescore import _load_llm

            llm = _load_llm(args)
        extra["llm"] = args.llm or args.llm_url
        if args.shots and args.demos == "similar":
            from speechlm.encoders import load_encoder

            encoder = load_encoder(args.encoder)
    if config.shots and not train:
        raise UsageError("--shots needs --train (the demonstrations' source)")
    res = run_method(config, dev, evals, args.out, llm=llm, scorer=scorer, train=train,
                     encoder=encoder, notes=notes, extra=extra)
    name = config.key + ("_lora" if args.adapter else "")
    for s, row in res["sets"].items():
        print(f"{name} {s}: WER {row['wer']:.2f} (1-best {row['one_best']:.2f}, oracle "
              f"{row['oracle']:.2f}), {row['latency_s']:.3f} s/utt", file=sys.stderr)
    return 0
