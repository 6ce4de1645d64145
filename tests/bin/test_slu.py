import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import pytest

from speechlm.bin import slu as slu_cli
from speechlm.bin.cli import COMMANDS, main
from speechlm.llm.serialize import SerializeConfig, load_input_variants
from speechlm.llm.slu import read_utt2posteriors

# The SLU builders live beside the library tests (tests/llm/slu_testdata.py).
_spec = importlib.util.spec_from_file_location(
    "slu_testdata", Path(__file__).parents[1] / "llm" / "slu_testdata.py")
slu_testdata = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(slu_testdata)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):  # tests/conftest.py
    yield


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("slu_cli")
    data = slu_testdata.make_slu_data(root)
    lm = slu_testdata.train_tiny_lm(data["lm_text"], root / "lm")
    dec, data_dir = slu_testdata.write_decode_dir(root / "test", data["dev_rows"])
    return {**data, "lm": lm, "decode": dec, "data_dir": data_dir, "root": root}


def _predict(setup, slu_dir, kind, out, *extra):
    return main(["slu", "predict", "--model-dir", str(slu_dir), "--input", kind,
                 "--decode-dir", str(setup["decode"]), "--data-dir", str(setup["data_dir"]),
                 "--out", str(out), "--no-progress", *extra])


def test_slu_is_a_registered_command():
    assert COMMANDS["slu"][0] == "speechlm.bin.slu"


