import math
import wave
from pathlib import Path

import numpy as np
import pytest

from speechlm.lattice import Lattice

CARDS = Path("/work/shared/data/english_speech_samples/pocketsphinx_cards")

HANDWRITTEN = """\
VERSION=1.0
UTTERANCE=hand1
base=10.0
lmscale=2.0 wdpenalty=-1.0
N=5 L=6
I=0 t=0.00 W=!NULL
I=1 t=0.30 W=ten
I=2 t=0.30 W=then
I=3 t=0.50 W=of
I=4 t=0.90 W=clubs
J=0 S=0 E=1 a=-10.0 l=-1.0
J=1 S=0 E=2 a=-9.5 l=-2.0
J=2 S=1 E=3 a=-4.0 l=-0.5
J=3 S=2 E=3 a=-4.0 l=-0.5
J=4 S=3 E=4 a=-12.0 l=-0.2
J=5 S=0 E=4 W=clubs a=-40.0 l=-3.0
"""


def test_handwritten_slf_htk_convention_and_log_base():
    lat = Lattice.from_slf(HANDWRITTEN)
    assert lat.utt == "hand1" and lat.start == 0 and set(lat.finals) == {4}
    assert lat.state_times == [0.0, 0.3, 0.3, 0.5, 0.9]
    ln10 = math.log(10.0)
    a = lat.arcs[0]  # HTK: a link carries the word of its end node
    assert (a.word, a.start, a.end) == ("ten", 0.0, 0.3)
    assert a.am_score == pytest.approx(-10.0 * ln10)
    assert a.lm_score == pytest.approx((2.0 * -1.0 - 1.0) * ln10)  # lmscale*l + wdpenalty
    assert lat.arcs[5].word == "clubs"  # W= on the link wins
    assert lat.best_path().words == ("ten", "of", "clubs")
    raw = Lattice.from_slf(HANDWRITTEN, apply_lm_scale=False)
    assert raw.arcs[0].lm_score == pytest.approx(-1.0 * ln10)


@pytest.mark.parametrize("edit, msg", [
    (("N=5 L=6", "N=6 L=6"), "N=6"),
    (("N=5 L=6", "N=5 L=7"), "L=7"),
    (("J=4 S=3 E=4 a=-12.0", "J=4 S=3 E=9 a=-12.0"), "outside"),
    (("J=5 S=0 E=4", "J=5 S=3 E=1"), "cycle"),
    (("a=-4.0 l=-0.5\nJ=3", "a=nan l=-0.5\nJ=3"), "non-finite"),
    (("I=3 t=0.50", "I=3 t=abc"), "time"),
    (("base=10.0", "base=0"), "base"),
    (("J=0 S=0 E=1", "J=0 S=0 E=1 junk"), "key=value"),
])
def test_bad_slf_raises_naming_the_utterance(edit, msg):
    with pytest.raises(ValueError, match=msg) as e:
        Lattice.from_slf(HANDWRITTEN.replace(*edit))
    assert "hand1" in str(e.value)


@pytest.fixture(scope="module")
def pocketsphinx_slf(tmp_path_factory):
    """A real lattice: PocketSphinx (en-us model) on cards/001.wav ("ten of clubs")."""
    ps = pytest.importorskip("pocketsphinx")
    with wave.open(str(CARDS / "001.wav")) as w:
        audio = w.readframes(w.getnframes())
    dec = ps.Decoder(loglevel="FATAL")
    dec.start_utt()
    dec.process_raw(audio, full_utt=True)
    dec.end_utt()
    path = tmp_path_factory.mktemp("slf") / "001.slf"
    dec.get_lattice().write_htk(str(path))
    return path, dec.hyp().hypstr.split()


def test_pocketsphinx_slf_reads_with_start_node_words(pocketsphinx_slf):
    path, hyp = pocketsphinx_slf
    lat = Lattice.from_slf(path)
    assert lat.utt == "001" and lat.num_states > 20 and lat.num_arcs > 100
    text = path.read_text()
    n_links = sum(1 for line in text.splitlines() if line.startswith("J="))
    assert lat.num_arcs == n_links
    # Links carry the word of their start node and span t(S)..t(E).
    nodes = {}
    for line in text.splitlines():
        if line.startswith("I="):
            f = dict(x.split("=", 1) for x in line.split())
            nodes[int(f["I"])] = (float(f["t"]), f["W"])
    for a in lat.arcs[:50]:
        t, w = nodes[a.src]
        assert a.start == t and a.end == nodes[a.dst][0]
        assert a.word == (w if not w.startswith("!") else "<eps>")
    assert all(a.start <= a.end for a in lat.arcs)
    # The decoder's hypothesis (chosen with its LM) is a path of the lattice.
    from speechlm.lattice.oracle import lattice_oracle

    assert lattice_oracle(lat, hyp)[0] == 0
    post = lat.arc_posteriors()
    assert np.isfinite(post).all() and post.max() <= 1.0
    back = Lattice.from_json(lat.to_json())
    assert back == lat


def test_slf_write_read_round_trip(diamond, pocketsphinx_slf):
    for lat in (diamond, Lattice.from_slf(HANDWRITTEN), Lattice.from_slf(pocketsphinx_slf[0])):
        back = Lattice.from_slf(lat.to_slf())
        assert back.utt == lat.utt
        assert back.duration == pytest.approx(lat.duration)
        want, got = lat.nbest(20), back.nbest(20)
        assert [round(p.tot_score, 4) for p in got] == [round(p.tot_score, 4) for p in want]
        cut = want[-1].tot_score + 1e-4  # equal scores may swap places at the cut
        assert {p.words for p in got if p.tot_score > cut} == {
            p.words for p in want if p.tot_score > cut}
        # Links are written in arc order, then the final-weight links.
        lat = lat.connect()
        np.testing.assert_allclose(back.arc_posteriors()[:lat.num_arcs],
                                   lat.arc_posteriors(), atol=1e-5)
        assert [a.word for a in back.arcs[:lat.num_arcs]] == [a.word for a in lat.arcs]


def test_slf_path_with_equals_sign(tmp_path):
    p = tmp_path / "a=b" / "x.lat"
    p.parent.mkdir()
    p.write_text(HANDWRITTEN)
    assert Lattice.from_slf(str(p)).utt == "hand1"
