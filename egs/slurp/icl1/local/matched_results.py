#!/usr/bin/env python3
"""local/matched_shots.sh's report -> EXP/RESULTS_matched.md and RESULTS_matched.png.

Shots from a spoken pool (sentences of the few-shot pool spoken and decoded like the test
sets), chosen by their reference text, shown two ways: as that text (`text_shots`) and as
their own first pass's output in the query's form (`matched`). Reads
``<model>/icl_matched/<selection>/{text_shots,matched}/<set>_<voice>/<input>/``; also shows
the main run (``<model>/icl_<selection>/``: shots from the whole pool, shown as text) where
it exists. One table per first pass x set x voice, the mean over them, and per input the
utterances `matched` wins and loses against `text_shots` (exact McNemar test).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from make_results import analysis_parser, swept_runs, write_report
from variant_tables import main_or_swept, means_plot, variant_tables

BASE, MATCHED, MAIN = "text_shots", "matched", "main run"


def _pool_size(exp: Path, model: str, selection: str, sets: list[str],
               voices: list[str]) -> str:
    """'N sentences' of the (first) spoken pool, from a matched run's accuracy.json, or ''."""
    for s in sets:
        for v in voices:
            for acc in sorted((exp / model / "icl_matched" / selection / MATCHED / f"{s}_{v}")
                              .glob("*/accuracy.json")):
                data = Path(json.loads(acc.read_text())["shots_from"]["data_dir"])
                if (data / "text").is_file():
                    return f"{len((data / 'text').read_text().splitlines())} sentences"
    return ""


def main() -> int:
    p = analysis_parser(__doc__, "models", "sets", "voices", "inputs")
    p.add_argument("--data", required=True, help="data dir of the sets (utt2intent)")
    a = p.parse_args()
    exp, data = Path(a.exp), Path(a.data)
    swept = swept_runs(exp, "icl_matched", a.selection, a.models)
    sizes = {m: _pool_size(exp, m, a.selection, a.sets, a.voices) for m in swept}
    lines = ["# Shots shown in the query's own form", "",
             f"Written by `{a.cmdline}`. The spoken pool: up to `--per_intent` sentences of "
             "each intent drawn from the few-shot pool (never dev or test), spoken by each test "
             "set's voice kind as that set is (Piper joe, or sampled espeak-ng voices one a "
             "sentence; noise and reverb too) and decoded by the same first pass"
             + "".join(f"; {m}: {n}" for m, n in sizes.items() if n) + ". The shots of each "
             f"query are chosen from it by their reference text ({a.selection}), so both runs "
             "show the same shots in the same order:", "",
             f"- `{BASE}`: each shot shown as its reference text, as in the main run;",
             f"- `{MATCHED}`: each shot shown as its first pass's output in the query's form "
             "(a 1-best query sees 1-best shots, an N-best query N-best shots, a WCN query WCN "
             "shots, the oracle query the shots' oracle paths);",
             f"- `{MAIN}`: RESULTS.md's run, shots chosen from the whole few-shot pool's "
             "text and shown as text (other shots unless the spoken pool is the whole pool: "
             "no paired test).", "",
             "Accuracy in %; gap closed = (input - 1-best) / (oracle - 1-best) within a row, "
             "shown where the oracle is at least 3 points above the 1-best.", ""]

    # paired tests against text_shots; the main run is a row of each table, not a test
    got = variant_tables(a, data, swept, BASE, [MATCHED, MAIN],
                         main_or_swept(exp, swept, a.selection, MAIN), "matched-shot run",
                         "shots", untested=(MAIN,))
    if got is None:
        print(f"{exp}: no matched-shot results found", file=sys.stderr)
        return 1
    body, means, n = got
    fig = means_plot(means, a.inputs, f"shots shown as text or as the query, {n} tables")
    write_report(exp, "RESULTS_matched", lines + body, fig, "accuracy per shot form")
    return 0


if __name__ == "__main__":
    sys.exit(main())
