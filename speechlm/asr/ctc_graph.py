"""Decoding graphs for CTC models: CTC topology o lexicon o word n-gram (TLG), with kaldifst.

The graph is built the way icefall builds ``TLG`` and Kaldi builds ``HCLG``, minus the
parts a CTC model does not need (no context dependency, no HMM):

* ``T``: the CTC topology. Input labels are ``token_id + 1`` because kaldi-decoder's
  ``DecodableCtc`` reads column ``i`` of the log-prob matrix for input label ``i + 1``
  (label 0 is epsilon); output labels are the same ids, emitted once per token.
* ``L``: the lexicon, token sequences -> word ids, one loop state; an optional word
  separator token (``<space>`` of a char model) is an epsilon-output self-loop.
* ``G``: a word n-gram from an ARPA file (Kaldi's ``arpa2fst`` through ``kaldilm``), or none
  (a free word loop with a word insertion penalty).

No determinisation or minimisation is done: the decoder does not need it for graphs of this
size, and leaving it out keeps the lattice's alignments honest (Kaldi's HCLG is
determinised for speed only).

Word ids follow Kaldi's ``words.txt``: 0 is ``<eps>``, then the words in sorted order.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speechlm.core.hypothesis import EPS

BLANK = "<blank>"


@dataclass(frozen=True)
class Lexicon:
    """Words and their token spellings.

    >>> lex = Lexicon.from_words(["no", "on"], tokens=["<blank>", "<space>", "n", "o"])
    >>> lex.prons["no"]
    ('n', 'o')
    """

    prons: dict[str, tuple[str, ...]]
    separator: str | None = None  # token between words (e.g. "<space>"), optional in the graph
    skipped: tuple[str, ...] = field(default=())  # words that could not be spelled

    @classmethod
    def from_words(cls, words: Iterable[str], tokens: Sequence[str], *, token_type: str = "char",
                   bpe_model: str | os.PathLike | None = None) -> Lexicon:
        """Spell each word with the model's tokens.

        Args:
            words: the vocabulary (duplicates ignored).
            tokens: the model's token list in id order (``tokens.txt``).
            token_type: ``"char"`` (one token per character, ``<space>`` between words) or
                ``"bpe"`` (sentencepiece pieces, given by ``bpe_model``).
            bpe_model: the sentencepiece model for ``token_type="bpe"``.

        Words with a character or piece the model does not know are left out and listed in
        ``skipped``, so the caller can report them.
        """
        known = set(tokens)
        prons: dict[str, tuple[str, ...]] = {}
        skipped = []
        if token_type == "char":
            for word in sorted(set(words)):
                spelling = tuple(word)
                (prons.__setitem__(word, spelling) if set(spelling) <= known
                 else skipped.append(word))
            separator = "<space>" if "<space>" in known else None
        elif token_type == "bpe":
            if bpe_model is None:
                raise ValueError("token_type 'bpe' needs the sentencepiece model (bpe_model)")
            import sentencepiece as spm

            sp = spm.SentencePieceProcessor(model_file=str(bpe_model))
            for word in sorted(set(words)):
                pieces = tuple(sp.encode(word, out_type=str))
                (prons.__setitem__(word, pieces) if pieces and set(pieces) <= known
                 else skipped.append(word))
            separator = None  # word boundaries are inside the pieces ("\u2581")
        else:
            raise ValueError(f"token_type must be 'char' or 'bpe', got {token_type!r}")
        if not prons:
            raise ValueError("no word of the vocabulary can be spelled with the model's tokens")
        return cls(prons=prons, separator=separator, skipped=tuple(skipped))

    @property
    def words(self) -> list[str]:
        return sorted(self.prons)


def words_table(words: Iterable[str]) -> list[str]:
    """Kaldi ``words.txt`` order: ``<eps>`` = 0, then the words sorted (``<s>``/``</s>`` last)."""
    plain = sorted(set(words) - {EPS, "<s>", "</s>"})
    return [EPS, *plain, "<s>", "</s>"]


def _fst_text(arcs: list[tuple], finals: dict[int, float]) -> str:
    lines = [f"{s} {d} {i} {o} {w:.6g}" for s, d, i, o, w in arcs]
    lines += [f"{s} {w:.6g}" for s, w in sorted(finals.items())]
    return "\n".join(lines) + "\n"


def ctc_topo(num_tokens: int, *, compact: bool = False):
    """CTC topology over token ids ``0..num_tokens-1`` with 0 = blank.

    Standard (``compact=False``): one state per token, the last token emitted; a repeated
    token needs a blank in between, exactly the CTC collapse rule. ``num_tokens**2`` arcs.
    Compact (icefall's "modified" topology): ``O(num_tokens)`` arcs for large BPE vocabularies;
    it also accepts a repeated token without blank between, which CTC would merge.
    """
    import kaldifst

    arcs = []
    if not compact:
        for src in range(num_tokens):
            for tok in range(num_tokens):
                out = tok + 1 if tok != src and tok != 0 else 0
                arcs.append((src, tok, tok + 1, out, 0.0))
        finals = {s: 0.0 for s in range(num_tokens)}
    else:
        # state 0: start / after blank; state t: inside token t. Leaving a token state is
        # an epsilon back to 0, so any token (even the same one) can follow.
        arcs.append((0, 0, 1, 0, 0.0))
        for tok in range(1, num_tokens):
            arcs += [(0, tok, tok + 1, tok + 1, 0.0), (tok, tok, tok + 1, 0, 0.0),
                     (tok, 0, 0, 0, 0.0)]
        finals = {s: 0.0 for s in range(num_tokens)}
    return kaldifst.compile(_fst_text(arcs, finals))


def lexicon_fst(lexicon: Lexicon, token_ids: dict[str, int], word_ids: dict[str, int],
                *, word_penalty: float = 0.0):
    """``L``: token-id+1 sequences to word ids; one loop state (0), start and final.

    Args:
        word_penalty: cost added per word (positive discourages insertions); natural log.
    """
    import kaldifst

    arcs = []
    next_state = 1
    for word, pron in lexicon.prons.items():
        src = 0
        for k, token in enumerate(pron):
            last = k == len(pron) - 1
            dst = 0 if last else next_state
            if not last:
                next_state += 1
            out = word_ids[word] if k == 0 else 0
            arcs.append((src, dst, token_ids[token] + 1, out, word_penalty if k == 0 else 0.0))
            src = dst
    if lexicon.separator is not None:
        arcs.append((0, 0, token_ids[lexicon.separator] + 1, 0, 0.0))
    fst = kaldifst.compile(_fst_text(arcs, {0: 0.0}))
    kaldifst.arcsort(fst, sort_type="olabel")
    return fst


def grammar_fst(arpa: str | os.PathLike, word_ids: dict[str, int]):
    """``G`` from an ARPA file; words not in ``word_ids`` (no spelling) are dropped.

    ``arpa2fst`` runs with a disambiguation symbol, which turns ``<s>``/``</s>`` into
    epsilons (start state, final weights) and marks backoff arcs; that mark is then made an
    epsilon too, since this graph is never determinised.
    """
    import tempfile

    import kaldifst
    import kaldilm

    arpa_words = _arpa_vocabulary(arpa)
    ids = dict(word_ids)
    # arpa2fst needs every ARPA word in the table: give the ones we cannot spell ids past ours
    for w in sorted(arpa_words - set(ids)) + ["#0"]:
        ids[w] = len(ids)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "words.txt"
        table.write_text("".join(f"{w} {i}\n" for w, i in ids.items()), encoding="utf-8")
        with _quiet_stderr():  # arpa2fst logs every section it reads
            text = kaldilm.arpa2fst(str(arpa), read_symbol_table=str(table),
                                    disambig_symbol="#0", max_arpa_warnings=0)
    to_eps = {ids["#0"], ids.get("<s>", -1), ids.get("</s>", -1)}
    known = {i for w, i in word_ids.items() if w not in ("<s>", "</s>")} | {0}
    lines = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            label = int(fields[2])
            label = 0 if label in to_eps else label
            if label not in known:
                continue  # an arc of a word the lexicon cannot spell
            fields[2] = fields[3] = str(label)
        lines.append(" ".join(fields))
    g = kaldifst.compile("\n".join(lines) + "\n")
    kaldifst.connect(g)
    kaldifst.arcsort(g, sort_type="ilabel")
    return g


class _quiet_stderr:
    """Silence C++ logging written straight to file descriptor 2."""

    def __enter__(self):
        import sys

        sys.stderr.flush()
        self._saved = os.dup(2)
        self._null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(self._null, 2)

    def __exit__(self, *exc):
        os.dup2(self._saved, 2)
        os.close(self._saved)
        os.close(self._null)


def _arpa_vocabulary(arpa: str | os.PathLike) -> set[str]:
    words: set[str] = set()
    in_unigrams = False
    with open(arpa, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\1-grams:"):
                in_unigrams = True
            elif line.startswith("\\"):
                if in_unigrams:
                    break
            elif in_unigrams and line:
                words.add(line.split()[1])
    if not words:
        raise ValueError(f"{arpa}: no unigrams: not an ARPA file?")
    return words


@dataclass
class DecodingGraph:
    """A TLG graph plus the tables needed to read its lattices."""

    fst: object  # kaldifst.StdVectorFst
    words: list[str]  # word id -> word
    tokens: list[str]  # token id -> token
    lexicon: Lexicon  # how each word is spelled, for rescoring word sequences as tokens

    def write(self, out_dir: str | os.PathLike) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.fst.write(str(out_dir / "TLG.fst"))
        sep = self.lexicon.separator or ""
        (out_dir / "lexicon.txt").write_text(
            (f"#separator {sep}\n" if sep else "")
            + "".join(f"{w} {' '.join(p)}\n" for w, p in sorted(self.lexicon.prons.items())),
            encoding="utf-8")
        (out_dir / "words.txt").write_text(
            "".join(f"{w} {i}\n" for i, w in enumerate(self.words)), encoding="utf-8")
        (out_dir / "tokens.txt").write_text(
            "".join(f"{t} {i}\n" for i, t in enumerate(self.tokens)), encoding="utf-8")

    @classmethod
    def read(cls, graph_dir: str | os.PathLike) -> DecodingGraph:
        import kaldifst

        graph_dir = Path(graph_dir)
        for name in ("TLG.fst", "words.txt", "tokens.txt", "lexicon.txt"):
            if not (graph_dir / name).is_file():
                raise FileNotFoundError(f"{graph_dir}: missing {name} (not a decoding graph dir)")
        return cls(fst=kaldifst.StdVectorFst.read(str(graph_dir / "TLG.fst")),
                   words=_read_table(graph_dir / "words.txt"),
                   tokens=_read_table(graph_dir / "tokens.txt"),
                   lexicon=_read_lexicon(graph_dir / "lexicon.txt"))


def _read_lexicon(path: Path) -> Lexicon:
    prons: dict[str, tuple[str, ...]] = {}
    separator = None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            fields = line.split()
            if fields[:1] == ["#separator"] and len(fields) == 2:
                separator = fields[1]
            elif len(fields) >= 2:
                prons[fields[0]] = tuple(fields[1:])
            elif fields:
                raise ValueError(f"{path}:{n}: expected 'word token token ...'")
    return Lexicon(prons=prons, separator=separator)


def _read_table(path: Path) -> list[str]:
    entries = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            fields = line.split()
            if len(fields) != 2 or not fields[1].isdigit():
                raise ValueError(f"{path}:{n}: expected 'symbol id', got {line.rstrip()!r}")
            entries[int(fields[1])] = fields[0]
    return [entries[i] for i in sorted(entries)]


def build_graph(tokens: Sequence[str], lexicon: Lexicon, *, arpa: str | os.PathLike | None = None,
                word_penalty: float = 0.0, compact_topo: bool | None = None) -> DecodingGraph:
    """Compose ``T o (L o G)`` into a decoding graph.

    Args:
        tokens: the model's tokens in id order; id 0 must be ``<blank>``.
        lexicon: word spellings (see :class:`Lexicon`).
        arpa: a word n-gram in ARPA form, or None for a free word loop.
        word_penalty: natural-log cost per word, added in ``L``.
        compact_topo: CTC topology choice; default compact only past 500 tokens.
    """
    import kaldifst

    if not tokens or tokens[0] != BLANK:
        raise ValueError(f"token 0 must be {BLANK!r} (ESPnet's CTC blank), got "
                         f"{tokens[0] if tokens else None!r}")
    token_ids = {t: i for i, t in enumerate(tokens)}
    words = words_table(lexicon.words)
    word_ids = {w: i for i, w in enumerate(words)}
    lg = lexicon_fst(lexicon, token_ids, word_ids, word_penalty=word_penalty)
    if arpa is not None:
        lg = kaldifst.compose(lg, grammar_fst(arpa, word_ids))
    kaldifst.arcsort(lg, sort_type="ilabel")
    compact = len(tokens) > 500 if compact_topo is None else compact_topo
    topo = ctc_topo(len(tokens), compact=compact)
    kaldifst.arcsort(topo, sort_type="olabel")
    tlg = kaldifst.compose(topo, lg)
    kaldifst.connect(tlg)
    if tlg.num_states == 0:
        raise ValueError("the decoding graph is empty: lexicon and n-gram share no word")
    return DecodingGraph(fst=tlg, words=words, tokens=list(tokens), lexicon=lexicon)
