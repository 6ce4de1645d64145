"""The embedding cache: hits are bit-identical and computed once, writes are atomic."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from speechlm.encoders import CachedEncoder, Encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Counting(Encoder):
    """Delegates to a real encoder and counts the items it was asked to embed."""

    def __init__(self, inner: Encoder, fingerprint: str | None = None) -> None:
        self.inner, self.kind, self.name, self.dim = inner, inner.kind, inner.name, inner.dim
        self.fingerprint = fingerprint or inner.fingerprint
        self.computed: list = []

    def content(self, item):
        return self.inner.content(item)

    def embed(self, items):
        self.computed += list(items)
        return self.inner.embed(items)


SENTS = ["set an alarm for six", "what's the time", "play jazz", "lights off please"]


def test_hits_are_identical_and_not_recomputed(minilm, tmp_path):
    counting = Counting(minilm)
    cache = CachedEncoder(counting, tmp_path)
    first = cache.embed(SENTS)
    assert counting.computed == SENTS and (cache.hits, cache.misses) == (0, 4)
    np.testing.assert_array_equal(first, minilm.embed(SENTS))
    again = cache.embed(SENTS[::-1])
    np.testing.assert_array_equal(again, first[::-1])  # bit-identical, in the asked order
    assert counting.computed == SENTS and cache.hits == 4
    # A new process (a fresh wrapper on the same dir) resumes: only new items are computed.
    counting2 = Counting(minilm)
    mixed = CachedEncoder(counting2, tmp_path).embed(["new one", SENTS[0], "new one"])
    assert counting2.computed == ["new one"]  # duplicates within a call computed once
    np.testing.assert_array_equal(mixed[1], first[0])
    np.testing.assert_array_equal(mixed[0], mixed[2])
    assert not list(tmp_path.rglob("*.tmp"))
    assert len(list(tmp_path.rglob("*.npy"))) == 5


def test_keys_depend_on_model_and_content(minilm, tmp_path):
    a = CachedEncoder(Counting(minilm), tmp_path)
    b = CachedEncoder(Counting(minilm, fingerprint="other-weights"), tmp_path)
    assert a.key("play jazz") != b.key("play jazz")
    assert a.key("play jazz") != a.key("play jazz ")
    assert a.key("play jazz") == CachedEncoder(minilm, tmp_path / "x").key("play jazz")


def test_corrupt_file_is_recomputed(minilm, tmp_path):
    counting = Counting(minilm)
    cache = CachedEncoder(counting, tmp_path)
    good = cache.embed(SENTS[:2])
    path = cache._path(cache.key(SENTS[1]))
    path.write_bytes(b"\x93NUMPY truncated")
    np.testing.assert_array_equal(cache.embed(SENTS[:2]), good)
    assert counting.computed == SENTS[:2] + [SENTS[1]]
    np.save(path, np.zeros(7, np.float32))  # wrong shape: also recomputed
    np.testing.assert_array_equal(cache.embed(SENTS[1:2]), good[1:])


def test_concurrent_writers(minilm, tmp_path):
    """Threads filling the same cache at once: every result right, no partial files."""
    expected = minilm.embed(SENTS)
    results, errors = {}, []

    def work(i):
        try:
            results[i] = CachedEncoder(minilm, tmp_path).embed(SENTS)
        except Exception as e:  # noqa: BLE001 - reported below with the thread
            errors.append((i, e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for out in results.values():
        np.testing.assert_allclose(out, expected, atol=1e-6)
    files = list(tmp_path.rglob("*"))
    assert not [f for f in files if f.name.endswith(".tmp")]
    assert len([f for f in files if f.suffix == ".npy"]) == 4
    assert all(os.path.getsize(f) > 0 for f in files if f.is_file())


def test_speaker_cache_keys_on_file_content(speaker_encoder, fsdd_takes, tmp_path):
    src = fsdd_takes["george"][1]
    copy = tmp_path / "moved.wav"
    copy.write_bytes(src.read_bytes())
    counting = Counting(speaker_encoder)
    cache = CachedEncoder(counting, tmp_path / "cache")
    a, b = cache.embed([src, copy])
    assert counting.computed == [src]  # same bytes under another path: one computation
    np.testing.assert_array_equal(a, b)


def test_load_encoder_cache_defaults_to_the_catalogue_cache_dir(monkeypatch, tmp_path):
    from speechlm.encoders import load_encoder

    monkeypatch.setenv("SPEECHLM_CACHE", str(tmp_path))
    enc = load_encoder("resemblyzer", cache=True)
    assert isinstance(enc, CachedEncoder) and enc.dir == tmp_path / "embeddings" / "resemblyzer"
    other = load_encoder("resemblyzer", cache=tmp_path / "mine")
    assert other.dir == tmp_path / "mine" / "resemblyzer" and other.dim == 256
