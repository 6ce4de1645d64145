#!/usr/bin/env python3
"""Stage 5: the speech-prefix LLM with and without kNN-LM retrieval, and N-best rescoring.

Greedy decoding of dev and test with the speech-prefix LLM (and, when it has a CTC head, the
CTC best path of its projected prefix alone): plain, + kNN-LM over the text-key
store, + kNN-LM over the speech-key store (lambda, k, T swept on dev, the best applied to
test). N-best rescoring of Whisper's 5-best: Whisper score + llm_scale * ln p(text) from the
LLM (plain / + text-key kNN) and from the speech-prefix LLM (plain / + speech-key kNN),
swept on dev. WER and entity error rate (a reference entity is an error when its words are
not a contiguous run of the hypothesis), decoding time per token.

Writes OUT/results.json (every setting) and OUT/hyp_<system>_<set>.txt.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from speechlm.core.nbest_jsonl import read_nbest_jsonl
from speechlm.core.wer import ErrorStats
from speechlm.llm.retrieval import Datastore
from speechlm.llm.retrieval.keys import llm_fingerprint
from speechlm.llm.speech_llm import SpeechLLM, data_dir_features
from speechlm.runtime.retrieval import KNNLogitsProcessor


def entities_of(local: Path, name: str) -> dict[str, list[str]]:
    """Entities per sentence id of set ``name``; a set read by another voice
    (``test_piper``) has its sentences' annotations (``local/test.jsonl``)."""
    out = {}
    for line in (local / f"{name.split('_', 1)[0]}.jsonl").read_text().splitlines():
        r = json.loads(line)
        out[r["id"]] = r["entities"]
    return out


def metrics(refs: dict[str, str], hyps: dict[str, str], ents: dict[str, list[str]]) -> dict:
    stats, miss, total = ErrorStats(), 0, 0
    for utt, ref in refs.items():
        hyp = hyps.get(utt, "")
        stats.add(ref.split(), hyp.split(), utt)
        padded = f" {' '.join(hyp.split())} "
        for e in ents.get(utt.rsplit("-", 1)[-1], []):
            total += 1
            miss += f" {e} " not in padded
    return {"wer": round(stats.wer, 2), "eer": round(100.0 * miss / max(total, 1), 2),
            "words": stats.ref_words, "entities": total}


def decode(model: SpeechLLM, utts, feats, knn=None, batch: int = 8,
           ctc_weight: float = 0.0) -> tuple[dict, dict]:
    hyps, start, tokens = {}, time.perf_counter(), 0
    for s in range(0, len(utts), batch):
        texts = model.transcribe_features(feats[s : s + batch], logits_processor=knn,
                                          ctc_weight=ctc_weight)
        for u, t in zip(utts[s : s + batch], texts, strict=True):
            hyps[u] = t
            tokens += len(model.target_ids(t)) + 1 if t else 1
    sec = time.perf_counter() - start
    return hyps, {"seconds": round(sec, 2), "ms_per_token": round(1e3 * sec / tokens, 2)}


