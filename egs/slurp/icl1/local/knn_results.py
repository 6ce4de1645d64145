#!/usr/bin/env python3
"""Stage 5's kNN baseline (``--knn N``) -> EXP/RESULTS_knn.md and RESULTS_knn.png.

``speechlm slu predict --knn N`` runs no LM: the N few-shot pool sentences nearest the input
(sentence embeddings of the shot encoder, MiniLM) vote for their intents, each with its
cosine similarity; ``nbest_marg`` / ``wcn_marg`` vote with the weighted mean embedding of
their hypotheses. It asks what the in-context LM adds to the retrieval of its shots. Reads
``<model>/knn/neighbors_<N>/<set>_<voice>/<input>/`` and the main run
(``<model>/icl_<selection>/``): one table per first pass x set x voice, the mean over them,
per input the utterances kNN wins and loses against ICL (exact McNemar test), and for each
method the spread of each input's mean difference to the 1-best and of the gap closed (the
same bootstrap draws for both, over the tables where both ran).

With ``--choices`` (other neighbour counts, run on the dev sets and the test sets), the count
with the best mean dev accuracy over the inputs a deployed system reads (all but text and
oracle), every first pass and voice pooled, is reported too, as one more method in every
table (ties: the main count, then fewer neighbours).
"""
from __future__ import annotations

import sys
from pathlib import Path

from make_results import analysis_parser, read_acc, spread_lines, swept_runs, write_report
from variant_tables import means_plot, variant_tables

ICL, KNN = "ICL", "kNN"
REFERENCE_INPUTS = ("text", "oracle")  # need the reference: no neighbour count is chosen on them


def dev_choice(exp: Path, models: list[str], voices: list[str], inputs: list[str],
               counts: list[int], main: int, dev: str) -> tuple[list[str], int | None]:
    """Markdown lines of each count's mean dev accuracy and the count chosen; None when no
    first pass x voice has every count on dev."""
    inputs = [i for i in inputs if i not in REFERENCE_INPUTS]
    rows = {n: [] for n in counts}
    for m in models:
        for v in voices:
            accs = {n: [read_acc(exp / m / "knn" / f"neighbors_{n}" / f"{dev}_{v}" / i /
                                 "accuracy.json") for i in inputs] for n in counts}
            if all(x is not None for acc in accs.values() for x in acc):
                for n, acc in accs.items():
                    rows[n].append(sum(acc) / len(acc))
    if not rows[main]:
        return [], None
    dev_acc = {n: sum(r) / len(r) for n, r in rows.items()}
    chosen = max(counts, key=lambda n: (round(dev_acc[n], 6), n == main, -n))
    cells = " | ".join(f"{dev_acc[n]:.1f}" for n in counts)
    return ["## Neighbours chosen on dev", "",
            f"Mean accuracy on the `{dev}` sets over {', '.join(inputs)} and "
            f"{len(rows[main])} first pass x voice rows, per number of neighbours:", "",
            "| " + " | ".join(str(n) for n in counts) + " | chosen |",
            "|" + "---|" * (len(counts) + 1), f"| {cells} | {chosen} |", ""], chosen


def main() -> int:
    p = analysis_parser(__doc__, "models", "sets", "voices", "inputs")
    p.add_argument("--data", required=True, help="data dir of the sets (utt2intent)")
    p.add_argument("--knn", type=int, required=True, help="neighbours of the kNN run")
    p.add_argument("--choices", nargs="*", type=int, default=[],
                   help="other neighbour counts run on --dev_set and the sets: the one with "
                        "the best dev accuracy is reported too")
    p.add_argument("--dev_set", default="dev")
    a = p.parse_args()
    exp, data = Path(a.exp), Path(a.data)
    swept = swept_runs(exp, "knn", f"neighbors_{a.knn}", a.models)
    counts = {KNN: a.knn}
    dev_lines, chosen = [], None
    if a.choices:
        dev_lines, chosen = dev_choice(exp, list(swept), a.voices, a.inputs,
                                       sorted({a.knn, *a.choices}), a.knn, a.dev_set)
        if chosen is not None and chosen != a.knn:
            counts[f"kNN, {chosen} (dev)"] = chosen

    def run_dir(m: str, v: str, s: str, voice: str) -> Path:
        if v == ICL:
            return exp / m / f"icl_{a.selection}" / f"{s}_{voice}"
        return exp / m / "knn" / f"neighbors_{counts[v]}" / f"{s}_{voice}"

    lines = ["# A kNN vote of the few-shot pool, beside in-context learning", "",
             f"Written by `{a.cmdline}`. `{KNN}`: no LM; the {a.knn} few-shot pool sentences "
             "whose sentence embeddings (MiniLM, the encoder that picks the shots) are "
             "nearest the input vote for their intents, each with its cosine similarity "
             "(`speechlm slu predict --knn`); `nbest_marg` / `wcn_marg` vote with the "
             "posterior-weighted mean embedding of their hypotheses (the first 4 N-best "
             "entries / calibrated-WCN paths), the other inputs with the embedding of their "
             f"words. `{ICL}`: the main run's predictions (`<first pass>/icl_{a.selection}/`): "
             f"SmolLM2-135M-Instruct after {a.selection}-chosen shots from the same pool, "
             f"the same decodes. `{KNN}`'s number of neighbours is the shot count, not tuned"
             + ("; the count chosen on dev is the run marked `(dev)`" if len(counts) > 1
                else "") + ". Accuracy in %; gap closed = (input - 1-best) / "
             "(oracle - 1-best) within a row, shown where the oracle is at least 3 points "
             "above the 1-best.", ""]
    got = variant_tables(a, data, swept, ICL, list(counts), run_dir, "kNN run", "method")
    if got is None:
        print(f"{exp}: no kNN run beside an ICL run found", file=sys.stderr)
        return 1
    body, means, n = got
    tables = [(m, s, v) for m in swept for s in a.sets for v in a.voices
              if all((run_dir(m, r, s, v) / "1best" / "utt2intent").is_file() for r in (ICL, KNN))]
    rows = [{"model": m, "selection": r, "set": s, "voice": v}
            for r in (ICL, *counts) for m, s, v in tables]
    spread = spread_lines(exp, data, rows, pred_dir=lambda r, k: run_dir(
        r["model"], r["selection"], r["set"], r["voice"]) / k)
    fig = means_plot(means, a.inputs, f"kNN vote ({a.knn} neighbours) vs ICL, {n} tables")
    write_report(exp, "RESULTS_knn", lines + dev_lines + body + spread, fig,
                 "kNN vs ICL per input")
    return 0


if __name__ == "__main__":
    sys.exit(main())
