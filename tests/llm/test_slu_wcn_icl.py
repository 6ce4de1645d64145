"""In-context SLU over WCNs: prompt fitting (shots, then WCN pruning, then cuts), empty
hypotheses, embedding shot selection, input aliases; SmolLM2 end to end (slow)."""
import json

import numpy as np
import pytest

from speechlm.llm.icl import Example, ExamplePool
from speechlm.llm.serialize import (
    SerializeConfig,
    input_kind,
    load_input_variants,
    load_inputs,
    serialize_wcn,
    wcn_variants,
)
from speechlm.llm.slu import IntentClassifier, PromptConfig


def _e(word, posterior):
    """One WCN entry as cn.jsonl writes it (times do not matter here)."""
    return {"word": word, "posterior": posterior, "start": 0.0, "end": 0.0}


# a WCN of 6 bins, each a confident word and two weak competitors
LONG_WCN = [[_e(w, 0.5), _e("nights", 0.3),
             _e("<eps>", 0.2)]
            for w in ("turn", "the", "lights", "on", "lights", "on")]


def test_wcn_variants_prune_by_posterior_down_to_the_one_best():
    v = wcn_variants(LONG_WCN, SerializeConfig())
    assert v[0] == serialize_wcn(LONG_WCN, SerializeConfig())
    assert v[-1] == "turn the lights on lights on"  # one word a bin: the MBR 1-best
    assert len(v) == len(set(v)) >= 3
    assert [len(x) for x in v] == sorted((len(x) for x in v), reverse=True)
    assert "nights:.3" in v[0] and "_:.2" in v[0] and "_" not in v[1]  # eps goes first


def _fitted(clf, text, shots_text):
    """(shots kept, query) of the prompt built for ``text``."""
    prompt = clf.prompt_for(text)
    lines = prompt.split("\n")
    return [x for x in lines[:-1] if x.startswith(shots_text)], lines[-1][: -len(" =>")]


def test_overflow_drops_shots_first_then_prunes_wcn_bins(tiny_lm):
    from speechlm.runtime import LLM

    llm = LLM.from_pretrained(tiny_lm)  # 32 positions
    pool = ExamplePool([Example(str(i), "lights on", "light_on") for i in range(3)])
    clf = IntentClassifier(llm, ["light_on", "light_off"], PromptConfig(shots=3), pool)
    fitter = clf.fitter
    variants = wcn_variants(LONG_WCN, SerializeConfig())

    def n(query):
        return fitter._n(PromptConfig(shots=3).build(query, []))

    assert n(variants[0]) > fitter.budget >= n(variants[-1])  # the full WCN cannot fit
    shots, query = _fitted(clf, variants, "lights on =>")
    assert shots == []                                         # shots went first
    fits = [v for v in variants if n(v) <= fitter.budget]
    assert query == fits[0] and query != variants[0]           # then the least pruning that fits
    assert fitter.counts == {"shots_dropped": 1, "wcn_pruned": 1, "cut": 0}
    # a WCN that fits alone (the most bins that do) keeps every bin: only shots are dropped
    k = max(k for k in range(1, len(LONG_WCN))
            if n(serialize_wcn(LONG_WCN[:k], SerializeConfig())) <= fitter.budget)
    small = wcn_variants(LONG_WCN[:k], SerializeConfig())
    assert n(small[0]) + 3 * n("lights on => light on") > fitter.budget  # not with 3 shots
    shots, query = _fitted(clf, small, "lights on =>")
    assert query == small[0] and len(shots) < 3
    assert fitter.counts["wcn_pruned"] == 1 and fitter.counts["shots_dropped"] == 2
    # a plain string has nothing to prune: its words are cut from the left
    _, query = _fitted(clf, " ".join(["please"] * 60), "lights on =>")
    assert fitter.counts["cut"] == 1 and 0 < len(query.split()) < 60


def test_empty_wcn_is_an_empty_hypothesis_not_skipped(tmp_path, tiny_lm):
    from speechlm.runtime import LLM

    dec, data = tmp_path / "dec", tmp_path / "data"
    dec.mkdir()
    data.mkdir()
    (data / "text").write_text("a lights on\nb turn the lights off\nc lights off\n")
    with open(dec / "cn.jsonl", "w") as f:
        f.write(json.dumps({"utt": "a", "bins": [[_e("lights", 1.0)],
                                                  [_e("on", 1.0)]]}) + "\n")
        f.write(json.dumps({"utt": "b", "bins": []}) + "\n")  # silence: no bin
        f.write(json.dumps({"utt": "c", "bins": [[_e("<eps>", 0.9),
                                                   _e("x", 0.1)]]}) + "\n")
    (dec / "text").write_text("a lights on\nb\nc\n")
    wcn = load_inputs("wcn", SerializeConfig(wcn_threshold=0.5), decode_dir=dec, data_dir=data)
    assert wcn == {"a": "lights on", "b": "", "c": ""}
    assert load_inputs("1best", SerializeConfig(), decode_dir=dec) == {
        "a": "lights on", "b": "", "c": ""}
    # an utterance of the data dir without any decode output gets the empty hypothesis too
    (data / "text").write_text("a lights on\nb turn the lights off\nc lights off\nd on\n")
    variants = load_input_variants("wcn", SerializeConfig(), decode_dir=dec, data_dir=data)
    assert variants["d"] == [""] and set(variants) == {"a", "b", "c", "d"}
    clf = IntentClassifier(LLM.from_pretrained(tiny_lm), ["light_on", "light_off"],
                           PromptConfig(shots=0))
    assert clf.prompt_for(variants["b"]) == "=>"
    hyp = clf.predict(variants, progress=False)
    assert set(hyp) == {"a", "b", "c", "d"} and set(hyp.values()) <= {"light_on", "light_off"}


