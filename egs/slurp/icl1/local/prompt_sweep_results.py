#!/usr/bin/env python3
"""Stage 5's prompt ablation (--prompt_sweep) -> EXP/RESULTS_prompt.md and RESULTS_prompt.png.

Which parts of the in-context prompt matter (the paper's prompt analysis): each variant
changes one thing of the main run's prompt and classifies the same test sets again. Reads
``<model>/icl_prompt/<selection>/<variant>/<set>_<voice>/<input>/`` (the variant) and
``<model>/icl_<selection>/<set>_<voice>/<input>/`` (the main run): one table per first pass
x set x voice, intent accuracy per input and variant, and the gap closed of every input but
text, 1-best and oracle. Then the mean over those tables per variant, and per variant and
input the utterances won and lost against the main run, pooled (exact McNemar test).

Every first pass in EXP with an ablation for the selection is reported, not only ``--models``,
with its own command (``icl_prompt/<selection>/command.txt``, written by run.sh).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from make_results import (
    analysis_parser,
    gap_cells,
    gap_table_head,
    mean_of,
    mean_rows,
    read_acc,
    run_command,
    swept_runs,
    write_report,
)
from paired import mcnemar, wins_losses

# what each variant changes (run.sh maps the names to `slu predict` flags)
VARIANTS = {
    "no_instruction": "no instruction line (it tells the LM how N-best lists and WCNs are "
                      "written)",
    "no_verbalize": "labels scored as written (`alarm_set`), not as words (`alarm set`)",
    "calibrate": "contextual calibration: each label's score after the content-free input "
                 "`N/A` (same shots) subtracted",
}
MAIN = "main"  # the main run's prompt (RESULTS.md)


def _cell(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def main() -> int:
    p = analysis_parser(__doc__, "models", "sets", "voices", "inputs")
    p.add_argument("--variants", nargs="+", required=True, choices=sorted(VARIANTS))
    p.add_argument("--data", required=True, help="data dir of the sets (utt2intent)")
    a = p.parse_args()
    exp, data = Path(a.exp), Path(a.data)
    swept = swept_runs(exp, "icl_prompt", a.selection, a.models)
    variants = [v for v in VARIANTS
                if v in a.variants or any((d / v).is_dir() for d in swept.values())]
    lines = ["# Which parts of the prompt matter", "",
             f"Written by `{a.cmdline}`. Each variant changes one thing of the main run's prompt "
             f"(`{MAIN}`: RESULTS.md, shots chosen by {a.selection}) and classifies the same "
             "test utterances again:", "",
             *(f"- `{v}`: {VARIANTS[v]}" for v in variants), "",
             "Accuracy in %; gap closed = (input - 1-best) / (oracle - 1-best), shown where the "
             "oracle is at least 3 points above the 1-best.", ""]
    slu_json = exp / "slu_icl" / "slu.json"  # run.sh's SLU dir: the main prompt
    if slu_json.is_file():
        prompt = json.loads(slu_json.read_text())["prompt"]
        lines += [f"The main prompt's instruction: \"{prompt['instruction']}\"; labels "
                  f"{'as words' if prompt['verbalize'] else 'as written'}; contextual "
                  f"calibration {'on' if prompt['calibrate'] else 'off'}.", ""]
    tables, pooled = {}, {}
    for m in swept:
        lines += run_command(swept[m], m, "ablation")
        for s in a.sets:
            for voice in a.voices:
                dirs = {MAIN: exp / m / f"icl_{a.selection}" / f"{s}_{voice}",
                        **{v: swept[m] / v / f"{s}_{voice}" for v in variants}}
                table = {}
                for v, d in dirs.items():
                    acc = {i: read_acc(d / i / "accuracy.json") for i in a.inputs}
                    if any(x is not None for x in acc.values()):
                        table[v] = acc
                if len(table) < 2 or MAIN not in table:
                    continue  # nothing to compare with
                tables[(m, s, voice)] = table
                lines += [f"## {m}, {s}, {voice}", "", *gap_table_head(["prompt"], a.inputs)]
                for v, acc in table.items():
                    cells = [_cell(acc[i]) for i in a.inputs]
                    lines.append(f"| {v} | " + " | ".join([*cells, *gap_cells(acc, a.inputs)])
                                 + " |")
                lines.append("")
                ref = data / f"{s}_{voice}" / "utt2intent"
                for v in (v for v in table if v != MAIN):
                    for i in a.inputs:
                        wl = wins_losses(ref, dirs[MAIN] / i, dirs[v] / i)
                        if wl is not None:
                            got = pooled.setdefault((v, i), [0, 0])
                            got[0], got[1] = got[0] + wl[0], got[1] + wl[1]
    if not tables:
        print(f"{exp}: no prompt ablation results found", file=sys.stderr)
        return 1
    groups = {v: [t[v] for t in tables.values() if v in t] for v in [MAIN, *variants]}
    means = {v: mean_of(rows, a.inputs) for v, rows in groups.items() if rows}  # the bars
    lines += [f"## Mean over {len(tables)} first pass x set x voice tables", "",
              *mean_rows(["prompt", "tables"], groups, a.inputs)]
    lines += ["", "Against the main prompt, the same utterances (won/lost, exact McNemar test "
              "pooled over the tables, two-sided p):", ""]
    for (v, i), (w, lo) in pooled.items():
        lines.append(f"- `{v}`, {i}: {mcnemar(w, lo)}")
    lines.append("")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(a.inputs) * len(means) / 2, 3.4))
    width = 0.8 / len(means)
    for k, (v, acc) in enumerate(means.items()):
        xs = [j + (k - (len(means) - 1) / 2) * width for j in range(len(a.inputs))]
        ax.bar(xs, [acc[i] or 0.0 for i in a.inputs], width, label=v)
    ax.set_xticks(range(len(a.inputs)), a.inputs)
    ax.set_ylabel("intent accuracy (%), mean of tables")
    ax.set_title(f"prompt ablation, {len(tables)} tables", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    write_report(exp, "RESULTS_prompt", lines, fig, "accuracy per prompt variant")
    return 0


if __name__ == "__main__":
    sys.exit(main())