def rescore(nbest, scorer, scales) -> dict[str, dict[str, str]]:
    """``scale -> utt -> best text`` with tot = whisper score + scale * scorer(utt, texts)."""
    llm_scores = {u: scorer(u, [h.text for h in hs]) for u, hs in nbest.items() if hs}
    out = {}
    for s in scales:
        out[s] = {u: max(zip(hs, llm_scores[u], strict=True),
                         key=lambda p: p[0].score + s * p[1])[0].text
                  for u, hs in nbest.items() if hs}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", required=True)
    p.add_argument("--text-store", required=True)
    p.add_argument("--speech-store", required=True)
    p.add_argument("--whisper-dir", required=True, help="dir with decode_<set>/nbest.jsonl")
    p.add_argument("--feats-dir", required=True)
    p.add_argument("--data", default="data", help="dir with <set>/ and local/")
    p.add_argument("--out", required=True)
    p.add_argument("--test-sets", default="test",
                   help="comma list of test sets under --data (never used for a choice)")
    p.add_argument("--espnet-dir", default=None,
                   help="the ESPnet baseline's dir with decode_<set>/nbest.jsonl")
    p.add_argument("--lams", default="0.1,0.25,0.5")
    p.add_argument("--ks", default="8,32")
    p.add_argument("--temps", default="1,10")
    p.add_argument("--llm-scales", default="0,0.1,0.3,0.5,1")
    p.add_argument("--ctc-weights", default="0.3,0.5,0.7",
                   help="CTC weights of joint decoding swept on dev (models with a CTC head)")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model = SpeechLLM.load(a.model_dir, with_encoder=False)
    tests = a.test_sets.split(",")
    names = ("dev", *tests)
    sets = {}
    for name in names:
        cache = Path(a.feats_dir) / f"{name}.{model.config.encoder}.npz"
        utts, feats, refs = data_dir_features(f"{a.data}/{name}", model.config.encoder,
                                               cache)
        sets[name] = (utts, [f.astype(np.float32) for f in feats], refs,
                      entities_of(Path(a.data) / "local", name))
    stores = {
        "text": Datastore.load(a.text_store,
                               expect_fingerprint=f"text|{llm_fingerprint(model.llm)}"),
        "speech": Datastore.load(a.speech_store,
                                 expect_fingerprint=f"speech|{model.fingerprint()}"),
    }
    res: dict = {"stores": {k: v.meta for k, v in stores.items()}, "systems": {}}
    # the control: test utterances with an entity that the store's text holds (where
    # retrieval can help) vs those without one (where it must not hurt)
    store_text = " " + " ".join(
        line.split(" ", 1)[1] for line in
        (Path(a.data) / "local" / "store.text").read_text().splitlines() if " " in line) + " "
    subsets = {}
    for name in tests:
        _, _, test_refs, test_ents = sets[name]
        in_store = {u for u in test_refs if any(
            f" {e} " in store_text for e in test_ents.get(u.rsplit("-", 1)[-1], []))}
        subsets[name] = {"test_in_store": in_store, "test_control": set(test_refs) - in_store}

    def record(system: str, name: str, hyps: dict, extra: dict | None = None) -> dict:
        utts, _, refs, ents = sets[name]
        m = {**metrics(refs, hyps, ents), **(extra or {})}
        if name in subsets:
            for sub, keep in subsets[name].items():
                m[sub] = {**metrics({u: r for u, r in refs.items() if u in keep}, hyps, ents),
                          "utts": len(keep)}
        res["systems"].setdefault(system, {})[name] = m
        (out / f"hyp_{system}_{name}.txt").write_text(
            "".join(f"{u} {hyps.get(u, '')}\n" for u in utts))
        print(f"{system:32s} {name:5s} {json.dumps(m)}", file=sys.stderr, flush=True)
        return m

    # 1. speech-prefix LLM, plain
    for name in names:
        utts, feats, _, _ = sets[name]
        hyps, t = decode(model, utts, feats)
        record("speech_llm", name, hyps, t)
        if model.ctc_head is not None:  # what the prefix carries, read without the LLM
            record("speech_llm_ctc", name,
                   dict(zip(utts, model.ctc_transcribe_features(feats), strict=True)))
    # 2. + kNN-LM, swept on dev
    grid = list(itertools.product([float(x) for x in a.lams.split(",")],
                                  [int(x) for x in a.ks.split(",")],
                                  [float(x) for x in a.temps.split(",")]))
    res["sweeps"] = {}
    for key in ("text", "speech"):
        sweep = []
        utts, feats, refs, ents = sets["dev"]
        for lam, k, temp in grid:
            knn = KNNLogitsProcessor(stores[key], lam=lam, k=k, temperature=temp)
            hyps, _ = decode(model, utts, feats, knn)
            sweep.append({"lam": lam, "k": k, "T": temp, **metrics(refs, hyps, ents)})
        res["sweeps"][f"knn_{key}"] = sweep
        best = min(sweep, key=lambda r: (r["wer"], r["eer"]))
        knn = KNNLogitsProcessor(stores[key], lam=best["lam"], k=best["k"],
                                 temperature=best["T"])
        for name in names:
            utts, feats, _, _ = sets[name]
            hyps, t = decode(model, utts, feats, knn)
            record(f"speech_llm+knn_{key}", name, hyps,
                   {**t, "lam": best["lam"], "k": best["k"], "T": best["T"]})
    # 2b. joint CTC / LLM decoding (CTC prefix scores of the projector's CTC head), the CTC
    # weight swept on dev, then with each store's best kNN setting on top
    if model.ctc_head is not None:
        utts, feats, refs, ents = sets["dev"]
        sweep = []
        for w in [float(x) for x in a.ctc_weights.split(",")]:
            hyps, _ = decode(model, utts, feats, ctc_weight=w)
            sweep.append({"ctc_weight": w, **metrics(refs, hyps, ents)})
        res["sweeps"]["ctc_joint"] = sweep
        w = min(sweep, key=lambda r: (r["wer"], r["eer"]))["ctc_weight"]
        # the tuned weight travels with the model: `speechlm decode --backend speech-llm`
        # reads it from the model dir's decode.yaml (ESPnet's convention)
        (Path(a.model_dir) / "decode.yaml").write_text(
            f"# written by local/evaluate.py: the CTC weight with the lowest dev WER\n"
            f"ctc_weight: {w}\n")
        for key in (None, "text", "speech"):
            knn, extra = None, {"ctc_weight": w}
            if key is not None:
                b = res["systems"][f"speech_llm+knn_{key}"]["dev"]
                knn = KNNLogitsProcessor(stores[key], lam=b["lam"], k=b["k"], temperature=b["T"])
                extra.update(lam=b["lam"], k=b["k"], T=b["T"])
            for name in names:
                utts, feats, _, _ = sets[name]
                hyps, t = decode(model, utts, feats, knn, ctc_weight=w)
                record("speech_llm+ctc" + (f"+knn_{key}" if key else ""), name, hyps,
                       {**t, **extra})
    # 3. Whisper 5-best and its rescoring
    scales = [float(x) for x in a.llm_scales.split(",")]
    nbests = {n: read_nbest_jsonl(Path(a.whisper_dir) / f"decode_{n}" / "nbest.jsonl")
              for n in names}
    for name in names:
        record("whisper", name, {u: hs[0].text for u, hs in nbests[name].items() if hs})
    feats_of = {n: dict(zip(sets[n][0], sets[n][1], strict=True)) for n in sets}
    lam_best = {key: res["systems"][f"speech_llm+knn_{key}"]["dev"] for key in stores}

    def lm_scorer(knn):
        return lambda u, texts: model.llm.score([" " + t for t in texts], append_eos=True,
                                                logits_processor=knn)

    def slm_scorer(name, knn):
        return lambda u, texts: model.score_features(feats_of[name][u], texts,
                                                     logits_processor=knn)

    def knn_for(key):
        b = lam_best[key]
        return KNNLogitsProcessor(stores[key], lam=b["lam"], k=b["k"], temperature=b["T"])

    scorers = {
        "whisper+lm": lambda n: lm_scorer(None),
        "whisper+lm+knn_text": lambda n: lm_scorer(knn_for("text")),
        "whisper+speech_llm": lambda n: slm_scorer(n, None),
        "whisper+speech_llm+knn_speech": lambda n: slm_scorer(n, knn_for("speech")),
    }
    for system, make in scorers.items():
        _, _, refs, ents = sets["dev"]
        by_scale = rescore(nbests["dev"], make("dev"), scales)
        dev_rows = {s: metrics(refs, h, ents) for s, h in by_scale.items()}
        res["sweeps"][system] = {f"llm_scale_{s}": m for s, m in dev_rows.items()}
        best = min(scales, key=lambda s: (dev_rows[s]["wer"], dev_rows[s]["eer"]))
        record(system, "dev", by_scale[best], {"llm_scale": best})
        for name in tests:
            test = rescore(nbests[name], make(name), [best])[best]
            record(system, name, test, {"llm_scale": best})
    # 4. the ESPnet baseline (conformer CTC/attention, ESPnet beam search), 1-best
    if a.espnet_dir:
        for name in names:
            nb = read_nbest_jsonl(Path(a.espnet_dir) / f"decode_{name}" / "nbest.jsonl")
            record("espnet", name, {u: hs[0].text for u, hs in nb.items() if hs})
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
