"""Speech-prefix LLM on a tiny config: the projector learns to make a frozen LLM transcribe."""

import numpy as np
import pytest
import torch

from speechlm.llm.projector import Projector, ProjectorConfig
from speechlm.llm.retrieval import build_datastore
from speechlm.llm.retrieval.keys import speech_keys
from speechlm.llm.speech_llm import (
    SpeechLLM,
    SpeechLLMConfig,
    TiedCTC,
    fit_projector,
    save_speech_llm,
)
from speechlm.runtime.llm import LLM
from speechlm.runtime.retrieval import KNNLogitsProcessor
from speechlm.testing.llm import tiny_config, tiny_tokenizer

TEXTS = ["one two three", "water is good", "the house is big", "four five"]


@pytest.fixture(scope="module")
def trained():
    llm = LLM.from_config(tiny_config("llama"), tiny_tokenizer("llama"), seed=0)
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((10 + 3 * i, 8)).astype(np.float32) for i in range(4)]
    # ctc_weight 0: this fixture tests the transcript loss alone (4-7 frames cannot carry
    # these byte-level transcripts through CTC anyway)
    config = SpeechLLMConfig(llm="tiny", encoder="none", prompt=" :", epochs=60,
                             batch_size=4, lr=3e-2, hidden=64, downsample=2, ctc_weight=0.0)
    torch.manual_seed(0)
    proj = Projector(ProjectorConfig(in_dim=8, out_dim=64, downsample=2, hidden=64))
    first = fit_projector(llm.model, llm.tokenizer, proj, feats, TEXTS,
                          SpeechLLMConfig(**{**config.__dict__, "epochs": 1}), progress=False)
    stats = fit_projector(llm.model, llm.tokenizer, proj, feats, TEXTS, config, progress=False)
    return SpeechLLM(llm, proj, config), feats, first, stats


def test_projector_shapes_and_bad_input():
    p = Projector(ProjectorConfig(in_dim=8, out_dim=16, downsample=3, hidden=8))
    assert p(torch.zeros(1, 7, 8)).shape == (1, 3, 16)
    with pytest.raises(ValueError, match="8-dim"):
        p(torch.zeros(1, 7, 5))
    with pytest.raises(ValueError, match="downsample"):
        ProjectorConfig(in_dim=8, out_dim=16, downsample=0)


@pytest.mark.slow  # trains a projector for ~10 s on a loaded 2-core CPU
def test_training_makes_the_frozen_llm_transcribe(trained):
    model, feats, first, stats = trained
    # a random 2-layer LLM has near-flat logits (loss near ln 256 = 5.55): the projector
    # can only tilt them, but enough to rank each utterance's own transcript first
    assert stats["final_loss"] < first["final_loss"] - 0.3
    assert stats["trainable_params"] == sum(p.numel() for p in model.projector.parameters())
    for i, f in enumerate(feats):
        scores = model.score_features(f, TEXTS)
        per_token = [s / (len(model.target_ids(t)) + 1)
                     for s, t in zip(scores, TEXTS, strict=True)]
        assert int(np.argmax(per_token)) == i


@pytest.mark.slow  # trains a projector for ~10 s on a loaded 2-core CPU
def test_save_load_round_trip(trained, tmp_path):
    model, feats, _, stats = trained
    save_speech_llm(tmp_path / "m", model.config, model.projector, stats)
    again = SpeechLLM.load(tmp_path / "m", llm=model.llm, with_encoder=False)
    assert again.fingerprint() == model.fingerprint()
    assert again.transcribe_features(feats[:2]) == model.transcribe_features(feats[:2])
    with pytest.raises(FileNotFoundError, match="speech_llm.json"):
        SpeechLLM.load(tmp_path / "nothing", llm=model.llm)


@pytest.mark.slow  # trains a projector for ~10 s on a loaded 2-core CPU
def test_speech_keys_and_knn_on_the_speech_llm(trained, tmp_path):
    model, feats, _, _ = trained
    keys, values, names, fp = speech_keys(model, feats, TEXTS)
    assert fp.startswith("speech|llm=") and "|prefix=" in fp
    assert len(keys) == len(values) == sum(len(model.target_ids(t)) + 1 for t in TEXTS)
    store = build_datastore(keys, values, tmp_path / "s", fingerprint=fp)
    plain = model.transcribe_features(feats)
    assert model.transcribe_features(feats, logits_processor=KNNLogitsProcessor(store, lam=0.0)
                                     ) == plain
    # lambda = 1: every token comes from the store; speech keys of the same audio find it
    knn1 = KNNLogitsProcessor(store, lam=1.0, k=1)
    assert model.transcribe_features(feats, logits_processor=knn1) == TEXTS


def test_decode_config_speech_llm_backend(tmp_path):
    from speechlm.asr.decode_config import DecodeConfig
    from speechlm.asr.recognizer import BACKEND_CLASSES

    # the recipe's tuned CTC weight comes from the model dir; the command line wins
    (tmp_path / "decode.yaml").write_text("ctc_weight: 0.7\n")
    cfg = DecodeConfig(backend="speech-llm", model=str(tmp_path))
    assert cfg.with_model_defaults().ctc_weight == 0.7
    assert cfg.replace(ctc_weight=0.2).with_model_defaults().ctc_weight == 0.2

    assert BACKEND_CLASSES["speech-llm"] == "speechlm.llm.speech_llm:SpeechLLMBackend"
    with pytest.raises(ValueError, match="needs a model"):
        DecodeConfig(backend="speech-llm")
    with pytest.raises(ValueError, match="greedy 1-best"):
        DecodeConfig(backend="speech-llm", model="m", nbest=5)
    assert DecodeConfig(backend="speech-llm", model="m").model == "m"


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown speech-llm keys"):
        SpeechLLMConfig.from_dict({"llm": "x", "layers": 3})
    with pytest.raises(ValueError, match="epochs"):
        SpeechLLMConfig(epochs=0)


