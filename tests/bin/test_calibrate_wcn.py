"""speechlm calibrate-wcn: the dev-tuned scale rebuilds a decode dir's WCNs."""
import json

from speechlm.bin.cli import main
from speechlm.core.hypothesis import Hypothesis
from speechlm.lattice import ConfusionNetwork, read_cn_jsonl, write_cn_jsonl, write_kaldi_lattices
from speechlm.lattice.nbest_lattice import lattice_from_nbest

# utt -> (reference, N-best): the best hypothesis is wrong as often as right, by the same
# score margin, so sharp posteriors (scale 2: 0.98 on the best) are over-confident
CASES = {
    "u1": ("play some jazz", [("play some jazz", -1.0), ("pay some jazz", -3.0)]),
    "u2": ("wake me up", [("make me up", -2.0), ("wake me up", -4.0)]),
    "u3": ("lights on", [("lights on", -0.5), ("lights off", -2.5)]),
    "u4": ("turn it off", [("turn it of", -1.0), ("turn it off", -3.0)]),
}


def _decode_dir(root, name, scale):
    dec, data = root / f"dec_{name}", root / f"data_{name}"
    (dec / "lat").mkdir(parents=True)
    data.mkdir()
    lats = {u: lattice_from_nbest([Hypothesis(t, s) for t, s in hyps], utt=f"{name}{u}",
                                  duration=1.0) for u, (_, hyps) in CASES.items()}
    words = sorted({w for _, hyps in CASES.values() for t, _ in hyps for w in t.split()})
    table = {"<eps>": 0, **{w: i for i, w in enumerate(words, start=1)}}
    (dec / "lat" / "words.txt").write_text("".join(f"{w} {i}\n" for w, i in table.items()))
    write_kaldi_lattices(dec / "lat" / "lat.1.gz", lats.values(), words=table)
    cns = [ConfusionNetwork.from_lattice(lat, am_scale=scale) for lat in lats.values()]
    write_cn_jsonl(dec / "cn.jsonl", [*cns, ConfusionNetwork([], utt=f"{name}silent")])
    (dec / "text").write_text("".join(f"{name}{u} {h[0][0]}\n" for u, (_, h) in CASES.items())
                              + f"{name}silent\n")
    (data / "text").write_text("".join(f"{name}{u} {r}\n" for u, (r, _) in CASES.items())
                               + f"{name}silent\n")
    return dec, data


def test_tunes_on_dev_and_rebuilds_the_wcns(tmp_path, capsys):
    dev, dev_data = _decode_dir(tmp_path, "dev", 2.0)
    test, test_data = _decode_dir(tmp_path, "test", 2.0)
    out = tmp_path / "test_cal"
    assert main(["calibrate-wcn", "--dev", str(dev), str(dev_data), "--scales", "0.5 1 2",
                 "--apply", str(test), str(test_data), str(out),
                 "--report", str(tmp_path / "cal.json")]) == 0
    table = json.loads((tmp_path / "cal.json").read_text())
    nces = {r["am_scale"]: r["nce"] for r in table["scales"]}
    assert table["am_scale"] == max(nces, key=nces.get) and table["utts"] == 4
    report = json.loads((out / "calibration.json").read_text())
    assert report["am_scale"] == table["am_scale"] < 2.0  # flatter than the raw scale
    assert report["calibrated"]["nce"] > report["raw"]["nce"]
    raw = {cn.utt: cn for cn in read_cn_jsonl(test / "cn.jsonl")}
    cal = {cn.utt: cn for cn in read_cn_jsonl(out / "cn.jsonl")}
    assert set(cal) == set(raw) and cal["testsilent"].bins == []  # empty stays, not dropped
    top = [max(e.posterior for e in b) for cn in cal.values() for b in cn.bins]
    top_raw = [max(e.posterior for e in b) for cn in raw.values() for b in cn.bins]
    assert sum(top) < sum(top_raw)
    for name in ("text", "ctm", "text.mbr"):
        assert (out / name).is_file()
    # resumable: a second run keeps the finished dir
    assert main(["calibrate-wcn", "--dev", str(dev), str(dev_data), "--scales", "0.5 1 2",
                 "--apply", str(test), str(test_data), str(out)]) == 0
    assert "already done" in capsys.readouterr().err


def test_bad_input_names_the_dir(tmp_path, capsys):
    (tmp_path / "dec").mkdir()
    (tmp_path / "data").mkdir()
    assert main(["calibrate-wcn", "--dev", str(tmp_path / "dec"), str(tmp_path / "data")]) == 1
    assert "decode with --lattice" in capsys.readouterr().err
    assert main(["calibrate-wcn", "--dev", "a", "b", "--scales", "0 1"]) == 1
