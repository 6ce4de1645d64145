"""General English ASR with lattices out of the box: PocketSphinx's pip model.

The ``pocketsphinx`` wheel ships a real US-English acoustic model, a trigram LM and the CMU
dictionary. This backend decodes 16 kHz audio with it and turns the decoder's HTK lattice
(``Lattice.write_htk``) into our :class:`speechlm.lattice.Lattice`.

PocketSphinx's SLF carries acoustic scores only (``a=``), so the LM part is put back here:
the lattice is expanded so that each state knows the words before it, and each word arc gets
its log-probability under the decoder's own LM given those words (trigram by default: with
bigrams only, "four of clothes" beats the decoder's own "four of clubs"), plus the word
insertion penalty. Scores
follow Kaldi's convention: ``am_score`` is the unscaled acoustic log-likelihood,
``lm_score = ln P(w | h) + ln(wip) / lw``, and ``am_scale = 1 / lw`` ranks paths as the
decoder's search did (``POSTERIOR_AM_SCALE`` is what posteriors and WCNs use).

Filler words (``<sil>``, ``[NOISE]``, ``++...++``), ``<s>``/``</s>`` and HTK's ``!NULL``
become epsilons; alternative pronunciations ``word(2)`` become ``word``.
"""
from __future__ import annotations

import math
import os
import re
import tempfile

import numpy as np

from speechlm.core.hypothesis import Hypothesis
from speechlm.data.audio import resample


def _prune_slf(path: str, min_posterior: float) -> str:
    """SLF text without the links whose ``p=`` is below ``min_posterior``."""
    kept = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("J=") and min_posterior > 0:
                p = re.search(r"\bp=(\S+)", line)
                if p is not None and float(p.group(1)) < min_posterior:
                    continue
            kept.append(line)
    n_links = sum(1 for line in kept if line.startswith("J="))
    # the header's link count must match what is left
    return "".join(re.sub(r"\bL=\d+", f"L={n_links}", line) if line.startswith("N=") else line
                   for line in kept)


_ALT_PRON = re.compile(r"\(\d+\)$")
_NON_WORDS = {"<s>", "</s>", "<sil>", "!NULL", "!SENT_START", "!SENT_END", "<eps>"}


def normalize_word(word: str) -> str:
    """PocketSphinx dictionary word -> transcript word (``"<eps>"`` for fillers)."""
    if word in _NON_WORDS or word.startswith("[") or word.startswith("++"):
        return "<eps>"
    return _ALT_PRON.sub("", word)


