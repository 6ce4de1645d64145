import itertools
import json
import math

import numpy as np
import pytest

from speechlm.lattice import Lattice
from speechlm.lattice.confusion_network import (
    ConfusionNetwork,
    ctm,
    read_cn_jsonl,
    write_cn_jsonl,
)
from speechlm.lattice.mbr import mbr_decode
from speechlm.lattice.oracle import edit_distance
from speechlm.testing.lattice import all_paths, lattice_from_text, logsumexp, toy_ctc_decode

# A sausage: three slots with parallel arcs (one slot can be skipped by <eps>).
SAUSAGE = """
    0 1 ten -1.0 -0.2
    0 1 then -1.4 -0.3
    0 1 den -2.5
    1 2 of -0.1
    1 2 <eps> -2.0
    2 3 clubs -0.7
    2 3 cloves -0.9 -0.1
    3
"""


def test_sausage_bins_are_the_slot_posteriors():
    # Without the <eps> arc every path aligns slot by slot. (With it, "den clubs" aligns
    # to "ten of clubs" equally well with "den" in the first or the second bin, and the
    # recursion picks one: bins are then not slots.)
    lat = lattice_from_text(SAUSAGE.replace("1 2 <eps> -2.0", "1 2 if -2.0"), utt="s")
    cn = ConfusionNetwork.from_lattice(lat)
    cn.check()
    post = lat.arc_posteriors()
    want = [{a.word: p for a, p in zip(lat.arcs, post, strict=True) if a.src == slot}
            for slot in range(3)]
    got = [{e.word: e.posterior for e in b} for b in cn.bins]
    assert len(got) == 3
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for k in w:
            assert g[k] == pytest.approx(w[k], abs=1e-5)
    assert cn.mbr_words() == ["ten", "of", "clubs"]
    assert cn.bins[0][0].start == 0.0 and cn.bins[0][0].end == pytest.approx(0.1)


def test_expected_errors_match_brute_force_on_a_sausage():
    # On a sausage the recursion's alignment is exact, so its expected edit distance is
    # the posterior-weighted edit distance of every path to the MBR hypothesis.
    lat = lattice_from_text(SAUSAGE, utt="s")
    st = mbr_decode(lat)
    paths = all_paths(lat)
    total = logsumexp([s for *_, s in paths])
    want = sum(math.exp(s - total) * edit_distance(st.words, w) for _, w, s in paths)
    assert st.expected_errors == pytest.approx(want, abs=1e-3)  # DELTA per insertion
    # The MBR hypothesis beats every other hypothesis in expected errors.
    cands = {w for _, w, _ in paths}
    risk = {c: sum(math.exp(s - total) * edit_distance(c, w) for _, w, s in paths)
            for c in cands}
    assert risk[tuple(st.words)] == pytest.approx(min(risk.values()), abs=1e-9)


def test_mbr_can_differ_from_map():
    # Path "a b" is the single best path (0.4), but "x" is preferred in the first slot
    # by the mass of the two other paths ("x b", "x c").
    lat = lattice_from_text(f"""
        0 1 a {math.log(0.4)}
        0 2 x 0
        2 3 b {math.log(0.3)}
        2 3 c {math.log(0.3)}
        1 3 b 0
        3
    """, utt="m")
    assert lat.best_path().words == ("a", "b")
    cn = ConfusionNetwork.from_lattice(lat)
    assert cn.mbr_words() == ["x", "b"]
    cn.check()


@pytest.mark.parametrize("seed", range(4))
def test_every_bin_sums_to_one_on_decoder_lattices(seed):
    d = toy_ctc_decode(20, seed=seed)
    lat = Lattice.from_kaldi_text(d.raw_text, utt=f"toy{seed}", words=d.words,
                                  frame_shift=0.04)
    for lattice in (lat, lat.remove_epsilons()):
        for scale in (1.0, 0.5):
            cn = ConfusionNetwork.from_lattice(lattice, am_scale=scale, min_word_mass=0)
            for b in cn.bins:
                assert sum(e.posterior for e in b) == pytest.approx(1.0, abs=1e-4)
            st = mbr_decode(lattice, am_scale=scale)
            np.testing.assert_allclose(st.gamma.sum(axis=1), 1.0, atol=1e-6)
            # Bins are ordered in time.
            mids = [sum(e.posterior * (e.start + e.end) / 2 for e in b) for b in cn.bins
                    if b[0].word != "<eps>"]
            assert all(x <= y + 0.08 for x, y in itertools.pairwise(mids))


