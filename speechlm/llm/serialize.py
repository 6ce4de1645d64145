"""ASR outputs as one line of LM input: text, 1-best, N-best, word confusion network, oracle.

The five one-line SLU inputs are read from a decode dir (``speechlm decode
--lattice``) or a data dir and turned into one string per utterance:

* ``text``     the reference, ``DATA_DIR/text``;
* ``onebest``  ``DECODE_DIR/text``;
* ``nbest``    the top ``nbest_k`` of ``DECODE_DIR/nbest.jsonl`` joined by ``nbest_separator``;
* ``wcn``      ``DECODE_DIR/cn.jsonl``, one token per bin (below);
* ``oracle``   ``oracle_text`` of ``DECODE_DIR/oracle.jsonl``.

The two ``MARGINAL_KINDS`` (``nbest_marg``, ``wcn_marg``) are not one line but weighted
hypotheses, each classified alone (:func:`load_weighted_hypotheses`).

A WCN bin keeps the entries with posterior >= ``wcn_threshold`` (at most
``wcn_max_alternatives``, best first; the best entry is always kept). A bin left with only
``<eps>`` is dropped; a bin left with one word prints the word alone; a bin with several
entries prints them joined by ``wcn_separator``, with ``:p`` after each when
``wcn_show_posteriors`` (``wcn_digits`` decimals, leading zero dropped: ``play:.8/pay:.2``).
So a confident WCN reads exactly like its 1-best, and a WCN made from reference text
(one word per bin, posterior 1.0) is the text itself. Alternatives never contain spaces,
so bins stay whitespace-separated units (the unit left-truncation drops).

>>> cfg = SerializeConfig(wcn_threshold=0.1, wcn_max_alternatives=2)
>>> bins = [[{"word": "play", "posterior": 0.8}, {"word": "pay", "posterior": 0.2}],
...         [{"word": "<eps>", "posterior": 0.95}, {"word": "a", "posterior": 0.05}],
...         [{"word": "music", "posterior": 1.0}]]
>>> serialize_wcn(bins, cfg)
'play:.8/pay:.2 music'
>>> serialize_wcn(bins, SerializeConfig(wcn_show_posteriors=False, wcn_threshold=0.01))
'play/pay _/a music'
>>> serialize_nbest(["wake me up", "wake me"], SerializeConfig(nbest_k=2))
'wake me up | wake me'
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from speechlm.core.hypothesis import EPS
from speechlm.core.nbest_jsonl import read_nbest_jsonl
from speechlm.data.kaldi_dir import c_sorted, read_table
from speechlm.lattice import ConfusionNetwork, nbest_posteriors, read_cn_jsonl

logger = logging.getLogger(__name__)

# Classified once per hypothesis and marginalized (``IntentClassifier.marginal_scores``),
# not serialized into one line: see :func:`load_weighted_hypotheses`.
MARGINAL_KINDS = ("nbest_marg", "wcn_marg")
INPUT_KINDS = ("text", "onebest", "nbest", "wcn", "oracle") + MARGINAL_KINDS
INPUT_ALIASES = {"1best": "onebest"}  # the name the paper and the CLI use
# Posterior thresholds tried, in order, when a serialized WCN must shrink to fit a context
PRUNE_THRESHOLDS = (0.2, 0.3, 0.4, 0.5)


def input_kind(name: str) -> str:
    """The canonical input kind of ``name`` (``1best`` -> ``onebest``).

    >>> input_kind("1best"), input_kind("wcn")
    ('onebest', 'wcn')
    """
    kind = INPUT_ALIASES.get(name, name)
    if kind not in INPUT_KINDS:
        raise ValueError(f"input must be one of {INPUT_KINDS + tuple(INPUT_ALIASES)}, "
                         f"got {name!r}")
    return kind


@dataclass(frozen=True)
class SerializeConfig:
    """How N-best lists and WCNs become one line.

    Args:
        nbest_k: hypotheses kept from an N-best list (best first).
        nbest_separator: joins the hypotheses (spaces included).
        wcn_threshold: drop WCN entries with a lower posterior (the best entry stays).
        wcn_max_alternatives: at most this many entries per bin.
        wcn_show_posteriors: write ``word:p`` for the entries of a bin with alternatives.
        wcn_separator: joins the entries of one bin; must not contain whitespace.
        wcn_digits: decimals of a shown posterior.
        eps_symbol: how a deletion (``<eps>``) shows among a bin's alternatives.
        marginal_k: hypotheses of ``nbest_marg`` / ``wcn_marg`` (distinct strings).
        nbest_scale: ``nbest_marg`` weights are ``softmax(nbest_scale * score)`` over the
            kept hypotheses; 0 weighs them equally.
        wcn_path_scale: ``wcn_marg`` weights are the paths' posteriors to this power,
            renormalized over the kept paths; 0 weighs them equally (``speechlm slu
            tune-marginal`` picks it with ``marginal_k`` on dev).

    >>> SerializeConfig(wcn_separator="a b")
    Traceback (most recent call last):
    ...
    ValueError: wcn_separator must be non-empty and hold no whitespace, got 'a b'
    """

    nbest_k: int = 3
    nbest_separator: str = " | "
    wcn_threshold: float = 0.1
    wcn_max_alternatives: int = 3
    wcn_show_posteriors: bool = True
    wcn_separator: str = "/"
    wcn_digits: int = 1
    eps_symbol: str = "_"
    marginal_k: int = 4
    nbest_scale: float = 1.0
    wcn_path_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.nbest_k < 1:
            raise ValueError(f"nbest_k must be >= 1, got {self.nbest_k}")
        if not self.nbest_separator.strip():
            raise ValueError(f"nbest_separator must show something, got {self.nbest_separator!r}")
        if not 0.0 <= self.wcn_threshold <= 1.0:
            raise ValueError(f"wcn_threshold must be in [0, 1], got {self.wcn_threshold}")
        if self.wcn_max_alternatives < 1:
            raise ValueError(f"wcn_max_alternatives must be >= 1, got {self.wcn_max_alternatives}")
        for name in ("wcn_separator", "eps_symbol"):
            value = getattr(self, name)
            if not value or any(c.isspace() for c in value):
                raise ValueError(f"{name} must be non-empty and hold no whitespace, got {value!r}")
        if not 0 <= self.wcn_digits <= 4:
            raise ValueError(f"wcn_digits must be in [0, 4], got {self.wcn_digits}")
        if self.marginal_k < 1:
            raise ValueError(f"marginal_k must be >= 1, got {self.marginal_k}")
        for name in ("nbest_scale", "wcn_path_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def _posterior(p: float, digits: int) -> str:
    s = f"{p:.{digits}f}"
    return s[1:] if s.startswith("0.") else s  # ".8" costs a token less than "0.8"


def _word_posteriors(bins: ConfusionNetwork | Sequence[Sequence[dict]]
                     ) -> list[list[tuple[str, float]]]:
    if isinstance(bins, ConfusionNetwork):
        return [[(e.word, e.posterior) for e in b] for b in bins.bins]
    return [[(e["word"], float(e["posterior"])) for e in b] for b in bins]


def serialize_wcn(bins: ConfusionNetwork | Sequence[Sequence[dict]],
                  config: SerializeConfig) -> str:
    """One line from a confusion network (or its bins ``[bin][entry]``, entries
    ``{"word", "posterior"}``, as training data builds them).

    Args:
        bins: a ConfusionNetwork, or bins in time order; entries in any order (sorted here).
        config: threshold, alternatives, posteriors, separator.

    Returns:
        The bins' tokens joined by spaces ('' when every bin is a confident deletion).
    """
    out = []
    for entries in _word_posteriors(bins):
        ranked = sorted(entries, key=lambda e: -e[1])
        kept = [e for e in ranked if e[1] >= config.wcn_threshold] or ranked[:1]
        kept = kept[: config.wcn_max_alternatives]
        if not kept or all(w == EPS for w, _ in kept):
            continue
        if len(kept) == 1:
            out.append(kept[0][0])
            continue
        parts = []
        for w, p in kept:
            word = config.eps_symbol if w == EPS else w
            if config.wcn_show_posteriors:
                word += ":" + _posterior(p, config.wcn_digits)
            parts.append(word)
        out.append(config.wcn_separator.join(parts))
    return " ".join(out)


def wcn_variants(bins: ConfusionNetwork | Sequence[Sequence[dict]],
                 config: SerializeConfig) -> list[str]:
    """The WCN serialized as configured, then pruned harder and harder: thresholds of
    ``PRUNE_THRESHOLDS`` above the configured one, and last the best entry of each bin
    (the MBR 1-best). Distinct lines only, longest first: what a prompt that does not fit
    falls back to, bin alternatives by posterior, before any word of the query is cut.

    >>> bins = [[{"word": "play", "posterior": 0.7}, {"word": "pay", "posterior": 0.3}]]
    >>> wcn_variants(bins, SerializeConfig())
    ['play:.7/pay:.3', 'play']
    """
    out = [serialize_wcn(bins, config)]
    for t in PRUNE_THRESHOLDS:
        if t > config.wcn_threshold:
            out.append(serialize_wcn(bins, replace(config, wcn_threshold=t)))
    out.append(serialize_wcn(bins, replace(config, wcn_max_alternatives=1)))
    return list(dict.fromkeys(out))


def serialize_nbest(hyps: Sequence[str], config: SerializeConfig) -> str:
    """The top ``nbest_k`` hypotheses (best first), duplicates removed, joined."""
    kept = list(dict.fromkeys(" ".join(h.split()) for h in hyps))[: config.nbest_k]
    return config.nbest_separator.join(kept)


def text_to_bins(text: str) -> list[list[dict]]:
    """A WCN with one word per bin and posterior 1.0 (what a perfect ASR would give)."""
    return [[{"word": w, "posterior": 1.0}] for w in text.split()]


def noisy_bins(text: str, rng: random.Random, vocab: Sequence[str],
               noise: float) -> list[list[dict]]:
    """A WCN from reference text with simulated confusions, for training.

    Each word gets, with probability ``noise``, one competitor (a random ``vocab`` word, or
    ``<eps>`` one time in five) sharing the bin; the reference word keeps a posterior drawn
    from [0.3, 0.95], so it is not always the best entry (as in real WCNs).
    """
    bins = []
    for w in text.split():
        if rng.random() < noise and vocab:
            other = EPS if rng.random() < 0.2 else rng.choice(vocab)
            p = rng.uniform(0.3, 0.95)
            bins.append([{"word": w, "posterior": p}, {"word": other, "posterior": 1.0 - p}])
        else:
            bins.append([{"word": w, "posterior": 1.0}])
    return bins


def noisy_nbest(text: str, rng: random.Random, vocab: Sequence[str], k: int,
                noise: float) -> list[str]:
    """``k`` hypotheses: the reference at a random rank among substituted/deleted copies."""
    hyps = []
    words = text.split()
    for _ in range(k - 1):
        out = []
        for w in words:
            r = rng.random()
            if r < noise / 2:
                continue  # deletion
            out.append(rng.choice(vocab) if r < noise and vocab else w)
        hyps.append(" ".join(out))
    hyps.insert(rng.randrange(k), text)
    return hyps


# ---- reading the five inputs ------------------------------------------------------------


def _read_jsonl(path: Path, field: str) -> dict[str, dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    out = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not JSON: {e}") from None
            if "utt" not in row or field not in row:
                raise ValueError(f"{path}:{lineno}: needs 'utt' and '{field}'")
            if row["utt"] in out:
                raise ValueError(f"{path}:{lineno}: duplicate utterance {row['utt']!r}")
            out[row["utt"]] = row
    return out


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return path


def read_text_file(path: Path) -> dict[str, str]:
    """A Kaldi ``text`` file (an utterance with no words maps to '')."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return {k: v for _, k, v in read_table(path, value_required=False)}


