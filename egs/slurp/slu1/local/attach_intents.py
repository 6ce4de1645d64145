#!/usr/bin/env python3
"""Write DATA/utt2intent for a synthesized data dir from the set's jsonl.

Synthesized utterance ids are ``<speaker>-<line id>`` (speechlm synth-data-dir), so the
line id, and with it the intent, is the utterance id minus its speaker prefix.
"""
import json
import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: attach_intents.py DATA_DIR SET.jsonl", file=sys.stderr)
        return 2
    data, jsonl = Path(sys.argv[1]), Path(sys.argv[2])
    intents = {}
    with open(jsonl, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                intents[row["id"]] = row["intent"]
    rows = []
    for line in (data / "utt2spk").read_text(encoding="utf-8").splitlines():
        utt, spk = line.split()
        line_id = utt[len(spk) + 1:] if utt.startswith(spk + "-") else utt
        if line_id not in intents:
            print(f"{data}: utterance {utt}: line {line_id} is not in {jsonl}", file=sys.stderr)
            return 1
        rows.append(f"{utt} {intents[line_id]}\n")
    (data / "utt2intent").write_text("".join(rows), encoding="utf-8")  # utt2spk order: sorted
    return 0


if __name__ == "__main__":
    sys.exit(main())
