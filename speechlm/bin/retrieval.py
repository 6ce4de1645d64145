"""kNN-LM datastores: build one from a Kaldi data dir (text or speech keys), or time FAISS.

    speechlm retrieval build --data-dir data/store --keys text --llm smollm2-135m-instruct \
        --out exp/store_text [--index flat|ivf|ivfpq] [--nlist N] [--pq-m M] [--nprobe P]
    speechlm retrieval build --data-dir data/store --keys speech --model-dir exp/speech_llm \
        --out exp/store_speech
    speechlm retrieval bench --sizes 10000,100000,1000000 --out exp/bench.json

Text keys need only the data dir's ``text``; speech keys run the speech-prefix LLM of
``--model-dir`` over the audio (encoder states cached in ``--feats-dir``). With
``--model-dir`` text keys use that model's LLM. The store is written to a temporary
sibling and renamed when complete; ``datastore.json`` records the config, the fingerprint
(LLM and key type), the build time and the size. ``bench`` builds stores of random keys
and times k-NN queries (flat vs IVF vs IVF-PQ).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from speechlm.bin import command_main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="build a datastore from a data dir")
    b.add_argument("--data-dir", required=True, help="Kaldi data dir (text; audio for speech)")
    b.add_argument("--keys", choices=("text", "speech"), required=True)
    b.add_argument("--llm", default=None, help="runtime LLM for text keys (catalogue name or "
                   "local checkpoint)")
    b.add_argument("--model-dir", default=None, help="speech-llm model dir (speech keys; "
                   "its LLM for text keys)")
    b.add_argument("--feats-dir", default=None, help="encoder-state cache (speech keys)")
    b.add_argument("--out", required=True)
    b.add_argument("--overwrite", action="store_true")
    _index_args(b)
    t = sub.add_parser("bench", help="query latency and size vs store size, random keys")
    t.add_argument("--sizes", default="10000,100000,1000000")
    t.add_argument("--dim", type=int, default=576)
    t.add_argument("--k", type=int, default=8)
    t.add_argument("--queries", type=int, default=256)
    t.add_argument("--indexes", default="flat,ivf,ivfpq")
    t.add_argument("--work-dir", required=True, help="stores are written (and removed) here")
    t.add_argument("--out", required=True, help="JSON results")
    t.add_argument("--nprobe", type=int, default=8)
    t.add_argument("--pq-m", type=int, default=16)


def _index_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", choices=("flat", "ivf", "ivfpq"), default="flat")
    p.add_argument("--nlist", type=int, default=0, help="IVF cells (0: 4 sqrt(N))")
    p.add_argument("--pq-m", type=int, default=16, help="IVF-PQ sub-quantisers")
    p.add_argument("--nprobe", type=int, default=8, help="IVF cells searched per query")


def _build(args: argparse.Namespace) -> int:
    from speechlm.data.kaldi_dir import read_data_dir
    from speechlm.llm.retrieval import DatastoreConfig, build_datastore
    from speechlm.llm.retrieval.keys import speech_keys, text_keys

    config = DatastoreConfig(index=args.index, nlist=args.nlist, pq_m=args.pq_m,
                             nprobe=args.nprobe)
    start = time.perf_counter()
    if args.keys == "speech" or args.model_dir:
        if not args.model_dir:
            raise ValueError("--keys speech needs --model-dir (a speech-llm model dir)")
        from speechlm.llm.speech_llm import SpeechLLM, data_dir_features

        model = SpeechLLM.load(args.model_dir, with_encoder=False)
    if args.keys == "speech":
        feats_dir = Path(args.feats_dir) if args.feats_dir else Path(args.out).parent / "feats"
        cache = feats_dir / f"{Path(args.data_dir).name}.{model.config.encoder}.npz"
        utts, feats, texts = data_dir_features(args.data_dir, model.config.encoder, cache)
        missing = [u for u in utts if u not in texts]
        if missing:
            raise ValueError(f"{args.data_dir}: no text for {missing[0]} (and "
                             f"{len(missing) - 1} more)")
        keys, values, names, fp = speech_keys(model, feats, [texts[u] for u in utts], utts)
        source = {"model_dir": str(args.model_dir)}
    else:
        d = read_data_dir(args.data_dir)
        if not d.text:
            raise ValueError(f"{args.data_dir}: no text file: text keys need transcripts")
        if args.model_dir:
            llm, source = model.llm, {"model_dir": str(args.model_dir)}
        else:
            if not args.llm:
                raise ValueError("--keys text needs --llm or --model-dir")
            from speechlm.runtime import LLM

            llm, source = LLM.from_pretrained(args.llm), {"llm": args.llm}
        utts = sorted(d.text)
        keys, values, names, fp = text_keys(llm, [d.text[u] for u in utts], utts)
    key_s = time.perf_counter() - start
    store = build_datastore(keys, values, args.out, fingerprint=fp, config=config,
                            names=names, overwrite=args.overwrite,
                            info={"data_dir": str(args.data_dir), "keys": args.keys,
                                  "utterances": len(utts), "key_extraction_s": round(key_s, 2),
                                  **source})
    print(json.dumps({k: store.meta[k] for k in ("fingerprint", "num_keys", "dim", "build_s",
                                                 "bytes")}))
    return 0


def _bench(args: argparse.Namespace) -> int:
    import shutil

    import numpy as np

    from speechlm.llm.retrieval import Datastore, DatastoreConfig, build_datastore

    rng = np.random.default_rng(0)
    work = Path(args.work_dir)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        # clustered random keys (real hidden states are far from uniform)
        centres = rng.standard_normal((256, args.dim)).astype(np.float32)
        keys = centres[rng.integers(0, 256, n)]
        keys += 0.3 * rng.standard_normal(keys.shape, dtype=np.float32)
        values = rng.integers(0, 49152, n)
        queries = keys[rng.integers(0, n, args.queries)] + 0.1 * rng.standard_normal(
            (args.queries, args.dim), dtype=np.float32)
        for kind in args.indexes.split(","):
            out = work / f"bench_{kind}_{n}"
            # nlist capped: k-means over 4 sqrt(N) cells of 1M keys takes too long here
            nlist = min(1024, max(1, int(4 * n ** 0.5)))
            cfg = DatastoreConfig(index=kind, nprobe=args.nprobe, pq_m=args.pq_m,
                                  nlist=0 if kind == "flat" else nlist)
            build_datastore(keys, values, out, fingerprint="bench", config=cfg, overwrite=True)
            store = Datastore.load(out)
            store.search(queries[:8], args.k)  # page in, warm up
            t = time.perf_counter()
            for q in queries:  # one query per decoded token, as in greedy decoding
                store.search(q[None], args.k)
            per_query = (time.perf_counter() - t) / len(queries)
            exact = None
            if kind != "flat":
                ref = Datastore.load(work / f"bench_flat_{n}") if (
                    work / f"bench_flat_{n}").exists() else None
                if ref is not None:
                    a = ref.index.search(queries, 1)[1][:, 0]
                    b = store.index.search(queries, 1)[1][:, 0]
                    exact = float((a == b).mean())
            rows.append({"num_keys": n, "index": kind, "build_s": store.meta["build_s"],
                         "bytes": store.meta["bytes"],
                         "bytes_per_million": round(store.meta["bytes"] * 1e6 / n),
                         "query_ms": round(per_query * 1e3, 3), "recall_at_1": exact})
            print(json.dumps(rows[-1]), flush=True)
        del keys
        for kind in args.indexes.split(","):
            shutil.rmtree(work / f"bench_{kind}_{n}", ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    from speechlm.core.machine import machine_summary

    Path(args.out).write_text(json.dumps({"dim": args.dim, "k": args.k, "rows": rows,
                                          "machine": machine_summary()}, indent=1) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    return _build(args) if args.action == "build" else _bench(args)


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm retrieval", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
