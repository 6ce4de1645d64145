#!/usr/bin/env python3
"""Stage 1 text side: SLU splits of SLURP (and SNIPS) and the LM training text.

``--corpus snips`` (egs/slurp/icl1 --corpus snips) writes SNIPS splits only: see
``prepare_snips``.

SLURP's only labelled sentences here are its devel split; they are split *by sentence* into
slu_train / dev / test (seeded). Any ``--test_jsonl`` (SLURP's form: ``sentence``, ``intent``,
``slurp_id`` or ``id``) becomes one more test set. No sentence of a dev or test set is ever
in a training text: the SLU training set, the LM text and the ASR training text are all
filtered against them.

Writes into OUT (data/local):
  <set>.jsonl     {"id": ..., "text": ..., "intent": ...} per line
  <set>.text      Kaldi text (id words...) for speech synthesis
  lm_text.txt     SLURP's unlabelled training text + slu_train sentences, minus dev/test
  asr_train.text  up to --asr-train-lines distinct LM-text lines (ids), for the ESPnet system
  sets.json       set name -> number of sentences, and the filtering counts
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import unicodedata
from pathlib import Path

from speechlm.data.snips import read_snips_dir, split_per_intent

_KEEP = re.compile(r"[^a-z0-9' ]+")


def normalize(text: str) -> str:
    """Lower case, punctuation dropped (apostrophes kept), spaces squeezed."""
    return " ".join(_KEEP.sub(" ", text.lower().replace("-", " ")).split())


def slurp_intent(obj: dict) -> str:
    """A SLURP line's intent: ``<scenario>_<action>`` when the line has both, as ESPnet's
    SLURP recipe builds it, else its ``intent`` field. Upstream's ``intent`` field holds the
    action alone on some lines (30 of devel's 2,033: ``query`` for weather_query,
    lists_query, calendar_query ...), which would make label sets with merged, scenario-less
    labels."""
    scenario, action = obj.get("scenario"), obj.get("action")
    if isinstance(scenario, str) and isinstance(action, str) and scenario and action:
        return f"{scenario}_{action}"
    return obj["intent"]


def read_slurp_jsonl(path: Path, prefix: str) -> tuple[list[dict], int]:
    """The lines of a SLURP-form file as ``{"id", "text", "intent"}`` rows, and how many lines'
    ``intent`` field differs from the intent taken (``slurp_intent``)."""
    rows, relabeled = [], 0
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                text, intent = obj["sentence"], slurp_intent(obj)
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
                raise ValueError(f"{path}:{n}: not a SLURP line with 'sentence' and 'intent' "
                                 f"(or 'scenario' and 'action') ({e})") from None
            relabeled += intent != obj.get("intent", intent)
            sid = obj.get("slurp_id", obj.get("id", n))
            rows.append({"id": f"{prefix}{sid}", "text": normalize(text), "intent": intent})
    if not rows:
        raise ValueError(f"{path}: no sentences")
    return rows, relabeled


def fold_accents(text: str) -> str:
    """``Fernández`` -> ``Fernandez`` (NFKD, combining marks dropped), so ``normalize`` keeps
    the letters instead of cutting the word in two."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def read_snips(snips_dir: Path, pattern: str = "train_*_full.json",
               prefix: str = "snips-", accents: bool = False) -> tuple[list[dict], int]:
    """SNIPS rows (``speechlm.data.snips``) as ``{"id", "text", "intent", "spans"}``, text and
    spans normalised, and the number of rows left out for holding digits (the synthesiser
    would read them out but they would be scored as digits). Ids are ``<prefix><Intent>-<row>``.
    ``accents``: fold accented letters first (``fold_accents``; --corpus snips does).
    """
    prep = fold_accents if accents else str
    rows, with_digits = [], 0
    for u in read_snips_dir(snips_dir, pattern):
        text = normalize(prep(u.text))
        if not text:
            continue  # punctuation only
        if re.search(r"\d", text):
            with_digits += 1
            continue
        rows.append({"id": f"{prefix}{u.intent}-{u.row:04d}", "text": text, "intent": u.intent,
                     "spans": [[slot, normalize(prep(value))] for slot, value in u.spans]})
    return rows, with_digits


def split(rows: list[dict], n_dev: int, n_test: int, seed: int):
    """Split by distinct sentence: all rows of a sentence fall in the same part."""
    sentences = sorted({r["text"] for r in rows})
    random.Random(seed).shuffle(sentences)
    test = set(sentences[:n_test])
    dev = set(sentences[n_test:n_test + n_dev])
    part = {s: "test" if s in test else "dev" if s in dev else "train" for s in sentences}
    out: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    seen: set[str] = set()
    for r in rows:
        if part[r["text"]] != "train" and r["text"] in seen:
            continue  # one utterance per dev/test sentence
        seen.add(r["text"])
        out[part[r["text"]]].append(r)
    return out


def write_set(out: Path, name: str, rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: r["id"].encode())
    with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with open(out / f"{name}.text", "w", encoding="utf-8") as f:
        f.writelines(f"{r['id']} {r['text']}\n" for r in rows)


