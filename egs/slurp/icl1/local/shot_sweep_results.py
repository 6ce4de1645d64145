#!/usr/bin/env python3
"""Stage 5's shot-count sweep -> EXP/RESULTS_shots.md and EXP/RESULTS_shots.png.

Reads ``<model>/icl_shots/<selection>/<N>/<set>_<voice>/<input>/accuracy.json`` (the sweep)
and ``<model>/icl_<selection>/<set>_<voice>/<input>/accuracy.json`` (the main run, at
``--main_shots``), one table per first pass x set: intent accuracy per input and shot count,
and the gap closed of every input but text, 1-best and oracle, (input - 1-best) / (oracle -
1-best), where the oracle is at least 3 points above the 1-best. A first table gives the mean
over every first pass x set x voice that has all the inputs at a count, and its gap closed.

Every first pass in EXP with a sweep for the selection is reported, not only ``--models``, and
every count it holds, not only ``--shots``: a sweep run for one first pass must not drop
another's from the report. Each sweep's own command (``icl_shots/<selection>/command.txt``,
written by run.sh) is quoted under its first pass.
"""
from __future__ import annotations

import sys
from pathlib import Path

from make_results import (
    analysis_parser,
    gap_cells,
    gap_table_head,
    mean_rows,
    read_acc,
    run_command,
    swept_runs,
    write_report,
)


def mean_table(curves: dict, counts: list[int], inputs: list[str]) -> list[str]:
    """Per count, the mean accuracy of each input over the first pass x set x voice rows that
    have every input at that count, and the gap closed of those means."""
    groups = {n: [t[n] for t in curves.values()
                  if n in t and all(t[n][i] is not None for i in inputs)] for n in counts}
    return ["## Mean over first passes and voices", "",
            *mean_rows(["shots", "rows"], groups, inputs), ""]


def main() -> int:
    p = analysis_parser(__doc__, "models", "sets", "voices", "inputs")
    p.add_argument("--shots", nargs="+", type=int, required=True, help="the sweep's counts")
    p.add_argument("--main_shots", type=int, required=True)
    a = p.parse_args()
    exp = Path(a.exp)
    swept = swept_runs(exp, "icl_shots", a.selection, a.models)
    counts = sorted(set(a.shots) | {a.main_shots}
                    | {int(d.name) for sweep in swept.values() for d in sweep.iterdir()
                       if d.is_dir() and d.name.isdigit()})
    head = ["# Intent accuracy vs number of shots", "",
            f"Written by `{a.cmdline}`. Shots chosen by {a.selection} from the few-shot pool; "
            f"{a.main_shots} shots is the main run (RESULTS.md). Accuracy in %; gap closed = "
            "(input - 1-best) / (oracle - 1-best), shown where the oracle is at least 3 points "
            "above the 1-best.", ""]
    lines = list(head)
    curves = {}
    for m in swept:
        lines += run_command(swept[m], m, "sweep")
        for s in a.sets:
            for v in a.voices:
                table = {}
                for n in counts:
                    base = (exp / m / f"icl_{a.selection}" / f"{s}_{v}" if n == a.main_shots
                            else exp / m / "icl_shots" / a.selection / str(n) / f"{s}_{v}")
                    acc = {i: read_acc(base / i / "accuracy.json") for i in a.inputs}
                    if any(x is not None for x in acc.values()):  # this first pass swept n
                        table[n] = acc
                if not table:
                    continue
                curves[(m, s, v)] = table
                lines += [f"## {m}, {s}, {v}", "", *gap_table_head(["shots"], a.inputs)]
                for n, acc in table.items():
                    cells = ["" if acc[i] is None else f"{acc[i]:.1f}" for i in a.inputs]
                    lines.append(f"| {n} | " + " | ".join([*cells, *gap_cells(acc, a.inputs)])
                                 + " |")
                lines.append("")
    if not curves:
        print(f"{exp}: no sweep results found", file=sys.stderr)
        return 1
    lines[len(head):len(head)] = mean_table(curves, counts, a.inputs)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    for ax, ((m, s, v), table) in zip(axes[0], curves.items(), strict=True):
        for i in a.inputs:
            pts = [(n, acc[i]) for n, acc in table.items() if acc[i] is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=i)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(counts, [str(n) for n in counts])
        ax.set_xlabel("shots")
        ax.set_ylabel("intent accuracy (%)")
        ax.set_title(f"{m}: {s} {v}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    write_report(exp, "RESULTS_shots", lines, fig, "accuracy vs shots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
