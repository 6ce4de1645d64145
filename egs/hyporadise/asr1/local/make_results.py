"""exp/<size>/RESULTS.md (one table per N-best set, the weight sweeps of the test-other
report half) and RESULTS.png (WER vs latency) from every exp/*/result.json that run.sh
stage 3 wrote.

    python local/make_results.py exp/quick "./run.sh --quick true"
"""
from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

from speechlm.core.machine import machine_summary

LABELS = {
    "lm": "LM rescoring, sum log-prob (SmolLM2)",
    "lm_norm": "LM rescoring, length-normalised (SmolLM2)",
    "prompt": "prompt rescoring, zero-shot",
    "prompt_3shot_random": "prompt rescoring, 3-shot random demos",
    "prompt_3shot_similar": "prompt rescoring, 3-shot MiniLM-similar demos",
    "tap_3shot_similar": "task-activating prompting + 3 similar demos",
    "ger-select": "GER zero-shot, select (constrained to the N-best)",
    "ger-free": "GER zero-shot, free + guard",
    "ger-select_lora": "GER LoRA, select",
    "ger-free_lora": "GER LoRA, free + guard",
    "mwer_minilm_mean": "MWER bidirectional MiniLM, mean pooling",
    "mwer_minilm_attention": "MWER bidirectional MiniLM, attention pooling",
    "mwer_minilm_mean_long": "MWER MiniLM mean, more data (quick 400, medium 1,000), lr 10x",
    "mwer_minilm_mean_fp": "MWER MiniLM mean as above, trained on scorer - rank prior",
    "mwer_minilm_mean_frozen": "MWER MiniLM head only (no fine-tuning of the encoder)",
    "mwer_mpnet_mean": "MWER bidirectional mpnet, mean pooling",
    "mwer_smollm2_prob": "MWER causal SmolLM2 LoRA, probability-based",
    "mwer_smollm2_mean": "MWER causal SmolLM2 LoRA, mean pooling",
    "mwer_smollm2_last": "MWER causal SmolLM2 LoRA, last-token pooling",
    "mwer_smollm2_attention": "MWER causal SmolLM2 LoRA, attention pooling",
    "lik_smollm2_prob": "likelihood baseline: SmolLM2 LoRA on references (cross-entropy)",
    "pll_minilm": "PLL baseline: MiniLM + new MLM head, masked-LM on references",
}
FOLD2 = "_f2"  # a trained method's second cross-fit fold (trained on test-clean @2)
# the rows a size runs, where it runs a part of LABELS (the others list what is missing)
ROWS = {"medium": (), "medium_fp": (),
        "prompt": ("lm", "prompt", "prompt_3shot_random", "prompt_3shot_similar",
                   "tap_3shot_similar", "ger-select", "ger-free")}


