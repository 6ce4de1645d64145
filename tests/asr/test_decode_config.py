"""DecodeConfig: one name per setting (dataclass field = YAML key = CLI flag)."""
import argparse
import dataclasses

import pytest
import yaml

from speechlm.asr.decode_config import DecodeConfig, add_config_arguments, config_from_args


def parse(argv):
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    return p.parse_args(argv)


def test_every_field_is_a_flag_and_a_yaml_key(tmp_path):
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    dests = {a.dest for a in p._actions}
    assert set(DecodeConfig.keys()) <= dests
    # both spellings of a flag set the same field
    assert parse(["--ctc-weight", "0.5"]).ctc_weight == parse(["--ctc_weight", "0.5"]).ctc_weight
    assert parse(["--model-dir", "m"]).model == "m"


def test_yaml_then_flags(tmp_path):
    conf = tmp_path / "decode.yaml"
    conf.write_text("beam: 4\nctc_weight: 0.3\nnbest: 3\n")
    c = config_from_args(parse(["--config", str(conf), "--model-dir", "m", "--beam", "6"]))
    assert (c.beam, c.ctc_weight, c.nbest, c.model) == (6, 0.3, 3, "m")
    assert c.lattice is False  # a store_true flag not given leaves the YAML/default


def test_bad_values_and_keys_name_the_file(tmp_path):
    conf = tmp_path / "d.yaml"
    conf.write_text("beam: four\n")
    with pytest.raises(ValueError, match=r"d.yaml: beam must be int"):
        DecodeConfig.from_yaml(conf, model="m")
    conf.write_text("beam: 4\nlm-scale: 2\n")
    with pytest.raises(ValueError, match=r"d.yaml: unknown key\(s\) lm-scale"):
        DecodeConfig.from_yaml(conf, model="m")
    conf.write_text("- a\n")
    with pytest.raises(ValueError, match="mapping"):
        DecodeConfig.from_yaml(conf, model="m")
    with pytest.raises(ValueError, match="needs a graph"):
        DecodeConfig(model="m", lattice=True)
    with pytest.raises(ValueError, match="ps_lm are options of the pocketsphinx"):
        DecodeConfig(model="m", ps_lm="x.arpa")
    with pytest.raises(ValueError, match="nbest must be >= 1"):
        DecodeConfig(backend="pocketsphinx", nbest=0)


def test_resolved_config_round_trips_and_fingerprints(tmp_path):
    c = DecodeConfig(backend="pocketsphinx", lattice=True, nbest=4, ps_lw=7.0)
    c.write_yaml(tmp_path / "c.yaml")
    again = DecodeConfig.from_yaml(tmp_path / "c.yaml")
    assert again == c
    assert set(yaml.safe_load((tmp_path / "c.yaml").read_text())) == set(DecodeConfig.keys())
    assert again.fingerprint() == c.fingerprint()
    for f in dataclasses.fields(c):  # every setting changes the fingerprint
        if f.name in ("nbest", "ps_lw", "batch_size"):
            value = getattr(c, f.name)
            assert c.replace(**{f.name: value + 1}).fingerprint() != c.fingerprint()
    # the content of a file it names, too
    lm = tmp_path / "lm.arpa"
    lm.write_text("a")
    one = c.replace(ps_lm=str(lm)).fingerprint()
    lm.write_text("b")
    assert c.replace(ps_lm=str(lm)).fingerprint() != one


def test_model_dir_defaults_come_after_the_callers(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "decode.yaml").write_text("beam_size: 4\nctc_weight: 0.5\nnbest: 3\n")
    c = DecodeConfig(model=str(model), ctc_weight=0.2).with_model_defaults()
    assert (c.beam, c.ctc_weight, c.nbest) == (4, 0.2, 1)  # nbest stays the caller's
    conf = tmp_path / "d.yaml"
    conf.write_text("penalty: 1.0\n")
    c = config_from_args(parse(["--config", str(conf), "--model-dir", str(model)]))
    assert (c.beam, c.ctc_weight, c.penalty) == (4, 0.5, 1.0)
    (model / "decode.yaml").write_text("beem: 4\n")
    with pytest.raises(ValueError, match=r"decode.yaml: unknown key\(s\) beem"):
        DecodeConfig(model=str(model)).with_model_defaults()


def test_pretrained_backends_take_only_their_options():
    assert DecodeConfig(backend="whisper").model is None  # the backend's default model
    with pytest.raises(ValueError, match="ctc_weight, ps_lw are not options of the whisper"):
        DecodeConfig(backend="whisper", ctc_weight=0.3, ps_lw=2.0)
    with pytest.raises(ValueError, match="moonshine backend gives a 1-best only"):
        DecodeConfig(backend="moonshine", nbest=3)
    assert DecodeConfig(backend="moonshine").nbest == 1
