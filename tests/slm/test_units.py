"""Units: k-means determinism, encoder fingerprint, unit files, the unit tokenizer."""
from __future__ import annotations

import numpy as np
import pytest

from speechlm.slm.units import (
    KMeansUnits,
    UnitError,
    dedup,
    read_units,
    text_to_units,
    unit_tokenizer,
    units_to_text,
    write_units,
)


def _feats(seed: int = 0, n: int = 600, dim: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(5, dim))
    return (centres[rng.integers(0, 5, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def test_kmeans_is_deterministic_on_a_fixed_seed():
    a = KMeansUnits.fit(_feats(), 5, encoder_fingerprint="enc", seed=3)
    b = KMeansUnits.fit(_feats(), 5, encoder_fingerprint="enc", seed=3)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.assign(_feats(1)).tolist() == b.assign(_feats(1)).tolist()
    c = KMeansUnits.fit(_feats(), 5, encoder_fingerprint="enc", seed=4)
    assert not np.array_equal(a.centroids, c.centroids)


def test_assign_picks_the_nearest_centroid():
    km = KMeansUnits(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32), "enc")
    x = np.array([[9.0, 1.0], [1.0, 1.0], [0.0, 8.0], [1.0, 0.5]], np.float32)
    assert km.assign(x).tolist() == [1, 0, 2, 0]
    assert km.units(x, "enc") == [1, 0, 2, 0]
    assert km.units(np.repeat(x, 3, axis=0), "enc") == [1, 0, 2, 0]  # runs collapse


def test_save_load_roundtrip_and_encoder_mismatch_refused(tmp_path):
    km = KMeansUnits.fit(_feats(), 4, encoder_fingerprint="whisper:abc", seed=0)
    km.save(tmp_path / "km")
    back = KMeansUnits.load(tmp_path / "km")
    np.testing.assert_array_equal(back.centroids, km.centroids)
    assert back.num_frames == 600
    with pytest.raises(UnitError, match="refit"):
        back.units(_feats(2)[:10], "whisper:other")
    with pytest.raises(UnitError, match="not a k-means dir"):
        KMeansUnits.load(tmp_path)


def test_dedup():
    assert dedup([]) == []
    assert dedup([1, 1, 1]) == [1]
    assert dedup([2, 1, 1, 2, 2]) == [2, 1, 2]


def test_unit_file_roundtrip_and_range_check(tmp_path):
    path = tmp_path / "units"
    write_units(path, {"b": [3, 1], "a": [0, 4, 2]})
    assert path.read_text() == "a 0 4 2\nb 3 1\n"
    assert read_units(path, 5) == {"a": [0, 4, 2], "b": [3, 1]}
    with pytest.raises(UnitError, match=r"units:1 \(utterance a\): unit 1 is 4, out of range"):
        read_units(path, 4)
    path.write_text("a 1 x\n")
    with pytest.raises(UnitError, match="utterance a.*integers"):
        read_units(path, 4)
    path.write_text("a\n")
    with pytest.raises(UnitError, match="no units"):
        read_units(path, 4)
    with pytest.raises(UnitError, match="out of range"):
        text_to_units("u1 u9", 5)
    with pytest.raises(UnitError, match="not a unit"):
        text_to_units("u1 hello", 5)


def test_unit_tokenizer_one_token_per_unit():
    tok = unit_tokenizer(10)
    ids = tok(units_to_text([0, 9, 3]))["input_ids"]
    assert ids == [tok.bos_token_id, 4, 13, 7]
    assert tok(" u1 u2</s>", add_special_tokens=False)["input_ids"] == [5, 6, tok.eos_token_id]
    assert tok.decode([4, 13, 7]) == "u0 u9 u3"
