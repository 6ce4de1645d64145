#!/usr/bin/env python3
"""A seeded sample of N sentences per intent from an SLU jsonl (the few-shot pool), written
as jsonl and as a Kaldi text file for speechlm synth-data-dir: the LoRA training sentences.

    python local/pick_per_intent.py --jsonl data/snips_full/local/slu_train.jsonl \
        --per_intent 30 --seed 0 --out data/snips_full/local/lora_train

Writes OUT.jsonl and OUT.text. Intents with fewer sentences give all they have (counted).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path


def pick(rows: list[dict], per_intent: int, seed: int) -> list[dict]:
    """Up to ``per_intent`` rows of every intent, drawn with ``seed`` per intent (so adding an
    intent does not change the others' draw), in the input's order."""
    by_intent: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_intent[row["intent"]].append(i)
    keep: set[int] = set()
    for intent, idx in sorted(by_intent.items()):
        rng = random.Random(f"{seed}:{intent}")
        keep.update(rng.sample(idx, min(per_intent, len(idx))))
    return [rows[i] for i in sorted(keep)]


def read_rows(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [k for k in ("id", "text", "intent") if not row.get(k)]
            if missing:
                raise ValueError(f"{path}:{n}: no {', '.join(missing)}")
            if any(c.isspace() for c in row["id"]):
                raise ValueError(f"{path}:{n}: id {row['id']!r} has white space")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jsonl", type=Path, required=True)
    ap.add_argument("--per_intent", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="writes OUT.jsonl and OUT.text")
    args = ap.parse_args(argv)
    if args.per_intent < 1:
        ap.error("--per_intent must be >= 1")
    try:
        rows = read_rows(args.jsonl)
    except (OSError, ValueError) as e:
        print(f"pick_per_intent.py: {e}", file=sys.stderr)
        return 1
    chosen = pick(rows, args.per_intent, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{args.out}.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in chosen)
    with open(f"{args.out}.text", "w", encoding="utf-8") as f:
        f.writelines(f"{r['id']} {r['text']}\n" for r in chosen)
    short = sorted({r["intent"] for r in rows} - {r["intent"] for r in chosen})
    counts = defaultdict(int)
    for r in chosen:
        counts[r["intent"]] += 1
    few = {k: v for k, v in counts.items() if v < args.per_intent}
    print(f"{len(chosen)} sentences, {len(counts)} intents"
          + (f"; fewer than {args.per_intent}: {few}" if few else "")
          + (f"; none: {short}" if short else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
