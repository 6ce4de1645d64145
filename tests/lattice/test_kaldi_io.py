import gzip

import pytest

from speechlm.lattice import Lattice, read_kaldi_lattices, write_kaldi_lattices
from speechlm.testing.lattice import lattice_from_text, toy_ctc_decode

# As `lattice-copy ark:1.lats ark,t:-` prints (header "utt ", tabs, blank line after each).
COMPACT = (
    "utt1 \n"
    "0\t1\t3\t1.5,20.25,2_2_4\n"
    "0\t2\t4\t2.5,18.5,2_6\n"
    "0\t3\t0\t0.25,3,1\n"
    "1\t4\t5\t0,10,8_8\n"
    "2\t4\t5\t0.5,12,8_8_8\n"
    "3\t4\t3\t1,9.5,2_2_4_4\n"
    "4\t0.5,0,\n"
    "\n"
    "utt2 \n"
    "0\t1\t4\t1,2,6\n"
    "1\n"
    "\n"
)
WORDS = {0: "<eps>", 3: "one", 4: "two", 5: "three"}


def test_reads_compact_lattices_with_words_and_frame_times():
    lats = list(read_kaldi_lattices_from_text(COMPACT))
    assert [lat.utt for lat in lats] == ["utt1", "utt2"]
    lat = lats[0]
    assert lat.num_states == 5 and lat.start == 0
    a = lat.arcs[0]
    assert (a.word, a.lm_score, a.am_score, a.tids) == ("one", -1.5, -20.25, (2, 2, 4))
    # frames: state 1 after 3 tids, 4 after 5 (via 1), 3 after 1.
    assert lat.state_times == pytest.approx([0.0, 0.03, 0.02, 0.01, 0.05])
    assert lat.arcs[2].word == "<eps>"
    assert lat.finals == {4: (-0.0, -0.5)}
    assert lats[1].finals == {1: (0.0, 0.0)}


def canon(lat):
    return (lat.start, lat.finals, lat.state_times, sorted(lat.arcs, key=repr))


def read_kaldi_lattices_from_text(text, **kw):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    return read_kaldi_lattices(f.name, words=WORDS, **kw)


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("gz", [False, True])
def test_write_read_round_trip_both_forms(tmp_path, compact, gz):
    lats = list(read_kaldi_lattices_from_text(COMPACT))
    path = tmp_path / ("lat.txt.gz" if gz else "lat.txt")
    assert write_kaldi_lattices(path, lats, compact=compact, words=WORDS) == 2
    if gz:
        with gzip.open(path, "rt") as f:
            assert f.read().startswith("utt1 \n")
    back = list(read_kaldi_lattices(path, words=WORDS))
    for a, b in zip(lats, back, strict=True):
        if compact:
            assert a == b
        else:  # multi-frame arcs became chains: compare paths, scores and times
            assert b.best_path().words == a.best_path().words
            assert b.best_path().tot_score == pytest.approx(a.best_path().tot_score)
            assert sorted(p.words for p in b.nbest(10)) == sorted(p.words for p in a.nbest(10))
            assert b.duration == pytest.approx(a.duration)


def test_words_written_directly_round_trip():
    lat = lattice_from_text("0 1 hello -1.5 -0.25\n0 1 <eps> -3\n1 2 world -1\n2 -0.5\n",
                            utt="u9")
    text = lat.to_kaldi_text()
    assert text.splitlines()[1] == "0\t1\thello\t0.25,1.5,"
    back = Lattice.from_kaldi_text(text)
    assert back.utt == "u9"
    assert [(a.word, a.am_score, a.lm_score) for a in back.arcs] == [
        (a.word, a.am_score, a.lm_score) for a in lat.arcs]
    assert back.finals == lat.finals


def test_plain_lattice_text_of_kaldifst_and_best_path_matches_the_decoder():
    for seed in range(4):
        d = toy_ctc_decode(14, seed=seed)
        lat = Lattice.from_kaldi_text(d.raw_text, utt=f"toy{seed}", words=d.words,
                                      frame_shift=0.04)
        assert lat.state_times[lat.start] == 0.0
        assert max(lat.state_times) == pytest.approx(14 * 0.04)
        best = lat.best_path()
        assert list(best.words) == d.best_words
        assert -best.tot_score == pytest.approx(d.best_cost, abs=1e-4)
        # kaldi-decoder's own best path, read as a lattice, is the same path.
        one = Lattice.from_kaldi_text(d.best_text, words=d.words)
        assert list(one.best_path().words) == d.best_words
        # Plain-form write and re-read keeps the lattice.
        again = Lattice.from_kaldi_text(lat.to_kaldi_text(compact=False, words=d.words),
                                        words=d.words, frame_shift=0.04)
        assert canon(again) == canon(lat)