def _sample_per_intent(rows: list[dict], n: int, seed: int) -> list[dict]:
    """At most ``n`` rows per intent (seeded per intent; 0 = all), one row per sentence."""
    seen: set[str] = set()
    firsts = [r for r in rows if not (r["text"] in seen or seen.add(r["text"]))]
    out = []
    for intent in sorted({r["intent"] for r in firsts}):
        mine = [r for r in firsts if r["intent"] == intent]
        if n and len(mine) > n:
            mine = random.Random(f"{seed}:{intent}").sample(mine, n)
        out += mine
    return out


def prepare_snips(snips: Path, dev_per_intent: int, test_per_intent: int, seed: int,
                  test_dir: Path | None = None, pool_per_intent: int = 0
                  ) -> tuple[dict[str, list[dict]], dict]:
    """SNIPS sets for in-context SLU: ``slu_train`` (the few-shot pool), ``dev``, ``test``.

    The pool is the ``train_<Intent>_full.json`` files. Without ``test_dir``, dev and test are
    drawn from those files' sentences per intent (``split_per_intent``: ``test_per_intent``
    then ``dev_per_intent`` distinct sentences of each intent, shuffled with seed
    ``"<seed>:<intent>"``) and the rest is the pool. With ``test_dir`` (``validate_*.json``
    files, the benchmark's test split), test is those rows (``test_per_intent`` of each
    intent, seeded; 0 = all) and only dev is drawn. Every sentence of dev or test is removed
    from the pool, which then keeps ``pool_per_intent`` sentences of each intent (seeded;
    0 = all). Accented letters are folded (``é`` -> ``e``); sentences with digits are left
    out everywhere (counted).
    """
    rows, digits = read_snips(snips, accents=True)
    summary = {"left_out_with_digits": {"train_full": digits}}
    parts = split_per_intent(rows, dev_per_intent, 0 if test_dir else test_per_intent, seed)
    if test_dir is not None:
        test_rows, test_digits = read_snips(test_dir, "validate_*.json", "snipstest-", True)
        parts["test"] = _sample_per_intent(test_rows, test_per_intent, seed)
        summary["left_out_with_digits"]["test_dir"] = test_digits
        summary["test_dir"] = str(test_dir)
    held_out = {r["text"] for r in parts["dev"] + parts["test"]}
    pool = [r for r in parts["train"] if r["text"] not in held_out]
    summary["removed_as_held_out"] = {"slu_train": len(parts["train"]) - len(pool)}
    pool = _sample_per_intent(pool, pool_per_intent, seed)
    pool_intents = {r["intent"] for r in pool}
    summary["test_intents_not_in_pool"] = sorted({r["intent"] for r in parts["test"]}
                                                 - pool_intents)
    return {"slu_train": pool, "dev": parts["dev"], "test": parts["test"]}, summary


def test_set_name(path: Path) -> str:
    """``test_<name>`` of a ``--test_jsonl`` file, as the recipes' run.sh spell it
    (``basename F .jsonl | tr -c 'A-Za-z0-9_\\n' _`` under LC_ALL=C): every other byte -> ``_``."""
    stem = path.name.removesuffix(".jsonl") or path.name
    return "test_" + re.sub(rb"[^A-Za-z0-9_]", b"_", stem.encode()).decode()


def sample_sentences(rows: list[dict], n: int, seed: int) -> list[dict]:
    """``n`` distinct sentences of ``rows`` (seeded; the first row of each), in file order;
    every row when ``n`` is 0 or not below the number of distinct sentences."""
    first: dict[str, dict] = {}
    for r in rows:
        first.setdefault(r["text"], r)
    if n <= 0 or n >= len(first):
        return rows
    keep = set(random.Random(seed).sample(sorted(first), n))
    return [r for r in first.values() if r["text"] in keep]


