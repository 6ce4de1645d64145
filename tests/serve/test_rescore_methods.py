"""/v1/rescore with every second-pass method: the tiny LLM's scores for the LLM methods, a
tiny PLL and a tiny MWER scorer dir (built here from configs) for the trained ones, and the
422s that name what is wrong."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("fastapi")

HYPS = ["the man said good one", "the man said good two", "a man said one"]


@pytest.fixture(scope="module")
def scorer_dirs(tmp_path_factory):
    from transformers import BertConfig, BertForMaskedLM, BertModel

    from speechlm.llm.second_pass.mwer import MwerConfig, build_scorer, save_scorer
    from speechlm.llm.second_pass.pll import PllConfig, PllScorer, save_pll_scorer
    from speechlm.testing.llm import tiny_tokenizer

    root = tmp_path_factory.mktemp("scorers")
    cfg = BertConfig(vocab_size=260, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    tok = tiny_tokenizer("llama")
    tok.add_special_tokens({"mask_token": "<mask>"})
    torch.manual_seed(0)
    pll = PllScorer(BertForMaskedLM(cfg), tok, PllConfig(model="tiny"))
    save_pll_scorer(pll, root / "pll_tiny")
    mwer = build_scorer(MwerConfig(model="tiny", pooling="mean"), BertModel(cfg), tok)
    save_scorer(mwer, root / "mwer_tiny")
    return {"pll": (root / "pll_tiny", pll), "mwer": (root / "mwer_tiny", mwer)}


@pytest.fixture(scope="module")
def tiny():
    # the tiny Llama with a context that holds the task-activating turns (128 does not)
    from speechlm.runtime import LLM
    from speechlm.testing.llm import tiny_model, tiny_tokenizer

    return LLM(tiny_model("llama", max_positions=1024), tiny_tokenizer("llama"),
               measure_energy=False)


@pytest.fixture(scope="module")
def client(ps_asr, tiny, scorer_dirs):
    from fastapi.testclient import TestClient

    from speechlm.serve.app import create_app
    from speechlm.serve.state import ServeConfig, ServeState

    config = ServeConfig(decode_processes=False,
                         scorers=tuple(str(d) for d, _ in scorer_dirs.values()))
    state = ServeState(config, llm=tiny, llm_name="tiny")
    state._asr["pocketsphinx"] = ps_asr
    with TestClient(create_app(state), raise_server_exceptions=False) as c:
        yield c
    state.close()


def _post(client, **body):
    return client.post("/v1/rescore", json={"hyps": [{"text": h} for h in HYPS], **body})


def _check_ranking(out, want_scores, scale):
    by_text = {h["text"]: h for h in out["hyps"]}
    for rank, (text, want) in enumerate(zip(HYPS, want_scores, strict=True)):
        h = by_text[text]
        assert h["llm_score"] == pytest.approx(want, abs=1e-3), text
        assert h["score"] == -rank  # no scores given: the rank prior
        assert h["tot_score"] == pytest.approx(-rank + scale * want, abs=2e-3)
    totals = [h["tot_score"] for h in out["hyps"]]
    assert totals == sorted(totals, reverse=True) and out["text"] == out["hyps"][0]["text"]


def test_lm_norm_is_the_per_token_log_probability(client, tiny):
    r = _post(client, method="lm_norm", llm_scale=2.0)
    assert r.status_code == 200, r.text
    res = tiny.score(HYPS, per_token=True, append_eos=True)
    _check_ranking(r.json(), [x.total / len(x.token_logprobs) for x in res], 2.0)
    assert r.json()["method"] == "lm_norm" and r.json()["llm"] == "tiny"


@pytest.mark.parametrize("method", ["prompt", "tap", "ger-select"])
def test_prompt_methods_match_the_library(client, tiny, method):
    from speechlm.llm.second_pass import methods as sp
    from speechlm.llm.second_pass.nbest import NbestItem
    from speechlm.llm.second_pass.prompt import activation_turns

    r = _post(client, method=method, llm_scale=0.5)
    assert r.status_code == 200, r.text
    builder = sp.PromptBuilder(tiny.tokenizer)
    if method == "tap":
        builder.activation = activation_turns(tiny)
    item = NbestItem("utt", tuple(HYPS))
    want = sp.score(tiny, [item], sp.MethodConfig(method), builder=builder)["utt"].scores
    _check_ranking(r.json(), want, 0.5)


def test_ger_free_guard_keeps_the_one_best_at_threshold_minus_one(client):
    r = _post(client, method="ger-free", threshold=-1)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["text"] == HYPS[0] and out["correction"]["kept"] is False


@pytest.mark.parametrize("method", ["pll", "mwer"])
def test_trained_scorers_by_dir_name_and_by_path(client, scorer_dirs, method):
    path, scorer = scorer_dirs[method]
    want = [-c for c in scorer.costs(HYPS)]
    for model in (path.name, str(path)):
        r = _post(client, method=method, model=model, llm_scale=3.0)
        assert r.status_code == 200, r.text
        _check_ranking(r.json(), want, 3.0)
        assert r.json()["llm"] == model


def test_first_pass_scores_join_the_interpolation(client, scorer_dirs):
    path, scorer = scorer_dirs["pll"]
    given = [-5.0, -1.0, -3.0]
    body = {"hyps": [{"text": t, "score": s} for t, s in zip(HYPS, given, strict=True)],
            "method": "pll", "model": path.name, "llm_scale": 0.1}
    out = client.post("/v1/rescore", json=body).json()
    costs = scorer.costs(HYPS)
    for h in out["hyps"]:
        k = HYPS.index(h["text"])
        assert h["score"] == given[k]
        assert h["tot_score"] == pytest.approx(given[k] - 0.1 * costs[k], abs=2e-3)


def _error(r, code):
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code, r.text
    return r.json()["error"]["message"]


def test_bad_rescore_requests_say_what_is_wrong(client, scorer_dirs):
    assert "mwer" in _error(_post(client, method="nope"), "invalid_request")
    assert "needs model" in _error(_post(client, method="pll"), "no_model")
    msg = _error(_post(client, method="pll", model="/etc"), "unknown_model")
    assert "pll_tiny" in msg  # lists what is served
    # the other method's dir: refused by name, not a crash
    assert "pll.json" in _error(_post(client, method="pll", model="mwer_tiny"),
                                "invalid_model")
    assert "trained methods" in _error(_post(client, method="lm_norm", model="pll_tiny"),
                                       "invalid_request")
    assert "lm only" in _error(_post(client, method="prompt", prefix="count :"),
                               "invalid_request")
    assert "ger-free only" in _error(_post(client, method="prompt", threshold=0.5),
                                     "invalid_request")
    mixed = {"hyps": [{"text": "one", "score": -1.0}, {"text": "two"}], "method": "lm_norm"}
    assert "every hypothesis or for none" in _error(
        client.post("/v1/rescore", json=mixed), "invalid_text")


def test_a_bad_scorer_dir_is_refused_at_start(tmp_path):
    from speechlm.serve.state import ServeConfig

    with pytest.raises(ValueError, match="not a scorer dir"):
        ServeConfig(scorers=(str(tmp_path),))


def test_python_api_runs_the_trained_methods(scorer_dirs):
    import speechlm

    path, scorer = scorer_dirs["pll"]
    costs = scorer.costs(HYPS)
    best = min(range(3), key=lambda k: (costs[k], k))
    # at a huge weight the scorer decides alone
    assert speechlm.rescore(HYPS, method="pll", model=path, llm_scale=1e6) == \
        {"utt": HYPS[best]}
    with pytest.raises(ValueError, match="needs model="):
        speechlm.rescore(HYPS, method="pll")
