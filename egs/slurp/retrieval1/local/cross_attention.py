#!/usr/bin/env python3
"""Retrieved utterances read by the speech-prefix LLM: gated cross-attention and in-context.

For dev and test, the top-k utterances of the retrieval store (data/store) are found by
speech (mean-pooled Whisper encoder states, z-scored per dimension with the store's
statistics, cosine) or by text (MiniLM sentence embedding of the speech LLM's own
first-pass hypothesis against the store transcripts, cosine). They are then read either

* through gated cross-attention blocks after the chosen decoder layers (memory: each
  retrieved transcript as (LLM final state, next-token embedding) pairs, optionally its
  pooled speech), trained on the training split with the speech LLM's loss, LLM and
  projector frozen; the training queries retrieve from train + store, never themselves
  (``xattn``); or
* as an in-context prefix ``[BOS] Similar requests: a; b; ... [speech] Transcript:`` with
  no new weights (``icl``), and after fine-tuning the LLM on such prompts for
  ``--icl-epochs`` (``icl_tuned``; a fresh copy of the speech LLM per retrieval kind).

With ``--oracle``, an upper-bound diagnostic (not the paper's setting) adds a ``oracle``
retrieval kind: each utterance's own transcript at a random place among k - 1 speech
neighbours, in training and in evaluation, to show how much each reading mechanism takes from
a retrieval that found the right sentence.

    python local/cross_attention.py --model-dir exp/speech_llm --feats-dir exp/feats \
        --data data --out exp/xattn --oracle --systems xattn,icl,icl_tuned

WER and entity error come from local/evaluate.py's scoring. Writes OUT/results.json
(``systems`` in evaluate.py's layout, ``retrieval`` diagnostics, ``train``: the adapters'
training reports) and OUT/hyp_<system>_<set>.txt; adapters in OUT/xattn_<retrieve_by>.
Resumable: trained adapters and first-pass hypotheses are reused when they match.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import entities_of, metrics  # noqa: E402  (the recipe's one scoring)

from speechlm.llm.retrieval.augmented import (  # noqa: E402
    CrossAttentionSpeechLLM,
    ItemStore,
    RetrievalAugmentConfig,
    train_cross_attention,
)
from speechlm.llm.retrieval.in_context import fit_in_context, transcribe_in_context  # noqa: E402
from speechlm.llm.retrieval.neighbours import NeighbourIndex, mean_pool  # noqa: E402
from speechlm.llm.speech_llm import SpeechLLM, data_dir_features  # noqa: E402

SETS = ("train", "store", "dev", "test")


def load_sets(model: SpeechLLM, data: Path, feats_dir: Path, out: Path,
              train_limit: int = 0, extra: tuple[str, ...] = ()) -> dict:
    """``set -> (utts, feats, texts)`` (float16 states, as cached). OUT/feats links to the
    caches in ``feats_dir``; a stale or missing one is computed into OUT/feats, replacing
    the link, never the linked file."""
    enc = model.config.encoder
    sets = {}
    for name in (*SETS, *extra):
        cache = out / "feats" / f"{name}.{enc}.npz"
        src = feats_dir / cache.name
        if not cache.exists() and src.is_file():
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.symlink_to(src.resolve())
        utts, feats, refs = data_dir_features(data / name, enc, cache)
        if name == "train" and train_limit:
            utts, feats = utts[:train_limit], feats[:train_limit]
            refs = {u: refs[u] for u in utts}
        sets[name] = (utts, feats, refs)
    return sets


def first_pass(model: SpeechLLM, name: str, utts, feats, out: Path, batch: int = 8) -> dict:
    """The plain speech LLM's greedy hypotheses (cached in OUT/first_pass_<set>.json, keyed
    by the model's fingerprint)."""
    path = out / f"first_pass_{name}.json"
    fp = model.fingerprint()
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached["fingerprint"] == fp and set(cached["hyps"]) == set(utts):
            return cached
    start, hyps = time.perf_counter(), {}
    for s in range(0, len(utts), batch):
        for u, t in zip(utts[s : s + batch], model.transcribe_features(feats[s : s + batch]),
                        strict=True):
            hyps[u] = t
    res = {"fingerprint": fp, "hyps": hyps, "seconds": round(time.perf_counter() - start, 2)}
    path.write_text(json.dumps(res, indent=1) + "\n")
    return res


