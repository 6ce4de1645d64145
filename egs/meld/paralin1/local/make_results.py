"""RESULTS.md and a bar plot from the evaluated models of egs/meld/paralin1."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from collections import Counter
from pathlib import Path

MODELS = {"full": "context + its sentiments (ParalinGPT text-only)",
          "no_context_sentiment": "context without sentiments",
          "no_context": "current turn only"}
KEYS = ("cur_acc", "cur_f1", "resp_acc", "resp_f1", "response_bleu", "response_ppl")


def constant_baseline(pred_file: Path) -> dict:
    """Accuracy of the best constant label, chosen on the evaluated set itself (an upper
    bound of any constant predictor)."""
    rows = [json.loads(line) for line in pred_file.read_text().splitlines()]
    out = {}
    for key in ("cur_ref", "resp_ref"):
        label, n = Counter(r[key] for r in rows).most_common(1)[0]
        out[key] = (label, round(100 * n / len(rows), 2))
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--sets", nargs="+", required=True)
    p.add_argument("--cmdline", default="")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    lines = ["# RESULTS: ParalinGPT on MELD (egs/meld/paralin1)", "",
             f"- date: `{datetime.datetime.now().isoformat(timespec='seconds')}`, "
             f"{os.cpu_count()} CPU cores, python {platform.python_version()}",
             f"- command: `{args.cmdline}`",
             "- base LLM: SmolLM2-135M-Instruct (catalogue `smollm2-135m-instruct`) + LoRA; "
             "labels by rank classification, responses by greedy generation",
             "- text only: MELD's audio is not here; no speech embeddings yet", ""]
    rows = {}
    for s in args.sets:
        lines += [f"## {s}", "",
                  "| model | windows | cur acc | cur F1 | resp acc | resp F1 | BLEU | resp ppl |"
                  " train s |", "|---|---|---|---|---|---|---|---|---|"]
        for name, what in MODELS.items():
            f = args.exp / name / s / "scores.json"
            if not f.is_file():
                continue
            sc = json.loads(f.read_text())
            meta = json.loads((args.exp / name / "paralin.json").read_text())["report"]
            rows[(s, name)] = sc
            lines.append(f"| {what} | {sc['windows']} | " + " | ".join(
                str(sc.get(k, "-")) for k in KEYS) + f" | {meta['train_seconds']} |")
        pred = args.exp / "full" / s / "predictions.jsonl"
        if pred.is_file():
            base = constant_baseline(pred)
            lines += ["", f"Best constant label on this set: current `{base['cur_ref'][0]}` "
                      f"{base['cur_ref'][1]}%, response `{base['resp_ref'][0]}` "
                      f"{base['resp_ref'][1]}%.", ""]
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