def main(exp: Path, command: str) -> None:
    results, fold2 = {}, {}
    for f in sorted(exp.glob("*/result.json")):
        name = f.parent.name
        (fold2 if name.endswith(FOLD2) else results)[name.removesuffix(FOLD2)] = \
            json.loads(f.read_text())
    order = [k for k in LABELS if k in results] + sorted(set(results) - set(LABELS))
    # a table per set and size (free GER runs on smaller subsets in --quick)
    sets = sorted({(s, v["utts"]) for r in results.values() for s, v in r["sets"].items()},
                  key=lambda sn: (sn[0] != "test_ls_other_h2", sn[0], -sn[1]))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = [f"# HyPoradise LibriSpeech 5-best: second pass ({exp.name} run)", "",
             f"{datetime.date.today()}, commit {commit}. Command: `{command}`, then "
             f"`python local/make_results.py {exp} ...`. Machine when this report was written: "
             f"{machine_summary()}; one torch thread per process: every latency is wall "
             "time per utterance under the load of that machine.", ""]
    for s, n in sets:
        rows = [(k, results[k]["sets"][s]) for k in order
                if results[k]["sets"].get(s, {}).get("utts") == n]
        if not rows:
            continue
        ref = rows[0][1]
        role = ref["role"]
        lines += [f"## {s} ({ref['utts']} utterances, {role})", "",
                  f"1-best **{ref['one_best']:.2f}**, N-best oracle **{ref['oracle']:.2f}** "
                  "(% WER). *tuned*: the weight (or GER guard threshold) chosen on the dev "
                  "set; *score alone*: WER of this set at llm_scale 1000, i.e. ranking by "
                  "the method's score with the rank prior only breaking ties (blank: not "
                  "recorded by that run).", "",
                  "| method | WER | rel. gain % | gap closed % | latency s/utt | tuned | "
                  "score alone | train s | notes |", "|---|---|---|---|---|---|---|---|---|"]
        for k, v in rows:
            r = results[k]
            tuned = (f"llm_scale {r['llm_scale']:g}" if "llm_scale" in r
                     else f"threshold {r.get('threshold'):g}")
            train = r.get("train", {}).get("train_seconds", "")
            note = []
            if v.get("failed"):
                note.append(f"{v['failed']} failed")
            if "fallback" in v:
                note.append(f"{v['fallback']} guarded, {v['kept']} kept, "
                            f"{v['beats_oracle']} beat the oracle")
            alone = v.get("sweep", {}).get("1000", "")
            lines.append(f"| {LABELS.get(k, k)} | {v['wer']:.2f} | {v['rel_gain']} | "
                         f"{v['gap_closed']} | {v['latency_s']:.3f} | {tuned} | {alone} | "
                         f"{train} | "
                         f"{'; '.join(note)} |")
        lines.append("")
    lines += sweeps(results, order)
    lines += crossfit(results, fold2, order)
    lines += targets(results)
    missing = [k for k in ROWS.get(exp.name, LABELS) if k not in results]
    if missing:
        lines += ["## Not in this run", "",
                  "Rows without a result.json (not run, or not finished before the run was "
                  "summarised): " + ", ".join(f"`{k}`" for k in missing) + ".", ""]
    words = {s: v["words"] for r in results.values() for s, v in r["sets"].items()
             if "words" in v and v["utts"] == max(n for s2, n in sets if s2 == s)}
    if words:
        sizes = "; ".join(f"{s} {w} reference words (one word {100 / w:.3f}% WER)"
                          for s, w in sorted(words.items()))
    else:
        sizes = ("the quick sets hold ~600 reference words per 30 utterances, so one word is "
                 "~0.17% WER")
    lines += ["## How to read this", "",
              "- Subsets and roles: see README.md (speaker-disjoint halves; contiguous "
              f"blocks of 50 since the files have no ids). Sizes: {sizes}. The dev set "
              "decides the weight from its errors alone: a small dev set from a handful.",
              "- The rank prior carries the first pass: a method changes the output only "
              "where dev says its score helps; `llm_scale 0` means dev preferred the "
              "1-best. The *score alone* column shows how each scorer ranks by itself.",
              "- Latency: wall seconds per utterance of one process on one thread while "
              "the machine's load varied with other sessions' jobs (about 2 to 15 over the "
              "quick run; each result.json of later runs records the 1-minute load average "
              "at its start and end: " + loads(results) + "); rows measured at different "
              "times differ by up to ~4x for the same work. Compare within a family: "
              "pooled scorers (one forward, no vocabulary softmax) vs probability-based "
              "scoring of the same model, bidirectional vs causal.",
              "- `sweep` in each result.json holds every setting's WER on every set "
              "(icefall's results by setting) for reading, not for choosing.", ""]
    (exp / "RESULTS.md").write_text("\n".join(lines) + "\n")
    main_sets = [sn for sn in sets if sn[0].endswith("_h2")]
    size = max((n for _, n in main_sets), default=0)
    plot(exp, results, order, [sn for sn in main_sets if sn[1] == size] or sets)


