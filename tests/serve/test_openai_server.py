"""Our OpenAI-compatible server on 127.0.0.1 (a free port), read through ``RemoteLLM``:
every call must equal the local ``LLM`` it serves."""
import httpx
import pytest

from speechlm.llm.lm_train import LMTrainConfig, train_lm
from speechlm.runtime.base import SamplingParams
from speechlm.runtime.llm import LLM
from speechlm.runtime.remote import RemoteError, RemoteLLM
from speechlm.serve.openai_server import OpenAIServer, ServerConfig
from speechlm.testing.llm import tiny_config, tiny_tokenizer


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):  # tests/conftest.py; as the runtime tests run
    yield


@pytest.fixture(scope="module")
def local():
    # Word-level tokenizer: every space is a token boundary, so prefix/text splits agree.
    return LLM.from_config(tiny_config("llama"), tiny_tokenizer("llama"), seed=0)


@pytest.fixture(scope="module")
def server(local):
    with OpenAIServer(local, ServerConfig(model_name="tiny-llama")) as srv:
        yield srv


@pytest.fixture
def remote(server):
    with RemoteLLM(server.url, "tiny-llama", eos_token="</s>", eos_token_id=2,
                   max_retries=0) as r:
        yield r


TEXTS = ["one two three", "the water is long", "three two one one", "yes"]


@pytest.mark.parametrize("prefix", [None, "you said : "])
@pytest.mark.parametrize("append_eos", [False, True])
def test_score_equals_local(local, remote, prefix, append_eos):
    want = local.score(TEXTS, prefix, per_token=True, append_eos=append_eos)
    got = remote.score(TEXTS, prefix, per_token=True, append_eos=append_eos, batch_size=3)
    for w, g in zip(want, got, strict=True):
        assert g.total == pytest.approx(w.total, abs=1e-4)
        assert g.token_logprobs == pytest.approx(w.token_logprobs, abs=1e-4)
        assert g.tokens == w.tokens
    one = remote.score(TEXTS[:1], prefix, append_eos=append_eos)  # floats, not ScoreResult
    assert one == pytest.approx([want[0].total], abs=1e-4)


def test_score_with_max_tokens_one_fallback(local, remote):
    remote._max_tokens_zero = False  # as after a server refused max_tokens=0
    want = local.score(TEXTS, "you said : ")
    assert remote.score(TEXTS, "you said : ") == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("params", [
    SamplingParams(max_tokens=6),
    SamplingParams(max_tokens=12, stop=("one",)),
    SamplingParams(max_tokens=5, temperature=0.8, top_k=20, seed=3),
], ids=["greedy", "stop", "seeded-sampling"])
def test_generate_equals_local(local, remote, params):
    prompts = ["one two", "the water is", "yes no yes"]
    want = local.generate(prompts, params)
    got = remote.generate(prompts, params)
    for w, g in zip(want, got, strict=True):
        assert (g.text, g.token_ids, g.finish_reason) == (w.text, w.token_ids, w.finish_reason)
        assert g.logprob == pytest.approx(w.logprob, abs=1e-4)


def test_streaming_generate_calls_on_token(local, remote):
    params = SamplingParams(max_tokens=6)
    seen, want_seen = [], []
    got = remote.generate(["one two", "yes"], params, on_token=lambda *a: seen.append(a))
    want = local.generate(["one two", "yes"], params, on_token=lambda *a: want_seen.append(a))
    assert [(g.text, g.token_ids, g.finish_reason) for g in got] == \
        [(w.text, w.token_ids, w.finish_reason) for w in want]
    assert [g.logprob for g in got] == pytest.approx([w.logprob for w in want], abs=1e-4)
    assert sorted(seen) == sorted(want_seen)  # same (index, id, piece) events


def test_chat_equals_local(local, remote):
    messages = [{"role": "system", "content": "yes"}, {"role": "user", "content": "one two"}]
    params = SamplingParams(max_tokens=5)
    want = local.chat(messages, params)
    for on_token in (None, lambda *a: None):
        got = remote.chat(messages, params, on_token=on_token)
        assert (got.text, got.token_ids, got.finish_reason) == \
            (want.text, want.token_ids, want.finish_reason)
        assert got.logprob == pytest.approx(want.logprob, abs=1e-4)