def entity_recall(neigh: list[list[str]], utts, texts: dict, ents: dict) -> float:
    """% of reference entities found (as a word run) in the retrieved transcripts."""
    hit = total = 0
    for u, ids in zip(utts, neigh, strict=True):
        pool = " | ".join(f" {texts[i]} " for i in ids)
        for e in ents.get(u.rsplit("-", 1)[-1], []):
            total += 1
            hit += f" {e} " in pool
    return round(100.0 * hit / max(total, 1), 2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", required=True, help="the speech-llm model dir (stage 3)")
    p.add_argument("--feats-dir", required=True, help="encoder-state caches (read only)")
    p.add_argument("--data", default="data", help="dir with train/ store/ dev/ test/ local/")
    p.add_argument("--out", required=True)
    p.add_argument("--test-sets", default="test",
                   help="comma list of test sets under --data (never used for a choice)")
    p.add_argument("--retrieve-by", default="speech,text")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--items", default="text", help="text | speech | text+speech")
    p.add_argument("--text-pooling", default="tokens")
    p.add_argument("--layers", default="all", help="'all' or decoder layer ids, e.g. 0,-1")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--train-limit", type=int, default=0,
                   help="train on the first N training utterances (0: all)")
    p.add_argument("--adapter-data", default="train", choices=["train", "store"],
                   help="what the adapters learn on: the training split, or the store split "
                        "(held out from the speech LLM's training; self-excluded retrieval)")
    p.add_argument("--train-store", default="train+store", choices=["train", "train+store"],
                   help="what training queries retrieve from (themselves excluded)")
    p.add_argument("--sentence-encoder", default="minilm-l6")
    p.add_argument("--speech-key", default="zmean", choices=["mean", "zmean"],
                   help="mean-pooled states, plain or z-scored with the store's statistics")
    p.add_argument("--oracle", action="store_true",
                   help="also the own-transcript upper bound (a diagnostic)")
    p.add_argument("--systems", default="xattn,icl",
                   help="comma list of xattn (cross-attention), icl (in-context prefix), "
                        "icl_tuned (in-context after LLM fine-tuning, --icl-epochs)")
    p.add_argument("--icl-epochs", type=int, default=1,
                   help="epochs of LLM fine-tuning on in-context prompts (icl_tuned)")
    p.add_argument("--icl-lr", type=float, default=5e-4)
    p.add_argument("--ctc-weight", type=float, default=None,
                   help="also decode the cross-attention systems jointly with the CTC head "
                        "at this weight (default: the model dir's decode.yaml, written by "
                        "local/evaluate.py; 0: no)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args()
    out, data = Path(a.out), Path(a.data)
    out.mkdir(parents=True, exist_ok=True)
    model = SpeechLLM.load(a.model_dir, with_encoder=False)
    ctc_weight = a.ctc_weight
    if ctc_weight is None:  # the weight local/evaluate.py tuned on dev, if any
        from speechlm.asr.decode_config import model_defaults

        decode_yaml = Path(a.model_dir) / "decode.yaml"
        ctc_weight = (model_defaults(decode_yaml).get("ctc_weight") or 0.0
                      if decode_yaml.is_file() else 0.0)
    if model.ctc_head is None:
        ctc_weight = 0.0
    evals = ("dev", *a.test_sets.split(","))
    sets = load_sets(model, data, Path(a.feats_dir), out, a.train_limit,
                     tuple(n for n in evals if n not in SETS))
    ents = {n: entities_of(data / "local", n) for n in evals}
    texts = {u: t for n in sets for u, t in sets[n][2].items()}
    speech_vec = {u: mean_pool(f) for n in sets for u, f in zip(sets[n][0], sets[n][1],
                                                                   strict=True)}
    res: dict = {"systems": {}, "retrieval": {}, "train": {}, "args": vars(a)}

    def record(system: str, name: str, hyps: dict, extra: dict | None = None) -> None:
        utts, _, refs = sets[name]
        m = {**metrics(refs, hyps, ents[name]), **(extra or {})}
        res["systems"].setdefault(system, {})[name] = m
        (out / f"hyp_{system}_{name}.txt").write_text(
            "".join(f"{u} {hyps.get(u, '')}\n" for u in utts))
        print(f"{system:28s} {name:5s} {json.dumps(m)}", file=sys.stderr, flush=True)

    # 1. first pass: the plain speech LLM (baseline row, text-retrieval queries)
    fit = a.adapter_data  # the utterances the adapters (and the tuned in-context LLM) learn on
    qsets = {"train": fit, **{n: n for n in evals}}  # query group -> data set
    fp = {n: first_pass(model, n, sets[n][0], sets[n][1], out) for n in (fit, *evals)}
    for n in evals:
        record("speech_llm", n, fp[n]["hyps"])

    # 2. neighbours: evaluation from the store, training from train (+ store), self excluded
    train_pool = [fit] + (["store"] if a.train_store == "train+store" and fit == "train" else [])
    kinds = a.retrieve_by.split(",")
    if a.oracle and "speech" not in kinds:
        kinds.insert(0, "speech")  # the oracle fills its lists from speech neighbours
    pool_ids = {"eval": list(sets["store"][0]),
                "train": [u for n in train_pool for u in sets[n][0]]}
    keys, queries = {}, {}
    keys["speech"] = {g: np.stack([speech_vec[u] for u in ids]) for g, ids in pool_ids.items()}
    queries["speech"] = {n: np.stack([speech_vec[u] for u in sets[s][0]])
                         for n, s in qsets.items()}
    if "text" in kinds:
        from speechlm.encoders.sentence import SentenceEncoder

        enc = SentenceEncoder(a.sentence_encoder)
        keys["text"] = {g: enc.embed([texts[u] for u in ids]) for g, ids in pool_ids.items()}
        queries["text"] = {n: enc.embed([fp[s]["hyps"][u] for u in sets[s][0]])
                           for n, s in qsets.items()}
    neighbours = {}
    for kind in kinds:
        z = kind == "speech" and a.speech_key == "zmean"
        idx = {g: NeighbourIndex(keys[kind][g], ids, standardise=z)
               for g, ids in pool_ids.items()}
        neighbours[kind] = {
            "train": idx["train"].search(queries[kind]["train"], a.k, exclude=sets[fit][0]),
            **{n: idx["eval"].search(queries[kind][n], a.k) for n in evals}}
        tr = neighbours[kind]["train"]
        res["retrieval"][kind] = {
            **{f"{n}_entity_recall": entity_recall(neighbours[kind][n], sets[n][0], texts,
                                                   ents[n]) for n in evals},
            "train_top1_same_text": round(100.0 * np.mean([
                texts[ids[0]] == texts[u] for u, ids in zip(sets[fit][0], tr, strict=True)
            ]), 2)}
        print(f"retrieval {kind}: {res['retrieval'][kind]}", file=sys.stderr, flush=True)
    if a.oracle:
        rng = np.random.default_rng(0)
        neighbours["oracle"] = {}
        for n, near in neighbours["speech"].items():
            rows = []
            for u, ids in zip(sets[qsets[n]][0], near, strict=True):
                row = [i for i in ids if i != u][: a.k - 1]
                row.insert(int(rng.integers(len(row) + 1)), u)
                rows.append(row)
            neighbours["oracle"][n] = rows
        kinds.append("oracle")

    # 3. cross-attention adapters, trained per retrieval kind
    store = ItemStore(texts, speech_vec)
    n_layers = model.llm.model.config.num_hidden_layers
    layers = tuple(range(n_layers)) if a.layers == "all" else \
        tuple(int(x) for x in a.layers.split(","))
    train_utts, train_feats, train_refs = sets[fit]
    systems = a.systems.split(",")
    for kind in kinds if "xattn" in systems else []:
        config = RetrievalAugmentConfig(
            retrieve_by="speech" if kind == "oracle" else kind, k=a.k, items=a.items,
            text_pooling=a.text_pooling, layers=layers,
            speech_dim=int(train_feats[0].shape[1]), epochs=a.epochs, batch_size=a.batch_size,
            lr=a.lr)
        mdir, stamp_file = out / f"xattn_{kind}", out / f"xattn_{kind}.stamp"
        # what the adapters were trained from: settings, training utterances, neighbours
        stamp = hashlib.sha256(json.dumps([config.to_dict(), train_utts,
                                           neighbours[kind]["train"]]).encode()).hexdigest()
        xa = None
        if (mdir / "cross_attention.json").is_file() and stamp_file.is_file() \
                and stamp_file.read_text() == stamp:
            try:
                xa = CrossAttentionSpeechLLM.load(mdir, model)
            except ValueError as e:  # another speech LLM: retrain
                print(f"retraining {mdir}: {e}", file=sys.stderr)
        if xa is None:
            xa = train_cross_attention(model, train_feats, [train_refs[u] for u in train_utts],
                                       neighbours[kind]["train"], store, mdir, config,
                                       progress=not a.no_progress)
            stamp_file.write_text(stamp)
        res["train"][kind] = json.loads((mdir / "train_report.json").read_text())
        for n in evals:
            start = time.perf_counter()
            hyps = xa.transcribe_features(sets[n][1], neighbours[kind][n], store)
            record(f"speech_llm+xattn_{kind}", n, dict(zip(sets[n][0], hyps, strict=True)),
                   {"seconds": round(time.perf_counter() - start, 2), "k": a.k})
            if ctc_weight > 0:  # the same adapters under joint CTC decoding
                start = time.perf_counter()
                hyps = xa.transcribe_features(sets[n][1], neighbours[kind][n], store,
                                              ctc_weight=ctc_weight)
                record(f"speech_llm+ctc+xattn_{kind}", n,
                       dict(zip(sets[n][0], hyps, strict=True)),
                       {"seconds": round(time.perf_counter() - start, 2), "k": a.k,
                        "ctc_weight": ctc_weight})
        xa.close()

    def in_context(speech_llm: SpeechLLM, system: str, kind: str) -> None:
        """Decode every evaluation set with ``kind``'s retrieved texts as the prefix."""
        for n in evals:
            start = time.perf_counter()
            hyps = transcribe_in_context(speech_llm, sets[n][1],
                                         [[texts[i] for i in ids] for ids in neighbours[kind][n]])
            record(f"{system}_{kind}", n, dict(zip(sets[n][0], hyps, strict=True)),
                   {"seconds": round(time.perf_counter() - start, 2), "k": a.k})

    # 4. the in-context prefix (no new weights)
    for kind in kinds if "icl" in systems else []:
        in_context(model, "speech_llm+icl", kind)

    # 5. the in-context prefix after fine-tuning the LLM on such prompts (a fresh copy of the
    # speech LLM per kind: the tuning changes its LLM in place; the tuned LLM is not kept)
    for kind in kinds if "icl_tuned" in systems else []:
        tuned = SpeechLLM.load(a.model_dir, with_encoder=False)
        report = fit_in_context(tuned, train_feats, [train_refs[u] for u in train_utts],
                                [[texts[i] for i in ids] for ids in neighbours[kind]["train"]],
                                epochs=a.icl_epochs, batch_size=a.batch_size, lr=a.icl_lr,
                                progress=not a.no_progress)
        res["train"][f"icl_{kind}"] = report
        print(f"in-context training ({kind}): {report}", file=sys.stderr, flush=True)
        in_context(tuned, "speech_llm+icl_tuned", kind)
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out / 'results.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
