"""Accuracy tables of runs that change one thing of a base run, for the analyses' reports
(local/prompt_sweep_results.py, local/matched_results.py).

One table per first pass x set x voice (intent accuracy per input and run, the gap closed of
every input but text, 1-best and oracle), the mean over those tables per run, and per run and
input the utterances won and lost against the base run, pooled (exact McNemar test); a bar
plot of the means.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from make_results import gap_cells, gap_table_head, mean_of, mean_rows, read_acc, run_command
from paired import mcnemar, wins_losses


def _cell(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def main_or_swept(exp: Path, swept: dict[str, Path], selection: str,
                  main: str) -> Callable[[str, str, str, str], Path]:
    """``run_dir`` of :func:`variant_tables`: run ``main`` is the main run
    (``<model>/icl_<selection>/``), any other a subdir of the first pass's analysis dir."""
    def run_dir(m: str, v: str, s: str, voice: str) -> Path:
        if v == main:
            return exp / m / f"icl_{selection}" / f"{s}_{voice}"
        return swept[m] / v / f"{s}_{voice}"

    return run_dir


def variant_tables(a, data: Path, swept: dict[str, Path], base: str, variants: list[str],
                   run_dir: Callable[[str, str, str, str], Path], what: str,
                   lead: str, untested: tuple[str, ...] = ()
                   ) -> tuple[list[str], dict[str, dict], int] | None:
    """Markdown lines of the tables, the mean table and the paired tests, the means per run
    (for the plot) and the number of tables; None when no table has the base run and another.

    Args:
        a: the parsed options (sets, voices, inputs).
        data: the recipe's data dir (``<set>_<voice>/utt2intent``).
        swept: first pass -> its analysis dir (``make_results.swept_runs``).
        base, variants: the run names, the base first in every table.
        run_dir: ``(model, run, set, voice)`` -> the dir holding ``<input>/accuracy.json``.
        what: how the analysis dir's command is named (``run_command``).
        lead: the name of the tables' first column.
        untested: runs shown in the tables but not tested against ``base`` (other shots:
            no paired question).
    """
    lines, tables, pooled = [], {}, {}
    for m in swept:
        lines += run_command(swept[m], m, what)
        for s in a.sets:
            for voice in a.voices:
                dirs = {v: run_dir(m, v, s, voice) for v in [base, *variants]}
                table = {}
                for v, d in dirs.items():
                    acc = {i: read_acc(d / i / "accuracy.json") for i in a.inputs}
                    if any(x is not None for x in acc.values()):
                        table[v] = acc
                if len(table) < 2 or base not in table:
                    continue  # nothing to compare with
                tables[(m, s, voice)] = table
                lines += [f"## {m}, {s}, {voice}", "", *gap_table_head([lead], a.inputs)]
                for v, acc in table.items():
                    cells = [_cell(acc[i]) for i in a.inputs]
                    lines.append(f"| {v} | " + " | ".join([*cells, *gap_cells(acc, a.inputs)])
                                 + " |")
                lines.append("")
                ref = data / f"{s}_{voice}" / "utt2intent"
                for v in (v for v in table if v != base and v not in untested):
                    for i in a.inputs:
                        wl = wins_losses(ref, dirs[base] / i, dirs[v] / i)
                        if wl is not None:
                            got = pooled.setdefault((v, i), [0, 0])
                            got[0], got[1] = got[0] + wl[0], got[1] + wl[1]
    if not tables:
        return None
    groups = {v: [t[v] for t in tables.values() if v in t] for v in [base, *variants]}
    means = {v: mean_of(rows, a.inputs) for v, rows in groups.items() if rows}
    lines += [f"## Mean over {len(tables)} first pass x set x voice tables", "",
              *mean_rows([lead, "tables"], groups, a.inputs)]
    lines += ["", f"Against `{base}`, the same utterances (won/lost, exact McNemar test "
              "pooled over the tables, two-sided p):", ""]
    for (v, i), (w, lo) in pooled.items():
        lines.append(f"- `{v}`, {i}: {mcnemar(w, lo)}")
    lines.append("")
    return lines, means, len(tables)


def means_plot(means: dict[str, dict], inputs: list[str], title: str):
    """Grouped bars: per input, each run's mean accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(inputs) * len(means) / 2, 3.4))
    width = 0.8 / len(means)
    for k, (v, acc) in enumerate(means.items()):
        xs = [j + (k - (len(means) - 1) / 2) * width for j in range(len(inputs))]
        ax.bar(xs, [acc[i] or 0.0 for i in inputs], width, label=v)
    ax.set_xticks(range(len(inputs)), inputs)
    ax.set_ylabel("intent accuracy (%), mean of tables")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
