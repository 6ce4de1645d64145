"""The unit -> character CTC recognizer (both encoders) and the judge check's ears."""
import random

import pytest
import torch

from speechlm.core.errors import InputError
from speechlm.slm.pipeline import judge_accuracy
from speechlm.slm.recognizer import CHARS, CTCConfig, UnitCTC, train_ctc

WORDS = ["cat", "dog", "sun", "map", "red", "big"]


def _corpus(n: int, seed: int) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Units that spell their text: each letter is two units, a letter's pair depends on
    the letter before it (as k-means units of speech depend on their context)."""
    rng = random.Random(seed)
    units, text = {}, {}
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 3))]
        u, prev = [], 0
        for ch in " ".join(words):
            c = CHARS.index(ch) + 1
            u += [c, 30 + (c + prev) % 20]
            prev = c
        units[f"u{i:03d}"], text[f"u{i:03d}"] = u, " ".join(words)
    return units, text


@pytest.mark.parametrize("encoder", ["conv", "transformer"])
def test_a_batch_transcribes_as_each_utterance_alone(encoder):
    torch.manual_seed(0)
    model = UnitCTC(CTCConfig(50, dim=32, layers=2, heads=4, encoder=encoder)).eval()
    seqs = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11], [], [12]]
    batch = model.transcribe(seqs)
    assert batch == [model.transcribe([s])[0] for s in seqs]
    assert batch[2] == ""


def test_transformer_recognizer_learns_a_spelling(tmp_path):
    units, text = _corpus(160, seed=0)
    held = sorted(units)[:20]
    config = CTCConfig(50, dim=64, layers=2, heads=4, epochs=25, lr=3e-3, dropout=0.0,
                       encoder="transformer")
    model, report = train_ctc(units, text, config, held)
    assert report["train_utterances"] == 140
    assert report["heldout_cer_percent"] < 10.0
    model.save(tmp_path / "ctc", report)
    again = UnitCTC.load(tmp_path / "ctc")
    assert again.config.encoder == "transformer"
    assert again.transcribe([units[u] for u in held]) == model.transcribe(
        [units[u] for u in held])


def test_config_checks():
    with pytest.raises(ValueError, match="encoder"):
        CTCConfig(10, encoder="gru")
    with pytest.raises(ValueError, match="multiple of heads"):
        CTCConfig(10, dim=30, heads=4, encoder="transformer")


class WordOverlapJudge:
    """Prefers the continuation sharing more words with the prompt: a real, simple judge."""

    name = "overlap"

    def __call__(self, prompt, continuations):
        p = set(prompt.split())
        return [float(len(p & set(c.split()))) if c.strip() else None for c in continuations]


def test_reference_ears_cut_the_words_and_need_every_text():
    units = {f"u{i}": list(range(1, 21)) for i in range(4)}
    # each text repeats its own word: with perfect ears the overlap judge is always right
    reference = {f"u{i}": " ".join([f"w{i}"] * 6) for i in range(4)}
    res = judge_accuracy(units, None, WordOverlapJudge(), reference=reference)
    assert res == {"judge": "overlap", "ears": "reference", "accuracy": 1.0, "prompts": 4,
                   "unscored": 0}
    with pytest.raises(InputError, match="no reference text"):
        judge_accuracy(units, None, WordOverlapJudge(), reference={"u0": "a b"})
