import json
import math
import random

import pytest
from slu_testdata import make_examples, write_decode_dir

from speechlm.llm.serialize import (
    SerializeConfig,
    load_inputs,
    load_weighted_hypotheses,
    noisy_bins,
    noisy_nbest,
    serialize_nbest,
    serialize_wcn,
    text_to_bins,
)

BINS = [
    [{"word": "pay", "posterior": 0.25}, {"word": "play", "posterior": 0.7},
     {"word": "clay", "posterior": 0.05}],
    [{"word": "<eps>", "posterior": 0.9}, {"word": "the", "posterior": 0.1}],
    [{"word": "jazz", "posterior": 1.0}],
]


def test_wcn_threshold_alternatives_posteriors_separator():
    # entries are re-sorted best first; clay (0.05) is under the threshold
    assert serialize_wcn(BINS, SerializeConfig(wcn_threshold=0.2)) == "play:.7/pay:.2 jazz"
    # a lower threshold lets the deletion bin in, shown with eps_symbol
    assert (serialize_wcn(BINS, SerializeConfig(wcn_threshold=0.1, wcn_show_posteriors=False))
            == "play/pay _/the jazz")
    assert serialize_wcn(BINS, SerializeConfig(wcn_threshold=0.0, wcn_max_alternatives=2,
                                               wcn_separator="|", wcn_digits=2)) == (
        "play:.70|pay:.25 _:.90|the:.10 jazz")
    # max one alternative: the consensus (MBR) path; confident deletions vanish
    assert serialize_wcn(BINS, SerializeConfig(wcn_max_alternatives=1)) == "play jazz"


def test_wcn_best_entry_survives_any_threshold():
    bins = [[{"word": "a", "posterior": 0.4}, {"word": "b", "posterior": 0.35},
             {"word": "c", "posterior": 0.25}]]
    assert serialize_wcn(bins, SerializeConfig(wcn_threshold=0.9)) == "a"


def test_reference_as_wcn_is_the_text():
    assert serialize_wcn(text_to_bins("wake me up at seven"), SerializeConfig()) == (
        "wake me up at seven")


def test_nbest_top_k_and_duplicates():
    hyps = ["wake me up", "wake  me up", "wake me", "make me up"]
    assert serialize_nbest(hyps, SerializeConfig(nbest_k=2)) == "wake me up | wake me"
    assert serialize_nbest(hyps, SerializeConfig(nbest_k=1)) == "wake me up"
    assert serialize_nbest(hyps, SerializeConfig(nbest_k=5, nbest_separator=" ; ")) == (
        "wake me up ; wake me ; make me up")