def test_icl_train_and_predict_every_input(setup, tmp_path, capsys):
    slu = tmp_path / "icl"
    assert main(["slu", "train", "--llm", str(setup["lm"]), "--train-jsonl",
                 str(setup["train"]), "--out", str(slu), "--mode", "icl", "--shots", "2",
                 "--wcn-threshold", "0.3", "--no-progress"]) == 0
    cfg = json.loads((slu / "slu.json").read_text())
    assert cfg["mode"] == "icl" and cfg["prompt"]["shots"] == 2
    assert cfg["serialize"]["wcn_threshold"] == 0.3 and len(cfg["labels"]) == 5
    assert cfg["llm_path"] == str(Path(setup["lm"]).resolve())
    assert len((slu / "examples.jsonl").read_text().splitlines()) == 150
    utts = sorted(r["id"] for r in setup["dev_rows"])
    for kind in ("text", "onebest", "nbest", "wcn", "oracle", "nbest_marg", "wcn_marg"):
        out = tmp_path / f"pred_{kind}"
        assert _predict(setup, slu, kind, out) == 0
        assert f"intent accuracy ({kind})" in capsys.readouterr().out
        lines = (out / "utt2intent").read_text().splitlines()
        assert [x.split()[0] for x in lines] == utts
        assert all(x.split()[1] in cfg["labels"] for x in lines)
        acc = json.loads((out / "accuracy.json").read_text())
        assert acc["input"] == kind and acc["total"] == 40 and acc["missing"] == 0
        # every label's log posterior, normalized; the most likely is the label written
        posteriors = read_utt2posteriors(out / "utt2posteriors")
        assert sorted(posteriors) == utts
        for line in lines:
            utt, label = line.split()
            row = posteriors[utt]
            assert sorted(row) == sorted(cfg["labels"])
            assert max(row, key=row.get) == label
            assert math.isclose(sum(math.exp(v) for v in row.values()), 1, abs_tol=1e-3)
    # one hypothesis marginalized = that hypothesis classified alone (the 1-best here)
    assert _predict(setup, slu, "nbest_marg", tmp_path / "m1", "--marginal-k", "1") == 0
    assert ((tmp_path / "m1" / "utt2intent").read_text()
            == (tmp_path / "pred_onebest" / "utt2intent").read_text())
    assert json.loads((tmp_path / "m1" / "accuracy.json").read_text())["serialize"][
        "marginal_k"] == 1
    # serialization options of predict override the saved ones
    assert _predict(setup, slu, "wcn", tmp_path / "w", "--wcn-threshold", "0.5") == 0
    saved = json.loads((tmp_path / "w" / "accuracy.json").read_text())["serialize"]
    assert saved["wcn_threshold"] == 0.5
    # and so do the prompt options (the recipe's prompt ablation)
    assert _predict(setup, slu, "onebest", tmp_path / "p", "--no-verbalize",
                    "--instruction", "") == 0
    prompt = json.loads((tmp_path / "p" / "accuracy.json").read_text())["prompt"]
    assert prompt["verbalize"] is False and prompt["instruction"] == ""
    # the same prediction again is a no-op; other serialized inputs are redone
    capsys.readouterr()
    before = (tmp_path / "w" / "utt2intent").stat().st_mtime_ns
    assert _predict(setup, slu, "wcn", tmp_path / "w", "--wcn-threshold", "0.5") == 0
    captured = capsys.readouterr()
    assert "already done" in captured.err and "intent accuracy (wcn)" in captured.out
    assert (tmp_path / "w" / "utt2intent").stat().st_mtime_ns == before
    assert _predict(setup, slu, "wcn", tmp_path / "w", "--wcn-threshold", "0.01") == 0
    assert "already done" not in capsys.readouterr().err
    assert (tmp_path / "w" / "utt2intent").stat().st_mtime_ns != before
    # the SLU dir made again from another checkout (other paths in its train block) keeps
    # every finished prediction; one stamped the old way (slu.json byte for byte) is kept
    # and restamped
    config = json.loads((slu / "slu.json").read_text())
    config["train"]["train_jsonl"] = "/elsewhere/slu_train.jsonl"
    (slu / "slu.json").write_text(json.dumps(config, indent=2))
    done = tmp_path / "w" / ".done"
    new_stamp = done.read_text()
    assert _predict(setup, slu, "wcn", tmp_path / "w", "--wcn-threshold", "0.01") == 0
    assert "already done" in capsys.readouterr().err
    inputs = load_input_variants("wcn", dataclasses.replace(
        SerializeConfig(**config["serialize"]), wcn_threshold=0.01),
        decode_dir=setup["decode"], data_dir=setup["data_dir"])
    settings = {"prompt": config["prompt"], "llm": config["llm_path"], "model": None}
    current, legacy = slu_cli._predict_stamps(slu, config["llm_path"], inputs, settings)
    assert current + "\n" == new_stamp and legacy != current
    done.write_text(legacy + "\n")
    assert _predict(setup, slu, "wcn", tmp_path / "w", "--wcn-threshold", "0.01") == 0
    assert "already done" in capsys.readouterr().err
    assert done.read_text() == new_stamp
    config["prompt"]["arrow"] = " ->"  # what the dir predicts changed: done again
    (slu / "slu.json").write_text(json.dumps(config, indent=2))
    assert _predict(setup, slu, "wcn", tmp_path / "w", "--wcn-threshold", "0.01") == 0
    assert "already done" not in capsys.readouterr().err


