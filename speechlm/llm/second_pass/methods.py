"""The second-pass methods behind one switch, over any runtime LLM.

Each method gives one score per hypothesis (higher is better) except ``ger-free``, which
writes a transcript. Scores are combined with the first pass by one formula::

    tot_score(h) = first_pass(h) + llm_scale * method_score(h)

``first_pass`` is the decoder's score, or the rank prior ``-rank`` where the N-best comes
without scores (HyPoradise); ``llm_scale`` is tuned on dev over a grid that includes 0, so
on dev a method is never worse than the 1-best. ``ger-free`` is guarded instead: its output
is kept only when its word edit distance to the closest hypothesis, over that hypothesis's
length, is at most a threshold tuned on dev; otherwise (and when generation fails) the
1-best is used and the fallback is counted.

=============  ===========================================================================
method         score of a hypothesis
=============  ===========================================================================
lm             ln p(hyp, EOS) (``lm_norm``: divided by its token count)
prompt         ln p(hyp as the answer | instruction [+ k demonstrations])
tap            the same after the task-activating turns
ger-select     ln p(hyp as the answer | the N-best in the prompt), i.e. constrained GER
ger-free       (generation) the transcript the LLM writes after the N-best, guarded
mwer           minus the cost of a discriminatively trained scorer (``second_pass.mwer``)
pll            pseudo-log-likelihood of a fine-tuned bidirectional masked LM
               (``second_pass.pll``)
=============  ===========================================================================
"""
from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from speechlm.llm.second_pass.evaluate import errors, wer
from speechlm.llm.second_pass.nbest import NbestItem, Note
from speechlm.llm.second_pass.prompt import PromptBuilder

logger = logging.getLogger(__name__)

__all__ = ["METHODS", "Correction", "DemoPool", "MethodConfig", "Scored", "choose", "correct",
           "guard", "normalize_output", "score", "tune_scale", "tune_threshold"]

METHODS = ("lm", "lm_norm", "prompt", "tap", "ger-select", "ger-free", "mwer", "pll")
SCALES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0,
          1000.0)  # the large ones for MWER heads, whose cost scale is free
# -1 keeps no output (always the 1-best): dev is never worse than the 1-best, as with
# llm_scale 0
THRESHOLDS = (-1.0, 0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, float("inf"))


@dataclass(frozen=True)
class MethodConfig:
    """One setting of a method.

    Args:
        method: one of :data:`METHODS`.
        shots: demonstrations per prompt (prompt, tap, ger-*).
        demos: ``"random"`` or ``"similar"`` (nearest training 1-best by MiniLM embedding).
        max_new_tokens: generation cap of ``ger-free`` (also capped at 2x the 1-best's
            tokens + 8).
        batch_size: hypotheses per forward pass.
        seed: random demonstrations.
    """

    method: str = "lm"
    shots: int = 0
    demos: str = "random"
    max_new_tokens: int = 96
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.shots < 0:
            raise ValueError(f"shots must be >= 0, got {self.shots}")
        if self.demos not in ("random", "similar"):
            raise ValueError(f"demos must be 'random' or 'similar', got {self.demos!r}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")

    @property
    def key(self) -> str:
        """The setting's name in results (``prompt_3shot_similar``)."""
        if self.method in ("lm", "lm_norm", "mwer", "pll") or not self.shots:
            return self.method
        return f"{self.method}_{self.shots}shot_{self.demos}"


@dataclass
class Scored:
    """A method's scores of one utterance's hypotheses and what it cost."""

    scores: list[float]
    seconds: float
    failed: bool = False


@dataclass
class Correction:
    """A free GER output (``text`` None when generation failed)."""

    text: str | None
    seconds: float
    reason: str = ""


class DemoPool:
    """Demonstrations from the training split: ``k`` random utterances (fixed per seed and
    utterance, so that they do not depend on the order or on a resumed run) or the ``k``
    whose 1-best is nearest to this utterance's 1-best (cosine, sentence encoder).
    """

    def __init__(self, train: Sequence[NbestItem], k: int, selection: str = "random", *,
                 encoder=None, seed: int = 0) -> None:
        self.train = [it for it in train if it.ref is not None and it.hyps]
        if k and not self.train:
            raise ValueError("demonstrations asked for, but the training split has no "
                             "utterance with a reference")
        self.k, self.selection, self.encoder = min(k, len(self.train)), selection, encoder
        self.seed = seed
        self._vecs = None
        if k and selection == "similar":
            if encoder is None:
                raise ValueError("similar demonstrations need a sentence encoder")
            self._vecs = encoder.embed([it.hyps[0] for it in self.train])  # (N, D)

    def for_item(self, item: NbestItem) -> list[NbestItem]:
        if not self.k:
            return []
        if self._vecs is None:
            return random.Random(f"{self.seed}:{item.utt}").sample(self.train, self.k)
        q = self.encoder.embed([item.hyps[0] if item.hyps else ""])[0]  # (D,)
        sims = self._vecs @ q
        # never the utterance itself (when train and eval overlap, as in a sanity run)
        order = [j for j in np.argsort(-sims) if self.train[j].utt != item.utt]
        return [self.train[j] for j in order[: self.k]]


