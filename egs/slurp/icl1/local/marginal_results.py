#!/usr/bin/env python3
"""Stage 5's dev-tuned marginalization -> EXP/RESULTS_marginal.md and EXP/RESULTS_marginal.png.

Reads ``<model>/marginal_<input>.json`` (``speechlm slu tune-marginal`` on the dev sets of
every voice: the grid and the choice) and, per set x voice,
``<model>/icl_<selection>/<set>_<voice>/{1best,<input>,<input>_tuned,oracle}/accuracy.json``:
the 1-best, the input at the default settings (4 hypotheses, the first pass's weights), at
the dev-chosen settings, and the lattice oracle. One table per input: the choice, its dev
accuracy, test accuracy and gap closed, (input - 1-best) / (oracle - 1-best), where the
oracle is at least 3 points above the 1-best; the mean over rows; one bar chart. With
``--data`` (the recipe's data dir, ``<set>_<voice>/utt2intent``), exact McNemar tests of the
tuned input against the 1-best and against the default, per row and pooled over the rows:
a test set of 100 sentences moves by whole utterances. First passes of EXP tuned by an
earlier run (another ``--asr_models``) are reported after ``--models``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from make_results import analysis_parser, gap_pct, read_acc, write_report
from paired import mcnemar, wins_losses

SCALE = {"nbest_marg": "nbest_scale", "wcn_marg": "wcn_path_scale"}


def paired_lines(rows: list[tuple[str, tuple[int, int] | None, tuple[int, int] | None]],
                 i: str) -> list[str]:
    """Per-row and pooled McNemar lines: tuned vs 1-best, tuned vs default."""
    have = [(name, x, y) for name, x, y in rows if x is not None and y is not None]
    if not have:
        return []
    out = [f"Paired exact McNemar tests on the same utterances (`{i}_tuned` vs `1best`, "
           f"`{i}_tuned` vs `{i}` default: utterances won/lost, two-sided p):", ""]
    out += [f"- {name}: vs 1-best {mcnemar(*x)}, vs default {mcnemar(*y)}" for name, x, y in have]
    if len(have) > 1:
        pooled = [tuple(sum(r[j][k] for r in have) for k in (0, 1)) for j in (1, 2)]
        out.append(f"- pooled over {len(have)} rows: vs 1-best {mcnemar(*pooled[0])}, "
                   f"vs default {mcnemar(*pooled[1])}")
    return out + [""]


def main() -> int:
    p = analysis_parser(__doc__, "models", "sets", "voices", "inputs")
    p.add_argument("--data", help="data dir with <set>_<voice>/utt2intent: paired tests")
    a = p.parse_args()
    exp = Path(a.exp)
    # one report per exp dir: first passes tuned by earlier runs (another --asr_models) stay in
    models = [*a.models, *sorted({f.parent.name for i in a.inputs
                                  for f in exp.glob(f"*/marginal_{i}.json")} - set(a.models))]
    lines = ["# Marginalized inputs with settings chosen on dev", "",
             f"Command: `{a.cmdline}`. `speechlm slu tune-marginal` scores every number of "
             "hypotheses k x weight scale (the first pass's posteriors to that power, 0 = equal "
             "weights) on the dev sets of every voice pooled, and picks the best (ties: fewer "
             "hypotheses, then the scale nearest 1); the test sets are then classified with "
             "that choice (`<input>_tuned`). `default`: 4 hypotheses at the posteriors as they "
             f"are (RESULTS.md). Shots chosen by {a.selection}. Accuracy in %; gap closed = "
             "(input - 1-best) / (oracle - 1-best), shown where the oracle is at least 3 points "
             "above the 1-best.", ""]
    bars = []
    for i in a.inputs:
        head = ["first pass", "grid: k x scale (tuning s)", "k, scale (dev)", "dev acc", "set",
                "voice", "1best",
                f"{i} default", f"{i} tuned", "oracle", "gap closed (default)",
                "gap closed (tuned)"]
        rows, cols, tests = [], [], []
        for m in models:
            report = exp / m / f"marginal_{i}.json"
            if not report.is_file():
                continue
            r = json.loads(report.read_text())
            choice = f"{r['best']['marginal_k']}, {r['best'][SCALE[i]]:g}"
            grid = (" ".join(str(k) for k in sorted({c["marginal_k"] for c in r["candidates"]}))
                    + " x " + " ".join(f"{x:g}" for x in sorted({c[SCALE[i]]
                                                                   for c in r["candidates"]}))
                    + f" ({r['seconds']:.0f} s)")
            for s in a.sets:
                for v in a.voices:
                    base = exp / m / f"icl_{a.selection}" / f"{s}_{v}"
                    acc = [read_acc(base / k / "accuracy.json")
                           for k in ("1best", i, f"{i}_tuned", "oracle")]
                    if acc[2] is None:
                        continue
                    one, default, tuned, orc = acc
                    cols.append(acc)
                    tag = f"\n{i}" if len(a.inputs) > 1 else ""
                    bars.append((f"{m}\n{s} {v}{tag}", acc))
                    rows.append([m, grid, choice, f"{100 * r['dev_accuracy']:.1f}", s, v,
                                 *("-" if x is None else f"{x:.1f}" for x in acc),
                                 gap_pct(default, one, orc), gap_pct(tuned, one, orc)])
                    if a.data:
                        ref = Path(a.data) / f"{s}_{v}" / "utt2intent"
                        tests.append((f"{m} {s} {v}",
                                      wins_losses(ref, base / "1best", base / f"{i}_tuned"),
                                      wins_losses(ref, base / i, base / f"{i}_tuned")))
        if not rows:
            continue
        lines += [f"## {i}", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|",
                  *("| " + " | ".join(c) + " |" for c in rows)]
        full = [c for c in cols if None not in c]
        if len(full) > 1:
            mean = [sum(c[j] for c in full) / len(full) for j in range(4)]
            lines.append(f"| mean of {len(full)} rows | | | | | | " +
                         " | ".join(f"{x:.1f}" for x in mean) +
                         f" | {gap_pct(mean[1], mean[0], mean[3])} | "
                         f"{gap_pct(mean[2], mean[0], mean[3])} |")
        lines.append("")
        lines += paired_lines(tests, i)
    if not bars:
        print(f"{exp}: no tuned marginal results found", file=sys.stderr)
        return 1
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(bars)), 3.6))
    x = np.arange(len(bars))
    names = ["1-best", "default", "dev-tuned", "oracle"]
    for j, name in enumerate(names):
        ax.bar(x + (j - 1.5) * 0.2, [0 if acc[j] is None else acc[j] for _, acc in bars], 0.2,
               label=name)
    ax.set_xticks(x, [label for label, _ in bars], fontsize=7)
    ax.set_ylabel("intent accuracy (%)")
    ax.legend(fontsize=7, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.grid(axis="y", alpha=0.3)
    write_report(exp, "RESULTS_marginal", lines, fig, "1-best, marginalized and oracle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
