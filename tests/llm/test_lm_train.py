import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from speechlm.llm import lm_train
from speechlm.llm.lm_train import (
    LMTrainConfig,
    split_heldout,
    train_lm,
    unigram_perplexity,
)


def toy_lines(n=400, seed=0):
    """Command-like sentences from a small template grammar: learnable beyond unigrams."""
    import random

    rng = random.Random(seed)
    templates = [
        lambda: (
            f"turn {rng.choice(['on', 'off'])} the lights in the "
            f"{rng.choice(['kitchen', 'bedroom', 'hall'])}"
        ),
        lambda: f"play {rng.choice(['music', 'jazz', 'the radio'])}",
        lambda: f"wake me up at {rng.choice(['seven', 'six', 'eight'])} am",
        lambda: f"what is the weather {rng.choice(['today', 'tomorrow'])}",
        lambda: f"set an alarm for {rng.choice(['seven', 'nine'])} {rng.choice(['am', 'pm'])}",
    ]
    return [rng.choice(templates)() for _ in range(n)]


TINY = dict(
    vocab_size=300,
    num_layers=1,
    hidden_size=32,
    num_heads=2,
    context_length=32,
    epochs=4,
    lr=1e-2,
    warmup_steps=5,
    batch_size=16,
    threads=1,
    seed=0,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    text = root / "text.txt"
    text.write_text("\n".join(toy_lines()) + "\n")
    report = train_lm(text, root / "out", LMTrainConfig(**TINY), progress=False)
    return text, root / "out", report


def test_checkpoint_loads_with_plain_transformers(trained):
    _, out, _ = trained
    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "train_report.json",
    ):
        assert (out / name).is_file(), name
    assert not (out / "train_state.pt").exists()  # training state is dropped when done
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # transformers 4 and 5
    ids = tok("turn on the lights")["input_ids"]
    assert ids[0] == tok.bos_token_id and model.config.bos_token_id == tok.bos_token_id
    assert model.generation_config.eos_token_id == tok.eos_token_id
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tok))


def test_runtime_llm_loads_scores_and_chats(trained):
    from speechlm.runtime.base import SamplingParams
    from speechlm.runtime.llm import LLM

    _, out, _ = trained
    llm = LLM.from_pretrained(out)
    good, bad = llm.score(["turn on the lights in the kitchen", "kitchen the in lights on turn"],
                          append_eos=True)
    assert math.isfinite(good) and good > bad  # the trained word order is more likely
    reply = llm.chat([{"role": "user", "content": "hello"}], SamplingParams(max_tokens=4))
    assert reply.finish_reason in ("eos", "length", "stop")


def test_perplexity_is_finite_and_beats_unigram(trained):
    _, out, report = trained
    assert math.isfinite(report.heldout_perplexity)
    assert report.heldout_perplexity < report.unigram_perplexity
    saved = json.loads((out / "train_report.json").read_text())
    assert saved["heldout_perplexity"] == pytest.approx(report.heldout_perplexity)
    assert saved["config"]["hidden_size"] == 32 and len(saved["history"]) == 4


def test_reported_perplexity_matches_plain_transformers(trained):
    """The report's number is what anyone recomputes from the saved files."""
    text, out, report = trained
    lines = lm_train.read_lines(text)
    _, heldout = split_heldout(lines, LMTrainConfig().holdout_fraction, seed=0)
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for line in heldout:
            ids = torch.tensor([tok(line)["input_ids"] + [tok.eos_token_id]])
            logp = model(ids).logits[0, :-1].log_softmax(-1)
            nll -= logp.gather(1, ids[0, 1:, None]).sum().item()
            count += ids.shape[1] - 1
    assert math.exp(nll / count) == pytest.approx(report.heldout_perplexity, rel=1e-4)


def test_any_text_encodes_and_decodes(trained):
    _, out, _ = trained
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    text = "héllo 日本 🙂 ZZZ"  # nothing like the training text: byte fallback
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id is None or tok.unk_token_id not in ids
    assert tok.decode(ids) == text


