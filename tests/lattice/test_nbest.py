import itertools

import pytest

from speechlm.lattice import Lattice
from speechlm.testing.lattice import all_paths, lattice_from_text, toy_ctc_decode


def test_nbest_unique_matches_brute_force(diamond):
    best_per_seq = {}
    for _, words, score in all_paths(diamond):
        best_per_seq[words] = max(score, best_per_seq.get(words, -1e9))
    want = sorted(best_per_seq.items(), key=lambda x: -x[1])
    got = diamond.nbest(10)
    assert [p.words for p in got] == [w for w, _ in want]
    assert [p.tot_score for p in got] == pytest.approx([s for _, s in want], abs=1e-5)
    for p in got:
        assert p.tot_score == pytest.approx(p.am_score + p.lm_score)
        assert len(p.starts) == len(p.words) == len(p.ends)
    assert diamond.nbest(2) == got[:2]


def test_nbest_not_unique_lists_paths(diamond):
    paths = sorted(all_paths(diamond), key=lambda x: -x[2])
    got = diamond.nbest(100, unique=False)
    assert len(got) == len(paths)
    assert [p.tot_score for p in got] == pytest.approx([s for *_, s in paths], abs=1e-5)


def test_best_path_scores_times_and_scales():
    lat = lattice_from_text("""
        0 1 a -1.0 -3.0 0.0 0.3
        0 1 b -2.0 -0.5 0.0 0.3
        1 2 c -1.0 0.0 0.35 0.6
        2 -0.5 -0.25
    """, utt="s", state_times=[0.0, 0.3, 0.6])
    p = lat.best_path()
    assert p.words == ("b", "c") and p.am_score == pytest.approx(-3.5)
    assert p.lm_score == pytest.approx(-0.75) and p.tot_score == pytest.approx(-4.25)
    assert p.starts == (0.0, 0.35) and p.ends == (0.3, 0.6)
    # A small acoustic scale makes the LM decide... and a small LM scale the acoustics.
    assert lat.best_path(am_scale=1.0, lm_scale=0.1).words == ("a", "c")
    assert lat.best_path(am_scale=1.0, lm_scale=0.1).tot_score == pytest.approx(
        -2.5 + 0.1 * -3.25)


def test_nbest_on_a_decoder_lattice_is_sorted_and_distinct():
    d = toy_ctc_decode(14, seed=1)
    lat = Lattice.from_kaldi_text(d.raw_text, utt="toy", words=d.words)
    nb = lat.nbest(20)
    assert len(nb) == 20 and len({p.words for p in nb}) == 20
    assert all(a.tot_score >= b.tot_score - 1e-6 for a, b in itertools.pairwise(nb))
    assert list(nb[0].words) == d.best_words


def test_unique_nbest_looks_past_alignment_variants_up_to_max_paths():
    # Eight alignments of "a" (through different states) rank above the only "b" path.
    arcs = "\n".join(f"0 {i} a {-0.1 * i}\n{i} 9 <eps>" for i in range(1, 9))
    lat = lattice_from_text(arcs + "\n0 9 b -5\n9\n", utt="v")
    assert [p.words for p in lat.nbest(2)] == [("a",), ("b",)]
    assert lat.nbest(2)[0].tot_score == pytest.approx(-0.1)
    # Capped below the nine paths needed, only the sequences found are returned.
    assert [p.words for p in lat.nbest(2, max_paths=4)] == [("a",)]