def test_metrics_count_remote_calls(remote):
    remote.score(["one two"])
    assert remote.metrics.counter("requests", "score") == 1
    assert "speechlm_llm" in remote.metrics.prometheus_text()


def test_trained_bpe_model_scores_alike(tmp_path):
    """The embedded default LM (byte-level BPE) over HTTP: texts start with a space."""
    text = tmp_path / "text.txt"
    text.write_text("\n".join(f"turn {w} the lights in the {r}" for w in ("on", "off")
                              for r in ("kitchen", "hall", "bedroom")) * 20 + "\n")
    train_lm(text, tmp_path / "lm", LMTrainConfig(
        vocab_size=300, num_layers=1, hidden_size=32, num_heads=2, context_length=32,
        epochs=4, lr=1e-2, warmup_steps=5, batch_size=16, threads=1), progress=False)
    llm = LLM.from_pretrained(tmp_path / "lm")
    hyps = [" turn on the lights", " turn of the light", " olá 🙂"]
    with OpenAIServer(llm) as srv, RemoteLLM(srv.url, eos_token="</s>") as remote:
        assert remote.model == "speechlm"  # the server's only model
        got = remote.score(hyps, "asr says:", append_eos=True)
        want = llm.score(hyps, "asr says:", append_eos=True)
        assert got == pytest.approx(want, abs=1e-4)
        # Trained enough to end lines: EOS's log-prob counts, its id is not a token.
        prompts = ["turn", "turn on the lights in the kitchen"]
        want = llm.generate(prompts, SamplingParams(max_tokens=8))
        assert "eos" in {w.finish_reason for w in want}
        for on_token in (None, lambda *a: None):
            got = remote.generate(prompts, SamplingParams(max_tokens=8), on_token=on_token)
            for g, w in zip(got, want, strict=True):
                assert (g.text, g.token_ids, g.finish_reason) == \
                    (w.text, w.token_ids, w.finish_reason)
                assert g.logprob == pytest.approx(w.logprob, abs=1e-4)


def test_http_errors_carry_the_server_message(server):
    with RemoteLLM(server.url, "no-such-model", max_retries=0) as remote:
        with pytest.raises(RemoteError, match="HTTP 404: The model `no-such-model` does not"):
            remote.generate("one")
    with RemoteLLM(server.url, "tiny-llama", max_retries=0) as remote:
        with pytest.raises(RemoteError, match="HTTP 400: .*context length") as e:
            remote.generate(" ".join(["one"] * 200))
        assert e.value.status == 400
        with pytest.raises(ValueError, match="beam search"):
            remote.generate("one", SamplingParams(num_beams=2))


def test_server_refuses_beyond_its_queue(local):
    with OpenAIServer(local, ServerConfig(max_concurrency=1, max_waiting=0)) as srv:
        srv.admit()  # one request is running: the queue (size 0) is full
        try:
            r = httpx.post(srv.url + "/completions", json={"prompt": "one", "max_tokens": 1})
            assert r.status_code == 503 and "busy" in r.json()["error"]["message"]
        finally:
            srv.release()
        r = httpx.post(srv.url + "/completions", json={"prompt": "one", "max_tokens": 1})
        assert r.status_code == 200


def test_server_checks_api_key_and_requests(local):
    with OpenAIServer(local, ServerConfig(api_key="sekret")) as srv:
        assert httpx.get(srv.url + "/models").status_code == 401
        with RemoteLLM(srv.url, api_key="sekret") as remote:
            assert remote.model == "speechlm"
        ok = {"Authorization": "Bearer sekret"}
        bad = httpx.post(srv.url + "/completions", headers=ok, json={"prompt": [1, 2]})
        assert bad.status_code == 400 and "prompt" in bad.json()["error"]["message"]
        bad = httpx.post(srv.url + "/completions", headers=ok,
                         json={"prompt": "one", "n": 2})
        assert bad.status_code == 400
        assert "speechlm_llm" in httpx.get(srv.url.removesuffix("/v1") + "/metrics",
                                           headers=ok).text