def test_heldout_split_is_by_distinct_text_and_seeded():
    lines = ["a b", "c d", "a b", "e f", "g h", "c d", "i j"] * 3
    train, heldout = split_heldout(lines, 0.4, seed=1)
    assert heldout and not set(train) & set(heldout)
    assert len(train) + len(heldout) == len(lines)
    assert split_heldout(lines, 0.4, seed=1) == (train, heldout)


def test_unigram_perplexity_by_hand():
    # train predicts tokens 5, 5, 6 (BOS 1 skipped); vocab 4 -> p(5) = 3/7, p(6) = 2/7
    ppl = unigram_perplexity([[1, 5, 5], [1, 6]], [[1, 5, 6]], vocab_size=4)
    assert ppl == pytest.approx(math.exp(-(math.log(3 / 7) + math.log(2 / 7)) / 2))


def test_finished_dir_is_not_overwritten(trained, tmp_path):
    text, out, _ = trained
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="finished model.*--overwrite"):
        train_lm(text, out, LMTrainConfig(**TINY), progress=False)
    assert (out / "model.safetensors").read_bytes() == before


def test_overwrite_retrains(trained, tmp_path):
    text, out, _ = trained
    copy = tmp_path / "out"
    copy.mkdir()
    for f in out.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    report = train_lm(
        text, copy, LMTrainConfig(**{**TINY, "epochs": 1}), overwrite=True, progress=False
    )
    assert report.steps < 4 * 25 and len(report.history) == 1


def test_foreign_dir_is_refused(trained, tmp_path):
    text, _, _ = trained
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        train_lm(text, tmp_path / "out", LMTrainConfig(**TINY), progress=False)


def test_missing_and_empty_text_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt does not exist"):
        train_lm(tmp_path / "nope.txt", tmp_path / "out", LMTrainConfig(**TINY))
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match="empty.txt has no non-empty lines"):
        train_lm(tmp_path / "empty.txt", tmp_path / "out", LMTrainConfig(**TINY))
    assert not (tmp_path / "out").exists()


def test_killed_run_resumes_to_the_same_model(tmp_path, monkeypatch):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(toy_lines(200)) + "\n")
    config = LMTrainConfig(**{**TINY, "epochs": 2})
    full = train_lm(text, tmp_path / "full", config, progress=False)

    real = lm_train.perplexity
    calls = []

    def dies_at_second_epoch_end(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # like Ctrl-C after epoch 1's state was saved
        return real(*args, **kwargs)

    monkeypatch.setattr(lm_train, "perplexity", dies_at_second_epoch_end)
    with pytest.raises(KeyboardInterrupt):
        train_lm(text, tmp_path / "killed", config, progress=False)
    assert (tmp_path / "killed" / "train_state.pt").exists()
    monkeypatch.setattr(lm_train, "perplexity", real)
    with pytest.raises(ValueError, match="different settings.*epochs"):
        train_lm(text, tmp_path / "killed", LMTrainConfig(**{**TINY, "epochs": 3}))
    state = tmp_path / "killed" / "train_state.pt"
    saved = state.read_bytes()
    state.write_bytes(saved[: len(saved) // 2])  # a state file cut off (disk full, old code)
    with pytest.raises(ValueError, match="train_state.pt: cannot read the saved training "
                                        "state.*cut off or corrupt"):
        train_lm(text, tmp_path / "killed", config, progress=False)
    state.write_bytes(saved)
    assert not list((tmp_path / "killed").glob(".*.tmp"))  # saves go through a renamed tmp
    resumed = train_lm(text, tmp_path / "killed", config, progress=False)
    assert resumed.steps == full.steps
    assert resumed.heldout_perplexity == pytest.approx(full.heldout_perplexity, rel=1e-5)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"hidden_size": 30, "num_heads": 4}, "divisible"),
        ({"vocab_size": 100}, "vocab_size"),
        ({"holdout_fraction": 1.0}, "holdout_fraction"),
        ({"context_length": 2}, "context_length"),
        ({"lr": 0.0}, "lr"),
    ],
)
def test_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        LMTrainConfig(**bad)