def read_utt2intent(path: Path) -> dict[str, str]:
    """A Kaldi ``utt2intent`` file: ``utt intent``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    out = {}
    for lineno, key, value in read_table(path):
        if len(value.split()) != 1:
            raise ValueError(f"{path}:{lineno}: {key!r}: intent must be one token, got {value!r}")
        out[key] = value
    return out


def load_inputs(kind: str, config: SerializeConfig, *, decode_dir: str | Path | None = None,
                data_dir: str | Path | None = None) -> dict[str, str]:
    """Serialized input of every utterance, ``LC_ALL=C`` sorted.

    Args:
        kind: one of ``INPUT_KINDS`` (or ``1best``).
        config: N-best and WCN serialization.
        decode_dir: needed by every kind but ``text``.
        data_dir: needed by ``text``; with a decode kind, its utterances missing from the
            decode output (silence: no hypothesis was written) get the empty hypothesis
            ``''`` instead of being skipped.

    Raises:
        ValueError: unknown kind, a missing directory argument, or a malformed line
            (the message names file and line).
        FileNotFoundError: the file of that kind is missing.
    """
    return {u: v[0] for u, v in load_input_variants(kind, config, decode_dir=decode_dir,
                                                     data_dir=data_dir).items()}


def load_input_variants(kind: str, config: SerializeConfig, *,
                        decode_dir: str | Path | None = None,
                        data_dir: str | Path | None = None) -> dict[str, list[str]]:
    """Like :func:`load_inputs`, each utterance a list of serializations, longest first:
    one for every kind but ``wcn``, whose list is :func:`wcn_variants` (what a prompt
    fitter prunes to)."""
    kind = input_kind(kind)
    if kind in MARGINAL_KINDS:
        raise ValueError(f"input {kind!r} is a weighted list of hypotheses, not one line: "
                         "load_weighted_hypotheses reads it")
    if kind == "text":
        if data_dir is None:
            raise ValueError("input 'text' needs a data dir (its 'text' file is the reference)")
        out = {u: [t] for u, t in read_text_file(Path(data_dir) / "text").items()}
    else:
        if decode_dir is None:
            raise ValueError(f"input {kind!r} needs a decode dir")
        d = Path(decode_dir)
        if kind == "onebest":
            out = {u: [t] for u, t in read_text_file(d / "text").items()}
        elif kind == "nbest":
            nbest = read_nbest_jsonl(_existing(d / "nbest.jsonl"))
            out = {u: [serialize_nbest([h.text for h in hyps], config)]
                   for u, hyps in nbest.items()}
        elif kind == "wcn":
            out = {}
            path = _existing(d / "cn.jsonl")
            for cn in read_cn_jsonl(path):
                if cn.utt in out:
                    raise ValueError(f"{path}: duplicate utterance {cn.utt!r}")
                out[cn.utt] = wcn_variants(cn, config)
        else:
            rows = _read_jsonl(d / "oracle.jsonl", "oracle_text")
            out = {u: [" ".join(r["oracle_text"].split())] for u, r in rows.items()}
        out.update({u: [""] for u in _missing(out, d, data_dir, kind)})
    return {u: out[u] for u in c_sorted(out)}


def _missing(out: dict, decode_dir: Path, data_dir: str | Path | None, kind: str) -> list[str]:
    """Utterances of ``data_dir`` without a decode output (given the empty hypothesis)."""
    if data_dir is None or not (Path(data_dir) / "text").is_file():
        return []
    missing = [u for u in read_text_file(Path(data_dir) / "text") if u not in out]
    if missing:
        logger.warning("%s: %d utterance(s) of %s have no %s output (e.g. %s): given the "
                       "empty hypothesis", decode_dir, len(missing), data_dir, kind, missing[0])
    return missing


def _merged(pairs: Sequence[tuple[str, float]], k: int, power: float = 1.0
            ) -> list[tuple[str, float]]:
    """The ``k`` best distinct texts (whitespace normalized, weights summed), their weights
    to ``power`` (0: equal), renormalized."""
    merged: dict[str, float] = {}
    for text, w in pairs:
        text = " ".join(text.split())
        if text in merged or len(merged) < k:
            merged[text] = merged.get(text, 0.0) + w
    if power != 1.0:
        merged = {t: w ** power for t, w in merged.items()}  # 0 ** 0 is 1: equal weights
    total = sum(merged.values())
    if not total > 0:  # every weight underflowed: equal weights
        return [(t, 1.0 / len(merged)) for t in merged]
    return [(t, w / total) for t, w in merged.items()]


def load_weighted_hypotheses(kind: str, config: SerializeConfig, *, decode_dir: str | Path,
                             data_dir: str | Path | None = None
                             ) -> dict[str, list[tuple[str, float]]]:
    """Each utterance's hypotheses with posterior weights summing to 1, best first.

    Instead of one serialized line, the LM ranks the labels after each hypothesis and the
    label posteriors are averaged with these weights: P(label | speech) ~ sum_h P(h |
    speech) P(label | h) (``IntentClassifier.marginal_scores``).

    Args:
        kind: ``nbest_marg``: the first ``marginal_k`` distinct texts of
            ``DECODE_DIR/nbest.jsonl``, weighted ``softmax(nbest_scale * score)``;
            ``wcn_marg``: the ``marginal_k`` most likely paths of ``DECODE_DIR/cn.jsonl``
            (``ConfusionNetwork.kbest_paths``), weighted by their posteriors to the power
            ``wcn_path_scale`` (calibrate the WCN first: ``speechlm calibrate-wcn``).
        config: ``marginal_k``, ``nbest_scale`` and ``wcn_path_scale``.
        decode_dir: the first pass's outputs.
        data_dir: its utterances without an output get ``[("", 1.0)]``, not skipped.
    """
    kind = input_kind(kind)
    if kind not in MARGINAL_KINDS:
        raise ValueError(f"input {kind!r} is one line: load_input_variants reads it")
    d = Path(decode_dir)
    out: dict[str, list[tuple[str, float]]] = {}
    if kind == "nbest_marg":
        for utt, hyps in read_nbest_jsonl(_existing(d / "nbest.jsonl")).items():
            weights = nbest_posteriors([h.score for h in hyps], config.nbest_scale) if hyps else []
            pairs = [(h.text, float(w)) for h, w in zip(hyps, weights, strict=True)]
            out[utt] = _merged(pairs, config.marginal_k) if pairs else [("", 1.0)]
    else:
        path = _existing(d / "cn.jsonl")
        for cn in read_cn_jsonl(path):
            if cn.utt in out:
                raise ValueError(f"{path}: duplicate utterance {cn.utt!r}")
            out[cn.utt] = _merged(cn.kbest_paths(config.marginal_k), config.marginal_k,
                                  config.wcn_path_scale)
    out.update({u: [("", 1.0)] for u in _missing(out, d, data_dir, kind)})
    return {u: out[u] for u in c_sorted(out)}
