"""Word error counts: one alignment routine for every WER the toolkit reports.

Counts come from kaldialign (Levenshtein alignment, as Kaldi's compute-wer). Tables follow
ESPnet's RESULTS.md form (``|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|``) and the Kaldi
``%WER`` line that ``utils/best_wer.sh`` greps.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import kaldialign

from speechlm.core.hypothesis import EPS
from speechlm.core.normalize import normalize_text


@dataclass
class ErrorStats:
    """Accumulated alignment counts over utterances.

    >>> s = ErrorStats()
    >>> s.add("one two three".split(), "one too three four".split())
    >>> (s.cor, s.sub, s.dele, s.ins, s.sent_err)
    (2, 1, 0, 1, 1)
    >>> round(s.wer, 4)
    66.6667
    """

    snt: int = 0
    ref_words: int = 0
    cor: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0
    sent_err: int = 0
    per_utt: dict[str, tuple[int, int]] = field(default_factory=dict)  # utt -> (errors, ref words)

    def add(self, ref: list[str], hyp: list[str], utt: str | None = None) -> None:
        cor = sub = dele = ins = 0
        for r, h in kaldialign.align(ref, hyp, EPS):
            if r == EPS:
                ins += 1
            elif h == EPS:
                dele += 1
            elif r == h:
                cor += 1
            else:
                sub += 1
        self.snt += 1
        self.ref_words += len(ref)
        self.cor, self.sub, self.dele, self.ins = (
            self.cor + cor, self.sub + sub, self.dele + dele, self.ins + ins)
        errors = sub + dele + ins
        self.sent_err += int(errors > 0)
        if utt is not None:
            self.per_utt[utt] = (errors, len(ref))

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def wer(self) -> float:
        """Word error rate in percent (errors / reference words)."""
        return 100.0 * self.errors / max(self.ref_words, 1)

    def table_row(self, name: str) -> str:
        """One row of ESPnet's RESULTS.md WER table (percentages of reference words)."""
        n = max(self.ref_words, 1)

        def pct(x: int, d: int = n) -> str:
            return f"{100.0 * x / max(d, 1):.1f}"

        return (f"|{name}|{self.snt}|{self.ref_words}|{pct(self.cor)}|{pct(self.sub)}|"
                f"{pct(self.dele)}|{pct(self.ins)}|{pct(self.errors)}|"
                f"{pct(self.sent_err, self.snt)}|")

    def kaldi_line(self, where: str = "") -> str:
        """Kaldi's ``%WER`` line, as printed by compute-wer and collected by best_wer.sh."""
        return (f"%WER {self.wer:.2f} [ {self.errors} / {self.ref_words}, {self.ins} ins, "
                f"{self.dele} del, {self.sub} sub ] {where}").rstrip()


TABLE_HEADER = "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|\n|---|---|---|---|---|---|---|---|---|"


def read_kaldi_text(path: str) -> dict[str, list[str]]:
    """Read a Kaldi ``text`` file (``utt word word ...``) into utt -> words.

    Raises:
        ValueError: on a duplicate utterance id, naming the file and line.
    """
    out: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if parts[0] in out:
                raise ValueError(f"{path}:{lineno}: duplicate utterance id {parts[0]!r}")
            out[parts[0]] = parts[1:]
    return out


def normalize_words(words: list[str]) -> list[str]:
    """Words through :func:`speechlm.core.normalize.normalize_text` (joined, normalised,
    split again: one written token may become several spoken words or none).

    >>> normalize_words(["Seven", "of", "clubs."])
    ['seven', 'of', 'clubs']
    """
    return normalize_text(" ".join(words)).split()


def score_texts(ref: dict[str, list[str]], hyp: dict[str, list[str]],
                *, ref_name: str = "ref", hyp_name: str = "hyp",
                normalize: bool = False) -> ErrorStats:
    """Align every reference utterance with its hypothesis.

    A reference utterance with no hypothesis counts as all deletions (the decoder produced
    nothing); a hypothesis with no reference is an error, since it means the two files
    come from different data.

    With ``normalize`` both sides go through :func:`normalize_words` first (case,
    punctuation, numbers as words: see ``speechlm.core.normalize``), as they must when a
    pretrained recogniser's written text (Whisper: "7 of clubs.") meets Kaldi-style
    references ("seven of clubs"). Off by default here, so library callers count what they
    pass; ``speechlm score`` turns it on.

    Raises:
        ValueError: when ``hyp`` holds utterances that ``ref`` does not, naming a few.
    """
    extra = sorted(set(hyp) - set(ref))
    if extra:
        raise ValueError(f"{hyp_name} has {len(extra)} utterance(s) not in {ref_name}, "
                         f"e.g. {', '.join(extra[:3])}")
    stats = ErrorStats()
    for utt in sorted(ref):
        r, h = ref[utt], hyp.get(utt, [])
        if normalize:
            r, h = normalize_words(r), normalize_words(h)
        stats.add(r, h, utt=utt)
    return stats
