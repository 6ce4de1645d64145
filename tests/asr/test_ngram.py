"""The ARPA n-gram trainer: proper distributions, readable by Kaldi's arpa2fst."""
import itertools
import math

import pytest

from speechlm.asr.ngram import BOS, EOS, _parse_arpa, arpa_logprob, train_arpa, write_arpa

TEXT = ["the cat sat", "the dog sat", "a cat ran", "the cat ran away", "a dog sat down",
        "cat sat", "the the cat"]


@pytest.mark.parametrize("order", [1, 2, 3])
def test_every_context_sums_to_one(order):
    arpa = train_arpa(TEXT, order=order)
    prob, _, _ = _parse_arpa(arpa)
    vocab = sorted({w for (w, *rest) in prob if not rest} - {BOS})
    contexts = [()]
    words = sorted({w for s in TEXT for w in s.split()})
    for n in range(1, order):
        # seen contexts and unseen ones (which must back off properly too)
        contexts += list(itertools.product([BOS, *words], repeat=n))[:60]
    for ctx in contexts:
        if BOS in ctx[1:]:
            continue
        total = sum(10 ** arpa_logprob(arpa, [w], list(ctx)) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4), ctx


def test_seen_bigram_beats_unseen():
    arpa = train_arpa(TEXT, order=2)
    assert arpa_logprob(arpa, ["cat"], ["the"]) > arpa_logprob(arpa, ["cat"], ["down"])
    assert arpa_logprob(arpa, [EOS], ["sat"]) > arpa_logprob(arpa, [EOS], ["the"])


def test_header_counts_match_sections():
    arpa = train_arpa(TEXT, order=3)
    declared = {int(line.split()[1].split("=")[0]): int(line.split("=")[1])
                for line in arpa.splitlines() if line.startswith("ngram ")}
    prob, _, _ = _parse_arpa(arpa)
    for n, count in declared.items():
        assert sum(1 for k in prob if len(k) == n) == count


def test_kaldi_arpa2fst_reads_it(tmp_path):
    kaldilm = pytest.importorskip("kaldilm")
    path = write_arpa(TEXT, tmp_path / "lm.arpa", order=3)
    fst_text = kaldilm.arpa2fst(str(path))
    assert len(fst_text.splitlines()) > 20
    # the LM's total probability of a training sentence is finite and reasonable
    logp = sum(arpa_logprob(path.read_text(), [w], [BOS, *"the cat sat".split()][:i + 1])
               for i, w in enumerate("the cat sat </s>".split()))
    assert -10 < logp < 0 and math.isfinite(logp)


def test_bad_input():
    with pytest.raises(ValueError, match="no non-empty sentences"):
        train_arpa(["", "  "])
    with pytest.raises(ValueError, match="order"):
        train_arpa(TEXT, order=0)
