"""Cross-attention retrieval on tiny configs: gated blocks, hooks, memory, self-exclusion,
training, save/load and the in-context prefix."""

import numpy as np
import pytest
import torch

from speechlm.llm.projector import Projector, ProjectorConfig
from speechlm.llm.retrieval.augmented import (
    CrossAttentionSpeechLLM,
    ItemStore,
    RetrievalAugmentConfig,
    train_cross_attention,
)
from speechlm.llm.retrieval.cross_attention import (
    CrossAttentionAdapters,
    CrossAttentionConfig,
    GatedCrossAttention,
    pad_memory,
)
from speechlm.llm.retrieval.in_context import (
    fit_in_context,
    in_context_embeds,
    transcribe_in_context,
)
from speechlm.llm.retrieval.neighbours import NeighbourIndex, mean_pool
from speechlm.llm.speech_llm import SpeechLLM, SpeechLLMConfig
from speechlm.runtime import SamplingParams
from speechlm.runtime.llm import LLM
from speechlm.testing.llm import tiny_config, tiny_tokenizer

TEXTS = {"s0": "one two three", "s1": "water is good", "s2": "the house is big",
         "s3": "four five", "s4": "my mother is old"}


def tiny_llm() -> LLM:
    return LLM.from_config(tiny_config("llama"), tiny_tokenizer("llama"), seed=0)


def tiny_speech_llm(max_new_tokens: int = 6) -> SpeechLLM:
    llm = tiny_llm()
    torch.manual_seed(1)
    proj = Projector(ProjectorConfig(in_dim=8, out_dim=64, downsample=2, hidden=16,
                                     out_scale=0.5))
    config = SpeechLLMConfig(llm="tiny", encoder="none", prompt=" :", hidden=16, downsample=2,
                             max_new_tokens=max_new_tokens)
    return SpeechLLM(llm, proj, config)


def feats_of(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((6 + 2 * i, 8)).astype(np.float32) for i in range(n)]


def open_gates(adapters: CrossAttentionAdapters, value: float = 1.0) -> None:
    with torch.no_grad():
        for b in adapters.blocks.values():
            b.attn_gate.fill_(value)


def test_gate_zero_is_the_plain_model_exactly():
    llm = tiny_llm()
    x = llm.embed_tokens([1, 5, 6, 7, 8])[None]  # (1, 5, 64)
    plain = llm.model(inputs_embeds=x).logits
    adapters = CrossAttentionAdapters(llm.model, CrossAttentionConfig(layers=(0, 1),
                                                                      ff_mult=2)).attach(llm.model)
    with adapters.memory(torch.randn(1, 7, 64)):
        gated = llm.model(inputs_embeds=x).logits
    assert torch.equal(gated, plain)
    open_gates(adapters)
    with adapters.memory(torch.randn(1, 7, 64)):
        opened = llm.model(inputs_embeds=x).logits
    assert not torch.allclose(opened, plain)
    assert torch.equal(llm.model(inputs_embeds=x).logits, plain)  # no memory: hooks idle
    adapters.detach()
    with pytest.raises(ValueError, match="not attached"), adapters.memory(torch.randn(1, 7, 64)):
        pass


def test_gradients_reach_the_adapters_only():
    llm = tiny_llm()
    for p in llm.model.parameters():
        p.requires_grad_(False)
    adapters = CrossAttentionAdapters(llm.model, CrossAttentionConfig(layers=(-1,))).attach(
        llm.model)
    x = llm.embed_tokens([1, 5, 6, 7])[None]

    def grads() -> dict[str, torch.Tensor | None]:
        adapters.zero_grad(set_to_none=True)
        with adapters.memory(torch.randn(1, 3, 64)):
            llm.model(inputs_embeds=x).logits.logsumexp(-1).sum().backward()
        return {n: p.grad for n, p in adapters.named_parameters()}

    at_init = grads()  # gate 0: only the gate has a gradient (Flamingo's property)
    assert at_init["blocks.1.attn_gate"].abs() > 0
    open_gates(adapters, 0.5)
    after = grads()
    assert all(g is not None and g.abs().sum() > 0 for g in after.values()), after.keys()
    assert all(p.grad is None for p in llm.model.parameters())