def loads(results: dict) -> str:
    got = [f"{k} {r['load'][0]:g}-{r['load'][-1]:g}" for k, r in results.items() if "load" in r]
    return ", ".join(got) if got else "not recorded"


def sweeps(results: dict, order: list[str], s: str = "test_ls_other_h2",
           scales: tuple[str, ...] = ("0", "0.1", "0.3", "0.5", "1", "2", "5", "1000")
           ) -> list[str]:
    """The report half's WER at every weight (``sweep`` in result.json): whether any weight
    would have helped there, read after the fact (not a result: chosen on test)."""
    rows = [(k, results[k]["sets"][s]) for k in order
            if "sweep" in results[k]["sets"].get(s, {})]
    if not rows:
        return []
    size = max(v["utts"] for _, v in rows)
    rows = [(k, v) for k, v in rows if v["utts"] == size]
    out = [f"## {s}: WER at each llm_scale (reading only)", "",
           f"{size} utterances; 1-best {rows[0][1]['one_best']:.2f}. The weight is chosen on "
           "dev; this shows what each weight gives on the report half (**bold**: below the "
           "1-best), to tell \"dev chose 0\" from \"no weight helps\".", "",
           "| method | " + " | ".join(scales) + " | best on this set |",
           "|---|" + "---|" * (len(scales) + 1)]
    for k, v in rows:
        sw = v["sweep"]
        cells = [(f"**{sw[x]:.2f}**" if sw[x] < v["one_best"] else f"{sw[x]:.2f}")
                 if x in sw else "" for x in scales]
        best = min(sw, key=lambda x: (sw[x], float(x)))
        out.append(f"| {LABELS.get(k, k)} | " + " | ".join(cells)
                   + f" | {sw[best]:.2f} at {best} |")
    return [*out, ""]


def crossfit(results: dict, fold2: dict, order: list[str]) -> list[str]:
    """test-clean as a whole by cross-fitting: the errors of both halves pooled. A trained
    method contributes @2 from its fold-1 run (trained on @1) and @1 from its fold-2 run
    (trained on @2, dir ``*_f2``); an untrained one both halves of its one run."""
    h1, h2 = "test_ls_clean_h1", "test_ls_clean_h2"
    rows = []
    for k in order:
        a = results[k]["sets"].get(h2)
        b = (fold2.get(k) or results[k])["sets"].get(h1)
        if not a or not b or "errors" not in a or "errors" not in b:
            continue
        words = a["words"] + b["words"]
        wer = 100 * (a["errors"] + b["errors"]) / words
        first = 100 * (a["one_best_errors"] + b["one_best_errors"]) / words
        best = 100 * (a["oracle_errors"] + b["oracle_errors"]) / words
        lat = (a["latency_s"] * a["utts"] + b["latency_s"] * b["utts"]) / (a["utts"] + b["utts"])
        tuned = (f"{results[k].get('llm_scale', '')}" +
                 (f" / {fold2[k].get('llm_scale', '')}" if k in fold2 else ""))
        rows.append((k, a["utts"] + b["utts"], wer, first, best, lat, tuned,
                     "2 folds" if k in fold2 else "untrained: one run"))
    if not rows:
        return []
    _, n, _, first, best, *_ = rows[0]
    out = [f"## test_ls_clean, cross-fit ({n} utterances: both halves)", "",
           f"1-best **{first:.2f}**, N-best oracle **{best:.2f}** (% WER). Errors of the two "
           "halves pooled: @2 from the fold trained on @1, @1 from the fold trained on @2 "
           "(each fold's weight tuned on the same test-other dev half; *tuned* gives fold 1 "
           "/ fold 2).", "",
           "| method | WER | rel. gain % | gap closed % | latency s/utt | tuned | folds |",
           "|---|---|---|---|---|---|---|"]
    for k, _, wer, first, best, lat, tuned, how in rows:
        gain = f"{100 * (first - wer) / first:.1f}" if first else ""
        gap = f"{100 * (first - wer) / (first - best):.1f}" if first != best else ""
        out.append(f"| {LABELS.get(k, k)} | {wer:.2f} | {gain} | {gap} | {lat:.3f} | "
                   f"{tuned} | {how} |")
    return [*out, ""]


