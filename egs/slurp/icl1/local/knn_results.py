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
"""
from __future__ import annotations

import sys
from pathlib import Path

from make_results import analysis_parser, spread_lines, swept_runs, write_report
from variant_tables import means_plot, variant_tables

ICL, KNN = "ICL", "kNN"


def main() -> int:
    p = analysis_parser(__doc__, "models", "sets", "voices", "inputs")
    p.add_argument("--data", required=True, help="data dir of the sets (utt2intent)")
    p.add_argument("--knn", type=int, required=True, help="neighbours of the kNN run")
    a = p.parse_args()
    exp, data = Path(a.exp), Path(a.data)
    runs = f"neighbors_{a.knn}"
    swept = swept_runs(exp, "knn", runs, a.models)

    def run_dir(m: str, v: str, s: str, voice: str) -> Path:
        if v == ICL:
            return exp / m / f"icl_{a.selection}" / f"{s}_{voice}"
        return swept[m] / f"{s}_{voice}"

    lines = ["# A kNN vote of the few-shot pool, beside in-context learning", "",
             f"Written by `{a.cmdline}`. `{KNN}`: no LM; the {a.knn} few-shot pool sentences "
             "whose sentence embeddings (MiniLM, the encoder that picks the shots) are "
             "nearest the input vote for their intents, each with its cosine similarity "
             "(`speechlm slu predict --knn`); `nbest_marg` / `wcn_marg` vote with the "
             "posterior-weighted mean embedding of their hypotheses (the first 4 N-best "
             "entries / calibrated-WCN paths), the other inputs with the embedding of their "
             f"words. `{ICL}`: the main run's predictions (`<first pass>/icl_{a.selection}/`): "
             f"SmolLM2-135M-Instruct after {a.selection}-chosen shots from the same pool, "
             "the same decodes. The number of neighbours is "
             "the shot count, not tuned. Accuracy in %; gap closed = (input - 1-best) / "
             "(oracle - 1-best) within a row, shown where the oracle is at least 3 points "
             "above the 1-best.", ""]
    got = variant_tables(a, data, swept, ICL, [KNN], run_dir, "kNN run", "method")
    if got is None:
        print(f"{exp}: no kNN run beside an ICL run found", file=sys.stderr)
        return 1
    body, means, n = got
    tables = [(m, s, v) for m in swept for s in a.sets for v in a.voices
              if all((run_dir(m, r, s, v) / "1best" / "utt2intent").is_file() for r in (ICL, KNN))]
    rows = [{"model": m, "selection": r, "set": s, "voice": v}
            for r in (ICL, KNN) for m, s, v in tables]
    spread = spread_lines(exp, data, rows, pred_dir=lambda r, k: run_dir(
        r["model"], r["selection"], r["set"], r["voice"]) / k)
    fig = means_plot(means, a.inputs, f"kNN vote ({a.knn} neighbours) vs ICL, {n} tables")
    write_report(exp, "RESULTS_knn", lines + body + spread, fig, "kNN vs ICL per input")
    return 0


if __name__ == "__main__":
    sys.exit(main())
