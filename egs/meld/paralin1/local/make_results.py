"""RESULTS.md and a bar plot from the evaluated models of egs/meld/paralin1."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from collections import Counter
from pathlib import Path

MODELS = {"speech_whisper": "context + sentiments + speech (pooled Whisper-tiny)",
          "speech_resemblyzer": "context + sentiments + speech (Resemblyzer)",
          "emotion": "context + sentiments + emotions; current emotion predicted first",
          "full": "context + its sentiments, without speech embeddings",
          "no_context_sentiment": "context without sentiments",
          "no_context": "current turn only",
          "response_only": "single-task: the response only (no labels), same prompt as full",
          "smollm2_head": "sequence classifier: SmolLM2 + LoRA, 2 x 3-way head on the last "
                          "state, same prompt as full",
          "minilm_head": "sequence classifier: MiniLM-L6 (frozen) + logistic-regression heads "
                         "(no response text)"}
KEYS = ("cur_acc", "cur_f1", "resp_acc", "resp_f1", "response_bleu", "responses_empty",
        "response_ppl", "emo_acc", "emo_f1")
# ParalinGPT (arXiv 2312.15316, Switchboard): serialized multitask vs sequence classifiers
PAPER = {"cur_acc": 6.7, "resp_acc": 12.0, "response_bleu": 3.5}
STAGES = {1: "read and check the CSVs", 2: "speech (synthesis)", 3: "speech embeddings",
          4: "train the serialized model", 5: "train ablations and baselines",
          6: "evaluate", 7: "RESULTS.md"}


def relative_gains(rows: dict, s: str) -> list[str]:
    """The serialized model's relative gains over the baselines, beside the paper's."""
    full = rows.get((s, "full"))
    if not full:
        return []
    out = ["", "Relative gains of the serialized model (`full`) over the baselines, "
           "100 * (full - baseline) / baseline, beside ParalinGPT's on Switchboard "
           "(+6.7% current-sentiment accuracy, +12.0% response-sentiment accuracy over "
           "sequence classifiers; +3.5% BLEU over single-task response generation):", "",
           "| baseline | cur acc | resp acc | BLEU |", "|---|---|---|---|",
           "| paper (ParalinGPT vs its baselines) | +6.7% | +12.0% | +3.5% |"]
    for name in ("smollm2_head", "minilm_head", "response_only"):
        b = rows.get((s, name))
        if not b:
            continue
        cells = []
        for key in ("cur_acc", "resp_acc", "response_bleu"):
            if key in b and key in full and b[key]:
                cells.append(f"{100 * (full[key] - b[key]) / b[key]:+.1f}%")
            else:
                cells.append("-")
        out.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return out


def stage_times(exp: Path) -> list[str]:
    files = sorted((exp / "timing").glob("stage*")) if (exp / "timing").is_dir() else []
    if not files:
        return []
    out = ["", "## Wall time per stage", "",
           "The last invocation that ran each stage (seconds; model loading included):", "",
           "| stage | what | seconds | models of that invocation |", "|---|---|---|---|"]
    total = 0
    for f in files:
        n = int(f.name[5:])
        secs, _, models = f.read_text().strip().partition(" ")
        total += int(secs)
        out.append(f"| {n} | {STAGES.get(n, '')} | {secs} | {models} |")
    out.append(f"| all | | {total} | |")
    if len({f.read_text().strip().partition(" ")[2] for f in files}) > 1:
        out += ["", "Stages ran in several invocations (e.g. `local/run_by_model.sh`: stages 4-6 "
                "once per model), so a row is the last invocation's only; each model's own "
                "training and evaluation times are the `train s` and `eval s` columns above."]
    return out


def constant_baseline(pred_file: Path) -> dict:
    """Accuracy of the best constant label, chosen on the evaluated set itself (an upper
    bound of any constant predictor)."""
    rows = [json.loads(line) for line in pred_file.read_text().splitlines()]
    out = {}
    for key in ("cur_ref", "resp_ref"):
        label, n = Counter(r[key] for r in rows).most_common(1)[0]
        out[key] = (label, round(100 * n / len(rows), 2))
    return out


def speech_lines(data: Path | None) -> list[str]:
    """What the speech was: voices, turns, embedding times (from stages 2 and 3)."""
    if data is None or not data.is_dir():
        return ["- speech: none found (text-only rows)"]
    out = []
    for d in sorted(p for p in data.iterdir() if (p / "wav.scp").is_file()):
        n = len((d / "wav.scp").read_text().splitlines())
        voices = d / "utt2voice"
        what = "real recordings (--wav_scp)"
        if voices.is_file():
            ids = [line.split()[1] for line in voices.read_text().splitlines()]
            kinds = Counter("piper" if v.startswith("piper") else "espeak" for v in ids)
            what = (f"synthetic, {len(set(ids))} voices "
                    f"({kinds['piper']} turns Piper, {kinds['espeak']} espeak-ng), one per "
                    "speaker within a dialogue")
        emb = []
        for f in sorted(d.glob("embed_*.json")):
            e = json.loads(f.read_text())
            done = f", {e['misses']} computed, {e['hits']} from the cache" if "hits" in e else ""
            emb.append(f"{e['kind']} {e['dim']}-dim ({e['seconds']} s with model loading{done})")
        out.append(f"- speech `{d.name}`: {n} turns, {what}; embeddings: {', '.join(emb)}")
    if any("synthetic" in line for line in out):
        out.append("- **Synthetic speech carries no emotion**: every line is read in the same "
                   "neutral way, so its embeddings can add only who speaks and what is said "
                   "(already in the text); no gain from them is expected here. One seed "
                   "each: a difference below can come from the changed training run itself "
                   "(see the paired test). Real recordings: `--wav_scp`.")
    return out


def paired(exp: Path, s: str, name: str, ref: str = "full") -> str | None:
    """Exact McNemar test of ``name`` against ``ref`` on the same windows, both labels."""
    from scipy.stats import binomtest

    files = [exp / n / s / "predictions.jsonl" for n in (ref, name)]
    if not all(f.is_file() for f in files):
        return None
    a, b = ([json.loads(line) for line in f.read_text().splitlines()] for f in files)
    out = []
    for key in ("cur", "resp"):
        ok = [(x[key] == x[f"{key}_ref"], y[key] == y[f"{key}_ref"])
              for x, y in zip(a, b, strict=True)]
        won, lost = sum(y and not x for x, y in ok), sum(x and not y for x, y in ok)
        p = binomtest(won, won + lost).pvalue if won + lost else 1.0
        out.append(f"{key} +{won}/-{lost} windows (p={p:.3f})")
    return f"- `{name}` vs `{ref}`: " + ", ".join(out)


def seed_spread(exp: Path, s: str) -> list[str]:
    """Mean and spread over seed 0 (``exp``) and the ``<exp>_seedN`` runs of the models
    trained with several seeds (``./run.sh --seed N``)."""
    runs = [exp, *sorted(exp.parent.glob(f"{exp.name}_seed*"))]
    if len(runs) < 2:
        return []
    out = ["", f"Seeds ({len(runs)} runs: seed 0 and `{'`, `'.join(r.name for r in runs[1:])}`;"
           " the same windows and embeddings, another LoRA / head init and batch order): "
           "mean, and min-max in brackets", "",
           "| model | runs | cur acc | resp acc | BLEU |", "|---|---|---|---|---|"]
    for name in MODELS:
        scores = [json.loads(f.read_text()) for r in runs
                  if (f := r / name / s / "scores.json").is_file()]
        if len(scores) < 2:
            continue
        cells = []
        for key in ("cur_acc", "resp_acc", "response_bleu"):
            v = [sc[key] for sc in scores if key in sc]
            cells.append(f"{sum(v) / len(v):.2f} [{min(v)}-{max(v)}]" if v else "-")
        out.append(f"| `{name}` | {len(scores)} | " + " | ".join(cells) + " |")
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--sets", nargs="+", required=True)
    p.add_argument("--data", type=Path, default=None, help="the recipe's data dir of this size")
    p.add_argument("--cmdline", default="")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    lines = ["# RESULTS: ParalinGPT on MELD (egs/meld/paralin1)", "",
             f"- date: `{datetime.datetime.now().isoformat(timespec='seconds')}`, "
             f"{os.cpu_count()} CPU cores, python {platform.python_version()}",
             f"- command: `{args.cmdline}`",
             "- base LLM: SmolLM2-135M-Instruct (catalogue `smollm2-135m-instruct`) + LoRA; "
             "labels by rank classification, responses by greedy generation",
             ] + speech_lines(args.data) + [""]
    rows = {}
    for s in args.sets:
        lines += [f"## {s}", "",
                  "| model | windows | cur acc | cur F1 | resp acc | resp F1 | BLEU | "
                  "empty responses | resp ppl | emo acc | emo F1 | train s | eval s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, what in MODELS.items():
            f = args.exp / name / s / "scores.json"
            if not f.is_file():
                continue
            sc = json.loads(f.read_text())
            meta = json.loads((args.exp / name / "paralin.json").read_text())["report"]
            rows[(s, name)] = sc
            lines.append(f"| {what} | {sc['windows']} | " + " | ".join(
                str(sc.get(k, "-")) for k in KEYS) +
                f" | {meta['train_seconds']} | {sc.get('eval_seconds', '-')} |")
        pairs = [(n, "full") for n in ("speech_whisper", "speech_resemblyzer", "emotion")]
        pairs += [("full", "smollm2_head"), ("full", "minilm_head")]
        tests = [t for n, ref in pairs if (t := paired(args.exp, s, n, ref))]
        if tests:
            lines += ["", "Paired exact McNemar tests on the same windows (`a` vs `b`: windows "
                      "right only by a / only by b; uncorrected for the several "
                      "comparisons):", "", *tests]
        pred = next((args.exp / n / s / "predictions.jsonl" for n in MODELS
                     if (args.exp / n / s / "predictions.jsonl").is_file()), Path("-"))
        if pred.is_file():
            base = constant_baseline(pred)
            emo = args.exp / "emotion" / s / "predictions.jsonl"
            emo_line = ""
            if emo.is_file():
                refs = [json.loads(line)["emotion_ref"] for line in emo.read_text().splitlines()]
                label, n = Counter(refs).most_common(1)[0]
                emo_line = f", current emotion `{label}` {round(100 * n / len(refs), 2)}%"
            lines += ["", f"Best constant label on this set: current `{base['cur_ref'][0]}` "
                      f"{base['cur_ref'][1]}%, response `{base['resp_ref'][0]}` "
                      f"{base['resp_ref'][1]}%{emo_line}.", ""]
        lines += relative_gains(rows, s)
        lines += seed_spread(args.exp, s)
    lines += stage_times(args.exp)
    args.out.write_text("\n".join(lines) + "\n")
    if rows:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.2))
        names = [k for k in rows]
        x = range(len(names))
        for i, key in enumerate(("cur_acc", "resp_acc", "response_bleu")):
            ax.bar([v + 0.27 * i for v in x], [rows[k].get(key, 0) for k in names], 0.27,
                   label=key)
        ax.set_xticks([v + 0.27 for v in x], [f"{s}\n{n}" for s, n in names], fontsize=7)
        ax.legend(fontsize=7)
        ax.set_ylabel("%")
        fig.tight_layout()
        fig.savefig(args.out.with_suffix(".png"), dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