@pytest.mark.parametrize("kw, msg", [
    ({"nbest_k": 0}, "nbest_k"), ({"wcn_threshold": 1.5}, "wcn_threshold"),
    ({"wcn_max_alternatives": 0}, "wcn_max_alternatives"), ({"wcn_separator": ""}, "wcn_sep"),
    ({"eps_symbol": "a b"}, "eps_symbol"), ({"nbest_separator": "  "}, "nbest_separator"),
])
def test_config_refuses_bad_values(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SerializeConfig(**kw)


def test_noisy_bins_keep_the_reference_and_sum_to_one():
    rng = random.Random(0)
    text = "set an alarm for seven in the morning"
    for _ in range(20):
        bins = noisy_bins(text, rng, ["foo", "bar"], noise=0.5)
        assert [b[0]["word"] for b in bins] == text.split()
        assert all(abs(sum(e["posterior"] for e in b) - 1) < 1e-9 for b in bins)
    assert any(len(b) == 2 for b in bins)
    assert all(len(b) == 1 for b in noisy_bins(text, rng, ["foo"], noise=0.0))


def test_noisy_nbest_holds_the_reference_once():
    rng = random.Random(1)
    hyps = noisy_nbest("play some jazz music", rng, ["x"], k=4, noise=0.5)
    assert len(hyps) == 4 and hyps.count("play some jazz music") >= 1


def test_load_all_five_inputs(tmp_path):
    rows = make_examples(6, 3)
    dec, data = write_decode_dir(tmp_path, rows)
    cfg = SerializeConfig(wcn_threshold=0.1, nbest_k=2)
    ref = load_inputs("text", cfg, data_dir=data)
    one = load_inputs("onebest", cfg, decode_dir=dec)
    nb = load_inputs("nbest", cfg, decode_dir=dec)
    wcn = load_inputs("wcn", cfg, decode_dir=dec)
    orc = load_inputs("oracle", cfg, decode_dir=dec)
    utts = sorted(r["id"] for r in rows)
    for got in (ref, one, nb, wcn, orc):
        assert list(got) == utts
    u = utts[0]
    words = ref[u].split()
    assert one[u] == " ".join(words[:-1] + ["xx"])
    assert nb[u] == f"{one[u]} | {ref[u]}"
    assert wcn[u] == " ".join(words[:-1] + [f"xx:.6/{words[-1]}:.4"])
    assert orc[u] == ref[u]


def test_bad_inputs_name_the_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="cn.jsonl"):
        load_inputs("wcn", SerializeConfig(), decode_dir=tmp_path)
    (tmp_path / "cn.jsonl").write_text(json.dumps({"utt": "a", "bins": []}) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"cn.jsonl:2: not JSON"):
        load_inputs("wcn", SerializeConfig(), decode_dir=tmp_path)
    (tmp_path / "nbest.jsonl").write_text(json.dumps({"utt": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"nbest.jsonl:1: not an nbest.jsonl line"):
        load_inputs("nbest", SerializeConfig(), decode_dir=tmp_path)
    (tmp_path / "cn.jsonl").write_text(json.dumps({"utt": "b", "bins": [[{"word": "a"}]]}))
    with pytest.raises(ValueError, match=r"cn.jsonl:1: confusion network 'b': bad JSON"):
        load_inputs("wcn", SerializeConfig(), decode_dir=tmp_path)
    with pytest.raises(ValueError, match="needs a data dir"):
        load_inputs("text", SerializeConfig(), decode_dir=tmp_path)
    with pytest.raises(ValueError, match="input must be one of"):
        load_inputs("lattice", SerializeConfig(), decode_dir=tmp_path)


def test_weighted_hypotheses_of_nbest_and_wcn(tmp_path):
    rows = make_examples(4, 5)
    dec, data = write_decode_dir(tmp_path, rows)
    u = sorted(r["id"] for r in rows)[0]
    ref = {r["id"]: r["text"] for r in rows}[u]
    hyp = " ".join(ref.split()[:-1] + ["xx"])
    nb = load_weighted_hypotheses("nbest_marg", SerializeConfig(), decode_dir=dec)
    # scores -1 and -2: softmax weights e/(e+1), 1/(e+1)
    assert [t for t, _ in nb[u]] == [hyp, ref]
    assert nb[u][0][1] == pytest.approx(math.e / (math.e + 1))
    flat = load_weighted_hypotheses("nbest_marg", SerializeConfig(nbest_scale=0), decode_dir=dec)
    assert [w for _, w in flat[u]] == [0.5, 0.5]
    one = load_weighted_hypotheses("nbest_marg", SerializeConfig(marginal_k=1), decode_dir=dec)
    assert one[u] == [(hyp, 1.0)]
    # the WCN's last bin: xx 0.6, the reference word 0.4 -> two paths
    wcn = load_weighted_hypotheses("wcn_marg", SerializeConfig(), decode_dir=dec)
    assert wcn[u] == [(hyp, pytest.approx(0.6)), (ref, pytest.approx(0.4))]
    flat = load_weighted_hypotheses("wcn_marg", SerializeConfig(wcn_path_scale=0), decode_dir=dec)
    assert flat[u] == [(hyp, 0.5), (ref, 0.5)]
    sharp = load_weighted_hypotheses("wcn_marg", SerializeConfig(wcn_path_scale=2),
                                     decode_dir=dec)
    assert sharp[u][0][1] == pytest.approx(0.36 / (0.36 + 0.16))
    assert list(wcn) == list(nb) == sorted(ref_id for ref_id in {r["id"] for r in rows})


def test_weighted_hypotheses_merge_duplicates_and_fill_silence(tmp_path):
    (tmp_path / "nbest.jsonl").write_text(json.dumps({"utt": "a", "hyps": [
        {"text": "play  jazz", "score": 0.0}, {"text": "play jazz", "score": 0.0},
        {"text": "pay jazz", "score": 0.0}]}) + "\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "text").write_text("a play jazz\nb \n")
    got = load_weighted_hypotheses("nbest_marg", SerializeConfig(), decode_dir=tmp_path,
                                   data_dir=data)
    assert got["a"] == [("play jazz", pytest.approx(2 / 3)), ("pay jazz", pytest.approx(1 / 3))]
    assert got["b"] == [("", 1.0)]  # no decode output: the empty hypothesis, not skipped
    with pytest.raises(ValueError, match="load_weighted_hypotheses"):
        load_inputs("wcn_marg", SerializeConfig(), decode_dir=tmp_path)
    with pytest.raises(ValueError, match="load_input_variants"):
        load_weighted_hypotheses("wcn", SerializeConfig(), decode_dir=tmp_path)
    with pytest.raises(ValueError, match="nbest_scale"):
        SerializeConfig(nbest_scale=-1)
    with pytest.raises(ValueError, match="wcn_path_scale"):
        SerializeConfig(wcn_path_scale=float("nan"))
    with pytest.raises(ValueError, match="marginal_k"):
        SerializeConfig(marginal_k=0)
