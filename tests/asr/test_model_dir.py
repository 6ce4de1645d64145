import numpy as np
import pytest
import yaml

from speechlm.asr import model_dir as md


def make_exp(tmp_path, normalize="global_mvn"):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "tokens.txt").write_text("<blank>\n<unk>\na\n<sos/eos>\n")
    config = {"token_list": str(exp / "tokens.txt"), "normalize": normalize,
              "normalize_conf": {"stats_file": str(exp / "stats.npz")},
              "train_data_path_and_name_and_type": [["x", "speech", "kaldi_ark"]],
              "output_dir": str(exp)}
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    (exp / "w.pth").write_bytes(b"weights")
    np.savez(exp / "stats.npz", count=np.array(1), sum=np.zeros(3), sum_square=np.ones(3))
    return exp


def test_export_makes_a_self_contained_dir(tmp_path):
    exp = make_exp(tmp_path)
    out = md.export_model_dir(train_config=exp / "config.yaml", weights=exp / "w.pth",
                              cmvn_stats=exp / "stats.npz", frontend={"fbank": {}},
                              out_dir=tmp_path / "model", meta={"k": 1})
    md.check_model_dir(out)
    config = yaml.safe_load((out / md.CONFIG).read_text())
    assert config["token_list"] == ["<blank>", "<unk>", "a", "<sos/eos>"]
    assert config["normalize_conf"]["stats_file"] == md.CMVN
    assert "output_dir" not in config and "train_data_path_and_name_and_type" not in config
    assert str(exp) not in (out / md.CONFIG).read_text()
    # After a move, the resolved config points inside the new location.
    moved = tmp_path / "elsewhere"
    out.rename(moved)
    resolved = md.resolved_config(moved)
    assert resolved["normalize_conf"]["stats_file"] == str((moved / md.CMVN).resolve())
    assert not list(tmp_path.glob(".model.*")), "temporary export folder left behind"


def test_utterance_mvn_config_gets_no_stats_file(tmp_path):
    exp = make_exp(tmp_path, normalize="utterance_mvn")
    (exp / "config.yaml").write_text(yaml.safe_dump(
        dict(yaml.safe_load((exp / "config.yaml").read_text()), normalize_conf={})))
    out = md.export_model_dir(train_config=exp / "config.yaml", weights=exp / "w.pth",
                              cmvn_stats=exp / "stats.npz", frontend={}, out_dir=tmp_path / "m")
    assert "stats_file" not in md.resolved_config(out)["normalize_conf"]


def test_check_model_dir_names_missing_files(tmp_path):
    with pytest.raises(md.ModelDirError, match="does not exist"):
        md.check_model_dir(tmp_path / "nope")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / md.CONFIG).write_text("{}")
    with pytest.raises(md.ModelDirError, match=r"lacks model\.pth, feats_stats\.npz"):
        md.check_model_dir(tmp_path / "m")
