#!/usr/bin/env python3
"""How much of the 1-best -> oracle gap can the top K hypotheses reach? -> EXP/RESULTS_reach.md.

The gap utterances of a first pass x set x voice are those whose lattice oracle path the LLM
classifies right and whose 1-best it classifies wrong (``<model>/icl_<selection>/<set>_<voice>/
{1best,oracle}/utt2intent`` against ``DATA/<set>_<voice>/utt2intent``). For each K, count the
gap utterances where one of the K most likely paths of the calibrated WCN
(``decode_<set>_<voice>_cal/cn.jsonl``, the paths ``wcn_marg`` classifies) or one of the first
K N-best hypotheses (``decode_<set>_<voice>/nbest.jsonl``) has no more word errors against
the reference (``DATA/<set>_<voice>/text``) than the oracle path (``oracle.jsonl``). A
marginalized input over K hypotheses can only win back an utterance where some hypothesis
reads as well as the oracle path (a weaker one might still be classified right, so this is a
guide, not a bound). No LLM is run.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from make_results import analysis_parser, write_report

from speechlm.core.nbest_jsonl import read_nbest_jsonl
from speechlm.core.wer import read_kaldi_text
from speechlm.lattice.confusion_network import read_cn_jsonl
from speechlm.lattice.oracle import edit_distance
from speechlm.llm.serialize import read_utt2intent


def oracle_texts(path: Path) -> dict[str, str]:
    out = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    obj = json.loads(line)
                    out[obj["utt"]] = obj["oracle_text"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(f"{path}:{n}: not an oracle.jsonl line ({e})") from None
    return out


def reach(ref: dict[str, list[str]], oracle: dict[str, str], gap: list[str],
          hyps: dict[str, list[str]], ks: list[int]) -> list[int]:
    """Per K: gap utterances with a hypothesis among their first K that has no more word
    errors than the oracle path (an utterance missing from ``hyps`` never counts)."""
    firsts = []  # per gap utterance: 1-based rank of its first hypothesis that good
    for u in gap:
        target = edit_distance(ref[u], oracle[u].split())
        firsts.append(next((r for r, h in enumerate(hyps.get(u, []), start=1)
                            if edit_distance(ref[u], h.split()) <= target), None))
    return [sum(r is not None and r <= k for r in firsts) for k in ks]


def main() -> int:
    p = analysis_parser(__doc__, "models", "sets", "voices")
    p.add_argument("--data", required=True, help="data dir with <set>_<voice>/{text,utt2intent}")
    p.add_argument("--ks", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32])
    a = p.parse_args()
    exp, data, ks = Path(a.exp), Path(a.data), sorted(set(a.ks))
    lines = ["# Can the top K hypotheses reach the oracle? (no LLM run)", "",
             f"Command: `{a.cmdline}`. Gap utterances: the LLM gets the intent right from the "
             "lattice oracle path and wrong from the 1-best (shots by "
             f"{a.selection}); 'lost' counts the reverse. Per K: the gap utterances where one "
             "of the K most likely calibrated-WCN paths (what `wcn_marg` classifies) / the "
             "first K N-best hypotheses has no more word errors than the oracle path. "
             "Marginalizing over K hypotheses can win back mainly those. `wcn_marg` right: "
             "gap utterances the default `wcn_marg` (4 paths) classifies right.", ""]
    head = ["first pass", "set", "voice", "gap", "lost", "wcn_marg right",
            *(f"WCN K={k}" for k in ks), *(f"N-best K={k}" for k in ks)]
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    curves = []
    for m in a.models:
        for s in a.sets:
            for v in a.voices:
                sv, pred = f"{s}_{v}", exp / m / f"icl_{a.selection}" / f"{s}_{v}"
                cal, dec = exp / m / f"decode_{sv}_cal", exp / m / f"decode_{sv}"
                need = [pred / "1best" / "utt2intent", pred / "oracle" / "utt2intent",
                        cal / "cn.jsonl", dec / "oracle.jsonl", data / sv / "text",
                        data / sv / "utt2intent"]
                if not all(f.is_file() for f in need):
                    continue
                truth = read_utt2intent(data / sv / "utt2intent")
                one, orc = (read_utt2intent(pred / k / "utt2intent") for k in ("1best", "oracle"))
                gap = [u for u, t in truth.items() if orc.get(u) == t and one.get(u) != t]
                lost = sum(one.get(u) == t and orc.get(u) != t for u, t in truth.items())
                ref = read_kaldi_text(str(data / sv / "text"))
                oracle = oracle_texts(dec / "oracle.jsonl")
                missing = [u for u in gap if u not in ref or u not in oracle]
                if missing:
                    raise ValueError(f"{m} {sv}: utterance {missing[0]!r} has no reference text "
                                     f"in {data / sv / 'text'} or no oracle path in "
                                     f"{dec / 'oracle.jsonl'}")
                wcn = {cn.utt: [t for t, _ in cn.kbest_paths(max(ks))]
                       for cn in read_cn_jsonl(cal / "cn.jsonl") if cn.utt in gap}
                nbest = ({u: [h.text for h in hs] for u, hs in
                          read_nbest_jsonl(dec / "nbest.jsonl", max(ks)).items()}
                         if (dec / "nbest.jsonl").is_file() else {})
                marg = pred / "wcn_marg" / "utt2intent"
                fixed = (str(sum(read_utt2intent(marg).get(u) == truth[u] for u in gap))
                         if marg.is_file() else "-")
                w = reach(ref, oracle, gap, wcn, ks)
                n = reach(ref, oracle, gap, nbest, ks) if nbest else [None] * len(ks)
                lines.append("| " + " | ".join([m, s, v, str(len(gap)), str(lost), fixed,
                                                *(str(x) for x in w),
                                                *("-" if x is None else str(x) for x in n)])
                             + " |")
                if gap:
                    curves.append((f"{m} {s} {v}", [100 * x / len(gap) for x in w]))
    if not curves:
        print(f"{exp}: no first pass with 1best and oracle predictions and a calibrated WCN",
              file=sys.stderr)
        return 1
    lines.append("")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for label, ys in curves:
        ax.plot(ks, ys, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("K most likely calibrated-WCN paths")
    ax.set_ylabel("gap utterances reached (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    write_report(exp, "RESULTS_reach", lines, fig, "gap utterances reached by the top K paths")
    return 0


if __name__ == "__main__":
    sys.exit(main())