@pytest.mark.slow  # trains for a few seconds
def test_train_llm_saves_and_reloads_the_tuned_llm(tmp_path):
    from speechlm.llm import speech_llm as sl

    llm = LLM.from_config(tiny_config("llama"), tiny_tokenizer("llama"), seed=0)
    before = llm.model.get_output_embeddings().weight.detach().clone()
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((8, 8)).astype(np.float32) for _ in range(2)]
    config = SpeechLLMConfig(llm="tiny", encoder="none", prompt=" :", epochs=3, batch_size=2,
                             hidden=16, downsample=2, train_llm=True)
    proj = Projector(ProjectorConfig(in_dim=8, out_dim=64, downsample=2, hidden=16))
    stats = fit_projector(llm.model, llm.tokenizer, proj, feats, TEXTS[:2], config,
                          progress=False)
    assert stats["trainable_params"] > sum(p.numel() for p in proj.parameters())
    assert not torch.equal(before, llm.model.get_output_embeddings().weight)
    sl.save_speech_llm(tmp_path / "m", config, proj, stats, llm_model=llm.model,
                       tokenizer=llm.tokenizer)
    again = SpeechLLM.load(tmp_path / "m", with_encoder=False)
    assert torch.equal(again.llm.model.get_output_embeddings().weight,
                       llm.model.get_output_embeddings().weight)


def test_tied_ctc_reads_tokens_off_the_embedding_table():
    head = TiedCTC(4)
    table = torch.eye(4)[:3] * 5  # tokens 0-2 along the first three axes
    with torch.no_grad():
        head.blank.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0]))
    e = torch.eye(4)
    speech = torch.stack([e[0], e[0], e[3], e[0], e[1], e[1], e[3], e[2]])
    assert head.greedy(speech, table) == [0, 0, 1, 2]  # repeats merged unless split by blank
    logp = head.log_probs(speech[None], table)
    assert logp.shape == (1, 8, 4) and torch.allclose(logp.exp().sum(-1), torch.ones(1, 8))
    # the loss is lower for the spoken tokens than for others, and the table gets no gradient
    table.requires_grad_(True)
    good = head.loss(speech[None], [8], table, [[0, 0, 1, 2]])
    bad = head.loss(speech[None], [8], table, [[2, 1]])
    assert good < bad
    good.backward()
    assert table.grad is None and head.blank.grad is not None
    # compression: one mean embedding per best-path run, blanks dropped
    c = head.compress(speech, table)
    assert c.shape == (4, 4) and torch.equal(c[0], e[0]) and torch.equal(c[3], e[2])
    silent = torch.stack([e[3], e[3] * 2])
    assert torch.equal(head.compress(silent, table), silent.mean(0, keepdim=True))
    with pytest.raises(ValueError, match="ctc_weight"):
        SpeechLLMConfig(ctc_weight=-1.0)
    with pytest.raises(ValueError, match="ctc_compress"):
        SpeechLLMConfig(ctc_weight=0.0, ctc_compress=True)


@pytest.mark.slow  # trains for a few seconds
def test_ctc_head_learns_the_transcripts_and_round_trips(tmp_path):
    from speechlm.llm import speech_llm as sl

    llm = LLM.from_config(tiny_config("llama"), tiny_tokenizer("llama"), seed=0)
    rng = np.random.default_rng(0)
    # enough frames for every byte of the transcript (downsample 2: 20 embeddings)
    feats = [rng.standard_normal((40, 8)).astype(np.float32) for _ in TEXTS]
    config = SpeechLLMConfig(llm="tiny", encoder="none", prompt=" :", epochs=150,
                             batch_size=4, lr=1e-2, hidden=64, downsample=2, ctc_weight=1.0)
    torch.manual_seed(0)
    proj = Projector(ProjectorConfig(in_dim=8, out_dim=64, downsample=2, hidden=64))
    head = TiedCTC(64)
    stats = fit_projector(llm.model, llm.tokenizer, proj, feats, TEXTS, config,
                          ctc_head=head, progress=False)
    assert stats["final_ctc"] < 0.5 and stats["final_loss"] > stats["final_ctc"]
    model = SpeechLLM(llm, proj, config, ctc_head=head)
    assert model.ctc_transcribe_features(feats) == TEXTS
    # joint decoding at CTC weight 1 follows the CTC prefix scores alone
    assert model.transcribe_features(feats, ctc_weight=1.0) == TEXTS
    sl.save_speech_llm(tmp_path / "m", config, proj, stats, ctc_head=head)
    again = SpeechLLM.load(tmp_path / "m", llm=llm, with_encoder=False)
    assert again.ctc_transcribe_features(feats) == TEXTS
    with pytest.raises(ValueError, match="no CTC head"):
        SpeechLLM(llm, proj, config).ctc_transcribe_features(feats)
