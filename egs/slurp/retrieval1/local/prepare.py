#!/usr/bin/env python3
"""Stage 1 text side: splits for the speech-prefix LLM and its retrieval datastore.

SLURP's annotated devel sentences (entities in ``sentence_annotation`` as
``[type : words]``) are split by sentence (seeded) into dev, test and store; the speech-prefix
LLM trains on lines of SLURP's unlabelled training text that are in none of them. The store
(the retrieval datastore's (speech, text) pairs) is never trained on.

Writes into OUT (data/local):
  <set>.text    Kaldi text (id words...) for speech synthesis
  <set>.jsonl   {"id", "text", "entities": [words, ...]} per line
  lm_text.txt   SLURP's unlabelled training text minus every dev, test and store sentence
                (the embedded LM's training text)
  sets.json     sizes, and how many test entities also occur in the store / the LM text
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

_KEEP = re.compile(r"[^a-z' ]+")
_ENTITY = re.compile(r"\[\s*[^\]:]+?\s*:\s*([^\]]+?)\s*\]")


def normalize(text: str) -> str:
    """Lower case, digits and punctuation dropped (apostrophes kept), spaces squeezed."""
    return " ".join(_KEEP.sub(" ", text.lower().replace("-", " ")).split())


def read_devel(path: Path) -> list[dict]:
    rows, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                text, ann = obj["sentence"], obj.get("sentence_annotation", "")
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{n}: not a SLURP line with 'sentence' ({e})") from None
            text = normalize(text)
            if not text or text in seen or any(c.isdigit() for c in obj["sentence"]):
                continue  # digits would be read out by the synthesiser but scored as digits
            seen.add(text)
            ents = [normalize(e) for e in _ENTITY.findall(ann)]
            rows.append({"id": f"s{obj.get('slurp_id', n)}", "text": text,
                         "entities": [e for e in ents if e]})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--slurp", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train_size", type=int, default=600)
    p.add_argument("--store_size", type=int, default=400)
    p.add_argument("--dev_size", type=int, default=40)
    p.add_argument("--test_size", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rows = read_devel(a.slurp / "devel.jsonl")
    random.Random(a.seed).shuffle(rows)
    with_ent = [r for r in rows if r["entities"]]
    no_ent = [r for r in rows if not r["entities"]]
    # entity-rich test/dev first; the store takes the rest (entities shared with test)
    test, dev = with_ent[: a.test_size], with_ent[a.test_size : a.test_size + a.dev_size]
    rest = with_ent[a.test_size + a.dev_size :] + no_ent
    store = rest[: a.store_size]
    held = {r["text"] for r in test + dev + store}
    lm_text = [t for t in (normalize(x) for x in
                           (a.slurp / "lm_train_text.txt").read_text().splitlines())
               if t and t not in held]
    train = []
    for n, line in enumerate((a.slurp / "lm_train_text.txt").read_text().splitlines()):
        t = normalize(line)
        if t and t not in held and len(t.split()) >= 3 and not any(c.isdigit() for c in line):
            held.add(t)
            train.append({"id": f"t{n:05d}", "text": t, "entities": []})
    random.Random(a.seed + 1).shuffle(train)
    train = train[: a.train_size]
    a.out.mkdir(parents=True, exist_ok=True)
    sets = {"train": train, "store": store, "dev": dev, "test": test}
    for name, items in sets.items():
        with open(a.out / f"{name}.jsonl", "w") as f:
            for r in items:
                f.write(json.dumps(r) + "\n")
        (a.out / f"{name}.text").write_text("".join(f"{r['id']} {r['text']}\n" for r in items))
    store_text = " " + " ".join(r["text"] for r in store) + " "
    ents = [e for r in test for e in r["entities"]]
    covered = sum(f" {e} " in store_text for e in ents)
    info = {k: len(v) for k, v in sets.items()}
    (a.out / "lm_text.txt").write_text("".join(t + "\n" for t in lm_text))
    lm_joined = " " + " ".join(lm_text) + " "
    info["lm_text_lines"] = len(lm_text)
    info["test_entities"], info["test_entities_in_store"] = len(ents), covered
    info["test_entities_in_lm_text"] = sum(f" {e} " in lm_joined for e in ents)
    (a.out / "sets.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
