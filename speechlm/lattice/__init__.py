"""Word lattices, N-best lists and confusion networks (imports only ``speechlm.core``).

Axes follow icefall: a lattice is ``[state][arc]``; a confusion network ``[bin][word]``.
Scores are natural log, higher is better (``am_score``, ``lm_score``, ``tot_score``);
times are seconds; ``"<eps>"`` is the empty word. OpenFst (through pynini) does the
semiring maths: posteriors (log semiring), best paths, N-best and pruning (tropical).

Modules: ``lattice`` (the type, pruning, epsilon removal), ``kaldi_io`` (Kaldi text
lattices), ``slf`` (HTK SLF, PocketSphinx), ``posterior``, ``nbest``, ``mbr`` (Xu et al.
lattice MBR), ``confusion_network`` (sausages, CTM), ``oracle``, ``plot``.

>>> from speechlm.lattice import ConfusionNetwork, Lattice
>>> text = "u1\\n0 1 7 0,1.5,\\n0 1 9 0,2.5,\\n1 2 8 0.5,2,4_4\\n2\\n"
>>> lat = Lattice.from_kaldi_text(text, words={7: "a", 8: "b", 9: "c"})
>>> lat.best_path().words
('a', 'b')
>>> ConfusionNetwork.from_lattice(lat).mbr_words()
['a', 'b']
"""
from speechlm.lattice.confusion_network import (
    BinEntry,
    ConfusionNetwork,
    ctm,
    read_cn_jsonl,
    write_cn_jsonl,
)
from speechlm.lattice.kaldi_io import read_kaldi_lattices, read_words_txt, write_kaldi_lattices
from speechlm.lattice.lattice import EPS, Arc, Lattice
from speechlm.lattice.nbest import Path
from speechlm.lattice.nbest_lattice import concat_lattices, lattice_from_nbest, nbest_posteriors
from speechlm.lattice.oracle import cn_oracle, edit_distance, lattice_oracle, nbest_oracle
from speechlm.lattice.plot import plot_confusion_network

__all__ = [
    "EPS", "Arc", "BinEntry", "ConfusionNetwork", "Lattice", "Path", "cn_oracle",
    "concat_lattices", "ctm",
    "edit_distance", "lattice_from_nbest", "lattice_oracle", "nbest_oracle",
    "nbest_posteriors", "plot_confusion_network",
    "read_cn_jsonl", "read_kaldi_lattices", "read_words_txt", "write_cn_jsonl",
    "write_kaldi_lattices",
]