def test_lora_train_reports_dev_accuracy_and_predicts(setup, tmp_path, capsys):
    slu = tmp_path / "lora"
    assert main(["slu", "train", "--llm", str(setup["lm"]), "--train-jsonl",
                 str(setup["train"]), "--dev-jsonl", str(setup["dev"]), "--out", str(slu),
                 "--mode", "lora", "--epochs", "2", "--rank", "4", "--lr", "0.01",
                 "--train-decode-dir", str(setup["decode"]), "--train-data-dir",
                 str(setup["data_dir"]), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "trained LoRA adapter" in printed and "dev accuracy (text)" in printed
    report = json.loads((slu / "train_report.json").read_text())
    # 150 sentences x (text, WCN, N-best) + 40 utterances x (1-best, N-best, WCN) decoded
    assert report["train"]["examples"] == 450 + 120
    assert report["dev"]["total"] == 40 and 0 <= report["dev"]["accuracy"] <= 1
    cfg = json.loads((slu / "slu.json").read_text())
    assert cfg["prompt"]["append_eos"] is True and cfg["train"]["lora"]["rank"] == 4
    assert (slu / "adapter" / "adapter_config.json").is_file()
    assert _predict(setup, slu, "wcn", tmp_path / "p") == 0
    assert (tmp_path / "p" / "utt2intent").is_file()


def test_bad_input_is_one_clear_line(setup, tmp_path, capsys):
    assert _predict(setup, tmp_path / "missing", "text", tmp_path / "o") == 1
    assert "not an SLU dir" in capsys.readouterr().err
    args = ["slu", "train", "--train-jsonl", str(setup["train"]), "--out", str(tmp_path / "s")]
    assert main([*args, "--llm-url", "http://127.0.0.1:9/v1", "--mode", "lora"]) == 1
    assert "--mode lora fine-tunes a local LM" in capsys.readouterr().err
    assert main([*args, "--llm", str(setup["lm"]), "--mode", "icl", "--shot-selection",
                 "best"]) == 1
    assert "shot_selection must be one of" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    assert main(["slu", "train", "--llm", str(setup["lm"]), "--train-jsonl",
                 str(setup["train"]), "--out", str(tmp_path / "taken"), "--mode", "icl"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["slu", "train", "--llm", str(setup["lm"]), "--train-jsonl",
                 str(setup["train"]), "--out", str(tmp_path / "taken"), "--mode", "icl",
                 "--overwrite"]) == 1
    assert "not an SLU dir" in capsys.readouterr().err and (tmp_path / "taken" / "x").exists()
    slu = tmp_path / "ok"
    assert main(["slu", "train", "--llm", str(setup["lm"]), "--train-jsonl",
                 str(setup["train"]), "--out", str(slu), "--mode", "icl"]) == 0
    # a bad option or a missing LM leaves the old dir in place, even with --overwrite
    for bad in (["--llm", str(setup["lm"]), "--shots", "-1"], ["--llm", str(tmp_path / "no")]):
        assert main(["slu", "train", *bad, "--train-jsonl", str(setup["train"]), "--out",
                     str(slu), "--mode", "icl", "--overwrite"]) == 1
        assert (slu / "examples.jsonl").is_file()
    capsys.readouterr()
    # a decode input without a decode dir
    assert main(["slu", "predict", "--model-dir", str(slu), "--input", "wcn",
                 "--data-dir", str(setup["data_dir"]), "--out", str(tmp_path / "o")]) == 1
    assert "needs a decode dir" in capsys.readouterr().err


def test_icl_through_a_remote_server(setup, tmp_path, capsys, monkeypatch):
    """``--llm-url``: slu.json keeps the URL and predict scores through ``RemoteLLM``."""
    from speechlm.runtime import remote as remote_mod
    from speechlm.runtime.base import ScoreResult

    calls = []

    class FakeRemote:  # stands in for the HTTP client: records how it is built and called
        def __init__(self, base_url, model=None):
            calls.append((base_url, model))

        def score(self, texts, prefix=None, *, per_token=False, append_eos=False,
                  batch_size=16):
            calls.append(("score", len(texts), prefix.count("=>")))
            # a label word that occurs in the prompt scores 0, others -5
            vals = [[0.0 if w in prefix.split() else -5.0 for w in t.split()] for t in texts]
            return [ScoreResult(total=sum(v), tokens=t.split(), token_logprobs=v)
                    for t, v in zip(texts, vals, strict=True)]

    monkeypatch.setattr(remote_mod, "RemoteLLM", FakeRemote)
    slu = tmp_path / "remote"
    assert main(["slu", "train", "--llm-url", "http://127.0.0.1:9/v1", "--llm-model", "m",
                 "--train-jsonl", str(setup["train"]), "--out", str(slu), "--mode", "icl",
                 "--dev-jsonl", str(setup["dev"]), "--no-progress"]) == 0
    cfg = json.loads((slu / "slu.json").read_text())
    assert cfg["llm_url"] == "http://127.0.0.1:9/v1" and cfg["llm_path"] is None
    # no tokenizer, no fitting: every query gets its 4 shots (+ its own arrow), 5 labels;
    # a dev sentence that repeats an earlier one is answered from the prompt cache
    assert calls[0] == ("http://127.0.0.1:9/v1", "m")
    distinct = {json.loads(x)["text"] for x in Path(setup["dev"]).read_text().splitlines()}
    assert calls[1:] == [("score", 5, 5)] * len(distinct)
    assert "dev accuracy (text)" in capsys.readouterr().out
    # the nearest shots' labels sit in the prompt: most of the synthetic dev set is right
    assert json.loads((slu / "train_report.json").read_text())["dev"]["accuracy"] > 0.6


def test_tune_marginal_on_dev_then_predict_with_its_choice(setup, tmp_path, capsys):
    slu = tmp_path / "icl"
    assert main(["slu", "train", "--llm", str(setup["lm"]), "--train-jsonl",
                 str(setup["train"]), "--out", str(slu), "--mode", "icl", "--shots", "2",
                 "--no-progress"]) == 0
    report = tmp_path / "marg.json"
    tune = ["slu", "tune-marginal", "--model-dir", str(slu), "--input", "wcn_marg",
            "--dev", str(setup["decode"]), str(setup["data_dir"]), "--ks", "1 2",
            "--scales", "0 1", "--out", str(report), "--no-progress"]
    assert main(tune) == 0
    assert "(chosen)" in capsys.readouterr().out
    got = json.loads(report.read_text())
    rows = {(r["marginal_k"], r["wcn_path_scale"]): r["accuracy"] for r in got["candidates"]}
    assert set(rows) == {(2, 0.0), (2, 1.0), (1, 0.0), (1, 1.0)} and got["utts"] == 40
    assert rows[(1, 0.0)] == rows[(1, 1.0)]  # one path: its weight does not matter
    assert got["dev_accuracy"] == max(rows.values())
    best = got["best"]
    # each candidate's accuracy is what predict gets with those settings
    for (k, scale), acc in rows.items():
        out = tmp_path / f"p{k}_{scale}"
        assert _predict(setup, slu, "wcn_marg", out, "--marginal-k", str(k),
                        "--wcn-path-scale", str(scale)) == 0
        assert json.loads((out / "accuracy.json").read_text())["accuracy"] == acc
    assert _predict(setup, slu, "wcn_marg", tmp_path / "chosen", "--marginal-from",
                    str(report)) == 0
    saved = json.loads((tmp_path / "chosen" / "accuracy.json").read_text())["serialize"]
    assert (saved["marginal_k"], saved["wcn_path_scale"]) == (best["marginal_k"],
                                                              best["wcn_path_scale"])
    capsys.readouterr()
    assert main(tune) == 0  # the same dev, grid and SLU dir: kept
    assert "already done" in capsys.readouterr().err
    report.write_text("{}")
    assert _predict(setup, slu, "wcn_marg", tmp_path / "bad", "--marginal-from",
                    str(report)) == 1
    assert "not a 'speechlm slu tune-marginal' report" in capsys.readouterr().err


def test_worker_processes_give_the_labels_of_one(setup, tmp_path, capsys):
    slu = tmp_path / "icl"
    assert main(["slu", "train", "--llm", str(setup["lm"]), "--train-jsonl",
                 str(setup["train"]), "--out", str(slu), "--mode", "icl", "--shots", "2",
                 "--no-progress"]) == 0
    for kind in ("wcn", "wcn_marg"):
        one, two = tmp_path / f"{kind}_nj1", tmp_path / f"{kind}_nj2"
        assert _predict(setup, slu, kind, one) == 0
        assert _predict(setup, slu, kind, two, "--nj", "2", "--threads", "1") == 0
        assert (one / "utt2intent").read_text() == (two / "utt2intent").read_text()
        assert (one / "utt2posteriors").read_text() == (two / "utt2posteriors").read_text()
        acc = json.loads((two / "accuracy.json").read_text())
        assert acc["total"] == 40 and acc["missing"] == 0
    capsys.readouterr()
    assert _predict(setup, slu, "wcn", tmp_path / "bad", "--nj", "0") == 1
    assert "--nj must be >= 1, got 0" in capsys.readouterr().err
    reports = []
    for nj in ("1", "2"):  # tune-marginal: the grid's hypotheses ranked in the workers
        out = tmp_path / f"marg_nj{nj}.json"
        assert main(["slu", "tune-marginal", "--model-dir", str(slu), "--input", "wcn_marg",
                     "--dev", str(setup["decode"]), str(setup["data_dir"]), "--ks", "1 3",
                     "--scales", "0 1", "--out", str(out), "--no-progress", "--threads", "1",
                     "--nj", nj]) == 0
        reports.append(json.loads(out.read_text()))
    assert reports[0]["candidates"] == reports[1]["candidates"]
    assert reports[0]["best"] == reports[1]["best"]


def test_predict_output_has_one_writer(tmp_path):
    """A second predict on the same OUT waits for the first, then keeps its result."""
    import threading

    out, started, release, calls, second = tmp_path / "o", threading.Event(), \
        threading.Event(), [], {}

    def slow():
        calls.append("first")
        started.set()
        release.wait(30)
        return {"u1": [-0.1, -2.4]}  # label log posteriors, labels ["a", "b"]

    def other():
        calls.append("second")
        return {"u1": [-3.0, -0.05]}

    labels = ["a", "b"]
    first = threading.Thread(target=slu_cli._kept_or_predicted, args=(out, ("s1",), slow, labels))
    first.start()
    assert started.wait(30)
    waiter = threading.Thread(
        target=lambda: second.update(slu_cli._kept_or_predicted(out, ("s1",), other, labels)))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # held off by the first writer's lock
    release.set()
    first.join(30)
    waiter.join(30)
    assert calls == ["first"] and second == {"u1": "a"}  # found done, not computed again
    assert (out / "utt2intent").read_text() == "u1 a\n"
    assert (out / "utt2posteriors").read_text() == "u1 a:-0.1000 b:-2.4000\n"
    assert slu_cli._kept_or_predicted(out, ("s2",), other, labels) == {"u1": "b"}  # other settings
    assert (out / "utt2posteriors").read_text() == "u1 b:-0.0500 a:-3.0000\n"


def test_spoken_pool_shots_shown_as_text_or_as_the_query(setup, tmp_path, capsys):
    """--shot-data-dir replaces the pool; --shot-input same shows each shot as its decode, in
    the query's form; worker processes see the same pool and shots."""
    slu = tmp_path / "icl"
    assert main(["slu", "train", "--llm", str(setup["lm"]), "--train-jsonl",
                 str(setup["train"]), "--out", str(slu), "--mode", "icl", "--shots", "2",
                 "--no-progress"]) == 0
    dec, data = slu_testdata.write_decode_dir(tmp_path / "pool", setup["train_rows"][:30])
    pool = ["--shot-data-dir", str(data), "--shot-decode-dir", str(dec)]
    outs = {}
    for shown in ("text", "same"):
        outs[shown] = tmp_path / shown
        assert main(["slu", "predict", "--model-dir", str(slu), "--input", "1best", "wcn",
                     "--decode-dir", str(setup["decode"]), "--data-dir", str(setup["data_dir"]),
                     "--out", str(outs[shown]), "--no-progress", *pool,
                     "--shot-input", shown]) == 0
        assert "already done" not in capsys.readouterr().err  # a new pool, shown anew
    for kind in ("1best", "wcn"):
        got = {s: json.loads((o / kind / "accuracy.json").read_text())["shots_from"]
               for s, o in outs.items()}
        assert got["text"] == {"data_dir": str(data), "decode_dir": str(dec),
                               "shown_as": "text"}
        assert got["same"]["shown_as"] == {"1best": "onebest", "wcn": "wcn"}[kind]
    two = tmp_path / "same_nj2"
    assert _predict(setup, slu, "wcn", two, *pool, "--shot-input", "same", "--nj", "2",
                    "--threads", "1") == 0
    assert ((outs["same"] / "wcn" / "utt2posteriors").read_text()
            == (two / "utt2posteriors").read_text())
    assert _predict(setup, slu, "wcn", two, *pool, "--shot-input", "same") == 0
    assert "already done" in capsys.readouterr().err
    # the shots' form counts: shown as the 1-best, the WCN query is classified again
    assert _predict(setup, slu, "wcn", two, *pool, "--shot-input", "1best") == 0
    assert "already done" not in capsys.readouterr().err
    assert _predict(setup, slu, "wcn", tmp_path / "x", "--shot-input", "same") == 1
    assert "need --shot-data-dir" in capsys.readouterr().err
    assert _predict(setup, slu, "wcn", tmp_path / "x", *pool, "--shots", "0") == 1
    assert "prompts with no shots" in capsys.readouterr().err
    assert _predict(setup, slu, "wcn", tmp_path / "x", "--shot-data-dir", str(data),
                    "--shot-input", "same") == 1
    assert "need the pool's decode dir" in capsys.readouterr().err


def test_knn_votes_without_an_lm(setup, tmp_path, capsys):
    """--knn N: the N nearest pool sentences vote (no LM is loaded or stamped); a new N
    predicts anew; LM options and LoRA dirs are refused."""
    slu = tmp_path / "icl"
    assert main(["slu", "train", "--llm", str(setup["lm"]), "--train-jsonl",
                 str(setup["train"]), "--out", str(slu), "--mode", "icl", "--shots", "2",
                 "--no-progress"]) == 0
    out = tmp_path / "knn"
    assert _predict(setup, slu, "text", out, "--knn", "3") == 0
    acc = json.loads((out / "accuracy.json").read_text())
    assert acc["knn"] == 3 and acc["llm"] is None
    # the test sentences share the pool's templates: most neighbours share the intent (5
    # intents: chance is 0.2; MiniLM gets 0.875 here)
    assert acc["accuracy"] >= 0.7, acc
    posteriors = read_utt2posteriors(out / "utt2posteriors")
    assert all(math.isclose(sum(math.exp(v) for v in p.values()), 1.0, rel_tol=1e-3)
               for p in posteriors.values())
    marg = tmp_path / "knn_marg"
    assert _predict(setup, slu, "wcn_marg", marg, "--knn", "3") == 0
    assert json.loads((marg / "accuracy.json").read_text())["input"] == "wcn_marg"
    capsys.readouterr()
    assert _predict(setup, slu, "text", out, "--knn", "3") == 0
    assert "already done" in capsys.readouterr().err
    assert _predict(setup, slu, "text", out, "--knn", "5") == 0
    assert "already done" not in capsys.readouterr().err
    assert json.loads((out / "accuracy.json").read_text())["knn"] == 5
    assert _predict(setup, slu, "text", tmp_path / "x", "--knn", "3",
                    "--llm", str(setup["lm"])) == 1
    assert "--knn runs no LM" in capsys.readouterr().err
    # --shot-encoder is the encoder that votes
    assert _predict(setup, slu, "text", tmp_path / "x", "--knn", "3",
                    "--shot-encoder", "no-such-encoder") == 1
    assert "no-such-encoder" in capsys.readouterr().err
    lora = tmp_path / "lora"
    lora.mkdir()
    cfg = json.loads((slu / "slu.json").read_text())
    (lora / "slu.json").write_text(json.dumps({**cfg, "mode": "lora"}))
    assert _predict(setup, lora, "text", tmp_path / "y", "--knn", "3") == 1
    assert "kNN votes with an icl dir's few-shot pool" in capsys.readouterr().err
