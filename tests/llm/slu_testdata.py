"""Builders for SLU tests: a synthetic 5-intent task, a tiny BPE LM trained on it, a decode dir.

The LM is trained with ``train_lm`` (a few seconds, one thread), so it has the embedded LM's
tokenizer (byte-level BPE) and a short context (48 positions) that exercises prompt fitting.
Used by ``tests/llm/conftest.py`` and ``tests/bin/test_slu.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TEMPLATES = {
    "light_on": ["turn on the lights in the {room}", "switch the {room} light on",
                 "lights on in the {room} please"],
    "light_off": ["turn off the lights in the {room}", "switch the {room} light off",
                  "lights off in the {room} please"],
    "play_music": ["play some {genre} music", "put on a {genre} song", "i want to hear {genre}"],
    "alarm_set": ["wake me up at {num}", "set an alarm for {num}", "alarm at {num} tomorrow"],
    "weather_query": ["what is the weather in {city}", "will it rain in {city}",
                      "is it cold in {city} today"],
}
FILL = {"room": ["kitchen", "bedroom", "hall", "office"], "genre": ["jazz", "rock", "pop", "folk"],
        "num": ["six", "seven", "eight", "nine"], "city": ["paris", "london", "rome", "oslo"]}


def make_examples(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    intents = sorted(TEMPLATES)
    out = []
    for i in range(n):
        intent = intents[i % len(intents)]
        t = rng.choice(TEMPLATES[intent])
        text = t.format(**{k: rng.choice(v) for k, v in FILL.items()})
        out.append({"id": f"{seed}-{i:04d}", "text": text, "intent": intent})
    return out


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_decode_dir(root: Path, rows: list[dict]) -> tuple[Path, Path]:
    """A decode dir (text, nbest.jsonl, cn.jsonl, oracle.jsonl) and a data dir for ``rows``.

    Hypotheses are the reference with the last word replaced by "xx"; the WCN's last bin
    holds "xx" (0.6) and the reference word (0.4), so the WCN keeps what the 1-best lost;
    the N-best has the reference second; the oracle is the reference.
    """
    dec, data = root / "decode", root / "data"
    dec.mkdir(parents=True)
    data.mkdir(parents=True)
    rows = sorted(rows, key=lambda r: r["id"])
    text, nbest, cn, oracle, ref, u2i = [], [], [], [], [], []
    for r in rows:
        words = r["text"].split()
        hyp = " ".join(words[:-1] + ["xx"])
        text.append(f"{r['id']} {hyp}\n")
        nbest.append(json.dumps({"utt": r["id"], "hyps": [{"text": hyp, "score": -1.0},
                                                           {"text": r["text"], "score": -2.0}]}))
        bins = [[{"word": w, "posterior": 1.0, "start": 0.0, "end": 0.1}] for w in words[:-1]]
        bins.append([{"word": "xx", "posterior": 0.6, "start": 0.0, "end": 0.1},
                     {"word": words[-1], "posterior": 0.4, "start": 0.0, "end": 0.1}])
        cn.append(json.dumps({"utt": r["id"], "bins": bins}))
        oracle.append(json.dumps({"utt": r["id"], "oracle_text": r["text"], "1best": 1}))
        ref.append(f"{r['id']} {r['text']}\n")
        u2i.append(f"{r['id']} {r['intent']}\n")
    (dec / "text").write_text("".join(text))
    (dec / "nbest.jsonl").write_text("\n".join(nbest) + "\n")
    (dec / "cn.jsonl").write_text("\n".join(cn) + "\n")
    (dec / "oracle.jsonl").write_text("\n".join(oracle) + "\n")
    (data / "text").write_text("".join(ref))
    (data / "utt2intent").write_text("".join(u2i))
    return dec, data


def train_tiny_lm(text: Path, out: Path) -> Path:
    """A 2-layer, 64-wide Llama with a 500-token byte-level BPE and 48 positions."""
    from speechlm.llm.lm_train import LMTrainConfig, train_lm

    config = LMTrainConfig(vocab_size=500, num_layers=2, hidden_size=64, num_heads=2,
                           context_length=48, epochs=10, lr=0.01, warmup_steps=5,
                           batch_size=16, threads=1)
    train_lm(text, out, config, progress=False)  # restores torch's thread count itself
    return out


def make_slu_data(d: Path) -> dict:
    """train.jsonl (150) / dev.jsonl (40) of the synthetic task and the LM's text."""
    train, dev = make_examples(150, 0), make_examples(40, 1)
    lm_text = d / "lm.txt"
    # the LM knows the label words, as the embedded LM trained on SLURP text knows "alarm set"
    labels = [intent.replace("_", " ") + "\n" for intent in TEMPLATES] * 20
    lm_text.write_text("".join(r["text"] + "\n" for r in make_examples(400, 2)) + "".join(labels))
    return {"train": write_jsonl(train, d / "train.jsonl"),
            "dev": write_jsonl(dev, d / "dev.jsonl"), "train_rows": train, "dev_rows": dev,
            "lm_text": lm_text}
