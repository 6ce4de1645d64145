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

from make_results import analysis_parser, swept_runs, write_report
from variant_tables import main_or_swept, means_plot, variant_tables

# what each variant changes (run.sh maps the names to `slu predict` flags)
VARIANTS = {
    "no_instruction": "no instruction line (it tells the LM how N-best lists and WCNs are "
                      "written)",
    "no_verbalize": "labels scored as written (`alarm_set`), not as words (`alarm set`)",
    "calibrate": "contextual calibration: each label's score after the content-free input "
                 "`N/A` (same shots) subtracted",
}
MAIN = "main"  # the main run's prompt (RESULTS.md)


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

    got = variant_tables(a, data, swept, MAIN, variants,
                         main_or_swept(exp, swept, a.selection, MAIN), "ablation", "prompt")
    if got is None:
        print(f"{exp}: no prompt ablation results found", file=sys.stderr)
        return 1
    body, means, n = got
    fig = means_plot(means, a.inputs, f"prompt ablation, {n} tables")
    write_report(exp, "RESULTS_prompt", lines + body, fig, "accuracy per prompt variant")
    return 0


if __name__ == "__main__":
    sys.exit(main())
