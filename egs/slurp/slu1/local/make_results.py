#!/usr/bin/env python3
"""Collect WERs, oracles, LLM rescoring and intent accuracies into RESULTS.md (+ a plot)."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from speechlm.core.wer import ErrorStats, read_kaldi_text

KINDS = (("1best", "1-best"), ("mbr", "WCN MBR"), ("nbest", "N-best oracle"),
         ("lattice", "lattice oracle"), ("wcn", "WCN oracle"))
INPUTS = ("text", "onebest", "nbest", "wcn", "oracle")
MIN_GAP = 5.0  # points between text and 1-best accuracy before "gap closed" is reported
BUCKETS = ((0.0, 0.0, "0"), (0.0, 25.0, "(0,25]"), (25.0, 50.0, "(25,50]"),
           (50.0, 1e9, ">50"))


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def oracle_wers(decode_dir: Path) -> dict[str, float] | None:
    path = decode_dir / "oracle.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    words = sum(r["ref_words"] for r in rows) or 1
    return {k: 100.0 * sum(r[k] for r in rows) / words for k, _ in KINDS}


def rescored_wer(decode_dir: Path) -> tuple[float, str] | None:
    best = decode_dir / "rescore_llm" / "best.json"
    if not best.is_file():
        return None
    obj = json.loads(best.read_text())
    return obj["wer"], obj["setting"]


def read_table(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split(maxsplit=1)
        if fields:
            out[fields[0]] = fields[1].strip() if len(fields) > 1 else ""
    return out


def accuracy(pred_dir: Path, data_dir: Path) -> tuple[float, dict[str, bool]] | None:
    pred, gold = pred_dir / "utt2intent", data_dir / "utt2intent"
    if not pred.is_file() or not gold.is_file():
        return None
    p, g = read_table(pred), read_table(gold)
    hits = {u: p.get(u) == g[u] for u in g}
    return 100.0 * sum(hits.values()) / max(len(hits), 1), hits


def utt_wer(decode_dir: Path, data_dir: Path) -> dict[str, float]:
    ref = read_kaldi_text(str(data_dir / "text"))
    hyp = read_kaldi_text(str(decode_dir / "text"))
    out = {}
    for utt, words in ref.items():
        s = ErrorStats()
        s.add(words, hyp.get(utt, []))
        out[utt] = 100.0 * s.errors / max(len(words), 1)
    return out


def bucket_of(wer: float) -> str:
    for lo, hi, name in BUCKETS:
        if (wer == 0.0 and hi == 0.0) or lo < wer <= hi:
            return name
    return BUCKETS[-1][2]


def espnet_training(system: Path) -> str | None:
    """One line on an ESPnet system's training: size, epochs, wall time, load."""
    log = system / "train.log"
    if not log.is_file():
        return None
    stamps, epochs = [], 0
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"\[\S+\] (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", line)
        if m:
            stamps.append(datetime.datetime.fromisoformat(m.group(1)))
        if "epoch results:" in line:
            epochs += 1
    if not stamps or not epochs:
        return None
    minutes = (stamps[-1] - stamps[0]).total_seconds() / 60
    meta = json.loads((system / "model" / "meta.json").read_text()) \
        if (system / "model" / "meta.json").is_file() else {}
    params = ""
    if (system / "model").is_dir():
        from speechlm.asr.espnet_asr import count_parameters

        params = f"{count_parameters(system / 'model') / 1e6:.2f} M parameters, "
    return (f"- {system.name}: `{meta.get('config', '?')}`, {params}{epochs} epochs on "
            f"`{meta.get('train_data', '?')}` in {minutes:.1f} min of training on this "
            f"machine (log `{log}`)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--systems", nargs="+", required=True)
    p.add_argument("--sets", nargs="+", required=True)
    p.add_argument("--elapsed", default="")
    p.add_argument("--quick", default="false")
    p.add_argument("--out", default="RESULTS.md")
    p.add_argument("--command", default="./run.sh", help="the run.sh command line of this run")
    args = p.parse_args()

    sets_info = json.loads(Path("data/local/sets.json").read_text())
    lines = ["# RESULTS: egs/slurp/slu1", "",
             "**The speech is synthetic**: SLURP's audio is not available here, so every test "
             "utterance was spoken by espeak-ng (40 sampled voices: accents, variants, rate, "
             "pitch) with added noise and reverberation. WERs are not comparable with "
             "published SLURP numbers.", "",
             "## Environment",
             f"- date `{datetime.datetime.now().isoformat(timespec='seconds')}`, git commit "
             f"`{git_commit()}`, python `{platform.python_version()}`",
             f"- machine `{platform.machine()}`, {os.cpu_count()} CPU cores, no GPU; this run.sh "
             f"invocation took {args.elapsed or '?'} s; quick mode: {args.quick}",
             "", "## Data",
             f"- sets (sentences): `{json.dumps(sets_info['sets'])}`; LM text lines: "
             f"{sets_info['lm_text_lines']}; ASR training lines (ESPnet system): "
             f"{sets_info['asr_train_lines']}; removed because they are dev/test sentences: "
             f"`{json.dumps(sets_info['removed_as_held_out'])}`",
             "- SLURP devel split by sentence into slu_train / dev / test; SNIPS (train_*_full, "
             "queries without digits) split the same way.", ""]

    lines += ["## ASR first passes: WER (%)", "",
              "|system|set|1-best|WCN MBR|N-best oracle|lattice oracle|WCN oracle|"
              "after LLM rescoring|rescoring setting|",
              "|---|---|---|---|---|---|---|---|---|"]
    for system in args.systems:
        for s in args.sets:
            d = Path(system) / f"decode_{s}"
            o = oracle_wers(d)
            if o is None:
                continue
            r = rescored_wer(d)
            rescored = f"|{r[0]:.1f}|`{r[1]}`|" if r else "|-|-|"
            lines.append(f"|{Path(system).name}|{s}|"
                         + "|".join(f"{o[k]:.1f}" for k, _ in KINDS) + rescored)
    trained = [t for t in (espnet_training(Path(sy)) for sy in args.systems) if t]
    if trained:
        lines += ["", "ESPnet system (conformer CTC/attention trained here on synthetic speech "
                  "of LM-text sentences, lattices over a TLG graph with the in-domain trigram):",
                  *trained]
    lines += ["", "LLM rescoring: tot = first-pass score + llm_scale x LLM log-prob + bonus x "
              "words, swept on dev (icefall-style `wer-summary.txt` per system under "
              "`decode_dev/rescore_llm/`), the best dev setting applied to the other sets.", ""]
    for system in args.systems:
        summary = Path(system) / "decode_dev" / "rescore_llm" / "wer-summary.txt"
        if summary.is_file():
            top = summary.read_text().splitlines()[1:6]
            lines += [f"- {Path(system).name} dev sweep, best 5: "
                      + ", ".join(f"`{t.split()[0]}` {t.split()[1]}" for t in top)]

    lines += ["", "## Intent accuracy (%)", ""]
    gaps = []
    plot_rows = []
    for slu_dir in sorted(Path("exp").glob("slu_*")):
        header = "|system|set|" + "|".join(INPUTS) + "|gap closed by WCN|"
        lines += [f"### {slu_dir.name}", "", header, "|---|---|" + "---|" * (len(INPUTS) + 1)]
        for system in args.systems:
            for s in args.sets:
                accs = {}
                hits_by_input = {}
                for inp in INPUTS:
                    pred = slu_dir / f"predict_{Path(system).name}_{s}_{inp}"
                    a = accuracy(pred, Path("data") / s)
                    if a is not None:
                        accs[inp], hits_by_input[inp] = a
                if not accs:
                    continue
                gap = "-"
                # the share is noise when text and 1-best are within a few points (e.g. a
                # classifier at chance)
                if all(k in accs for k in ("text", "onebest", "wcn")) and \
                        accs["text"] - accs["onebest"] >= MIN_GAP:
                    share = (accs["wcn"] - accs["onebest"]) / (accs["text"] - accs["onebest"])
                    gap = f"{100 * share:.0f}%"
                    gaps.append((slu_dir.name, Path(system).name, s, share))
                lines.append(f"|{Path(system).name}|{s}|"
                             + "|".join(f"{accs[i]:.1f}" if i in accs else "-" for i in INPUTS)
                             + f"|{gap}|")
                if s in ("test", "dev") and hits_by_input:
                    plot_rows.append((slu_dir.name, Path(system).name, s, hits_by_input,
                                      utt_wer(Path(system) / f"decode_{s}", Path("data") / s)))
        lines += [""]
    lines += ["Gap closed by WCN = (acc(WCN) - acc(1-best)) / (acc(reference text) - "
              "acc(1-best)): the share of the 1-best-to-transcript gap that WCN input recovers "
              f"(shown when that gap is at least {MIN_GAP:.0f} points).",
              ""]
    if plot_rows:
        png = Path("accuracy_vs_wer.png")
        plot(plot_rows, png)
        lines += [f"![intent accuracy vs utterance WER]({png.name})", "",
                  "Intent accuracy per bucket of the utterance's 1-best WER, per input; one "
                  "panel per SLU model, on the test set of the last system (in `--systems` "
                  "order) with its predictions; the panel title names it.", ""]
    lines += ["## Commands", "", "This run (each stage skips what is already done, so a run "
              "resumed with `--stage N` reports only its own time above):", "", "```",
              args.command, "```", ""]
    Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


