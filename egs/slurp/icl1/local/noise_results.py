#!/usr/bin/env python3
"""Stage 5's noise levels -> EXP/RESULTS_noise.md and EXP/RESULTS_noise.png.

Reads, per first pass x voice and SNR level L (set ``test_snr<L>``, ``-`` written ``m``),
``<model>/decode_test_snr<L>_<voice>/oracle_wer`` (1-best and WCN oracle WER) and
``<model>/icl_<selection>/test_snr<L>_<voice>/<input>/accuracy.json``; the main test set
(``test_<voice>``, SNR drawn from 10-30 dB) is a reference row when it has results. One table
per first pass: WER, WCN oracle WER, intent accuracy per input, each N-best / WCN input minus
the 1-best and the WCN inputs' gap closed, (WCN - 1-best) / (oracle - 1-best), where the
oracle is at least 3 points above the 1-best; one plot panel per first pass x voice:
accuracy vs 1-best WER, one curve per input. An input ``<kind>_tuned`` (``run.sh
--tune_marginal``: the marginalized input at the k and weight scale chosen on dev) gets the
columns of its kind.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from make_results import DIFF_KINDS, GAP_KINDS, MIN_GAP, analysis_parser, read_wer, write_report


def level_set(level: str) -> str:
    """``"-5"`` -> ``"test_snrm5"``, ``"2.5"`` -> ``"test_snr2p5"`` (as run.sh names them)."""
    return "test_snr" + level.replace("-", "m").replace(".", "p")


def read_acc(path: Path) -> tuple[float, int] | None:
    if not path.is_file():
        return None
    a = json.loads(path.read_text())
    return 100.0 * a["accuracy"], a.get("total")


def gap_closed(acc: dict, kind: str) -> str:
    one, x, orc = acc.get("1best"), acc.get(kind), acc.get("oracle")
    if None in (one, x, orc) or orc - one < MIN_GAP:
        return "-"
    return f"{100.0 * (x - one) / (orc - one):.0f}%"


def diff(acc: dict, kind: str) -> str:
    one, x = acc.get("1best"), acc.get(kind)
    return "-" if None in (one, x) else f"{x - one:+.1f}"


def main() -> int:
    p = analysis_parser(__doc__, "models", "voices", "inputs")
    p.add_argument("--levels", nargs="+", required=True, help="SNRs in dB, as --noise_levels")
    a = p.parse_args()
    exp = Path(a.exp)
    # <input>_tuned (run.sh --tune_marginal: k and scale picked on dev) is compared as <input>
    diffs = [k for k in a.inputs if k.removesuffix("_tuned") in DIFF_KINDS]
    gaps = [k for k in a.inputs if k.removesuffix("_tuned") in GAP_KINDS]
    lines = ["# Intent accuracy vs first-pass WER (noise levels)", "",
             f"Command: `{a.cmdline}`. The test sentences spoken again at each fixed SNR by "
             "the same voices, with the same reverb and noise waveform as the main test set "
             "(only the noise level differs); `10-30` is the main test set (RESULTS.md), SNR "
             f"drawn per utterance. Shots chosen by {a.selection}. WER and accuracy in %; gap "
             "closed = (WCN - 1-best) / (oracle - 1-best), shown where the oracle is at least "
             f"{MIN_GAP:.0f} points above the 1-best.", ""]
    text = {m: read_acc(exp / m / f"icl_{a.selection}" / f"test_{a.voices[0]}" / "text" /
                        "accuracy.json") for m in a.models}
    curves = {}
    for m in a.models:
        head = ["SNR (dB)", "voice", "utts", "1-best WER", "WCN oracle WER", *a.inputs,
                *(f"{k} - 1best" for k in diffs), *(f"gap closed ({k})" for k in gaps)]
        rows = []
        for v in a.voices:
            points = []
            levels = sorted(a.levels, key=float, reverse=True)
            for snr, s in [*((lv, level_set(lv)) for lv in levels), ("10-30", "test")]:
                wer = read_wer(exp / m / f"decode_{s}_{v}" / "oracle_wer")
                got = {i: read_acc(exp / m / f"icl_{a.selection}" / f"{s}_{v}" / i /
                                   "accuracy.json") for i in a.inputs}
                acc = {i: x[0] for i, x in got.items() if x is not None}
                if not acc or "1-best" not in wer:
                    continue
                n = next(x[1] for x in got.values() if x is not None)
                cells = [snr, v, str(n), f"{wer['1-best']:.1f}",
                         f"{wer['WCN oracle']:.1f}" if "WCN oracle" in wer else "-",
                         *("" if i not in acc else f"{acc[i]:.1f}" for i in a.inputs),
                         *(diff(acc, k) for k in diffs), *(gap_closed(acc, k) for k in gaps)]
                rows.append("| " + " | ".join(cells) + " |")
                if s != "test":
                    points.append((wer["1-best"], snr, acc))
            if points:
                curves[(m, v)] = sorted(points, key=lambda t: t[0])
        if rows:
            lines += [f"## {m}", ""]
            if text[m] is not None:
                lines += [f"Reference text (the ceiling): {text[m][0]:.1f}.", ""]
            lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|", *rows, ""]
    if not curves:
        print(f"{exp}: no noise-level results found", file=sys.stderr)
        return 1
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.6), squeeze=False,
                             sharey=True)
    for ax, ((m, v), points) in zip(axes[0], curves.items(), strict=True):
        for i in a.inputs:
            pts = [(w, acc[i]) for w, _, acc in points if i in acc]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=i)
        for w, snr, acc in points:  # the SNR of each point, over the 1-best's
            if "1best" in acc:
                ax.annotate(f"{snr} dB", (w, acc["1best"]), textcoords="offset points",
                            xytext=(0, -11), ha="center", fontsize=7, color="0.35")
        if text[m] is not None:
            ax.axhline(text[m][0], color="k", ls="--", lw=1, label="text")
        ax.set_xlabel("first-pass 1-best WER (%)")
        ax.set_title(f"{m}: {v}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("intent accuracy (%)")
    axes[0][0].legend(fontsize=8)
    write_report(exp, "RESULTS_noise", lines, fig, "accuracy vs first-pass WER")
    return 0


if __name__ == "__main__":
    sys.exit(main())
