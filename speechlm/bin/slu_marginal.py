"""``speechlm slu tune-marginal`` and predict's ``--marginal-from`` (``speechlm.bin.slu``).

    speechlm slu tune-marginal --model-dir exp/slu_icl --input wcn_marg \
        --dev exp/espnet/decode_dev_cal data/dev [--dev ...] \
        [--ks "1 2 4 8"] [--scales "0 0.25 0.5 1"] [--nj 4] --out exp/espnet/marginal_wcn_marg.json
    speechlm slu predict ... --input wcn_marg --marginal-from exp/espnet/marginal_wcn_marg.json

The grid is scored on the pooled dev sets (``speechlm.llm.marginal_tuning``); the report
keeps every candidate and the chosen one (``best``). A report of the same SLU dir, LLM,
hypotheses and grid is kept, not recomputed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

KS = "1 2 4 8"
SCALES = "0 0.25 0.5 1"


def add_tune_arguments(sub: Any, description: str) -> argparse.ArgumentParser:
    tune = sub.add_parser("tune-marginal", help="pick marginal_k and the weight scale of "
                          "nbest_marg / wcn_marg by dev accuracy", description=description,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    tune.add_argument("--model-dir", required=True, help="SLU dir from 'speechlm slu train'")
    tune.add_argument("--input", required=True, choices=("nbest_marg", "wcn_marg"))
    tune.add_argument("--dev", nargs=2, action="append", required=True,
                      metavar=("DECODE_DIR", "DATA_DIR"),
                      help="a dev decode dir and its data dir (utt2intent); repeatable, pooled")
    tune.add_argument("--ks", default=KS, help=f"marginal_k candidates (default: {KS!r})")
    tune.add_argument("--scales", default=SCALES,
                      help=f"weight scale candidates, 0 = equal weights (default: {SCALES!r})")
    tune.add_argument("--out", required=True, help="the report (JSON)")
    tune.add_argument("--llm", help="icl: use this LLM instead of the SLU dir's")
    tune.add_argument("--threads", type=int, default=None,
                      help="torch CPU threads (with --nj: per worker, default the cores "
                           "shared out)")
    tune.add_argument("--nj", type=int, default=1,
                      help="worker processes that rank the grid's distinct hypotheses, each "
                           "with its own copy of the LM; the same report as 1")
    tune.add_argument("--no-progress", action="store_true", help="no progress bar")
    return tune


def _numbers(text: str, kind: type, flag: str) -> list:
    try:
        values = [kind(x) for x in text.split()]
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not a list of {kind.__name__}s") from None
    if not values or any(v < (1 if kind is int else 0) for v in values):
        raise ValueError(f"{flag}: need values >= {1 if kind is int else 0}, got {text!r}")
    return values


def run_tune(args: argparse.Namespace, serialize: Any, prompt: Any, stamps_of: Any) -> int:
    """``stamps_of(inputs, settings)``: predict's digests of the SLU dir, LLM and inputs (the
    one written, then older ones still accepted)."""
    from speechlm.llm.marginal_tuning import (
        SCALE_FIELD,
        ScoreTable,
        best_candidate,
        candidate_inputs,
        grid_texts,
        read_dev_references,
        tune_marginal,
    )
    from speechlm.llm.slu import SLUConfig, load_classifier

    if args.nj < 1:
        raise ValueError(f"--nj must be >= 1, got {args.nj}")
    ks = _numbers(args.ks, int, "--ks")
    scales = _numbers(args.scales, float, "--scales")
    dev = [(Path(d), Path(t)) for d, t in args.dev]
    refs = read_dev_references(dev)
    widest = dataclasses.replace(serialize, marginal_k=max(ks))
    settings = {"prompt": dataclasses.asdict(prompt), "llm": args.llm, "ks": ks,
                "scales": scales, "serialize": dataclasses.asdict(serialize)}
    stamps = stamps_of(candidate_inputs(args.input, widest, dev, refs), settings)
    stamp = stamps[0]
    out = Path(args.out)
    if out.is_file():
        try:
            old = json.loads(out.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("stamp") in stamps:
            print(f"speechlm slu tune-marginal: already done ({out})", file=sys.stderr)
            return 0
    started = time.monotonic()
    load_kwargs = {"prompt": prompt, "llm": args.llm}
    if args.nj > 1:
        from speechlm.llm.slu_parallel import score_texts

        # every distinct hypothesis ranked once, in the workers; the grid is then arithmetic
        texts = grid_texts(args.input, serialize, dev, ks, scales)
        scorer = ScoreTable(SLUConfig.load(args.model_dir).labels,
                            score_texts(args.model_dir, texts, args.nj, load_kwargs=load_kwargs,
                                        threads=args.threads, progress=not args.no_progress))
    else:
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        scorer, _ = load_classifier(args.model_dir, **load_kwargs)
    rows = tune_marginal(scorer, args.input, serialize, dev, ks, scales,
                         progress=not args.no_progress and args.nj == 1)
    best = best_candidate(rows)
    field = SCALE_FIELD[args.input]
    print(f"|marginal_k|{field}|dev accuracy (%)|\n|---|---|---|")
    for r in rows:
        mark = " (chosen)" if r is best else ""
        print(f"|{r['marginal_k']}|{r[field]:g}|{100 * r['accuracy']:.1f}{mark}|")
    report = {"input": args.input, "model_dir": str(args.model_dir),
              "dev": [[str(d), str(t)] for d, t in dev], "utts": len(refs),
              "seconds": round(time.monotonic() - started, 1), "candidates": rows,
              "best": {"marginal_k": best["marginal_k"], field: best[field]},
              "dev_accuracy": best["accuracy"], "stamp": stamp}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)
    print(f"{args.input}: marginal_k {best['marginal_k']}, {field} {best[field]:g} "
          f"({100 * best['accuracy']:.1f}% on {len(refs)} dev utterances) -> {out}")
    return 0


def marginal_settings(paths: list[str]) -> dict[str, dict[str, Any]]:
    """``--marginal-from`` reports -> {input kind: serialize fields} (one report a kind).

    Raises:
        FileNotFoundError: a missing report.
        ValueError: not a tune-marginal report, or two reports of one kind.
    """
    out: dict[str, dict[str, Any]] = {}
    for p in paths or []:
        try:
            report = json.loads(Path(p).read_text())
            kind, best = report["input"], dict(report["best"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"--marginal-from {p}: not a 'speechlm slu tune-marginal' "
                             "report (input, best)") from None
        if kind in out:
            raise ValueError(f"--marginal-from: two reports for {kind} ({p})")
        out[kind] = best
    return out