def test_json_jsonl_round_trip_and_exact_form(tmp_path):
    cn = ConfusionNetwork.from_lattice(lattice_from_text(SAUSAGE, utt="s"))
    obj = cn.to_json()
    assert list(obj) == ["utt", "bins"] and obj["utt"] == "s"
    assert list(obj["bins"][0][0]) == ["word", "posterior", "start", "end"]
    assert ConfusionNetwork.from_json(json.dumps(obj)) == cn
    p = tmp_path / "cn.jsonl"
    assert write_cn_jsonl(p, [cn, cn]) == 2
    assert list(read_cn_jsonl(p)) == [cn, cn]
    p.write_text(p.read_text() + '{"utt": "bad", "bins": [[{"word": "x"}]]}\n')
    with pytest.raises(ValueError, match=r"cn.jsonl:3: .*'bad'"):
        list(read_cn_jsonl(p))


def test_ctm_with_confidences():
    cn = ConfusionNetwork.from_lattice(lattice_from_text(SAUSAGE, utt="s"))
    lines = ctm([cn])
    assert [ln.split()[4] for ln in lines] == ["ten", "of", "clubs"]
    f = lines[0].split()
    assert f[:2] == ["s", "1"] and float(f[2]) == 0.0 and float(f[3]) == pytest.approx(0.1)
    assert float(f[5]) == pytest.approx(cn.bins[0][0].posterior, abs=1e-4)


def test_check_catches_bad_bins():
    with pytest.raises(ValueError, match="bin 1"):
        ConfusionNetwork([[("a", 1.0, 0, 1)], [("b", 0.5, 1, 2)]], utt="x").check()


@pytest.mark.parametrize("entry, match", [
    ({"word": "a", "posterior": float("nan"), "start": 0, "end": 1}, "posterior nan"),
    ({"word": "a", "posterior": 1.5, "start": 0, "end": 1}, "posterior 1.5"),
    ({"word": "a", "posterior": 0.5, "start": 0, "end": float("inf")}, "non-finite times"),
    ({"word": "a\nb", "posterior": 0.5, "start": 0, "end": 1}, "line break"),
])
def test_cn_jsonl_reader_refuses_bad_entries_naming_the_line(tmp_path, entry, match):
    from speechlm.lattice import read_cn_jsonl

    good = {"utt": "u1", "bins": [[{"word": "x", "posterior": 1.0, "start": 0, "end": 1}]]}
    path = tmp_path / "cn.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({"utt": "u2", "bins": [[entry]]})
                    + "\n")
    with pytest.raises(ValueError, match=rf"cn.jsonl:2: confusion network 'u2'.*{match}"):
        list(read_cn_jsonl(path))


def test_kbest_paths_are_the_most_likely_strings_in_order():
    cn = ConfusionNetwork([[("a", 0.5, 0, 0), ("b", 0.3, 0, 0), ("<eps>", 0.2, 0, 0)],
                           [("x", 0.9, 0, 0), ("<eps>", 0.1, 0, 0)]])
    paths = cn.kbest_paths(10)
    # every path of the 3 x 2 grid, probabilities = products; all distinct strings here
    expect = {"a x": 0.45, "b x": 0.27, "x": 0.18, "a": 0.05, "b": 0.03, "": 0.02}
    assert [t for t, _ in paths] == sorted(expect, key=lambda t: -expect[t])
    assert dict(paths) == pytest.approx(expect)
    assert cn.kbest_paths(2) == [("a x", pytest.approx(0.45)), ("b x", pytest.approx(0.27))]
    # paths reading the same once <eps> is dropped merge
    same = ConfusionNetwork([[("a", 0.5, 0, 0), ("<eps>", 0.5, 0, 0)],
                             [("<eps>", 0.6, 0, 0), ("a", 0.4, 0, 0)]])
    assert dict(same.kbest_paths(3)) == pytest.approx({"a": 0.5, "": 0.3, "a a": 0.2})
    assert ConfusionNetwork([]).kbest_paths(3) == [("", 1.0)]
    with pytest.raises(ValueError, match="k must be"):
        cn.kbest_paths(0)
