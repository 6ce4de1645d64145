import pytest

from speechlm.bin.score import main as score_main
from speechlm.core.normalize import cardinal, normalize_text, ordinal
from speechlm.core.wer import normalize_words, score_texts

CASES = [
    ("Ten of clubs.", "ten of clubs"),
    ("7", "seven"),
    ("7 of Hearts!", "seven of hearts"),
    ("In 2024 we", "in twenty twenty four we"),
    ("1984", "nineteen eighty four"),
    ("1900", "nineteen hundred"),
    ("2005", "two thousand five"),
    ("1066", "one thousand sixty six"),  # below 1100: a plain number
    ("3.5", "three point five"),
    ("0.25", "zero point two five"),
    ("1st 2nd 3rd 4th 22nd 100th", "first second third fourth twenty second one hundredth"),
    ("50%", "fifty percent"),
    ("5 %", "five percent"),
    ("$7.50", "seven dollars fifty cents"),
    ("$1", "one dollar"),
    ("1,000,000", "one million"),
    ("12,345", "twelve thousand three hundred forty five"),
    ("the 1990s and '80s", "the nineteen nineties and eighties"),
    ("-4", "minus four"),
    ("007", "zero zero seven"),
    ("cold-hearted ill-disposed", "cold hearted ill disposed"),
    ("2-3 times", "two three times"),
    ("at 3:30", "at three thirty"),
    ("4x4", "four x four"),
    ("Don't, dogs' 'quoted'", "don't dogs quoted"),
    ("\u201cHello,\u201d she said\u2014loudly", "hello she said loudly"),
    ("It\u2019s", "it's"),
    ("Mr. and Mrs. Dashwood, Dr. Who", "mister and missus dashwood doctor who"),
    ("OK, uh, um, hmm...", "okay"),
    ("[MUSIC] (laughs) hi", "hi"),
    ("<unk> went", "<unk> went"),
    ("R&D + tax", "r and d plus tax"),
    ("", ""),
    ("  ...  ", ""),
]


@pytest.mark.parametrize("text,want", CASES, ids=[c[0] or "empty" for c in CASES])
def test_normalize_text(text, want):
    assert normalize_text(text) == want


@pytest.mark.parametrize("text", [c[0] for c in CASES] + [c[1] for c in CASES])
def test_normalize_is_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once


def test_token_local_so_word_by_word_equals_whole():
    text = "Mr. Dashwood paid $7.50 on the 1st, in 2024 -- 3.5% more."
    assert " ".join(normalize_text(t) for t in text.split()).split() == \
        normalize_text(text).split()


def test_numbers_in_words():
    assert cardinal(0) == "zero" and cardinal(19) == "nineteen" and cardinal(40) == "forty"
    assert cardinal(101) == "one hundred one"
    assert cardinal(2_000_000_019) == "two billion nineteen"
    assert ordinal(12) == "twelfth" and ordinal(30) == "thirtieth" and ordinal(5) == "fifth"


def test_score_texts_normalises_only_when_asked():
    ref = {"u1": "seven of clubs".split()}
    hyp = {"u1": "7 of Clubs.".split()}
    assert score_texts(ref, hyp).errors == 2  # exact words: "7" and "Clubs." are wrong
    assert score_texts(ref, hyp, normalize=True).errors == 0
    assert normalize_words(["well-known", "2"]) == ["well", "known", "two"]


def test_score_cli_normalises_by_default(tmp_path, capsys):
    (tmp_path / "ref").write_text("u1 seven of clubs\nu2 he was ill disposed\n")
    (tmp_path / "hyp").write_text("u1 7 of Clubs.\nu2 He was ill-disposed.\n")
    args = ["--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"), "--name", "t"]
    assert score_main(args + ["--out", str(tmp_path / "s")]) == 0
    assert "%WER 0.00 [ 0 / 7," in capsys.readouterr().out
    assert (tmp_path / "s" / "errs").read_text() == ""
    assert score_main(args + ["--no-normalize"]) == 0
    assert "%WER 71.43 [ 5 / 7," in capsys.readouterr().out


@pytest.mark.parametrize("name", ["speechlm.core.normalize", "speechlm.core.wer"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
