"""Small lattices for tests, built from text (like icefall's ``k2.Fsa.from_str``), and a
toy CTC decode with kaldi-decoder that yields real raw lattices.

>>> lat = lattice_from_text('''
...     0 1 a -1.0 -0.5
...     0 1 b -2.0
...     1 2 c -1.0
...     2
... ''', utt="u1")
>>> lat.best_path().words
('a', 'c')
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speechlm.lattice import EPS, Arc, Lattice

__all__ = ["ToyDecode", "all_paths", "lattice_from_text", "logsumexp", "toy_ctc_decode",
           "toy_ctc_graph"]


def lattice_from_text(text: str, *, utt: str | None = "test",
                      state_times: Sequence[float] | None = None) -> Lattice:
    """Build a :class:`Lattice` from lines of arcs and final states.

    Arc lines: ``src dst word [am_score [lm_score [start end]]]``; final lines:
    ``state [am_score [lm_score]]``. Scores are natural log, higher is better (not Kaldi
    costs). ``#`` starts a comment. The first arc's source is the start state. Without
    ``state_times``, a state's time is its longest distance in arcs from the start, times
    0.1 s, so that word times are distinct and ordered.

    Args:
        text: The description.
        utt: Utterance id.
        state_times: Time of each state (seconds).

    Returns:
        The lattice.
    """
    arcs, finals, start = [], {}, None
    for raw in text.splitlines():
        f = raw.split("#")[0].split()
        if not f:
            continue
        if len(f) <= 3 and all(x.lstrip("-").replace(".", "", 1).isdigit() for x in f):
            s = int(f[0])
            finals[s] = (float(f[1]) if len(f) > 1 else 0.0, float(f[2]) if len(f) > 2 else 0.0)
            start = s if start is None else start
            continue
        src, dst, word = int(f[0]), int(f[1]), f[2]
        nums = [float(x) for x in f[3:]]
        am = nums[0] if nums else 0.0
        lm = nums[1] if len(nums) > 1 else 0.0
        t0, t1 = (nums[2], nums[3]) if len(nums) >= 4 else (None, None)
        arcs.append(Arc(src, dst, word, am, lm, t0, t1))
        start = src if start is None else start
    if state_times is None:
        probe = Lattice(arcs, finals, start=start or 0, utt=utt)
        depth = [0] * probe.num_states
        out = probe.out_arcs
        for s in probe.topo_order:
            for k in out[s]:
                depth[probe.arcs[k].dst] = max(depth[probe.arcs[k].dst], depth[s] + 1)
        state_times = [round(0.1 * d, 6) for d in depth]
    return Lattice(arcs, finals, state_times, start=start or 0, utt=utt)


def all_paths(lat: Lattice, am_scale: float = 1.0, lm_scale: float = 1.0):
    """Every complete path as ``(arc_ids, words, score)``; exponential, tiny lattices only."""
    out = []
    by_state = lat.out_arcs

    def walk(s, ids):
        if s in lat.finals:
            am, lm = lat.finals[s]
            score = sum(am_scale * lat.arcs[k].am_score + lm_scale * lat.arcs[k].lm_score
                        for k in ids) + am_scale * am + lm_scale * lm
            words = tuple(lat.arcs[k].word for k in ids if lat.arcs[k].word != EPS)
            out.append((tuple(ids), words, score))
        for k in by_state[s]:
            walk(lat.arcs[k].dst, ids + [k])

    walk(lat.start, [])
    return out


def logsumexp(xs) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


# Toy CTC lexicon: tokens 1..3 ("a", "b", "c"), blank 0. Graph input labels are token + 1
# because DecodableCtc's column i is input label i + 1.
TOY_LEXICON = {"ab": (1, 2), "ba": (2, 1), "c": (3,), "abc": (1, 2, 3), "a": (1,),
               "cab": (3, 1, 2), "bb": (2, 2)}


def toy_ctc_graph(lexicon: dict[str, tuple[int, ...]] | None = None,
                  word_penalty: float = 0.5):
    """A CTC decoding graph (kaldifst ``StdVectorFst``) over a toy lexicon.

    State 0 loops on blank and starts every word; a word's first token arc outputs the
    word id; each token has a repeat self-loop and an optional blank after it; the word
    returns to state 0 by an epsilon arc costing ``word_penalty``.

    Returns:
        ``(graph, words)``: the graph, and word id -> word (ids from 1).
    """
    import kaldifst

    lexicon = TOY_LEXICON if lexicon is None else lexicon
    words = {i + 1: w for i, w in enumerate(lexicon)}
    lines = ["0 0 1 0 0"]
    n = 1
    for wid, w in words.items():
        toks = lexicon[w]
        prev = [0]
        for k, t in enumerate(toks):
            p, b = n, n + 1
            n += 2
            for s in prev:
                lines.append(f"{s} {p} {t + 1} {wid if s == 0 else 0} 0")
            lines += [f"{p} {p} {t + 1} 0 0", f"{p} {b} 1 0 0", f"{b} {b} 1 0 0"]
            # a repeated token needs a blank in between
            nxt = toks[k + 1] if k + 1 < len(toks) else None
            prev = [b] if nxt == t else [p, b]
        lines += [f"{p} 0 0 0 {word_penalty}", f"{b} 0 0 0 {word_penalty}"]
    lines.append("0")
    graph = kaldifst.compile("\n".join(lines))
    kaldifst.arcsort(graph, sort_type="ilabel")
    return graph, words


@dataclass
class ToyDecode:
    """What :func:`toy_ctc_decode` returns: kaldi-decoder's outputs as text."""

    raw_text: str  # get_raw_lattice().to_str(): plain Lattice lines
    best_text: str  # get_best_path().to_str()
    best_words: list[str]
    best_cost: float  # graph + acoustic cost of the best path
    words: dict[int, str]
    num_frames: int


