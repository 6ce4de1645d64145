"""kNN-LM datastore: format, fingerprints, bad input, atomic builds; keys from a tiny LLM."""

import json

import numpy as np
import pytest
import torch

from speechlm.llm.retrieval import (
    Datastore,
    DatastoreConfig,
    DatastoreError,
    FingerprintMismatch,
    build_datastore,
)
from speechlm.llm.retrieval.keys import text_keys
from speechlm.runtime.llm import LLM
from speechlm.runtime.retrieval import KNNLogitsProcessor
from speechlm.testing.llm import tiny_config, tiny_tokenizer


def _keys(n=200, d=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, 50, n)


def test_flat_store_round_trip_is_exact_and_memory_mapped(tmp_path):
    keys, values = _keys()
    build_datastore(keys, values, tmp_path / "s", fingerprint="text|llm=a")
    store = Datastore.load(tmp_path / "s", expect_fingerprint="text|llm=a")
    assert isinstance(store.values, np.memmap)
    dist, vals = store.search(torch.from_numpy(keys[[3, 7]]), 2)
    assert vals[:, 0].tolist() == [values[3], values[7]]
    assert dist[:, 0].abs().max() < 1e-4
    meta = json.loads((tmp_path / "s" / "datastore.json").read_text())
    assert meta["num_keys"] == 200 and meta["config"]["index"] == "flat"


@pytest.mark.parametrize("kind", ["ivf", "ivfpq"])
def test_ivf_stores_find_the_stored_key(tmp_path, kind):
    keys, values = _keys(n=2000)
    cfg = DatastoreConfig(index=kind, nlist=8, pq_m=4, nprobe=8)
    build_datastore(keys, values, tmp_path / kind, fingerprint="f", config=cfg)
    store = Datastore.load(tmp_path / kind)
    _, vals = store.search(keys[:50], 1)
    hit = float((vals[:, 0].numpy() == values[:50]).mean())
    assert hit >= (1.0 if kind == "ivf" else 0.6)


def test_fingerprint_mismatch_shows_both(tmp_path):
    keys, values = _keys()
    build_datastore(keys, values, tmp_path / "s", fingerprint="text|llm=aaa")
    with pytest.raises(FingerprintMismatch, match=r"text\|llm=aaa.*speech\|llm=bbb"):
        Datastore.load(tmp_path / "s", expect_fingerprint="speech|llm=bbb")


def test_bad_keys_are_refused(tmp_path):
    with pytest.raises(DatastoreError, match="no keys"):
        build_datastore(np.zeros((0, 4), np.float32), np.zeros(0), tmp_path / "e",
                        fingerprint="f")
    keys, values = _keys(n=10)
    keys[4, 2] = np.nan
    names = [f"utt{i}:0" for i in range(10)]
    with pytest.raises(DatastoreError, match=r"row 4 \(utt4:0\)"):
        build_datastore(keys, values, tmp_path / "n", fingerprint="f", names=names)
    assert not (tmp_path / "n").exists()
    with pytest.raises(DatastoreError, match="at least"):
        build_datastore(*_keys(n=10), tmp_path / "i", fingerprint="f",
                        config=DatastoreConfig(index="ivf", nlist=64))
    build_datastore(*_keys(n=10), tmp_path / "ok", fingerprint="f")
    with pytest.raises(DatastoreError, match="exists"):
        build_datastore(*_keys(n=10), tmp_path / "ok", fingerprint="f")


def test_killed_build_never_loads_and_is_cleaned(tmp_path):
    # what a build killed after writing the index but before datastore.json leaves
    tmp = tmp_path / ".s.tmp-99999"
    tmp.mkdir()
    (tmp / "index.faiss").write_bytes(b"partial")
    with pytest.raises(DatastoreError, match="not a datastore"):
        Datastore.load(tmp_path / "s")
    with pytest.raises(DatastoreError, match="not a datastore"):
        Datastore.load(tmp)
    build_datastore(*_keys(), tmp_path / "s", fingerprint="f")
    assert not tmp.exists() and len(Datastore.load(tmp_path / "s")) == 200


def test_text_keys_drive_the_runtime_knn(tmp_path):
    llm = LLM.from_config(tiny_config("llama"), tiny_tokenizer("llama"), seed=0)
    texts = ["the water is on the side of the house", "one two three four"]
    keys, values, names, fp = text_keys(llm, texts, ["a", "b"])
    n_tokens = sum(len(llm.tokenizer(" " + t, add_special_tokens=False)["input_ids"]) + 1
                   for t in texts)
    assert keys.shape == (n_tokens, 64) and names[0] == "a:0" and fp.startswith("text|llm=")
    store = build_datastore(keys, values, tmp_path / "s", fingerprint=fp)
    knn = KNNLogitsProcessor(store, lam=1.0, k=1)
    res = llm.score([" " + texts[0]], per_token=True, append_eos=True, logits_processor=knn)[0]
    assert max(abs(v) for v in res.token_logprobs) < 1e-4
