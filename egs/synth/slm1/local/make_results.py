"""RESULTS.md and a plot from egs/synth/slm1's exp dir (eval/*.json, dpo_r*/round.json)."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

COLUMNS = [("lexical_acc", "lexical acc"), ("lexical_norm_acc", "lexical acc /unit"),
           ("syntactic_acc", "syntactic acc"), ("syntactic_norm_acc", "syntactic acc /unit"),
           ("cloze_acc", "cloze acc"), ("judge_score", "judge score"),
           ("perplexity", "unit ppl"), ("distinct2_units", "distinct-2 units"),
           ("distinct1_words", "distinct-1 words")]


def _read(p: Path) -> dict | list | None:
    return json.loads(p.read_text()) if p.is_file() else None


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--cmdline", default="")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    exp = args.exp
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    prep = _read(exp / "data/text/prepare.json") or {}
    km = _read(exp / "km/km.json") or {}
    base = _read(exp / "base/train_report.json") or {}
    ctc = _read(exp / "ctc/ctc.json") or {}
    synth_s = (exp / "data/synth_seconds").read_text().strip() if (
        exp / "data/synth_seconds").is_file() else "?"
    utt = {s: _read(exp / f"data/{s}/units.json") or {} for s in ("train", "dev", "eval")}
    lines = [
        "# RESULTS: Align-SLM on synthetic speech (egs/synth/slm1)", "",
        f"- date `{datetime.datetime.now().isoformat(timespec='seconds')}`, commit `{commit}`, "
        f"{os.cpu_count()} CPU cores shared with other jobs (loaded), no GPU, "
        f"python {platform.python_version()}",
        f"- command: `{args.cmdline}`",
        f"- text: {prep.get('slurp_lines')} SLURP LM lines + {prep.get('meld_turns')} MELD train "
        f"turns; {prep.get('dev_prompts')} MELD dev turns for held-out prompts/perplexity",
        f"- speech: espeak-ng (en-us + 8 sampled accents/variants) and Piper joe (2 renditions), "
        f"one voice per line; train {utt['train'].get('utterances')} utterances "
        f"({utt['train'].get('frames', 0) * 0.02 / 60:.1f} min), dev "
        f"{utt['dev'].get('utterances')}, eval items {utt['eval'].get('utterances')} "
        f"(espeak en-us); synthesis {synth_s} s",
        f"- units: Whisper tiny.en encoder (CTranslate2, last layer, unpadded) -> k-means "
        f"K={km.get('num_units')} (faiss, seed {km.get('seed')}, {km.get('num_frames')} "
        f"frames) -> de-duplicated: {utt['train'].get('units_per_second', 0):.1f} units/s. "
        f"HuBERT is not available here (no weights on the package index).",
        f"- unit LM: Llama {base.get('config', {}).get('num_layers')} layers x "
        f"{base.get('config', {}).get('hidden_size')}, {base.get('num_params', 0) / 1e6:.2f}M "
        f"parameters, `speechlm lm train --tokenizer`, {base.get('steps')} steps in "
        f"{base.get('train_seconds')} s, held-out ppl {base.get('heldout_perplexity', 0):.2f} "
        f"(unigram {base.get('unigram_perplexity', 0):.2f})",
        f"- unit->text CTC recognizer ({ctc.get('config', {}).get('encoder', 'conv')}): "
        f"{ctc.get('train_utterances')} utterances (the LM's {utt['train'].get('utterances')} "
        f"+ {prep.get('ears_lines', 0)} lines of its own, `ears_text`), "
        f"{ctc.get('train_seconds')} s; held-out CER {ctc.get('heldout_cer_percent', 0):.1f}% "
        f"on {ctc.get('heldout_utterances')} utterances", ""]
    jc = _read(exp / "judge_check.json")
    if jc:
        lines += ["## Which judge gives better pairs", "",
                  "Accuracy of preferring an utterance's true second half over another "
                  "utterance's (dev; chance 0.5). Ears `ctc`: both halves through the CTC "
                  "recognizer, as sampled continuations are; `reference`: the reference "
                  "words cut at the same fraction, the judge's ceiling with perfect ears:",
                  "", "| judge | ears | accuracy | prompts | unscored |", "|---|---|---|---|---|"]
        lines += [f"| {j['judge']} | {j.get('ears', 'ctc')} | {j['accuracy']:.3f} | "
                  f"{j['prompts']} | {j['unscored']} |" for j in jc]
        lines.append("")
    le = _read(exp / "latent_ears.json")
    if le:
        cer = le["cer_percent"]
        lines += ["## Can Whisper's decoder read the units? (no vocoder)", "",
                  f"`python local/latent_ears.py --exp {exp}` on {le['utterances']} "
                  f"{le['set']} utterances: character error rate of Whisper-tiny's decoder "
                  "given encoder states rebuilt from the units (K centroids) instead of audio:",
                  "", "| " + " | ".join(cer) + " |", "|---" * len(cer) + "|",
                  "| " + " | ".join(f"{v:.1f}" for v in cer.values()) + " |", "",
                  "frames: the real (unpadded) encoder frames; +pad: followed by the encoder "
                  "frames of silence up to 30 s, as Whisper was trained; centroids: each frame "
                  "replaced by its unit's centroid; units: de-duplicated units, each centroid "
                  f"repeated {le['repeat']} times (what a continuation gives). Over 100%: "
                  "the decoder loops or writes unrelated words.", ""]
    models = ["base"] + sorted((d.name for d in exp.glob("dpo_r*")),
                               key=lambda x: int(x[5:])) + ["ft"]
    lines += ["## Evaluation", "",
              "| model | " + " | ".join(c[1] for c in COLUMNS) + " | pairs | train s |",
              "|---" * (len(COLUMNS) + 3) + "|"]
    plot = {}
    for m in models:
        ev = _read(exp / "eval" / f"{m}.json")
        if not ev:
            continue
        rnd = _read(exp / m / "round.json") or {}
        tr = _read(exp / m / "train.json") or (rnd.get("dpo") or {})
        if m == "base":
            pairs, secs = "-", base.get("train_seconds")
        else:
            pairs = tr.get("pairs", "-")
            secs = round(tr.get("train_seconds", 0) + rnd.get("sample_seconds", 0)
                         + rnd.get("judge_seconds", 0), 1) if rnd else tr.get("train_seconds")
        name = {"base": "base unit LM", "ft": "likelihood FT (ablation)"}.get(
            m, f"DPO round {m[5:]} (margin {rnd.get('margin')})")
        vals = [f"{ev.get(k, float('nan')):.3f}" for k, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(vals) + f" | {pairs} | {secs} |")
        plot[name] = ev
    n_items = [plot.get("base unit LM", {}).get(k + "_items") for k in
               ("lexical", "syntactic", "cloze")]
    half = 1.96 * (0.25 / max(min(n for n in n_items if n) if any(n_items) else 1, 1)) ** 0.5
    lines += ["", "Items: " + ", ".join(f"{k} {n}" for k, n in
                                        zip(("lexical", "syntactic", "cloze"), n_items,
                                            strict=True))
              + f". At this size a 95% interval around chance is 0.5 +- {half:.2f}: "
              "differences inside it are noise.",
              "", "Accuracies: sum of unit log-probs (sWUGGY/sBLIMP practice); '/unit': "
              "per-unit mean (removes the shorter item's advantage); cloze: PMI with the "
              "context. Chance is 0.5 everywhere.",
              "", "Train s: for DPO rounds, sampling + judging + DPO; for the base, LM "
              "training. Judge score: mean SmolLM2 log-prob per token of the continuation's "
              "transcript after the prompt's transcript (4 samples per dev prompt).", ""]
    for r in sorted(exp.glob("dpo_r*/pairs.json")):
        lines.append(f"- {r.parent.name} pairs: `{json.dumps(_read(r))}`")
    quick = "--quick true " if exp.name == "quick" else ""
    lines += ["", "## Commands", "", "```", "cd egs/synth/slm1",
              f"./run.sh {quick}          # stages 1-9; rerun to resume",
              "```", "", "Each stage's commands are in run.sh (one `speechlm slm ...` or "
              "`speechlm lm train` call per step); no GPU was used (none lent to this task)."]
    (exp / "RESULTS.md").write_text("\n".join(lines) + "\n")
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = ["lexical_acc", "syntactic_acc", "cloze_acc"]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        names = list(plot)
        for i, k in enumerate(keys):
            axes[0].bar([x + 0.25 * i for x in range(len(names))],
                        [plot[n].get(k, 0) for n in names], width=0.25, label=k)
        axes[0].set_xticks([x + 0.25 for x in range(len(names))])
        axes[0].set_xticklabels(names, rotation=20, fontsize=7)
        axes[0].axhline(0.5, color="grey", lw=0.8, ls="--")
        axes[0].set_ylabel("accuracy")
        axes[0].legend(fontsize=7)
        axes[1].plot(range(len(names)), [plot[n]["judge_score"] for n in names], "o-")
        axes[1].set_xticks(range(len(names)))
        axes[1].set_xticklabels(names, rotation=20, fontsize=7)
        axes[1].set_ylabel("judge score (SmolLM2 log-prob / token)")
        fig.tight_layout()
        fig.savefig(exp / "RESULTS.png", dpi=100)
    if args.out != exp / "RESULTS.md":
        args.out.write_text((exp / "RESULTS.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