def test_remove_epsilons_keeps_the_best_path_and_word_times():
    for seed in range(4):
        d = toy_ctc_decode(14, seed=seed)
        lat = Lattice.from_kaldi_text(d.raw_text, utt=f"toy{seed}", words=d.words,
                                      frame_shift=0.04)
        noeps = lat.remove_epsilons()
        assert all(a.word != "<eps>" for a in noeps.arcs)
        b0, b1 = lat.best_path(), noeps.best_path()
        assert b1.words == b0.words
        assert b1.tot_score == pytest.approx(b0.tot_score, abs=1e-6)
        assert b1.am_score == pytest.approx(b0.am_score, abs=1e-6)
        assert b1.starts == pytest.approx(b0.starts) and b1.ends == pytest.approx(b0.ends)
        # Same word sequences, each with its best score (Viterbi sense).
        n0 = {p.words: p.tot_score for p in lat.nbest(20)}
        n1 = {p.words: p.tot_score for p in noeps.nbest(20)}
        common = set(n0) & set(n1)
        assert len(common) >= 10
        for w in common:
            assert n1[w] == pytest.approx(n0[w], abs=1e-6)
        # No two arcs share (src, dst, word, start).
        keys = [(a.src, a.dst, a.word, a.start) for a in noeps.arcs]
        assert len(keys) == len(set(keys))


def test_remove_epsilons_on_a_hand_lattice():
    lat = lattice_from_text("""
        0 1 <eps> -1
        0 1 <eps> -2
        1 2 a -1
        0 2 a -5
        2 3 <eps> -0.5
        3 4 b -1
        2 4 b -3
        4
    """, utt="h", state_times=[0.0, 0.1, 0.2, 0.3, 0.4])
    e = lat.remove_epsilons()
    got = sorted((a.src, a.dst, a.word, a.am_score, a.start, a.end) for a in e.arcs)
    # from start: a via eps (best: -1 + -1) starting at 0.1, and direct a at 0.0;
    # from a's end: b via eps (-1.5) starting 0.3, direct b (-3) starting 0.2.
    assert got == [(0, 1, "a", -5.0, 0.0, 0.2), (0, 1, "a", -2.0, 0.1, 0.2),
                   (1, 2, "b", -3.0, 0.2, 0.4), (1, 2, "b", -1.5, 0.3, 0.4)]


@pytest.mark.parametrize("text, msg", [
    ("u\n0 1 3 1.5\n1\n\n", "not an integer"),
    ("u\n0 1 3 1,2,3,\n1\n\n", "weight"),
    ("u\n0 1 3 a,b,\n1\n\n", "unparsable"),
    ("u\n0 x 3 1,2,\n1\n\n", "malformed"),
    ("u\n0 1 3 1,inf,\n1\n\n", "non-finite"),
    ("u\n0 1 3 1,nan,\n1\n\n", "non-finite"),
    ("u\n0 1 3 1,2,\n1 2 4 4 1,2\n2\n\n", "lattice arc in a compact"),
    ("u\n0 1 3 1,2,\n1 2 4 1,2,\n\n", "no final state"),
    ("u\n0 1 3 1,2,\n1 0 4 1,2,\n1\n\n", "cycle"),
    ("u\n0 1 99 1,2,\n1\n\n", "not in the symbol table"),
])
def test_bad_text_raises_naming_utterance(text, msg):
    with pytest.raises(ValueError, match=msg) as e:
        Lattice.from_kaldi_text(text, words=WORDS)
    assert "'u'" in str(e.value)