def prepare_slurp(slurp: Path, test_jsonl: list[Path], dev_size: int, test_size: int,
                  seed: int, snips: Path | None = None, snips_eval_size: int = 150,
                  snips_train_size: int = 2000, asr_train_lines: int = 3000,
                  test_jsonl_size: int = 0):
    """SLURP's devel split by sentence into slu_train / dev / test, each ``test_jsonl`` one more
    test set ``test_<stem>`` (``test_jsonl_size`` > 0: that many of its sentences, seeded: a
    held-out split of thousands costs hours a first pass on a CPU), SNIPS sets when ``snips``
    is given; every sentence of a non-train set is removed from the training sets and from the
    LM / ASR text. Returns the sets, the LM text lines, the ASR training lines and the summary
    (set sizes, removed counts, the sampled extra test sets' sizes, and the intents of each
    extra test set that slu_train does not have: they can never be right).
    """
    devel, replaced = read_slurp_jsonl(slurp / "devel.jsonl", "slurp-")
    relabeled = {"devel": replaced}
    parts = split(devel, dev_size, test_size, seed)
    sets = {"slu_train": parts["train"], "dev": parts["dev"], "test": parts["test"]}
    sampled = {}
    for path in test_jsonl:
        name = test_set_name(path)
        if name in sets:
            raise ValueError(f"{path}: a second test set named {name} (rename the file)")
        rows, relabeled[name] = read_slurp_jsonl(path, f"{name}-")
        sets[name] = sample_sentences(rows, test_jsonl_size, seed)
        if len(sets[name]) < len(rows):
            sampled[name] = {"kept": len(sets[name]), "lines": len(rows)}
    if snips is not None:
        # the SLU system of this recipe reads id, text and intent (no slot spans)
        snips_rows = [{k: r[k] for k in ("id", "text", "intent")} for r in read_snips(snips)[0]]
        snips_parts = split(snips_rows, snips_eval_size, snips_eval_size, seed)
        train = snips_parts["train"]
        if snips_train_size and len(train) > snips_train_size:
            train = random.Random(seed).sample(train, snips_train_size)
        sets.update(snips_train=train, snips_dev=snips_parts["dev"],
                    snips_test=snips_parts["test"])
    held_out = {r["text"] for name, rows in sets.items() if "train" not in name for r in rows}
    removed = {}
    for name in [n for n in sets if "train" in n]:
        before = len(sets[name])
        sets[name] = [r for r in sets[name] if r["text"] not in held_out]
        removed[name] = before - len(sets[name])

    lm_lines = [normalize(line) for line in
                (slurp / "lm_train_text.txt").read_text(encoding="utf-8").splitlines()]
    lm_lines += [r["text"] for r in sets["slu_train"]]
    lm_text = [t for t in lm_lines if t and t not in held_out]
    removed["lm_text"] = sum(1 for t in lm_lines if t in held_out)
    distinct = sorted(set(lm_text))
    random.Random(seed).shuffle(distinct)
    asr_lines = sorted(distinct[:asr_train_lines])
    known = {r["intent"] for r in sets["slu_train"]}
    unseen = {name: sorted({r["intent"] for r in sets[name]} - known)
              for name in sets if name.startswith("test_")}
    summary = {"sets": {n: len(r) for n, r in sets.items()}, "lm_text_lines": len(lm_text),
               "asr_train_lines": len(asr_lines), "removed_as_held_out": removed,
               "test_jsonl_sampled": sampled,
               "test_intents_not_in_train": {n: u for n, u in unseen.items() if u},
               "intent_field_replaced_by_scenario_action": relabeled}
    return sets, lm_text, asr_lines, summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", choices=["slurp", "snips"], default="slurp",
                   help="snips: SNIPS sets only (--snips, --snips_test_dir, *_per_intent)")
    p.add_argument("--slurp", type=Path, default=None)
    p.add_argument("--snips", type=Path, default=None)
    p.add_argument("--snips_test_dir", type=Path, default=None,
                   help="--corpus snips: a dir of validate_<Intent>.json files as the test set")
    p.add_argument("--dev_per_intent", type=int, default=5)
    p.add_argument("--test_per_intent", type=int, default=10)
    p.add_argument("--pool_per_intent", type=int, default=0,
                   help="--corpus snips: few-shot pool sentences per intent (seeded; 0 = all)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--test_jsonl", nargs="*", default=[], type=Path)
    p.add_argument("--test_jsonl_size", type=int, default=0,
                   help="sentences kept of each --test_jsonl file (seeded sample; 0 = all)")
    p.add_argument("--dev_size", type=int, default=300)
    p.add_argument("--test_size", type=int, default=400)
    p.add_argument("--snips_eval_size", type=int, default=150)
    p.add_argument("--asr_train_lines", type=int, default=3000)
    p.add_argument("--snips_train_size", type=int, default=2000,
                   help="SNIPS training sentences kept (seeded sample; 0 = all)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    if args.corpus == "snips":
        if args.snips is None:
            p.error("--corpus snips needs --snips DIR")
        sets, summary = prepare_snips(args.snips, args.dev_per_intent, args.test_per_intent,
                                      args.seed, args.snips_test_dir, args.pool_per_intent)
        for name, rows in sets.items():
            write_set(args.out, name, rows)
        summary = {"sets": {n: len(r) for n, r in sets.items()}, **summary}
        (args.out / "sets.json").write_text(json.dumps(summary, indent=1) + "\n")
        print(json.dumps(summary))
        return 0
    if args.slurp is None:
        p.error("--slurp DIR is required (or --corpus snips)")
    sets, lm_text, asr_lines, summary = prepare_slurp(
        args.slurp, args.test_jsonl, args.dev_size, args.test_size, args.seed,
        snips=args.snips, snips_eval_size=args.snips_eval_size,
        snips_train_size=args.snips_train_size, asr_train_lines=args.asr_train_lines,
        test_jsonl_size=args.test_jsonl_size)
    for name, rows in sets.items():
        write_set(args.out, name, rows)
    (args.out / "lm_text.txt").write_text("\n".join(lm_text) + "\n", encoding="utf-8")
    (args.out / "asr_train.text").write_text(
        "".join(f"asrtrain-{k:05d} {t}\n" for k, t in enumerate(asr_lines)), encoding="utf-8")
    (args.out / "sets.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
