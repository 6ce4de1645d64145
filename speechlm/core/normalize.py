"""The one text normaliser used for scoring: hypotheses and references alike.

Pretrained recognisers write text for people ("Mr. Dashwood paid $7.50, 2024."), our
references are Kaldi-style word strings ("mister dashwood paid seven dollars fifty cents
twenty twenty four"). :func:`normalize_text` maps both to the same form so that a WER
counts recognition errors, not spelling conventions. It is idempotent
(``normalize_text(normalize_text(s)) == normalize_text(s)``) and works token by token
(each whitespace-separated token is rewritten on its own), so it is safe to apply to
references that are already normalised, and to a hypothesis one word at a time.

Rules, in order:

1. Unicode NFKC, lower case; curly apostrophes become ``'``.
2. Annotations in brackets or parentheses (Whisper's ``[MUSIC]``, ``(laughs)``) are
   dropped; Kaldi symbols in angle brackets (``<unk>``) are kept as they are.
3. Numbers become words (American, no "and"): ``7`` -> ``seven``, ``1,000`` -> ``one
   thousand``, ``3.5`` -> ``three point five``, ``1st`` -> ``first``, ``22nd`` ->
   ``twenty second``, ``50%`` -> ``fifty percent``, ``$7.50`` -> ``seven dollars fifty
   cents``, ``1990s`` / ``'90s`` -> ``nineteen nineties`` / ``nineties``, ``-4`` ->
   ``minus four``. Four-digit numbers from 1100 to 2099 are read as years (``1984`` ->
   ``nineteen eighty four``, ``1900`` -> ``nineteen hundred``, ``2005`` -> ``two thousand
   five``, ``2024`` -> ``twenty twenty four``): that is how the references of read speech
   write them, and the common case in Whisper output.
4. Hyphens, dashes, slashes and colons split words (``cold-hearted`` -> ``cold hearted``,
   ``3:30`` -> ``three thirty``); digits glued to letters are split off (``4x4`` ->
   ``four x four``).
5. Punctuation is removed; an apostrophe is kept only inside a word (``don't``), so
   quotes and the possessive plural (``dogs'``) lose theirs. ``&`` -> ``and``, ``+`` ->
   ``plus``, ``@`` -> ``at``, a lone ``%`` -> ``percent``.
6. Whisper's common written forms: ``mr`` -> ``mister``, ``mrs`` -> ``missus``, ``ms`` ->
   ``miss``, ``dr`` -> ``doctor``, ``jr`` -> ``junior``, ``sr`` -> ``senior``, ``vs`` ->
   ``versus``, ``etc`` -> ``et cetera``, ``ok`` -> ``okay``; the hesitations ``uh``,
   ``um``, ``hmm``, ``mm``, ``mhm`` are removed (Whisper's English normaliser does the
   same).

Not done (on purpose, to keep one small documented rule set): British/American spelling,
contractions (``don't`` stays), homophones (``two`` vs ``to``), Roman numerals.

>>> normalize_text("Mr. Dashwood paid $7.50 in 2024, didn't he?")
"mister dashwood paid seven dollars fifty cents in twenty twenty four didn't he"
>>> normalize_text("Eight of spades, 4 of clubs, the 1st [MUSIC] cold-hearted")
'eight of spades four of clubs the first cold hearted'
"""
from __future__ import annotations

import re
import unicodedata

__all__ = ["cardinal", "normalize_text", "ordinal"]

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth",
            "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny",
             "pence"), "€": ("euro", "euros", "cent", "cents")}
_WORD_FORMS = {"mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor",
               "jr": "junior", "sr": "senior", "vs": "versus", "etc": "et cetera",
               "ok": "okay", "&": "and", "+": "plus", "@": "at", "%": "percent"}
_FILLERS = {"uh", "um", "hmm", "mm", "mhm"}

# One numeric token, with what may surround it: quotes/brackets, a currency sign, a minus,
# digits with thousands commas, a decimal part, and a suffix (ordinal, plural, percent),
# then trailing punctuation.
_NUMBER = re.compile(r"""^["'(]*(?P<cur>[$£€])?(?P<neg>-)?(?P<apos>')?
    (?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?
    (?P<suf>st|nd|rd|th|'?s|%)?[.,!?;:"')]*$""", re.VERBOSE)
_BRACKETED = re.compile(r"\[[^\]]*\]|\([^)]*\)")
_SPLIT = re.compile(r"[-\u2010-\u2015/:_~]+")
_DIGIT_RUNS = re.compile(r"\d+|\D+")
_KEEP = re.compile(r"[^\w'&+@%]+")  # what survives inside a token before the apostrophe rule


