#!/usr/bin/env python3
"""Stage 5's WCN sweep (--wcn_sweep) -> EXP/RESULTS_wcn.md and EXP/RESULTS_wcn.png.

Reads ``<model>/icl_wcn/<selection>/<set>_<voice>/t<T>/accuracy.json`` (the WCN pruned at
posterior T), ``.../noprob/accuracy.json`` (the WCN at the main threshold, posteriors not
shown) and the main run ``<model>/icl_<selection>/<set>_<voice>/{1best,wcn,oracle}`` (its
WCN is the point at ``--main_threshold``); the 1-best WER from ``decode_<set>_<voice>/
oracle_wer``. One row per first pass x set x voice: intent accuracy per threshold, without
posteriors, 1-best and oracle path, and the best threshold's gap closed, (WCN - 1-best) /
(oracle - 1-best), where the oracle is at least 3 points above the 1-best.
"""
from __future__ import annotations

import sys
from pathlib import Path

from make_results import MIN_GAP, analysis_parser, read_acc, read_wer, write_report
from make_results import gap_pct as gap


def cell(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def main() -> int:
    p = analysis_parser(__doc__, "models", "sets", "voices")
    p.add_argument("--thresholds", nargs="+", type=float, required=True)
    p.add_argument("--main_threshold", type=float, required=True)
    a = p.parse_args()
    exp = Path(a.exp)
    ts = sorted(set(a.thresholds) | {a.main_threshold})
    rows = []
    for m in a.models:
        for s in a.sets:
            for v in a.voices:
                main = exp / m / f"icl_{a.selection}" / f"{s}_{v}"
                sweep = exp / m / "icl_wcn" / a.selection / f"{s}_{v}"
                # t<T> as the shell wrote it ("0.05", "0.4"): match by value
                found = {float(d.name[1:]): read_acc(d / "accuracy.json")
                         for d in sweep.glob("t*") if d.is_dir()}
                by_t = {t: read_acc(main / "wcn" / "accuracy.json") if t == a.main_threshold
                        else found.get(t) for t in ts}
                noprob = read_acc(sweep / "noprob" / "accuracy.json")
                if all(x is None for x in by_t.values()) and noprob is None:
                    continue
                rows.append({"model": m, "set": s, "voice": v, "by_t": by_t, "noprob": noprob,
                             "1best": read_acc(main / "1best" / "accuracy.json"),
                             "oracle": read_acc(main / "oracle" / "accuracy.json"),
                             "wer": read_wer(exp / m / f"decode_{s}_{v}" / "oracle_wer")})
    if not rows:
        print(f"{exp}: no WCN sweep results found", file=sys.stderr)
        return 1
    head = [f"t={t:g}" + (" (main)" if t == a.main_threshold else "") for t in ts]
    lines = ["# Intent accuracy vs WCN pruning threshold, with and without posteriors", "",
             f"Command: `{a.cmdline}`. The WCN of the query keeps, in each bin, the entries with "
             "posterior at or above the threshold (the best entry always stays, at most 3 a "
             f"bin); 'no post.' is the WCN at t={a.main_threshold:g} with its words only "
             f"(`--no-wcn-posteriors`). Shots: {a.selection}, reference text. Accuracy in %; "
             "gap closed = (WCN - 1-best) / (oracle - 1-best) at the best threshold (picked on "
             "these test sentences: an optimistic figure), shown "
             f"where the oracle is at least {MIN_GAP:.0f} points above the 1-best.", "",
             "| first pass | set | voice | 1-best WER | 1-best | " + " | ".join(head) +
             " | no post. | oracle | gap closed (best t) |",
             "|---" * (len(head) + 8) + "|"]
    for r in rows:
        best = max((x for x in r["by_t"].values() if x is not None), default=None)
        wer = r["wer"].get("1-best")
        lines.append(f"| {r['model']} | {r['set']} | {r['voice']} | {cell(wer)} | "
                     f"{cell(r['1best'])} | " + " | ".join(cell(x) for x in r["by_t"].values())
                     + f" | {cell(r['noprob'])} | {cell(r['oracle'])} | "
                     f"{gap(best, r['1best'], r['oracle'])} |")
    lines.append("")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 3.4), squeeze=False)
    for ax, m in zip(axes[0], models, strict=True):
        for r in (r for r in rows if r["model"] == m):
            pts = [(t, x) for t, x in r["by_t"].items() if x is not None]
            label = f"{r['set']} {r['voice']}"
            (line,) = ax.plot(*zip(*pts, strict=True), marker="o", label=f"{label} WCN")
            c = line.get_color()
            if r["noprob"] is not None:
                ax.plot([a.main_threshold], [r["noprob"]], marker="x", ms=9, ls="", color=c,
                        label=f"{label} no posteriors")
            if r["1best"] is not None:
                ax.axhline(r["1best"], ls="--", lw=0.8, color=c)
            if r["oracle"] is not None:
                ax.axhline(r["oracle"], ls=":", lw=0.8, color=c)
        ax.set_xlabel("WCN pruning threshold (posterior)")
        ax.set_ylabel("intent accuracy (%)")
        ax.set_title(f"{m} (dashed 1-best, dotted oracle)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    write_report(exp, "RESULTS_wcn", lines, fig, "accuracy vs WCN threshold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
