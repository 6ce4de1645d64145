#!/usr/bin/env python3
"""local/lora_slu.sh's comparison -> EXP/RESULTS_lora_<model>.md and .png, per first pass.

Reads ``<model>/<lora>/<set>_<voice>/<input>/accuracy.json`` (the LoRA classifier, no shots)
and ``<model>/icl_<selection>/<set>_<voice>/<input>/accuracy.json`` (run.sh's in-context
run), one table per set: intent accuracy per voice, method and input, and the gap closed of
each input but text, 1-best and oracle, (input - 1-best) / (oracle - 1-best), where the
oracle is at least 3 points above the 1-best. The reference text is read once per set (under
the first voice).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from make_results import (
    MIN_GAP,
    analysis_parser,
    gap_cells,
    gap_table_head,
    read_acc,
    read_wer,
    write_report,
)


def main(argv: list[str] | None = None) -> int:
    p = analysis_parser(__doc__, "sets", "voices", "inputs")
    p.add_argument("--model", required=True, help="the first pass (decode dirs' parent)")
    p.add_argument("--lora", required=True, help="dir name of the LoRA predictions")
    p.add_argument("--slu_dir", required=True, help="the LoRA SLU dir (train_report.json)")
    a = p.parse_args(argv)
    exp, model = Path(a.exp), Path(a.exp) / a.model
    report_path = Path(a.slu_dir) / "train_report.json"
    if not report_path.is_file():
        print(f"lora_results.py: {report_path} missing: the adapter was not trained",
              file=sys.stderr)
        return 1
    report = json.loads(report_path.read_text())
    train = report.get("train", {})
    lines = ["# LoRA SLU vs in-context learning", "",
             f"Command: `{a.cmdline}`. LoRA: `speechlm slu train --mode lora` on "
             f"{train.get('examples', '?')} examples (each training sentence's text, noised "
             "WCN and N-best copies, and the 1-best, N-best and WCN of its synthetic speech), "
             f"{train.get('steps', '?')} steps, {train.get('train_seconds', '?')} s, final "
             f"loss {train.get('final_loss', float('nan')):.3f}; classified without shots. "
             f"ICL: run.sh's 8 shots chosen by {a.selection}. Accuracy in %; gap closed = "
             f"(input - 1-best) / (oracle - 1-best) where the oracle is >= {MIN_GAP:.0f} points "
             "above the 1-best.", ""]
    bars: dict[str, dict[str, float | None]] = {}
    for s in a.sets:
        lines += [f"## {s}", "", *gap_table_head(["voice (1-best WER)", "method"], a.inputs)]
        for v in a.voices:
            wer = read_wer(model / f"decode_{s}_{v}" / "oracle_wer").get("1-best")
            for name, sub in (("ICL", f"icl_{a.selection}"), ("LoRA", a.lora)):
                acc = {}
                for i in a.inputs:
                    voice = a.voices[0] if i == "text" else v  # text: read once per set
                    acc[i] = read_acc(model / sub / f"{s}_{voice}" / i / "accuracy.json")
                    if acc[i] is None and i == "text":  # run.sh reads it under one model
                        found = sorted(exp.glob(f"*/{sub}/{s}_{voice}/text/accuracy.json"))
                        acc[i] = read_acc(found[0]) if found else None
                cells = ["-" if acc[i] is None else f"{acc[i]:.1f}" for i in a.inputs]
                head = f"{v} ({wer:.1f}%)" if wer is not None else v
                lines.append(f"| {head} | {name} | "
                             + " | ".join([*cells, *gap_cells(acc, a.inputs)]) + " |")
                bars[f"{s} {v}\n{name}"] = acc
        lines.append("")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(bars)), 3.6))
    width = 0.8 / len(a.inputs)
    for k, i in enumerate(a.inputs):
        xs = [j + k * width for j in range(len(bars))]
        ax.bar(xs, [acc.get(i) or 0.0 for acc in bars.values()], width, label=i)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(bars))], list(bars), fontsize=8)
    ax.set_ylabel("intent accuracy (%)")
    ax.set_ylim(0, 115)  # room for the legend above the bars
    ax.legend(fontsize=8, ncol=len(a.inputs), loc="upper center")
    write_report(exp, f"RESULTS_lora_{a.model}", lines, fig,
                 "LoRA vs ICL intent accuracy per input")
    return 0


if __name__ == "__main__":
    sys.exit(main())