def plot(rows, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # one panel per SLU model: the last system with predictions, its test set if present
    chosen = {}
    for slu, system, s, hits_by_input, wers in rows:
        key = slu
        if key not in chosen or s == "test":
            chosen[key] = (system, s, hits_by_input, wers)
    fig, axes = plt.subplots(1, len(chosen), figsize=(5 * len(chosen), 3.5), squeeze=False)
    names = [b[2] for b in BUCKETS]
    for ax, (slu, (system, s, hits_by_input, wers)) in zip(axes[0], chosen.items(),
                                                            strict=True):
        width = 0.8 / max(len(hits_by_input), 1)
        for k, (inp, hits) in enumerate(hits_by_input.items()):
            values = []
            for name in names:
                utts = [u for u in hits if bucket_of(wers.get(u, 100.0)) == name]
                values.append(100.0 * sum(hits[u] for u in utts) / len(utts) if utts else 0.0)
            ax.bar([i + k * width for i in range(len(names))], values, width, label=inp)
        counts = [sum(1 for u in wers if bucket_of(wers[u]) == n) for n in names]
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))])
        ax.set_xticklabels([f"{n}\n({c} utts)" for n, c in zip(names, counts, strict=True)])
        ax.set_xlabel("1-best WER of the utterance (%)")
        ax.set_ylabel("intent accuracy (%)")
        ax.set_title(f"{slu}: {system} {s}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
