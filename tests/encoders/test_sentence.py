"""Sentence encoders: paraphrases, batching, and parity with a plain transformers forward."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from speechlm.core import catalogue
from speechlm.encoders import EncoderError, load_encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# (anchor, paraphrase, unrelated)
TRIPLES = [
    ("turn on the kitchen lights", "switch the lights in the kitchen on",
     "what will the weather be in paris tomorrow"),
    ("wake me up at seven tomorrow", "set an alarm for 7 am tomorrow morning",
     "play the latest album by the beatles"),
    ("how much is a train ticket to london", "what does a rail fare to london cost",
     "remind me to water the plants"),
]
SENTENCES = [s for t in TRIPLES for s in t] + ["", "ok", "a much longer sentence " * 12]


def _check_paraphrases(enc) -> list[tuple[float, float]]:
    figures = []
    for anchor, para, other in TRIPLES:
        a, p, o = enc.embed([anchor, para, other])
        figures.append((float(a @ p), float(a @ o)))
        assert a @ p > a @ o + 0.2, (enc.name, anchor, figures[-1])
    return figures


def test_minilm_paraphrase_closer_than_unrelated(minilm):
    assert (minilm.name, minilm.dim, minilm.max_length) == ("minilm-l6", 384, 256)
    figures = _check_paraphrases(minilm)
    print("minilm cosines (paraphrase, unrelated):", [tuple(round(x, 3) for x in f)
                                                      for f in figures])


def test_batched_equals_unbatched(minilm):
    batched = minilm.embed(SENTENCES)  # batch_size 2, longest first: padding in most batches
    single = np.stack([minilm.embed([s])[0] for s in SENTENCES])
    assert batched.shape == (len(SENTENCES), 384) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)


def test_minilm_matches_plain_transformers_mean_pooling(minilm):
    """The reference is written out here: mean over the real tokens, then L2."""
    from transformers import AutoModel, AutoTokenizer

    path = catalogue.locate("minilm-l6")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    ref = []
    for s in SENTENCES:
        ids = tok(s, return_tensors="pt", truncation=True, max_length=256)
        with torch.no_grad():
            h = model(**ids).last_hidden_state[0]  # (T, 384), no padding
        v = h.mean(dim=0)
        ref.append((v / v.norm()).numpy())
    np.testing.assert_allclose(minilm.embed(SENTENCES), np.stack(ref), atol=1e-5, rtol=0)


def test_truncates_at_max_length(minilm):
    words = " ".join(f"word{i}" for i in range(400))  # far more than 256 tokens
    ids = minilm.tokenizer(words, truncation=True, max_length=256)["input_ids"]
    cut = minilm.tokenizer.decode(ids[1:-1])
    np.testing.assert_allclose(minilm.embed([words]), minilm.embed([cut]), atol=1e-5)


def test_local_dir_loads_the_same_model(minilm):
    local = load_encoder(catalogue.locate("minilm-l6"))
    assert local.name == str(catalogue.locate("minilm-l6")) and local.dim == 384
    assert local.fingerprint != minilm.fingerprint  # a cache never mixes the two up
    np.testing.assert_allclose(local.embed(SENTENCES[:3]), minilm.embed(SENTENCES[:3]),
                               atol=1e-6)


def test_bad_items_and_names(minilm, tmp_path):
    with pytest.raises(EncoderError, match="item 1 is a bytes"):
        minilm.embed(["fine", b"bytes"])
    with pytest.raises(ValueError, match="resemblyzer, minilm-l6, mpnet-base"):
        load_encoder("minilm-l12")
    with pytest.raises(ValueError, match="tts model, not an encoder"):
        load_encoder("piper-joe")
    (tmp_path / "modules.json").write_text("[]")  # looks like a sentence model, holds none
    with pytest.raises(catalogue.ModelFileError, match="no config.json"):
        load_encoder(tmp_path)


@pytest.mark.slow
def test_mpnet_paraphrase_and_batching():
    if not catalogue.installed("mpnet-base"):
        pytest.skip(catalogue.get("mpnet-base").pip_command)
    enc = load_encoder("mpnet-base", batch_size=2)
    assert (enc.dim, enc.max_length, enc.pooling, enc.normalize) == (768, 384, "mean_tokens",
                                                                      True)
    figures = _check_paraphrases(enc)
    print("mpnet cosines (paraphrase, unrelated):", [tuple(round(x, 3) for x in f)
                                                     for f in figures])
    batched = enc.embed(SENTENCES)
    single = np.stack([enc.embed([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)