def test_bad_line_number_in_archive(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text(COMPACT + "utt3 \n0 1 3 1,2,\n1 2 4 oops,1,\n2\n\n")
    with pytest.raises(ValueError, match=r"bad.txt:16: lattice 'utt3'"):
        list(read_kaldi_lattices(p, words=WORDS))


def test_remove_epsilons_with_beam_equals_pruning_afterwards():
    d = toy_ctc_decode(20, seed=5)
    lat = Lattice.from_kaldi_text(d.raw_text, utt="b", words=d.words, frame_shift=0.04)
    full = lat.remove_epsilons()
    for beam in (0.5, 2.0, 5.0):
        fast = lat.remove_epsilons(beam=beam)
        slow = full.prune(beam)
        assert fast.num_arcs == slow.num_arcs < full.num_arcs
        assert len(fast.finals) == len(slow.finals) < len(full.finals)
        assert sorted((a.word, a.start, a.end, round(a.am_score, 5)) for a in fast.arcs) == \
            sorted((a.word, a.start, a.end, round(a.am_score, 5)) for a in slow.arcs)
        assert fast.best_path().words == full.best_path().words


def test_words_txt_symbol_table_and_path_to_hypothesis(tmp_path):
    from speechlm.lattice import read_words_txt

    wt = tmp_path / "words.txt"
    wt.write_text("".join(f"{w} {i}\n" for i, w in sorted(WORDS.items())))
    assert read_words_txt(wt) == WORDS
    src = tmp_path / "lat.ark"
    src.write_text(COMPACT)
    lats = list(read_kaldi_lattices(f"ark,t:{src}", words=str(wt)))
    assert lats[0].best_path().words == ("one",)  # via <eps>: 13.75 + final 0.5
    h = lats[0].best_path().to_hypothesis()
    assert h.text == "one" and h.score == pytest.approx(-14.25)
    assert dict(h.scores)["am"] == lats[0].best_path().am_score
    (tmp_path / "bad.txt").write_text("one 3\ntwo x\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        read_words_txt(tmp_path / "bad.txt")


def _peak_growth_mib(fn) -> float:
    """Growth of this process's peak resident memory (MiB) while ``fn`` runs."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def test_a_huge_state_id_is_renumbered_with_bounded_memory(tmp_path):
    """Two lines naming state 50,000,000 used to size every per-state array at 5e7 (GBs)."""
    from speechlm.lattice.kaldi_io import lattice_from_kaldi_text

    path = tmp_path / "huge.lat"
    path.write_text("u1\n0\t50000000\t7\t1,2\n50000000\n\n")
    out = []
    grown = _peak_growth_mib(lambda: out.extend(read_kaldi_lattices(path)))
    assert grown < 50, f"peak memory grew by {grown:.0f} MiB"
    (lat,) = out
    assert lat.num_states == 2 and lat.finals == {1: (0.0, 0.0)}
    assert [(a.src, a.dst, a.word) for a in lat.arcs] == [(0, 1, "7")]
    # renumbering keeps the order of the ids: a dense lattice is read unchanged
    gappy = lattice_from_kaldi_text("0 10 a 1,0\n0 5 b 2,0\n5 10 c 0,0\n10\n")
    assert [(a.src, a.dst) for a in gappy.arcs] == [(0, 2), (0, 1), (1, 2)]


def test_json_state_counts_far_beyond_the_arcs_are_refused_with_bounded_memory():
    arcs = [{"src": 0, "dst": 1, "word": "a", "am_score": -1.0, "lm_score": 0.0,
             "start": 0.0, "end": 0.1}]
    obj = {"utt": "u9", "num_states": 100_000_000, "start": 0, "finals": [[1, 0.0, 0.0]],
           "arcs": arcs}
    errors = []

    def read():
        with pytest.raises(ValueError, match="u9.*num_states 100000000") as e:
            Lattice.from_json(obj)
        errors.append(e)

    assert _peak_growth_mib(read) < 50 and errors
    # a count backed by as many state times is what the writer gives a pruned lattice
    many = Lattice.from_json({**obj, "num_states": 3000, "state_times": [0.0] * 3000})
    assert many.num_states == 3000 and Lattice.from_json(many.to_json()) == many
    # ids with gaps and no count are numbered densely, their times with them
    sparse = {"utt": "u9", "start": 0, "finals": [[70_000_000, 0.0, 0.0]],
              "arcs": [{**arcs[0], "dst": 70_000_000}]}
    lat = Lattice.from_json(sparse)
    assert lat.num_states == 2 and lat.finals == {1: (0.0, 0.0)}
    assert Lattice.from_json(lat.to_json()) == lat


def test_a_cut_off_last_line_is_an_error_not_a_final_state(tmp_path):
    path = tmp_path / "cut.lat"
    path.write_text("u1\n0\t1\t7\t1,2\n1\t2\t8\t1,2\n2\t3")  # "2 3 9 1,2" cut to "2 3"
    with pytest.raises(ValueError, match=r"cut.lat:4: the file ends in the middle"):
        list(read_kaldi_lattices(path))
    path.write_text("u1\n0\t1\t7\t1,2\n1\t2\t8\t1,2\n2")  # cut to "2": looked like a final
    with pytest.raises(ValueError, match="cut off"):
        list(read_kaldi_lattices(path))
    gz = tmp_path / "cut.lat.gz"
    gz.write_bytes(gzip.compress(b"u1\n0\t1\t7\t1,2\n1\n\n")[:-12])  # a truncated stream
    with pytest.raises(ValueError, match="cut.lat.gz: cannot read"):
        list(read_kaldi_lattices(gz))
