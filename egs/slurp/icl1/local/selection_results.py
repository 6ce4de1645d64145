#!/usr/bin/env python3
"""Stage 5 with several ``--selections`` -> EXP/RESULTS_selection.md and its plot.

Reads ``<model>/icl_<selection>/<set>_<voice>/<input>/accuracy.json`` for every selection
(the reference text from the first first pass that has it, as RESULTS.md does): one table
per first pass x set x voice, intent accuracy per input and selection and the gap closed
of every input but text, 1-best and oracle per selection, (input - 1-best) / (oracle -
1-best), where the oracle is at least 3 points above the 1-best. With ``--data``
(``<set>_<voice>/utt2intent``), exact McNemar tests of every other selection against the
first, per input pooled over the tables: the shots differ per query, the utterances do not.
"""
from __future__ import annotations

import sys
from pathlib import Path

from make_results import analysis_parser, gap_cells, gap_table_head, read_acc, write_report
from paired import mcnemar, wins_losses


def main() -> int:
    p = analysis_parser(__doc__, "models", "sets", "voices", "inputs", "selections")
    p.add_argument("--data", help="data dir with <set>_<voice>/utt2intent: paired tests")
    a = p.parse_args()
    if len(a.selections) < 2:
        p.error("--selections: give two or more to compare")
    exp = Path(a.exp)
    first = a.selections[0]

    def run_dir(m: str, sel: str, s: str, v: str, i: str) -> Path:
        if i == "text":  # classified once a set, with the first first pass
            m = next((x for x in a.models
                      if (exp / x / f"icl_{sel}" / f"{s}_{v}" / i).is_dir()), m)
        return exp / m / f"icl_{sel}" / f"{s}_{v}" / i

    lines = ["# Intent accuracy by shot selection", "",
             f"Command: `{a.cmdline}`. The same few-shot pool, shot count and inputs; only how "
             "the shots are chosen differs (`embedding`: the pool sentences nearest the "
             "query's words by MiniLM embedding; `random`: a sample seeded by the query's "
             "text; `similar`: TF-IDF cosine). Accuracy in %; gap closed = (input - 1-best) / "
             "(oracle - 1-best), shown where the oracle is at least 3 points above the 1-best.",
             ""]
    panels, pooled = [], {(i, sel): [0, 0] for i in a.inputs for sel in a.selections[1:]}
    for m in a.models:
        for s in a.sets:
            for v in a.voices:
                acc = {sel: {i: read_acc(run_dir(m, sel, s, v, i) / "accuracy.json")
                             for i in a.inputs} for sel in a.selections}
                if sum(x is not None for row in acc.values() for x in row.values()) < 2:
                    continue
                panels.append((f"{m}: {s} {v}", acc))
                lines += [f"## {m}, {s}, {v}", "", *gap_table_head(["selection"], a.inputs)]
                for sel, row in acc.items():
                    cells = ["-" if row[i] is None else f"{row[i]:.1f}" for i in a.inputs]
                    lines.append(f"| {sel} | " + " | ".join([*cells, *gap_cells(row, a.inputs)])
                                 + " |")
                lines.append("")
                if not a.data:
                    continue
                ref = Path(a.data) / f"{s}_{v}" / "utt2intent"
                for i in a.inputs:
                    if run_dir(m, first, s, v, i).parents[2].name != m:
                        continue  # another first pass's text run: counted in its own table
                    for sel in a.selections[1:]:
                        wl = wins_losses(ref, run_dir(m, first, s, v, i),
                                         run_dir(m, sel, s, v, i))
                        if wl is not None:
                            pooled[(i, sel)][0] += wl[0]
                            pooled[(i, sel)][1] += wl[1]
    if not panels:
        print(f"{exp}: no runs of {' '.join(a.selections)} found", file=sys.stderr)
        return 1
    if a.data:
        lines += [f"Paired exact McNemar tests against `{first}`, pooled over the tables "
                  "(utterances won/lost, two-sided p):", ""]
        lines += [f"- `{i}`, {sel} vs {first}: {mcnemar(*pooled[(i, sel)])}"
                  for i in a.inputs for sel in a.selections[1:]]
        lines.append("")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    width = 0.8 / len(a.selections)
    for ax, (title, acc) in zip(axes[0], panels, strict=True):
        for k, sel in enumerate(a.selections):
            xs = [j + (k - (len(a.selections) - 1) / 2) * width for j in range(len(a.inputs))]
            ax.bar(xs, [acc[sel][i] or 0.0 for i in a.inputs], width, label=sel)
        ax.set_xticks(range(len(a.inputs)), a.inputs, fontsize=8)
        ax.set_ylabel("intent accuracy (%)")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    write_report(exp, "RESULTS_selection", lines, fig, "accuracy by shot selection")
    return 0


if __name__ == "__main__":
    sys.exit(main())