def test_memory_padding_and_batch_alignment():
    torch.manual_seed(0)
    block = GatedCrossAttention(dim=16, mem_dim=16, heads=4)
    with torch.no_grad():
        block.attn_gate.fill_(1.0)
    x = torch.randn(3, 5, 16)
    rows = [torch.randn(2, 16), torch.randn(4, 16), torch.zeros(0, 16)]
    mem, mask = pad_memory(rows, 16)
    assert mem.shape == (3, 4, 16) and mask.tolist()[0] == [True, True, False, False]
    batched = block(x, mem, mask)
    for i in range(2):  # each row sees its own memory only, padding ignored
        alone = block(x[i : i + 1], rows[i][None])
        torch.testing.assert_close(batched[i], alone[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(batched[2], x[2])  # an empty memory: no update, no NaN
    assert torch.equal(block(x, torch.zeros(3, 0, 16)), x)  # nothing retrieved at all
    shared = block(x, rows[1][None])  # one memory row for the whole batch
    torch.testing.assert_close(shared[1], batched[1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="2 rows, the LLM runs 3"):
        block(x, mem[:2], mask[:2])
    with pytest.raises(ValueError, match=r"mask \(3, 2\) does not match"):
        block(x, mem, mask[:, :2])


def test_bad_memory_is_refused_with_the_expected_shape():
    llm = tiny_llm()
    adapters = CrossAttentionAdapters(llm.model, CrossAttentionConfig()).attach(llm.model)
    with pytest.raises(ValueError, match=r"must be \(B, M, 64\), got \(1, 3, 32\)"), \
            adapters.memory(torch.zeros(1, 3, 32)):
        pass
    with pytest.raises(ValueError, match=r"must be \(B, M, 64\)"), adapters.memory(
            torch.zeros(3, 64)):
        pass
    with pytest.raises(ValueError, match="do not exist; the LLM has 2 decoder layers"):
        CrossAttentionAdapters(llm.model, CrossAttentionConfig(layers=(2,)))
    with pytest.raises(ValueError, match="not a multiple of 5 heads"):
        CrossAttentionAdapters(llm.model, CrossAttentionConfig(heads=5))
    with pytest.raises(ValueError, match="repeat"):
        CrossAttentionConfig(layers=(1, 1))


def test_generation_with_the_kv_cache_equals_full_recomputation():
    slm = tiny_speech_llm(max_new_tokens=5)
    store = ItemStore(TEXTS)
    model = CrossAttentionSpeechLLM(slm, RetrievalAugmentConfig(layers=(0, 1)))
    open_gates(model.adapters)
    f = feats_of(1)[0]
    mem = model.item_memory(["s1", "s2"], store)
    assert mem.shape == (4 + 5, 128)
    prompt = slm.prompt_embeds(f)
    with torch.no_grad(), model.adapters.memory(mem[None]):
        out = slm.llm.generate_from_embeds([prompt], SamplingParams(max_tokens=5))[0]
        ids = out.token_ids
        assert ids
        full = torch.cat([prompt, slm.llm.embed_tokens(ids)])[None]
        logp = slm.llm.model(inputs_embeds=full).logits[0].log_softmax(-1)  # no cache
    p = prompt.shape[0]
    steps = logp[p - 1 : p - 1 + len(ids)]
    assert steps.argmax(-1).tolist() == ids
    picked = steps.gather(-1, torch.tensor(ids)[:, None]).sum().item()
    if out.finish_reason == "eos":
        picked += logp[p - 1 + len(ids)].max().item()
    assert out.logprob == pytest.approx(picked, abs=1e-4)
    with torch.no_grad():  # and the memory changed the output (the gates are open)
        plain = slm.llm.generate_from_embeds([prompt], SamplingParams(max_tokens=5))[0]
    assert plain.logprob != pytest.approx(out.logprob, abs=1e-4)


def test_retrieval_excludes_the_utterance_itself():
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((5, 8)).astype(np.float32)
    ids = list(TEXTS)
    index = NeighbourIndex(vecs, ids)
    assert [r[0] for r in index.search(vecs, k=1)] == ids  # each finds itself first
    hits = index.search(vecs, k=4, exclude=ids)
    assert all(u not in row and len(row) == 4 for u, row in zip(ids, hits, strict=True))
    assert index.search(vecs[:1], k=9, exclude=["s0"])[0] == [
        u for u in index.search(vecs[:1], k=5)[0] if u != "s0"]
    assert mean_pool(np.ones((3, 4))).tolist() == [1, 1, 1, 1]
    # standardised: cosine after z-scoring every dimension with the store's statistics
    keys = rng.standard_normal((20, 6)).astype(np.float32) * [50, 1, 1, 1, 1, 1] + 100
    query = rng.standard_normal((3, 6)).astype(np.float32) + 100
    z = (keys - keys.mean(0)) / keys.std(0)
    zq = (query - keys.mean(0)) / keys.std(0)
    cos = (zq / np.linalg.norm(zq, axis=1, keepdims=True)) @ (
        z / np.linalg.norm(z, axis=1, keepdims=True)).T
    names = [f"u{i}" for i in range(20)]
    std_index = NeighbourIndex(keys, names, standardise=True)
    assert std_index.search(query, 3) == [[names[i] for i in np.argsort(-c)[:3]] for c in cos]
    assert std_index.search(query, 3) != NeighbourIndex(keys, names).search(query, 3)
    with pytest.raises(ValueError, match="store is empty"):
        NeighbourIndex(np.zeros((0, 8), np.float32), [])
    with pytest.raises(ValueError, match="8-dimensional"):
        index.search(np.zeros((1, 4), np.float32), k=1)
    with pytest.raises(ValueError, match="unique ids"):
        NeighbourIndex(vecs[:2], ["a", "a"])
    with pytest.raises(ValueError, match="item store is empty"):
        ItemStore({})
    with pytest.raises(ValueError, match="no speech vector for 4"):
        ItemStore(TEXTS, speech={"s0": np.zeros(8)})


def test_item_memory_text_tokens_mean_and_speech():
    slm = tiny_speech_llm()
    speech = {u: np.full(8, i, np.float32) for i, u in enumerate(TEXTS)}
    store = ItemStore(TEXTS, speech)
    tokens = CrossAttentionSpeechLLM(slm, RetrievalAugmentConfig())
    mem = tokens.item_memory(["s0", "s3"], store)
    # (BOS, one, two, three) + (BOS, four, five): one (state, next token) pair per position
    assert mem.shape == (4 + 3, 128)
    state = slm.llm.hidden_states([" four five"], layer=-1)[0]
    torch.testing.assert_close(mem[4:, :64], state)  # keys: the LLM's own final states
    tok = slm.llm.tokenizer
    nxt = [*tok(" four five", add_special_tokens=False)["input_ids"], tok.eos_token_id]
    torch.testing.assert_close(mem[4:, 64:], slm.llm.embed_tokens(nxt))  # values: next token
    tokens.close()
    both = CrossAttentionSpeechLLM(slm, RetrievalAugmentConfig(
        items="text+speech", text_pooling="mean", speech_dim=8))
    mem = both.item_memory(["s0", "s3"], store)
    assert mem.shape == (4, 128)  # (text mean, speech) per item
    torch.testing.assert_close(mem[2, :64], state.mean(0))
    with pytest.raises(ValueError, match=r"shape \(8,\), the model expects \(4,\)"):
        CrossAttentionSpeechLLM(slm, RetrievalAugmentConfig(
            items="speech", speech_dim=4)).item_memory(["s0"], store)


def test_training_save_load_round_trip(tmp_path):
    slm = tiny_speech_llm()
    store = ItemStore(TEXTS)
    feats = feats_of(4)
    texts = [TEXTS[u] for u in ("s0", "s1", "s2", "s3")]
    neighbours = [["s1", "s4"], ["s0"], ["s3", "s1"], ["s2"]]
    config = RetrievalAugmentConfig(epochs=2, batch_size=2, lr=1e-2, layers=(0, 1))
    model = train_cross_attention(slm, feats, texts, neighbours, store, tmp_path / "m", config,
                                  progress=False)
    report = __import__("json").loads((tmp_path / "m" / "train_report.json").read_text())
    assert report["steps"] == 4 and report["trainable_params"] > 0
    assert all(g != 0 for g in report["gates"].values())  # training opened the gates
    hyps = model.transcribe_features(feats, neighbours, store)
    model.close()
    again = CrossAttentionSpeechLLM.load(tmp_path / "m", slm)
    for (n, a), b in zip(model.modules.state_dict().items(),
                         again.modules.state_dict().values(), strict=True):
        assert torch.equal(a, b), n
    assert again.transcribe_features(feats, neighbours, store) == hyps
    again.close()
    with torch.no_grad():
        slm.projector.fc2.bias.add_(1.0)  # another speech LLM
    with pytest.raises(ValueError, match="retrain the adapters"):
        CrossAttentionSpeechLLM.load(tmp_path / "m", slm)
    with pytest.raises(FileNotFoundError, match="cross_attention.json"):
        CrossAttentionSpeechLLM.load(tmp_path / "nothing", slm)
    with pytest.raises(ValueError, match="unknown cross-attention keys"):
        RetrievalAugmentConfig.from_dict({"k": 2, "depth": 3})


def test_in_context_prefix_and_the_context_cap():
    slm = tiny_speech_llm(max_new_tokens=4)
    f = feats_of(1)[0]
    base = slm.prompt_embeds(f)
    emb = in_context_embeds(slm, f, ["four five", "water is good"])
    ids = slm.llm.tokenizer(" Similar requests: four five; water is good.",
                            add_special_tokens=False)["input_ids"]
    assert emb.shape[0] == base.shape[0] + len(ids)
    torch.testing.assert_close(emb[1 : 1 + len(ids)], slm.llm.embed_tokens(ids))
    torch.testing.assert_close(emb[1 + len(ids):], base[1:])
    # context 128: with 4 new tokens, the prompt may hold 124 embeddings; long lists are cut
    many = [" ".join(["water"] * 20)] * 10
    cut = in_context_embeds(slm, f, many)
    assert base.shape[0] < cut.shape[0] <= 124
    hyps = transcribe_in_context(slm, feats_of(3), [["four five"], [], many])
    assert len(hyps) == 3


def test_adapters_learn_to_copy_from_a_useful_memory():
    # a frozen random LLM cannot predict these texts; with its own transcript retrieved
    # (oracle neighbours), training should teach the blocks to read the next token off the
    # memory. Its logits are near-flat (lm_head std 0.02 after a norm: loss near ln 256 =
    # 5.5), so the loss can only fall so far; greedy decoding shows the copy
    slm = tiny_speech_llm()
    store = ItemStore(TEXTS)
    ids = list(TEXTS)
    feats = feats_of(len(ids))
    texts = [TEXTS[u] for u in ids]
    model = CrossAttentionSpeechLLM(slm, RetrievalAugmentConfig(epochs=100, batch_size=5,
                                                                lr=1e-2, layers=(-1,)))
    model.fit(feats, texts, [[u] for u in ids], store, progress=False)
    eos = slm.llm.tokenizer.eos_token_id
    targets = [slm.target_ids(t) + [eos] for t in texts]

    def loss(neighbours):
        emb, mask, lab, mem, mem_mask = model._batch(feats, targets, neighbours, store)
        with torch.no_grad(), model.adapters.memory(mem, mem_mask):
            logits = slm.llm.model(inputs_embeds=emb, attention_mask=mask).logits[:, :-1]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 lab[:, 1:].reshape(-1)).item()

    own, other = loss([[u] for u in ids]), loss([[u] for u in ids[1:] + ids[:1]])
    assert own < other - 0.6, (own, other)
    assert model.transcribe_features(feats, [[u] for u in ids], store) == texts
    shifted = model.transcribe_features(feats, [[u] for u in ids[1:] + ids[:1]], store)
    assert shifted == texts[1:] + texts[:1]  # it copies whatever it is given


@pytest.mark.slow  # loads SmolLM2-135M (about 10-30 s here)
def test_smollm2_gate_zero_and_cached_generation():
    from speechlm.core import catalogue

    try:
        catalogue.locate("smollm2-135m-instruct")
    except catalogue.ModelNotInstalled as e:  # a broken install fails, only absent skips
        pytest.skip(str(e))
    llm = LLM.from_pretrained("smollm2-135m-instruct")
    x = llm.embed_tokens(llm.tokenizer("The capital of France is")["input_ids"])
    with torch.no_grad():
        plain = llm.model(inputs_embeds=x[None]).logits
    adapters = CrossAttentionAdapters(llm.model, CrossAttentionConfig(
        layers=(5, 17, -1), mem_dim=2 * 576)).attach(llm.model)
    mem = torch.cat(ItemStore({"a": "the capital of italy is rome", "b": "paris is lovely"})
                    .text_pairs(llm, ["a", "b"]))
    with torch.no_grad(), adapters.memory(mem[None]):
        assert torch.equal(llm.model(inputs_embeds=x[None]).logits, plain)
        open_gates(adapters, 0.5)
        out = llm.generate_from_embeds([x], SamplingParams(max_tokens=6))[0]
        full = torch.cat([x, llm.embed_tokens(out.token_ids)])[None]
        logits = llm.model(inputs_embeds=full).logits[0]
    n = len(out.token_ids)
    assert logits[len(x) - 1 : len(x) - 1 + n].argmax(-1).tolist() == out.token_ids
    adapters.detach()


def test_in_context_training_tunes_the_llm_only():
    slm = tiny_speech_llm()
    feats = feats_of(4)
    texts = [TEXTS[u] for u in ("s0", "s1", "s2", "s3")]
    lm_head = slm.llm.model.get_output_embeddings().weight.detach().clone()
    proj = {k: v.clone() for k, v in slm.projector.state_dict().items()}
    report = fit_in_context(slm, feats, texts, [[t] for t in texts], epochs=8, batch_size=4,
                            lr=3e-3, progress=False)
    assert report["steps"] == 8 and report["final_loss"] < report["first_loss"] - 0.5
    assert not torch.equal(lm_head, slm.llm.model.get_output_embeddings().weight)
    assert all(torch.equal(v, slm.projector.state_dict()[k]) for k, v in proj.items())
    assert not any(p.requires_grad for p in slm.llm.model.parameters())
    with pytest.raises(ValueError, match="3 texts, 4 neighbour lists"):
        fit_in_context(slm, feats, texts[:3], [[t] for t in texts], progress=False)
