"""Word lattices from CTC log-probs (kaldi-decoder over a TLG graph), then N-best rescoring
with the attention decoder, as ESPnet's joint CTC/attention scoring does.

The first pass works for any model that gives per-frame log-probs: ``decode_logprobs`` takes
a ``(T, V)`` matrix. ``EspnetLatticeASR`` adds the ESPnet model: its encoder and CTC head give
the matrix, and its attention decoder rescores the lattice's N-best:

    score = (1 - ctc_weight) * att + ctc_weight * ctc + lm_weight * lm + penalty * words

where ``att`` is the decoder's log p(tokens, <eos> | x), ``ctc`` the CTC log-likelihood of the
token sequence (what ESPnet's CTC prefix scorer gives for a finished hypothesis), and ``lm``
the lattice's graph (n-gram) score. With ``lm_weight = 0`` this is the objective of ESPnet's
own beam search, evaluated on the lattice's candidates instead of beam-search ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from speechlm.asr.ctc_graph import DecodingGraph
from speechlm.core.hypothesis import Hypothesis


@dataclass(frozen=True)
class LatticeDecodeConfig:
    """Options of the lattice first pass and the attention rescoring.

    Attributes:
        beam: decoding beam (natural-log cost units, after ``lm_scale``).
        lattice_beam: keep lattice arcs within this cost of the best path.
        lm_scale: weight of the graph (n-gram) score against the acoustic log-probs during
            search; applied as acoustic scale ``1 / lm_scale`` and undone in the lattice, so
            lattices keep unscaled scores (Kaldi's convention).
        nbest: distinct word sequences taken from the lattice for attention rescoring.
        ctc_weight, lm_weight, penalty: the rescoring formula (module docstring).
        attention_rescoring: False keeps the lattice's best path as the 1-best.
    """

    beam: float = 16.0
    lattice_beam: float = 8.0
    lm_scale: float = 1.0
    nbest: int = 10
    ctc_weight: float = 0.3
    lm_weight: float = 0.0
    penalty: float = 0.0
    attention_rescoring: bool = True

    def __post_init__(self):
        for name in ("beam", "lattice_beam", "lm_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.nbest < 1:
            raise ValueError(f"nbest must be >= 1, got {self.nbest}")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {self.ctc_weight}")

    @classmethod
    def from_dict(cls, options: dict) -> LatticeDecodeConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown lattice option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        return cls(**options)


def decode_logprobs(graph: DecodingGraph, logprobs: np.ndarray, *, utt: str,
                    frame_shift: float, config: LatticeDecodeConfig):
    """First pass over one utterance: a word lattice with word times.

    Args:
        graph: the TLG graph (its input labels are token id + 1).
        logprobs: (T, V) natural-log CTC posteriors, V = number of tokens.
        utt: utterance id, for the lattice and error messages.
        frame_shift: seconds per row of ``logprobs``.
        config: beams and ``lm_scale``.

    Returns:
        ``speechlm.lattice.Lattice`` with epsilons removed, unscaled am/lm scores.
    """
    import kaldi_decoder

    from speechlm.lattice import Lattice

    logprobs = np.ascontiguousarray(logprobs, dtype=np.float32)
    if logprobs.ndim != 2 or logprobs.shape[1] != len(graph.tokens):
        raise ValueError(f"{utt}: log-probs of shape {logprobs.shape} do not match the graph's "
                         f"{len(graph.tokens)} tokens")
    if not np.isfinite(logprobs).all():
        raise ValueError(f"{utt}: log-probs contain NaN or inf")
    am_scale = 1.0 / config.lm_scale
    decoder = kaldi_decoder.LatticeSimpleDecoder(
        graph.fst, kaldi_decoder.LatticeSimpleDecoderConfig(
            beam=config.beam, lattice_beam=config.lattice_beam))
    decoder.decode(kaldi_decoder.DecodableCtc(logprobs * am_scale))
    ok, raw = decoder.get_raw_lattice()
    if not ok or raw.num_states == 0:
        raise ValueError(f"{utt}: no path through the decoding graph reached a final state "
                         f"(beam {config.beam}); try a larger beam or check the lexicon")
    words = dict(enumerate(graph.words))
    lattice = Lattice.from_kaldi_text(raw.to_str(), utt=utt, words=words,
                                      frame_shift=frame_shift)
    silence = {BLANK_LABEL}
    if graph.lexicon.separator is not None:
        silence.add(graph.tokens.index(graph.lexicon.separator) + 1)
    return ctc_word_lattice(lattice.scale(am_scale=1.0 / am_scale, lm_scale=1.0),
                            am_scale=am_scale, silence_labels=frozenset(silence))


BLANK_LABEL = 1  # DecodableCtc input label of token 0 (<blank>)


def ctc_word_lattice(raw, *, am_scale: float = 1.0,
                     silence_labels: frozenset[int] = frozenset({BLANK_LABEL})):
    """Frame-level CTC lattice -> word lattice whose arcs span their words.

    In a TLG lattice the word label sits on the first frame of the word's first token; the
    word's other frames (token repeats, later tokens, blanks) follow as epsilon arcs. Each
    word arc ``u -> t`` is joined here with the best (Viterbi, ``am_scale * am + lm``)
    epsilon path from ``t`` to each next "boundary" (a state where a word arc starts, or a
    final state), so that its ``start`` is the word's first frame and its ``end`` is the end
    of its last frame that is not blank or word separator (those are silence, not word).
    Epsilon paths from the start state to a boundary stay as single ``<eps>`` arcs (leading
    silence). Scores
    are sums along the joined path, so path scores are those of the frame lattice's best
    alignment per word sequence, as Kaldi's lattice determinisation keeps.

    Args:
        raw: a ``Lattice`` read from kaldi-decoder's raw lattice (one arc per frame, ``tids``
            holding the CTC input label).
        am_scale: acoustic scale for choosing the best epsilon path.
        silence_labels: input labels that do not extend a word (blank, separator).
    """
    from speechlm.lattice import EPS, Arc, Lattice

    lat = raw.connect()
    out = lat.out_arcs
    pos = {s: i for i, s in enumerate(lat.topo_order)}
    boundary = [any(lat.arcs[k].word != EPS for k in out[s]) or s in lat.finals
                for s in range(lat.num_states)]

    def eps_paths(origin: int, last_end: float):
        """Best epsilon path from ``origin`` to every boundary: state -> (am, lm, end)."""
        best = {origin: (0.0, 0.0, last_end)}
        reach, stack = {origin}, [origin]
        while stack:
            s = stack.pop()
            for k in out[s]:
                a = lat.arcs[k]
                if a.word == EPS and a.dst not in reach:
                    reach.add(a.dst)
                    stack.append(a.dst)
        for s in sorted(reach, key=pos.__getitem__):
            if s not in best:
                continue
            am, lm, end = best[s]
            for k in out[s]:
                a = lat.arcs[k]
                if a.word != EPS:
                    continue
                cand = (am + a.am_score, lm + a.lm_score,
                        a.end if any(t not in silence_labels for t in a.tids) else end)
                old = best.get(a.dst)
                if old is None or am_scale * cand[0] + cand[1] > am_scale * old[0] + old[1]:
                    best[a.dst] = cand
        return {s: v for s, v in best.items() if boundary[s]}

    arcs: list[Arc] = []
    for a in lat.arcs:
        if a.word == EPS:
            continue
        for v, (am, lm, end) in eps_paths(a.dst, a.end).items():
            arcs.append(Arc(a.src, v, a.word, a.am_score + am, a.lm_score + lm,
                            start=a.start, end=end))
    if not boundary[lat.start] or lat.start in lat.finals or any(
            lat.arcs[k].word == EPS for k in out[lat.start]):
        for v, (am, lm, _) in eps_paths(lat.start, lat.state_times[lat.start]).items():
            if v != lat.start:
                arcs.append(Arc(lat.start, v, EPS, am, lm))
    return Lattice(arcs, lat.finals, lat.state_times, start=lat.start, utt=lat.utt,
                   num_states=lat.num_states).connect()


class EspnetLatticeASR:
    """An ESPnet CTC/attention model decoding to lattices through a TLG graph.

    Args:
        asr: a loaded ``speechlm.asr.espnet_asr.EspnetASR``.
        graph: a ``DecodingGraph`` built for the model's tokens (``speechlm make-graph``).
        config: ``LatticeDecodeConfig``.

    Calling it on features returns ``(hypotheses, lattice)``: hypotheses best first after
    rescoring (each with ``scores`` att/ctc/lm/am), and the first-pass lattice.
    """

    def __init__(self, asr, graph: DecodingGraph, config: LatticeDecodeConfig | None = None):
        self.asr = asr
        self.graph = graph
        self.config = config or LatticeDecodeConfig()
        self.model = asr.asr_model
        self.tokens = list(self.model.token_list)
        if self.tokens != graph.tokens:
            raise ValueError("the decoding graph was built for other tokens than the model's "
                             "(rebuild it with speechlm make-graph for this model dir)")
        self._token_ids = {t: i for i, t in enumerate(self.tokens)}
        self._space = (self._token_ids[graph.lexicon.separator]
                       if graph.lexicon.separator is not None else None)
        self.frame_shift = asr.fbank.frame_shift_s * _subsampling(self.model)

    def logprobs(self, feats: np.ndarray):
        """Encoder output (1, T', D) and CTC log-probs (T', V) of (T, D) features."""
        import torch

        with torch.inference_mode():
            x = torch.tensor(feats, dtype=torch.float32)[None]  # a copy: normalised in place
            enc, _ = self.model.encode(x, torch.tensor([x.shape[1]]))
            return enc, self.model.ctc.log_softmax(enc)[0].numpy()

    def __call__(self, feats: np.ndarray, utt: str = "utt"):
        enc, logp = self.logprobs(feats)
        lattice = decode_logprobs(self.graph, logp, utt=utt, frame_shift=self.frame_shift,
                                  config=self.config)
        paths = lattice.nbest(self.config.nbest)
        hyps = self.rescore(enc, logp, paths)
        return hyps, lattice

    def token_ids(self, words: list[str]) -> list[int]:
        """Token ids of a word sequence, spelled as the lexicon spells it."""
        ids: list[int] = []
        for k, word in enumerate(words):
            if k and self._space is not None:
                ids.append(self._space)
            ids.extend(self._token_ids[t] for t in self.graph.lexicon.prons[word])
        return ids

    def rescore(self, enc, logp: np.ndarray, paths, attention: bool | None = None
                ) -> list[Hypothesis]:
        """Joint CTC/attention (+ lm) scores of lattice paths; hypotheses best first.
        ``attention`` (default: the config's ``attention_rescoring``) False keeps the lattice
        scores."""
        import torch
        import torch.nn.functional as F

        cfg = self.config
        rescoring = cfg.attention_rescoring if attention is None else attention
        if not paths:
            return []
        seqs = [self.token_ids(list(p.words)) for p in paths]
        n = len(seqs)
        sos = eos = len(self.tokens) - 1  # ESPnet puts <sos/eos> last
        att = np.zeros(n)
        ctc = np.zeros(n)
        if rescoring:
            with torch.inference_mode():
                lens = torch.tensor([len(s) + 1 for s in seqs])
                ys_in = torch.full((n, int(lens.max())), eos, dtype=torch.long)
                ys_out = torch.full((n, int(lens.max())), -1, dtype=torch.long)
                for i, s in enumerate(seqs):
                    ys_in[i, :len(s) + 1] = torch.tensor([sos, *s])
                    ys_out[i, :len(s) + 1] = torch.tensor([*s, eos])
                hs = enc.expand(n, -1, -1)
                hlens = torch.full((n,), enc.shape[1], dtype=torch.long)
                logits, _ = self.model.decoder(hs, hlens, ys_in, lens)
                lp = logits.log_softmax(-1)  # (N, L, V)
                mask = ys_out >= 0
                gathered = lp.gather(-1, ys_out.clamp(min=0)[..., None])[..., 0]
                att = (gathered * mask).sum(-1).numpy()
                # CTC log-likelihood of each full token sequence (blank = 0)
                lpt = torch.as_tensor(logp)[:, None, :].expand(-1, n, -1)  # (T, N, V)
                targets = torch.cat([torch.tensor(s, dtype=torch.long) for s in seqs])
                ctc = -F.ctc_loss(lpt, targets, torch.full((n,), logp.shape[0]),
                                  torch.tensor([len(s) for s in seqs]), blank=0,
                                  reduction="none", zero_infinity=False).numpy()
        hyps = []
        for i, path in enumerate(paths):
            if rescoring:
                total = ((1 - cfg.ctc_weight) * att[i] + cfg.ctc_weight * ctc[i]
                         + cfg.lm_weight * path.lm_score + cfg.penalty * len(path.words))
                # Spelled with a separator between every word, a lattice path (where the
                # separator may be skipped) can need more frames than there are: CTC gives it
                # -inf. ESPnet's CTC prefix scorer prunes such hypotheses; so do we, rather
                # than write a score nobody downstream can use. The lattice keeps the path.
                if not math.isfinite(total):
                    continue
            else:
                total = path.tot_score
            scores = (("am", float(path.am_score)), ("att", float(att[i])),
                      ("ctc", float(ctc[i])), ("lm", float(path.lm_score)))
            hyps.append(Hypothesis(text=" ".join(path.words), score=float(total),
                                   tokens=tuple(path.words), scores=scores))
        if not hyps:  # every path infeasible: the lattice's own order and scores
            return self.rescore(enc, logp, paths, attention=False)
        hyps.sort(key=lambda h: -h.score)
        return hyps


_SUBSAMPLING = {"Conv2dSubsampling": 4, "Conv2dSubsampling1": 1, "Conv2dSubsampling2": 2,
                "Conv2dSubsampling6": 6, "Conv2dSubsampling8": 8}


def _subsampling(model) -> int:
    """Feature frames per encoder frame, from the class of the encoder's input layer."""
    embed = getattr(model.encoder, "embed", None)
    return _SUBSAMPLING.get(type(embed).__name__, 1)
