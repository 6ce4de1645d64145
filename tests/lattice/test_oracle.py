import pytest

from speechlm.lattice import Lattice
from speechlm.lattice.confusion_network import ConfusionNetwork
from speechlm.lattice.oracle import cn_oracle, edit_distance, lattice_oracle, nbest_oracle
from speechlm.testing.lattice import all_paths, lattice_from_text, toy_ctc_decode


def test_lattice_oracle_equals_brute_force(diamond):
    paths = all_paths(diamond)
    for ref in (["a", "c", "e"], ["b", "d"], ["x"], [], ["d", "e", "e", "c"], ["f"]):
        want = min(edit_distance(ref, w) for _, w, _ in paths)
        errors, n, words = lattice_oracle(diamond, ref)
        assert (errors, n) == (want, len(ref))
        assert edit_distance(ref, words) == errors
        assert tuple(words) in {w for _, w, _ in paths}


def test_oracles_are_ordered_lattice_nbest_one_best():
    # The reference "ten of clubs" is in the lattice but only the 4th best path.
    lat = lattice_from_text("""
        0 1 ten -1.5
        0 1 then -1.0
        0 1 den -3.0
        1 2 of -0.1
        1 2 if -2.0
        2 3 clubs -2.0
        2 3 cloves -1.0
        3
    """, utt="o")
    ref = ["ten", "of", "clubs"]
    one = edit_distance(ref, lat.best_path().words)
    nb2 = nbest_oracle(lat.nbest(2), ref)[0]
    nb10 = nbest_oracle(lat.nbest(10), ref)[0]
    lat_o = lattice_oracle(lat, ref)
    cn_o = cn_oracle(ConfusionNetwork.from_lattice(lat), ref)
    assert lat_o == (0, 3, ref) and cn_o[0] == 0
    assert (one, nb2, nb10) == (2, 1, 0)
    assert lat_o[0] <= nb10 <= nb2 <= one


@pytest.mark.parametrize("seed", range(3))
def test_oracle_order_on_decoder_lattices(seed):
    d = toy_ctc_decode(16, seed=seed)
    lat = Lattice.from_kaldi_text(d.raw_text, utt="t", words=d.words).remove_epsilons()
    # A reference that differs from the 1-best: the 7th best hypothesis with a word dropped.
    ref = list(lat.nbest(7)[-1].words)[1:]
    one = edit_distance(ref, lat.best_path().words)
    nb = nbest_oracle(lat.nbest(10), ref)[0]
    lo = lattice_oracle(lat, ref)[0]
    co = cn_oracle(ConfusionNetwork.from_lattice(lat), ref)[0]
    assert lo <= nb <= one
    assert lo <= co  # a confusion network has more paths, but only through its bins
    assert lo <= 1