def _fits(llm, prefix: str, texts: Sequence[str], reserve: int = 0) -> bool:
    n = len(llm.tokenizer(prefix)["input_ids"])
    longest = max((len(llm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts),
                  default=0)
    return n + longest + 1 + reserve <= llm.max_length


def build_prefix(llm, builder: PromptBuilder, config: MethodConfig, item: NbestItem,
                 demos: Sequence[NbestItem], notes: list[Note], reserve: int = 0) -> str | None:
    """The shared prefix of one utterance, fitted to the context: demonstrations go first,
    then (GER) hypotheses from the end of the N-best; the instructions are never cut. None
    when even the 1-best alone does not fit."""
    method = config.method
    if method in ("lm", "lm_norm", "mwer", "pll"):
        return None
    demos = list(demos)
    hyps = list(item.hyps)
    answers = [builder.answer(h) for h in item.hyps]
    while True:
        if method in ("prompt", "tap"):
            turns = builder.rescore([d.ref for d in demos], tap=method == "tap")
        else:
            turns = builder.ger(hyps, [(d.hyps, d.ref) for d in demos])
        prefix = builder.render(turns)
        if _fits(llm, prefix, answers, reserve):
            break
        if demos:
            demos.pop()
            notes.append(Note(item.utt, "context", "prompt over the context: one "
                                                   "demonstration dropped"))
        elif method.startswith("ger") and len(hyps) > 1:
            hyps.pop()
            notes.append(Note(item.utt, "context", f"prompt over the context: N-best cut to "
                                                   f"{len(hyps)} hypotheses"))
        else:
            notes.append(Note(item.utt, "context", "even the 1-best alone does not fit the "
                                                   "context: falls back to the 1-best"))
            return None
    return prefix


def score(llm, items: Sequence[NbestItem], config: MethodConfig, *,
          builder: PromptBuilder | None = None, demos: DemoPool | None = None,
          notes: list[Note] | None = None, progress: bool = False) -> dict[str, Scored]:
    """Scores of every hypothesis under ``config.method`` (not ``ger-free``/``mwer``).

    One ``LLM.score`` call per utterance: the prefix (prompt, demonstrations, N-best) is
    encoded once and shared by the hypotheses. An utterance whose prompt cannot fit gets
    all-zero scores (the first pass decides) and ``failed``.
    """
    if config.method in ("ger-free", "mwer", "pll"):
        raise ValueError(f"{config.method} does not score through the LLM; see correct() / "
                         "second_pass.mwer / second_pass.pll")
    from tqdm import tqdm

    builder = builder or PromptBuilder(llm.tokenizer)
    notes = notes if notes is not None else []
    out: dict[str, Scored] = {}
    for item in tqdm(items, desc=config.key, disable=not progress, mininterval=5.0):
        t0 = time.perf_counter()
        if not item.hyps:
            out[item.utt] = Scored([], 0.0)
            continue
        chosen = demos.for_item(item) if demos is not None else []
        prefix = build_prefix(llm, builder, config, item, chosen, notes)
        if prefix is None and config.method not in ("lm", "lm_norm"):
            out[item.utt] = Scored([0.0] * len(item.hyps), time.perf_counter() - t0, True)
            continue
        texts = [builder.answer(h) for h in item.hyps] if prefix is not None else list(item.hyps)
        try:
            res = llm.score(texts, prefix=prefix, per_token=True, append_eos=True,
                            batch_size=config.batch_size)
        except (ValueError, OSError) as e:  # over the context; a remote LLM that timed out
            notes.append(Note(item.utt, "failed", f"scoring failed ({e}): first pass kept"))
            out[item.utt] = Scored([0.0] * len(item.hyps), time.perf_counter() - t0, True)
            continue
        if config.method == "lm_norm":
            vals = [r.total / max(len(r.token_logprobs), 1) for r in res]
        else:
            vals = [float(r.total) for r in res]
        out[item.utt] = Scored(vals, time.perf_counter() - t0)
    return out


# ---- choosing ---------------------------------------------------------------------------
def choose(items: Sequence[NbestItem], scores: Mapping[str, Scored], llm_scale: float
           ) -> dict[str, str]:
    """The best hypothesis per utterance by ``first_pass + llm_scale * score`` (ties: the
    first pass's order)."""
    out = {}
    for it in items:
        if not it.hyps:
            out[it.utt] = ""
            continue
        s = scores[it.utt].scores
        tot = [fp + llm_scale * v for fp, v in zip(it.first_pass, s, strict=True)]
        out[it.utt] = it.hyps[max(range(len(tot)), key=lambda k: (tot[k], -k))]
    return out


def tune_scale(items: Sequence[NbestItem], scores: Mapping[str, Scored],
               grid: Sequence[float] = SCALES) -> tuple[float, dict[float, float]]:
    """The ``llm_scale`` of lowest WER on ``items`` (ties: the smallest scale, i.e. the
    least change from the first pass) and the WER of every scale."""
    table = {s: wer(items, choose(items, scores, s)) for s in grid}
    best = min(table, key=lambda s: (round(table[s], 6), s))
    return best, table


# ---- free GER -------------------------------------------------------------------------
_PUNCT = re.compile(r"[^\w' ]+")


def normalize_output(text: str) -> str:
    """A generated transcript in the N-best's form: first line, lower case, no punctuation
    (apostrophes kept), no list marker or quotes."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^\s*(\d+[.)]|-|\*)\s*", "", line).lower()
    return " ".join(_PUNCT.sub(" ", line).replace("_", " ").split())


def correct(llm, items: Sequence[NbestItem], config: MethodConfig, *,
            builder: PromptBuilder | None = None, demos: DemoPool | None = None,
            notes: list[Note] | None = None, progress: bool = False
            ) -> dict[str, Correction]:
    """Free GER: greedy generation of the transcript after the N-best prompt."""
    from tqdm import tqdm

    from speechlm.runtime.base import SamplingParams

    builder = builder or PromptBuilder(llm.tokenizer)
    notes = notes if notes is not None else []
    sel = MethodConfig("ger-select", config.shots, config.demos)
    out: dict[str, Correction] = {}
    for item in tqdm(items, desc=config.key, disable=not progress, mininterval=5.0):
        t0 = time.perf_counter()
        if not item.hyps:
            out[item.utt] = Correction("", 0.0)
            continue
        chosen = demos.for_item(item) if demos is not None else []
        n1 = len(llm.tokenizer(item.hyps[0], add_special_tokens=False)["input_ids"])
        cap = min(config.max_new_tokens, 2 * n1 + 8)
        prefix = build_prefix(llm, builder, sel, item, chosen, notes, reserve=cap)
        if prefix is None:
            out[item.utt] = Correction(None, time.perf_counter() - t0, "context")
            continue
        try:
            # a chat-templated prefix carries its own special tokens; generate() adds only
            # what the tokenizer adds by itself (nothing for SmolLM2, BOS for Llama-style)
            comp = llm.generate(prefix, SamplingParams(max_tokens=cap, stop=("\n",)))[0]
        except (ValueError, RuntimeError, OSError) as e:  # OSError: a remote LLM timed out
            notes.append(Note(item.utt, "failed", f"generation failed ({e}): 1-best kept"))
            out[item.utt] = Correction(None, time.perf_counter() - t0, "error")
            continue
        text = normalize_output(comp.text)
        out[item.utt] = Correction(text or None, time.perf_counter() - t0,
                                   "" if text else "empty")
    return out


def drift(item: NbestItem, text: str) -> float:
    """Word edit distance of ``text`` to the closest hypothesis, over that hypothesis's
    length (0: it is one of the N-best)."""
    return min(errors(h, text) / max(len(h.split()), 1) for h in item.hyps)


def guard(items: Sequence[NbestItem], corrections: Mapping[str, Correction],
          threshold: float) -> tuple[dict[str, str], dict[str, int]]:
    """Free GER outputs, each replaced by the 1-best when it failed or drifted more than
    ``threshold`` (:func:`drift`) from every hypothesis. Returns the texts and counts
    ``{"failed", "fallback", "kept"}``.

    >>> from speechlm.llm.second_pass.nbest import NbestItem
    >>> it = NbestItem("u", ("the cat sat", "the cat sad"))
    >>> c = {"u": Correction("a dog ran off", 0.0)}
    >>> guard([it], c, 0.5)
    ({'u': 'the cat sat'}, {'failed': 0, 'fallback': 1, 'kept': 0})
    """
    texts, counts = {}, {"failed": 0, "fallback": 0, "kept": 0}
    for it in items:
        c = corrections[it.utt]
        if not it.hyps:
            texts[it.utt] = ""
        elif c.text is None:
            counts["failed"] += 1
            texts[it.utt] = it.hyps[0]
        elif drift(it, c.text) > threshold:
            counts["fallback"] += 1
            texts[it.utt] = it.hyps[0]
        else:
            counts["kept"] += 1
            texts[it.utt] = c.text
    return texts, counts


def tune_threshold(items: Sequence[NbestItem], corrections: Mapping[str, Correction],
                   grid: Sequence[float] = THRESHOLDS) -> tuple[float, dict[float, float]]:
    """The guard threshold of lowest WER on ``items`` (ties: the smallest, i.e. the most
    cautious) and the WER of every threshold (-1 keeps no output, 0 only outputs that are
    one of the hypotheses, inf every output that did not fail)."""
    table = {t: wer(items, guard(items, corrections, t)[0]) for t in grid}
    best = min(table, key=lambda t: (round(table[t], 6), t))
    return best, table


@dataclass
class Timing:
    """Seconds per utterance of a method's inference."""

    seconds: list[float] = field(default_factory=list)

    @property
    def per_utt(self) -> float:
        return float(np.mean(self.seconds)) if self.seconds else float("nan")
