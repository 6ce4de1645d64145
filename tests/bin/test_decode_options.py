from speechlm.bin.cli import main


def test_decode_config_rejects_unknown_keys_before_any_work(tmp_path, capsys):
    (tmp_path / "decode.yaml").write_text("beam: 4\nbeem: 3\n")
    rc = main(["decode", "--model-dir", str(tmp_path / "m"), "--data-dir", str(tmp_path),
               "--out", str(tmp_path / "out"), "--config", str(tmp_path / "decode.yaml")])
    assert rc == 2
    assert "unknown key(s) beem" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_decode_names_a_missing_model_dir(tmp_path, capsys):
    rc = main(["decode", "--model-dir", str(tmp_path / "m"), "--data-dir", str(tmp_path),
               "--out", str(tmp_path / "out")])
    assert rc == 1
    assert f"model dir {tmp_path / 'm'} does not exist" in capsys.readouterr().err
