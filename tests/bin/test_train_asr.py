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


def test_speaker_cmn_of_train_and_valid_features_must_agree(tmp_path):
    from speechlm.bin.train_asr import _feature_cmn

    train, valid = tmp_path / "train", tmp_path / "valid"
    train.mkdir()
    valid.mkdir()
    assert _feature_cmn(train, valid) is None  # neither normalised per speaker
    (train / "cmn.yaml").write_text("type: speaker\nprior_frames: 300.0\nprior_mean: [1.0]\n")
    with pytest.raises(ValueError, match="--cmn-from .*train/cmn.yaml"):
        _feature_cmn(train, valid)
    (valid / "cmn.yaml").write_text((train / "cmn.yaml").read_text())
    assert _feature_cmn(train, valid)["type"] == "speaker"


def test_decode_config_is_checked_and_exported_as_model_defaults(tmp_path):
    from speechlm.bin.train_asr import _decode_defaults

    conf = tmp_path / "decode.yaml"
    conf.write_text("beam: 4\nctc_weight: 0.3\nnbest: 3\nsearch_beam: 12\n")
    assert _decode_defaults(conf) == {"beam": 4, "ctc_weight": 0.3, "nbest": 3,
                                      "search_beam": 12.0}
    assert _decode_defaults(None) == {}
    conf.write_text("beam_size: 4\n")
    with pytest.raises(ValueError, match="unknown key"):
        _decode_defaults(conf)
