import pytest

from speechlm.bin.train_asr import char_tokens, read_text, write_shapes, write_token_list


def test_char_tokens_follow_espnet():
    assert char_tokens("two  one") == ["t", "w", "o", "<space>", "o", "n", "e"]


def test_token_list_layout(tmp_path):
    tokens = write_token_list({"u1": "ab", "u2": "b c"}, tmp_path / "tokens.txt")
    assert tokens == ["<blank>", "<unk>", "<space>", "a", "b", "c", "<sos/eos>"]
    assert (tmp_path / "tokens.txt").read_text().split() == tokens


def test_shapes_and_missing_features(tmp_path):
    (tmp_path / "utt2num_frames").write_text("u1 40\nu2 31\n")
    write_shapes(tmp_path, {"u2": "six", "u1": "one two"}, 12, tmp_path / "shapes")
    assert (tmp_path / "shapes" / "speech_shape").read_text() == "u1 40,80\nu2 31,80\n"
    assert (tmp_path / "shapes" / "text_shape.char").read_text() == "u1 7,12\nu2 3,12\n"
    with pytest.raises(ValueError, match="u3"):
        write_shapes(tmp_path, {"u3": "x"}, 12, tmp_path / "shapes")


def test_utterance_without_transcript_is_named(tmp_path):
    (tmp_path / "text").write_text("u1 one\nu2\n")
    with pytest.raises(ValueError, match=r"text:2: utterance 'u2' has no transcript"):
        read_text(tmp_path / "text")