def toy_ctc_decode(num_frames: int = 12, *, seed: int = 0, beam: float = 20.0,
                   lattice_beam: float = 8.0, sharpness: float = 2.0,
                   lexicon: dict[str, tuple[int, ...]] | None = None) -> ToyDecode:
    """Decode random CTC log-probs on :func:`toy_ctc_graph` with kaldi-decoder.

    Args:
        num_frames: Frames T.
        seed: Seed of the (T, 4) random logits.
        beam: Decoding beam.
        lattice_beam: Lattice beam (bigger -> bigger lattices).
        sharpness: Logit scale (bigger -> peakier posteriors).
        lexicon: Word -> token ids (1..3), default :data:`TOY_LEXICON`.

    Returns:
        A :class:`ToyDecode`.
    """
    import kaldi_decoder
    import kaldifst

    graph, words = toy_ctc_graph(lexicon)
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(num_frames, 4)) * sharpness
    logp = (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(np.float32)  # (T, V)
    cfg = kaldi_decoder.LatticeSimpleDecoderConfig(beam=beam, lattice_beam=lattice_beam)
    dec = kaldi_decoder.LatticeSimpleDecoder(graph, cfg)
    dec.decode(kaldi_decoder.DecodableCtc(logp))
    ok, raw = dec.get_raw_lattice()
    ok2, best = dec.get_best_path()
    if not (ok and ok2):
        raise RuntimeError("toy decode reached no final state")
    _, _, olabels, weight = kaldifst.get_linear_symbol_sequence(best)
    cost = 0.0
    for line in best.to_str().splitlines():
        f = line.split()
        w = f[-1] if len(f) in (2, 5) else None
        if w and "," in w:
            g, a = w.split(",")
            cost += float(g) + float(a)
    return ToyDecode(raw.to_str(), best.to_str(), [words[i] for i in olabels if i], cost,
                     words, num_frames)
