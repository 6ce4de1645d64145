"""EspnetLatticeASR.rescore: lattice paths that CTC cannot emit in the utterance's frames
(spelled with a separator between words) are left out of the N-best, not written with a
-inf score (a stand-in decoder replaces the ESPnet model: only the CTC part decides here)."""
import math
from types import SimpleNamespace

import numpy as np
import torch

from speechlm.asr.ctc_graph import Lexicon
from speechlm.asr.ctc_lattice import EspnetLatticeASR, LatticeDecodeConfig

TOKENS = ["<blank>", "<unk>", "<space>", "n", "o", "t", "<sos/eos>"]


class FlatDecoder(torch.nn.Module):
    def forward(self, hs, hlens, ys_in, lens):
        return torch.zeros(ys_in.shape[0], ys_in.shape[1], len(TOKENS)), None


def _asr():
    asr = EspnetLatticeASR.__new__(EspnetLatticeASR)
    asr.config = LatticeDecodeConfig(ctc_weight=0.3, lm_weight=0.5)
    asr.tokens = TOKENS
    asr._token_ids = {t: i for i, t in enumerate(TOKENS)}
    asr._space = TOKENS.index("<space>")
    asr.graph = SimpleNamespace(lexicon=Lexicon.from_words(["no", "on", "to"], TOKENS[:-1]))
    asr.model = SimpleNamespace(decoder=FlatDecoder())
    return asr


def _path(words, lm):
    return SimpleNamespace(words=tuple(words), am_score=-1.0, lm_score=lm, tot_score=lm - 1.0)


def test_infeasible_paths_left_out():
    logp = np.log(np.full((3, len(TOKENS)), 1.0 / len(TOKENS), dtype=np.float32))
    enc = torch.zeros(1, 3, 4)
    # "no to" needs n o <space> t o: 5 tokens in 3 frames
    hyps = _asr().rescore(enc, logp, [_path(["no", "to"], -1.0), _path(["on"], -2.0)])
    assert [h.text for h in hyps] == ["on"]
    assert all(math.isfinite(h.score) for h in hyps)


def test_every_path_infeasible_keeps_the_lattice_scores():
    logp = np.log(np.full((2, len(TOKENS)), 1.0 / len(TOKENS), dtype=np.float32))
    paths = [_path(["no", "to"], -1.0), _path(["on", "no"], -3.0)]
    hyps = _asr().rescore(torch.zeros(1, 2, 4), logp, paths)
    assert [h.text for h in hyps] == ["no to", "on no"]
    assert [h.score for h in hyps] == [-2.0, -4.0]
