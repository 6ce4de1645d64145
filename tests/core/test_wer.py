import pytest

from speechlm.core.wer import ErrorStats, read_kaldi_text, score_texts


def test_counts_each_error_kind():
    s = ErrorStats()
    s.add("a b c d".split(), "a x c".split())  # b->x substitution, d deleted
    s.add("e".split(), "e f".split())  # f inserted
    assert (s.cor, s.sub, s.dele, s.ins) == (3, 1, 1, 1)
    assert s.ref_words == 5 and s.snt == 2 and s.sent_err == 2
    assert s.wer == pytest.approx(60.0)


def test_table_row_and_kaldi_line_match_espnet_and_kaldi_forms():
    s = ErrorStats()
    s.add(["seven"], ["seven"])
    s.add(["two"], ["three"])
    assert s.table_row("decode_test") == "|decode_test|2|2|50.0|50.0|0.0|0.0|50.0|50.0|"
    assert s.kaldi_line("exp/x/wer") == "%WER 50.00 [ 1 / 2, 0 ins, 0 del, 1 sub ] exp/x/wer"


def test_missing_hypothesis_counts_as_deletions_and_extra_is_an_error(tmp_path):
    ref = {"u1": ["one", "two"], "u2": ["three"]}
    assert score_texts(ref, {"u1": ["one", "two"]}).dele == 1
    with pytest.raises(ValueError, match="u9"):
        score_texts(ref, {"u9": ["x"]})


def test_read_kaldi_text_rejects_duplicates(tmp_path):
    p = tmp_path / "text"
    p.write_text("u1 a b\nu1 c\n")
    with pytest.raises(ValueError, match=r"text:2: duplicate utterance id 'u1'"):
        read_kaldi_text(str(p))