class PocketSphinxASR:
    """PocketSphinx decoding to hypotheses and a lattice.

    Args:
        hmm, lm, dictionary: model paths; None takes the wheel's US-English model. ``lm`` may
            be an ARPA file (e.g. from ``speechlm.asr.ngram.write_arpa``) or a binary LM.
        jsgf: a JSGF grammar file used instead of the n-gram LM.
        lw, wip, beam: decoder options (None: PocketSphinx's defaults, lw 6.5, wip 0.65).
        nbest: distinct word sequences returned from the lattice.
        lm_order: n-gram order of the LM scores put on lattice arcs (the lattice grows with
            the number of distinct histories; 2 is smaller and less exact).
        min_link_posterior: links whose posterior (PocketSphinx's own ``p=``) is below this
            are dropped before the LM expansion: most of a raw PocketSphinx lattice has
            posterior ~0, and the expansion multiplies what is left by its histories.
            (With an ARPA ``lm`` PocketSphinx writes ``p=1`` everywhere, so this does
            nothing there and the history pruning below does the work.)
        history_beam, max_histories: while expanding, a lattice node keeps at most
            ``max_histories`` word histories, those whose best (Viterbi) score from the
            start is within ``history_beam`` of the node's best; the others are dropped, as
            a decoder prunes its tokens. Without this a raw lattice of 10k links grew to
            12M arcs.
        lattice_beam: prune the expanded lattice to paths within this score of the best
            (None: keep all).

    >>> asr = PocketSphinxASR()                          # doctest: +SKIP
    >>> hyps, lattice = asr(samples, sample_rate=16000)  # doctest: +SKIP
    """

    sample_rate = 16000

    def __init__(self, *, hmm: str | None = None, lm: str | None = None,
                 dictionary: str | None = None, jsgf: str | None = None,
                 lw: float | None = None, wip: float | None = None, beam: float | None = None,
                 nbest: int = 10, lm_order: int = 3, min_link_posterior: float = 1e-4,
                 history_beam: float = 10.0, max_histories: int = 6,
                 lattice_beam: float | None = 8.0) -> None:
        from pocketsphinx import Config, Decoder

        for name, path in (("hmm", hmm), ("lm", lm), ("dictionary", dictionary),
                           ("jsgf", jsgf)):
            if path is not None and not os.path.exists(path):
                raise FileNotFoundError(f"pocketsphinx {name}: {path} does not exist")
        # Batch CMN: each utterance is normalised by its own mean. The default live CMN
        # carries its estimate from one utterance to the next, so results would depend on
        # which utterances came before (job splits, order); we always decode whole ones.
        options: dict = {"loglevel": "ERROR", "cmn": "batch"}
        if hmm:
            options["hmm"] = hmm
        if dictionary:
            options["dict"] = dictionary
        if jsgf:
            options["jsgf"] = jsgf
        elif lm:
            options["lm"] = lm
        if lw is not None:
            options["lw"] = float(lw)
        if wip is not None:
            options["wip"] = float(wip)
        if beam is not None:
            options["beam"] = float(beam)
        self.decoder = Decoder(Config(**options))
        if lm_order < 1:
            raise ValueError(f"lm_order must be >= 1, got {lm_order}")
        self.nbest = nbest
        self.lm_order = lm_order
        self.min_link_posterior = min_link_posterior
        self.history_beam = history_beam
        self.max_histories = max_histories
        self.lattice_beam = lattice_beam
        self.lw = float(self.decoder.config["lw"])
        # the final best-path search over the lattice weighs the LM by bestpathlw
        self.bestpath_lw = float(self.decoder.config["bestpathlw"])
        self.wip = float(self.decoder.config["wip"])
        self._lm = None if jsgf else self.decoder.get_lm()
        self._logmath = self.decoder.get_logmath()
        self._lm_cache: dict[tuple[str, ...], float] = {}

    @property
    def posterior_am_scale(self) -> float:
        """Acoustic scale that ranks lattice paths as the decoder's best-path search does
        (measured: the lattice's best path then equals the decoder's 1-best on all 10 cards
        and LibriVox samples in ../shared/data; with ``1 / lw`` on 7)."""
        return 1.0 / self.bestpath_lw

    def _logprob(self, word: str, history: tuple[str, ...]) -> float:
        """Natural-log P(word | history) from the decoder's LM (0 with a grammar).

        ``history`` is oldest first; PocketSphinx wants the word, then the history newest
        first.
        """
        if self._lm is None:
            return 0.0
        key = (word, *reversed(history))
        if key not in self._lm_cache:
            self._lm_cache[key] = float(self._logmath.log_to_ln(self._lm.prob(list(key))))
        return self._lm_cache[key]

    def __call__(self, samples: np.ndarray, sample_rate: int | None = None, *,
                 utt: str = "utt"):
        """Decode mono float samples; returns ``(hypotheses best first, lattice or None)``."""
        samples = np.asarray(samples, dtype=np.float32)
        if sample_rate is not None and sample_rate != self.sample_rate:
            samples = resample(samples, sample_rate, self.sample_rate)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
        self.decoder.start_utt()
        self.decoder.process_raw(pcm.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        if hyp is None:
            return [], None
        lattice = self.lattice(utt)
        first = " ".join(w for w in (normalize_word(x) for x in hyp.hypstr.split())
                         if w != "<eps>")
        if lattice is None:
            return [Hypothesis(text=first, score=float(hyp.score),
                               tokens=tuple(first.split()))], None
        # Hypotheses come from the lattice, so that the 1-best is the lattice's best path
        # and the N-best are lattice paths (oracle WERs are then ordered). The decoder's
        # own best-path search agrees with the lattice's best path (see posterior_am_scale).
        hyps = [Hypothesis(text=" ".join(p.words), score=float(p.tot_score),
                           tokens=tuple(p.words),
                           scores=(("am", float(p.am_score)), ("lm", float(p.lm_score))))
                for p in lattice.nbest(self.nbest, am_scale=self.posterior_am_scale)]
        return hyps[:self.nbest], lattice

    def lattice(self, utt: str):
        """The last utterance's lattice with bigram LM scores, or None if there is none."""
        from speechlm.lattice import Lattice

        ps_lattice = self.decoder.get_lattice()
        if ps_lattice is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "lat.slf")
            ps_lattice.write_htk(path)
            raw = Lattice.from_slf(_prune_slf(path, self.min_link_posterior), utt=utt)
        return self.with_lm_scores(raw)

    def with_lm_scores(self, raw):
        """Expand ``raw`` by word history and put n-gram LM scores on its word arcs."""
        from speechlm.lattice import Arc, Lattice

        out = [[] for _ in range(raw.num_states)]
        for a in raw.arcs:
            out[a.src].append(a)
        keep = max(self.lm_order - 1, 0)
        first: tuple[str, ...] = ("<s>",)[:keep]
        ids: dict[tuple[int, tuple[str, ...]], int] = {(raw.start, first): 0}
        times = [raw.state_times[raw.start]]
        arcs: list[Arc] = []
        finals: dict[int, tuple[float, float]] = {}
        penalty = math.log(self.wip) / self.lw
        scale = self.posterior_am_scale
        # per raw state: history -> best score from the start (Viterbi), for pruning
        alpha: dict[int, dict[tuple[str, ...], float]] = {raw.start: {first: 0.0}}
        for s in raw.topo_order:
            hist = alpha.pop(s, None)
            if not hist:
                continue
            best = max(hist.values())
            kept = sorted((h for h, v in hist.items() if v >= best - self.history_beam),
                          key=lambda h: -hist[h])[:self.max_histories]
            for h in kept:
                src = ids[(s, h)]
                if s in raw.finals:
                    am, lm = raw.finals[s]
                    finals[src] = (am, lm + self._logprob("</s>", h))
                for a in out[s]:
                    word = normalize_word(a.word)
                    nh = h if word == "<eps>" else (h + (word,))[len(h) + 1 - keep:]
                    lm = a.lm_score if word == "<eps>" else (
                        a.lm_score + self._logprob(word, h) + penalty)
                    key = (a.dst, nh)
                    if key not in ids:
                        ids[key] = len(ids)
                        times.append(raw.state_times[a.dst])
                    score = hist[h] + scale * a.am_score + lm
                    succ = alpha.setdefault(a.dst, {})
                    if score > succ.get(nh, -math.inf):
                        succ[nh] = score
                    arcs.append(Arc(src, ids[key], word, a.am_score, lm,
                                    start=a.start, end=a.end))
        lattice = Lattice(arcs, finals, times, start=0, utt=raw.utt)
        if self.lattice_beam is not None:
            return lattice.prune(self.lattice_beam, am_scale=scale)
        return lattice.connect()
