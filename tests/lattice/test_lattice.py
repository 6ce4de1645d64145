import pytest

from speechlm.lattice import Arc, Lattice
from speechlm.testing.lattice import all_paths, lattice_from_text


def test_builder_reads_arcs_finals_and_times(diamond):
    assert diamond.num_states == 5 and diamond.num_arcs == 8
    assert diamond.start == 0 and diamond.finals == {4: (-0.1, -0.2), 3: (-1.0, 0.0)}
    assert diamond.state_times == [0.0, 0.1, 0.1, 0.2, 0.3]
    a = diamond.arcs[0]
    assert (a.src, a.dst, a.word, a.am_score, a.lm_score, a.start, a.end) == (
        0, 1, "a", -1.0, -0.5, 0.0, 0.1)


@pytest.mark.parametrize("text, msg", [
    ("0 1 a -1\n1 0 b -1\n1\n", "cycle"),
    ("0 1 a -1\n1 2 b -1\n", "no final state"),
    ("0 1 a -1\n2 3 b -1\n3\n", "no path"),
    ("0 1 a nan\n1\n", "non-finite"),
    ("0 1 a -1 inf\n1\n", "non-finite"),
])
def test_bad_lattices_raise_naming_the_utterance(text, msg):
    with pytest.raises(ValueError, match=msg) as e:
        lattice_from_text(text, utt="bad-utt")
    assert "bad-utt" in str(e.value)


def test_out_of_range_states_and_bad_times_raise():
    with pytest.raises(ValueError, match="'r'.*out of range"):
        Lattice([Arc(0, 5, "a")], {1: (0.0, 0.0)}, [0.0, 1.0], utt="r", num_states=2)
    with pytest.raises(ValueError, match="'r'.*non-finite time"):
        Lattice([Arc(0, 1, "a", start=float("nan"))], {1: (0.0, 0.0)}, utt="r")
    with pytest.raises(ValueError, match="'r'.*3 state times for 2 states"):
        Lattice([Arc(0, 1, "a")], {1: (0.0, 0.0)}, [0.0, 1.0, 2.0], utt="r")


def test_connect_drops_dead_states_and_renumbers_topologically():
    lat = Lattice([Arc(3, 1, "a"), Arc(1, 2, "b"), Arc(3, 0, "dead"), Arc(1, 4, "x")],
                  {2: (0.0, 0.0)}, start=3, utt="u")
    c = lat.connect()
    assert c.num_states == 3 and c.start == 0
    assert [(a.src, a.dst, a.word) for a in c.arcs] == [(0, 1, "a"), (1, 2, "b")]
    assert c.finals == {2: (0.0, 0.0)}


def test_scale_scales_arcs_and_finals(diamond):
    s = diamond.scale(0.5, 2.0)
    assert s.arcs[0].am_score == -0.5 and s.arcs[0].lm_score == -1.0
    assert s.finals[4] == pytest.approx((-0.05, -0.4))


def test_prune_keeps_arcs_within_beam_of_the_best_path(diamond):
    paths = all_paths(diamond)
    best = max(p[2] for p in paths)
    for beam in (0.0, 0.7, 1.5, 3.0, 100.0):
        pruned = diamond.prune(beam)
        # An arc survives iff some path through it is within the beam.
        want = sorted({(diamond.arcs[k].src, diamond.arcs[k].word, diamond.arcs[k].start)
                       for ids, _, score in paths if score >= best - beam - 1e-9 for k in ids})
        got = sorted({(a.src, a.word, a.start) for a in pruned.arcs})
        assert len(got) == len(want), beam
        assert pruned.best_path().words == diamond.best_path().words
    assert diamond.prune(100.0).num_arcs == diamond.num_arcs
    assert diamond.prune(100.0, max_arcs=3).num_arcs <= 3
    assert diamond.prune(100.0, max_arcs=1).best_path().words == diamond.best_path().words


def test_json_round_trip(diamond):
    import json

    back = Lattice.from_json(json.loads(json.dumps(diamond.to_json())))
    assert back == diamond
    with pytest.raises(ValueError, match="diamond"):
        Lattice.from_json({"utt": "diamond", "arcs": [{"src": 0}], "finals": []})