def test_input_kind_aliases():
    assert input_kind("1best") == "onebest"
    with pytest.raises(ValueError, match="1best"):
        input_kind("lattice")


def _bag_of_words(vocab):
    def embed(texts):  # a count vector over a fixed vocabulary (a real, if crude, embedding)
        return np.array([[t.split().count(w) for w in vocab] for t in texts], dtype=float)
    return embed


def test_embedding_selection_puts_the_nearest_last():
    ex = [Example("1", "play some jazz", "play_music"),
          Example("2", "wake me up at seven", "alarm_set"),
          Example("3", "what is the weather", "weather_query")]
    vocab = sorted({w for e in ex for w in e.text.split()} | {"up"})
    pool = ExamplePool(ex, embed=_bag_of_words(vocab))
    got = pool.select("wake:.6/make:.4 me up", 2, "embedding")
    assert got[-1].intent == "alarm_set" and len(got) == 2
    assert [e.id for e in pool.select("", 3, "embedding")] == ["3", "2", "1"]  # ties: pool order
    with pytest.raises(ValueError, match="embed function"):
        ExamplePool(ex).select("play jazz", 1, "embedding")
    bad = ExamplePool(ex, embed=lambda texts: np.zeros((1, 3)))
    with pytest.raises(ValueError, match="shape"):
        bad.select("play jazz", 1, "embedding")


@pytest.mark.slow
def test_smollm2_icl_over_text_1best_and_wcn(tmp_path, capsys):
    """SmolLM2-135M-Instruct through the CLI, MiniLM shots: the reference text of clear
    requests is classified right, and every input kind of every utterance is answered."""
    from speechlm.bin.cli import main

    pool = [("wake me up at seven am", "alarm_set"), ("set an alarm for six", "alarm_set"),
            ("play some jazz music", "play_music"), ("play my rock playlist", "play_music"),
            ("what is the weather today", "weather_query"),
            ("will it rain tomorrow", "weather_query")] * 2
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"id": str(i), "text": t, "intent": y}) + "\n"
                             for i, (t, y) in enumerate(pool)))
    data, dec = tmp_path / "data", tmp_path / "dec"
    data.mkdir()
    dec.mkdir()
    refs = {"u1": ("wake me up at eight am", "alarm_set"),
            "u2": ("play some rock music", "play_music"),
            "u3": ("is it going to rain today", "weather_query")}
    (data / "text").write_text("".join(f"{u} {t}\n" for u, (t, _) in refs.items()))
    (data / "utt2intent").write_text("".join(f"{u} {y}\n" for u, (_, y) in refs.items()))
    (dec / "text").write_text("u1 wake me up at eight am\nu2 pay some rock music\nu3\n")
    with open(dec / "cn.jsonl", "w") as f:
        f.write(json.dumps({"utt": "u1", "bins": [[_e(w, 1.0)]
                                                   for w in refs["u1"][0].split()]}) + "\n")
        f.write(json.dumps({"utt": "u2", "bins": [
            [_e("pay", 0.55), _e("play", 0.45)],
            *[[_e(w, 1.0)] for w in ("some", "rock", "music")]]}) + "\n")
        f.write(json.dumps({"utt": "u3", "bins": []}) + "\n")
    slu = tmp_path / "slu"
    assert main(["slu", "train", "--mode", "icl", "--llm", "smollm2-135m-instruct",
                 "--train-jsonl", str(train), "--out", str(slu), "--shots", "4",
                 "--shot-selection", "embedding"]) == 0
    assert json.loads((slu / "slu.json").read_text())["llm_path"] == "smollm2-135m-instruct"
    out = tmp_path / "pred"
    assert main(["slu", "predict", "--model-dir", str(slu), "--input", "text", "1best", "wcn",
                 "--decode-dir", str(dec), "--data-dir", str(data), "--out", str(out),
                 "--no-progress"]) == 0
    text = json.loads((out / "text" / "accuracy.json").read_text())
    assert text["accuracy"] == 1.0 and text["llm"] == "smollm2-135m-instruct"
    for kind in ("1best", "wcn"):
        acc = json.loads((out / kind / "accuracy.json").read_text())
        assert acc["total"] == 3 and acc["missing"] == 0  # u3 (empty) answered, not skipped