def targets(results: dict) -> list[str]:
    """The papers' targets against the measured test-other (report half) numbers."""
    s = "test_ls_other_h2"
    got = {k: r["sets"][s] for k, r in results.items() if s in r["sets"]}
    if not got:
        return []
    # the main table's size: rows of other sizes (smaller free-GER subsets) are marked
    size = max(v["utts"] for v in got.values())
    out = []
    mwer = {k: v for k, v in got.items() if k.startswith("mwer_")}
    if mwer:
        k, v = max(mwer.items(), key=lambda kv: kv[1]["rel_gain"] or -1e9)
        out.append(f"- MWER >= 8.5% relative over the 1-best: best MWER row `{k}` "
                   f"{v['rel_gain']}% -> missed by {8.5 - (v['rel_gain'] or 0):.1f} points"
                   if (v["rel_gain"] or 0) < 8.5 else
                   f"- MWER >= 8.5% relative: met by `{k}` ({v['rel_gain']}%)")
    for k in ("ger-free_lora", "ger-select_lora"):
        if k in got:
            v = got[k]
            verdict = "met" if v["wer"] < v["oracle"] else \
                f"missed by {v['wer'] - v['oracle']:.2f} WER points"
            sub = "" if v["utts"] == size else f" ({v['utts']}-utterance subset)"
            out.append(f"- LoRA GER below the N-best oracle: `{k}`{sub} {v['wer']:.2f} vs "
                       f"oracle {v['oracle']:.2f}: {verdict}")
    bi = [v["rel_gain"] or 0 for k, v in mwer.items() if "minilm" in k or "mpnet" in k]
    ca = [v["rel_gain"] or 0 for k, v in mwer.items() if "smollm2" in k]
    if bi and ca:
        out.append(f"- bidirectional gains more from MWER than causal: best bidirectional "
                   f"{max(bi)}% vs best causal {max(ca)}% relative: "
                   + ("holds" if max(bi) > max(ca) else "does not hold here"))
    return ["## Targets from the papers (test-other report half)", "", *out, ""] if out else []


def plot(exp: Path, results: dict, order: list[str], sets: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sets), figsize=(6.5 * len(sets), 5), squeeze=False)
    for ax, (s, n) in zip(axes[0], sets, strict=True):
        rows = [(k, results[k]["sets"][s]) for k in order
                if results[k]["sets"].get(s, {}).get("utts") == n]
        for i, (k, v) in enumerate(rows):
            marker = "s" if k.startswith(("mwer", "lik")) else ("^" if "ger" in k else "o")
            x = max(v["latency_s"], 1e-3)
            dot = ax.scatter(x, v["wer"], marker=marker)
            alone = v.get("sweep", {}).get("1000")
            if alone is not None:  # hollow: the scorer ranking alone
                ax.scatter(x, alone, marker=marker, facecolors="none",
                           edgecolors=dot.get_facecolor())
                ax.annotate(k, (x, alone), fontsize=6, rotation=20)
            else:
                ax.annotate(k, (x, v["wer"] + 0.15 * (i % 4)), fontsize=6, rotation=20)
        ax.axhline(rows[0][1]["one_best"], color="gray", ls="--", label="1-best")
        ax.axhline(rows[0][1]["oracle"], color="green", ls=":", label="oracle")
        ax.set_xscale("log")
        ax.set_xlabel("latency per utterance, s (2 loaded CPU cores, 1 thread)")
        ax.set_ylabel("WER % (filled: tuned on dev; hollow: the score alone)")
        ax.set_title(f"{s} ({n} utterances)")
        ax.legend(loc="center right", fontsize=8)  # the hollow points sit high
    fig.tight_layout()
    fig.savefig(exp / "RESULTS.png", dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "./run.sh")
