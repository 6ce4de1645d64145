"""Word n-gram language models in ARPA form, trained from text by interpolated Kneser-Ney.

There is no maintained pip package here that *builds* ARPA files (kenlm's ``lmplz`` is a
C++ binary that the pip source package does not build; SRILM and OpenGrm-NGram are not on
PyPI), so this module estimates one: interpolated Kneser-Ney (Chen & Goodman, 1998, "An
empirical study of smoothing techniques", section 3) with one absolute discount per order,
``D = n1 / (n1 + 2 n2)`` from that order's count-of-counts. The file it writes is read by
Kaldi's ``arpa2fst`` (``kaldilm``), PocketSphinx and kenlm.

In an interpolated model the stored probability of a seen n-gram already contains the
lower-order term, so the ARPA backoff weight of a context is exactly its interpolation
weight ``gamma(h) = D * N1+(h .) / c(h)``, and every context's distribution sums to one
(checked in tests/asr/test_ngram.py).

>>> arpa = train_arpa(["a b a", "b a"], order=2)
>>> arpa.splitlines()[0]
'\\\\data\\\\'
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
# log10 probability ARPA files give a symbol that is never predicted (<s>)
_NEVER = -99.0


def _discount(counts: Iterable[int]) -> float:
    """Absolute discount from count-of-counts; 0.5 when the estimate is degenerate."""
    n1 = n2 = 0
    for c in counts:
        if c == 1:
            n1 += 1
        elif c == 2:
            n2 += 1
    if n1 == 0 or n2 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2 * n2), 0.1), 0.9)


def train_arpa(sentences: Iterable[str], order: int = 3, *, add_unk: bool = True) -> str:
    """Interpolated Kneser-Ney n-gram model of whitespace-tokenised sentences, as ARPA text.

    Args:
        sentences: one sentence per item; empty ones are skipped.
        order: n-gram order (1 to 6).
        add_unk: give ``<unk>`` a share of the uniform floor, so decoders that map unknown
            words to ``<unk>`` have a probability for them.

    Returns:
        The ARPA file's text (log10 probabilities and backoff weights).
    """
    if not 1 <= order <= 6:
        raise ValueError(f"order must be 1..6, got {order}")
    # counts[n][ngram] for the highest order; continuation counts for lower orders
    raw: list[dict[tuple[str, ...], int]] = [defaultdict(int) for _ in range(order + 1)]
    n_sent = 0
    for sentence in sentences:
        words = sentence.split()
        if not words:
            continue
        n_sent += 1
        seq = [BOS] + words + [EOS]
        for n in range(1, order + 1):
            for i in range(max(0, 1 if n == 1 else 0), len(seq) - n + 1):
                raw[n][tuple(seq[i:i + n])] += 1
    if n_sent == 0:
        raise ValueError("no non-empty sentences to train an n-gram model on")

    # Kneser-Ney: below the top order an n-gram's count is the number of distinct words
    # seen before it, except for n-grams starting with <s>, which have no left context.
    counts: list[dict[tuple[str, ...], int]] = [defaultdict(int) for _ in range(order + 1)]
    counts[order] = raw[order]
    for n in range(1, order):
        for ngram in raw[n + 1]:
            counts[n][ngram[1:]] += 1
        for ngram, c in raw[n].items():
            if ngram[0] == BOS:
                counts[n][ngram] = c
    # BOS itself is never predicted, so the unigram table holds it only as a context.
    counts[1].pop((BOS,), None)

    vocab = sorted({w for (w,) in raw[1]} | ({UNK} if add_unk else set()))
    vocab_size = len(vocab)  # excludes <s>, includes </s>
    prob: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]
    bow: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]

    # unigrams, interpolated with the uniform distribution
    d1 = _discount(counts[1].values())
    total1 = sum(counts[1].values())
    gamma1 = d1 * len(counts[1]) / total1
    for w in vocab:
        c = counts[1].get((w,), 0)
        prob[1][(w,)] = max(c - d1, 0.0) / total1 + gamma1 / vocab_size

    for n in range(2, order + 1):
        d = _discount(counts[n].values())
        by_context: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
        for ngram, c in counts[n].items():
            by_context[ngram[:-1]].append((ngram[-1], c))
        for h, followers in by_context.items():
            total = sum(c for _, c in followers)
            gamma = d * len(followers) / total
            bow[n - 1][h] = gamma
            for w, c in followers:
                prob[n][h + (w,)] = max(c - d, 0.0) / total + gamma * _lower(prob, bow, h[1:], w)

    return _format_arpa(prob, bow, order)


def _lower(prob, bow, h: tuple[str, ...], w: str) -> float:
    """p(w | h) by backing off through the already-estimated lower orders."""
    weight = 1.0
    while True:
        p = prob[len(h) + 1].get(h + (w,))
        if p is not None:
            return weight * p
        weight *= bow[len(h)].get(h, 1.0)
        h = h[1:]


def _format_arpa(prob, bow, order: int) -> str:
    lines = ["\\data\\"]
    sizes = [len(prob[1]) + 1] + [len(prob[n]) for n in range(2, order + 1)]  # +1 for <s>
    lines += [f"ngram {n}={size}" for n, size in enumerate(sizes, start=1)]
    for n in range(1, order + 1):
        lines += ["", f"\\{n}-grams:"]
        entries = sorted(prob[n].items())
        if n == 1:
            entries = [((BOS,), None)] + entries
        for ngram, p in entries:
            logp = _NEVER if p is None else math.log10(p)
            row = f"{logp:.6f}\t{' '.join(ngram)}"
            if n < order and ngram in bow[n]:
                row += f"\t{math.log10(bow[n][ngram]):.6f}"
            lines.append(row)
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


def write_arpa(sentences: Iterable[str], path: str | os.PathLike, order: int = 3) -> Path:
    """Train with :func:`train_arpa` and write the ARPA file (via a temp file, atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(train_arpa(sentences, order), encoding="utf-8")
    os.replace(tmp, path)
    return path


def arpa_logprob(arpa_text: str, words: list[str], context: list[str]) -> float:
    """log10 p(w | context) for each w in ``words`` under an ARPA model (for tests, tools).

    Returns the log10 probability of ``words[-1]`` given ``context + words[:-1]``.
    """
    prob, bow, order = _parse_arpa(arpa_text)
    h = tuple((context + words[:-1])[-(order - 1):]) if order > 1 else ()
    w = words[-1]
    weight = 0.0
    while True:
        p = prob.get(h + (w,))
        if p is not None:
            return weight + p
        weight += bow.get(h, 0.0)
        if not h:
            raise KeyError(f"{w!r} is not in the model's vocabulary")
        h = h[1:]


def _parse_arpa(text: str):
    prob: dict[tuple[str, ...], float] = {}
    bow: dict[tuple[str, ...], float] = {}
    order = 0
    section = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("ngram "):
            order = max(order, int(line.split()[1].split("=")[0]))
        elif line.startswith("\\") and line.endswith("-grams:"):
            section = int(line[1:].split("-")[0])
        elif section and not line.startswith("\\"):
            fields = line.split()
            ngram = tuple(fields[1:1 + section])
            prob[ngram] = float(fields[0])
            if len(fields) > 1 + section:
                bow[ngram] = float(fields[1 + section])
    return prob, bow, order