def cardinal(n: int) -> str:
    """An integer in words, American style without "and".

    >>> cardinal(0), cardinal(13), cardinal(105), cardinal(1234)
    ('zero', 'thirteen', 'one hundred five', 'one thousand two hundred thirty four')
    """
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + cardinal(n % 100))
    for value, name in _SCALES:
        if n >= value:
            if n // value >= 1000 and value == 10**12:
                break  # beyond trillions: read digit by digit
            head = cardinal(n // value) + " " + name
            return head + ("" if n % value == 0 else " " + cardinal(n % value))
    return " ".join(_ONES[int(d)] for d in str(n))


def ordinal(n: int) -> str:
    """An integer as an ordinal in words.

    >>> ordinal(1), ordinal(22), ordinal(40), ordinal(112)
    ('first', 'twenty second', 'fortieth', 'one hundred twelfth')
    """
    words = cardinal(n).split()
    last = words[-1]
    if last in _ORDINAL:
        words[-1] = _ORDINAL[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _year(n: int) -> str:
    if n % 100 == 0:
        return cardinal(n // 100) + " hundred"
    if 2000 <= n < 2010:
        return cardinal(n)
    return cardinal(n // 100) + " " + (("oh " + _ONES[n % 100]) if n % 100 < 10
                                       else cardinal(n % 100))


def _plural(words: str) -> str:
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + ("es" if last.endswith("x")
                                                               else "s")
    return (head + " " + last).strip()


def _number(m: re.Match) -> str:
    digits = m["int"].replace(",", "")
    n = int(digits)
    suf = (m["suf"] or "").lstrip("'")
    if suf in ("st", "nd", "rd", "th") and m["frac"] is None:
        words = ordinal(n)
    elif len(digits) == 4 and 1100 <= n < 2100 and m["frac"] is None and "," not in m["int"]:
        words = _year(n)
    elif len(digits) > 1 and digits.startswith("0"):
        words = " ".join(_ONES[int(d)] for d in digits)  # "007", "0800": digit by digit
    else:
        words = cardinal(n)
    if m["cur"]:
        one, many, sub_one, sub_many = _CURRENCY[m["cur"]]
        words += " " + (one if n == 1 else many)
        if m["frac"] is not None:
            cents = int((m["frac"] + "0")[:2])
            if cents:
                words += " " + cardinal(cents) + " " + (sub_one if cents == 1 else sub_many)
    elif m["frac"] is not None:
        words += " point " + " ".join(_ONES[int(d)] for d in m["frac"])
    if suf == "s":
        words = _plural(words)
    if suf == "%":
        words += " percent"
    if m["neg"]:
        words = "minus " + words
    return words


def _word(piece: str) -> list[str]:
    """One hyphen-free piece of a token -> normalised words."""
    piece = _KEEP.sub("", piece)
    # an apostrophe survives only between two word characters
    piece = re.sub(r"(?<!\w)'+|'+(?!\w)", "", piece)
    if not piece:
        return []
    if piece in _WORD_FORMS:
        return _WORD_FORMS[piece].split()
    if piece.isdigit() or not any(c.isdigit() for c in piece):
        if piece.isdigit():
            return _number(_NUMBER.match(piece)).split()
        out = []
        for sym in re.findall(r"[&+@%]|[^&+@%]+", piece):
            out += _WORD_FORMS[sym].split() if sym in _WORD_FORMS else [sym]
        return [w for w in out if w and w not in _FILLERS]
    out = []
    for run in _DIGIT_RUNS.findall(piece):  # "4x4" -> "4", "x", "4"
        out += _word(run)
    return out


def _token(token: str) -> list[str]:
    if token.startswith("<") and token.endswith(">") and len(token) > 2:
        return [token]  # Kaldi symbols such as <unk>
    m = _NUMBER.match(token)
    if m:
        return _number(m).split()
    words: list[str] = []
    for piece in _SPLIT.split(token):
        m = _NUMBER.match(piece)
        words += _number(m).split() if m else _word(piece)
    return words


def normalize_text(text: str) -> str:
    """Normalise a transcript for scoring (rules in the module docstring).

    Args:
        text: Any transcript: a recogniser's written output or a reference.

    Returns:
        Lower-case words separated by single spaces (``""`` if nothing is left).
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = _BRACKETED.sub(" ", text)
    words: list[str] = []
    for token in text.split():
        words += _token(token)
    return " ".join(words)
