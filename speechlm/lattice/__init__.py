"""Word lattices, N-best lists and confusion networks (imports only ``speechlm.core``).

Axes follow icefall: a lattice is ``[state][arc]``; a confusion network ``[bin][word]``.
Scores are natural log, higher is better (``am_score``, ``lm_score``, ``tot_score``);
times are seconds. OpenFst (through pynini) does the semiring maths.

>>> from speechlm.lattice import Lattice
>>> text = "u1\\n0 1 7 0,1.5,\\n1 2 8 0.5,2,4_4\\n2\\n"
>>> lat = Lattice.from_kaldi_text(text, words={7: "a", 8: "b"})
>>> lat.best_path().words
('a', 'b')
"""
from speechlm.lattice.kaldi_io import read_kaldi_lattices, write_kaldi_lattices
from speechlm.lattice.lattice import EPS, Arc, Lattice
from speechlm.lattice.nbest import Path

__all__ = ["EPS", "Arc", "Lattice", "Path", "read_kaldi_lattices", "write_kaldi_lattices"]
