"""speechlm decode --lattice: the files it writes and what they must satisfy."""
import json
import shutil

import pytest

from speechlm.bin import decode
from speechlm.testing.shared_data import shared_data_dir

CARDS = shared_data_dir("english_speech_samples/pocketsphinx_cards")


@pytest.fixture
def cards_dir(tmp_path):
    if CARDS is None:
        pytest.skip("shared English samples not found")
    d = tmp_path / "cards"
    d.mkdir()
    refs = {"c001": "ten of clubs", "c002": "four queen of clubs", "c004": "five five"}
    (d / "wav.scp").write_text("".join(f"{u} {CARDS / (u[1:] + '.wav')}\n" for u in refs))
    (d / "text").write_text("".join(f"{u} {t}\n" for u, t in refs.items()))
    (d / "utt2spk").write_text("".join(f"{u} {u}\n" for u in refs))
    shutil.copy(d / "utt2spk", d / "spk2utt")
    return d


def test_pocketsphinx_lattice_outputs(cards_dir, tmp_path):
    out = tmp_path / "dec"
    rc = decode.main(["--backend", "pocketsphinx", "--lattice", "--data-dir", str(cards_dir),
                      "--out", str(out), "--nbest", "5"])
    assert rc == 0
    for name in ("text", "nbest.jsonl", "cn.jsonl", "ctm", "text.mbr", "oracle_wer",
                 "lat/lat.1.gz"):
        assert (out / name).is_file(), name
    cns = [json.loads(line) for line in (out / "cn.jsonl").read_text().splitlines()]
    assert [c["utt"] for c in cns] == ["c001", "c002", "c004"]
    for cn in cns:
        for b in cn["bins"]:
            assert abs(sum(e["posterior"] for e in b) - 1.0) < 1e-4
            assert all(e["start"] <= e["end"] for e in b)
    for line in (out / "ctm").read_text().splitlines():
        utt, channel, start, dur, word, conf = line.split()
        assert channel == "1" and float(dur) >= 0 and 0 <= float(conf) <= 1
    rows = [json.loads(line) for line in (out / "oracle.jsonl").read_text().splitlines()]
    for r in rows:  # the oracles are ordered as they must be
        assert r["lattice"] <= r["nbest"] <= r["1best"]
        assert r["wcn"] <= r["mbr"]
    assert "lattice oracle" in (out / "oracle_wer").read_text()
    # a re-run reuses the finished job
    assert decode.main(["--backend", "pocketsphinx", "--lattice", "--data-dir",
                        str(cards_dir), "--out", str(out), "--nbest", "5"]) == 0


def test_backend_option_errors(cards_dir, tmp_path, capsys):
    # settings that do not fit together are usage errors (exit 2), named
    assert decode.main(["--data-dir", str(cards_dir), "--out", str(tmp_path / "o")]) == 2
    assert "needs a model (--model-dir" in capsys.readouterr().err
    assert decode.main(["--backend", "pocketsphinx", "--model-dir", "m", "--data-dir",
                        str(cards_dir), "--out", str(tmp_path / "o")]) == 2
    assert "espnet backend" in capsys.readouterr().err


def test_cli_and_api_give_the_same_results(cards_dir, tmp_path):
    """One recognizer: ``speechlm decode`` and ``speechlm.load_asr`` agree line for line,
    whatever order the utterances come in, and the resolved config is written."""
    import yaml

    import speechlm

    out = tmp_path / "dec"
    assert decode.main(["--backend", "pocketsphinx", "--lattice", "--data-dir",
                        str(cards_dir), "--out", str(out), "--nbest", "4"]) == 0
    resolved = yaml.safe_load((out / "decode_config.yaml").read_text())
    assert resolved["backend"] == "pocketsphinx" and resolved["nbest"] == 4
    asr = speechlm.load_asr("pocketsphinx", nbest=4)
    nbest = {json.loads(x)["utt"]: json.loads(x)
             for x in (out / "nbest.jsonl").read_text().splitlines()}
    cns = {json.loads(x)["utt"]: json.loads(x)
           for x in (out / "cn.jsonl").read_text().splitlines()}
    wavs = dict(line.split() for line in (cards_dir / "wav.scp").read_text().splitlines())
    for utt in reversed(sorted(wavs)):  # another order than the CLI's
        t = asr(wavs[utt], utt=utt).to_json()
        assert t["nbest"] == nbest[utt]
        assert t["wcn"] == cns[utt]


def test_lattices_are_kaldi_readable(cards_dir, tmp_path):
    """OUT/lat holds integer word ids and words.txt, as Kaldi tools want them."""
    import gzip

    from speechlm.lattice import read_kaldi_lattices, read_words_txt

    out = tmp_path / "dec"
    assert decode.main(["--backend", "pocketsphinx", "--lattice", "--data-dir",
                        str(cards_dir), "--out", str(out)]) == 0
    words = read_words_txt(out / "lat" / "words.txt")
    assert words[0] == "<eps>" and len(set(words.values())) == len(words)
    with gzip.open(out / "lat" / "lat.1.gz", "rt") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3 and not line.startswith(("c0", "[")) and fields[0].isdigit():
                assert fields[2].isdigit(), line  # an integer label, not a word
    lats = list(read_kaldi_lattices(out / "lat" / "lat.1.gz", words=out / "lat" / "words.txt"))
    text = dict(line.split(maxsplit=1) for line in (out / "text").read_text().splitlines())
    assert [lat.utt for lat in lats] == sorted(text)
    # the same lattices as the job wrote with words as strings
    job = list(read_kaldi_lattices(out / "split1" / "1" / "lat.gz"))
    assert [[(a.src, a.dst, a.word) for a in lat.arcs] for lat in lats] == \
        [[(a.src, a.dst, a.word) for a in lat.arcs] for lat in job]
