"""ParalinGPT's other targets and baselines on tiny models: the emotion attribute and the
single-task response target (serialization round trip), joint rank classification of the
label pairs against one score call per label, the target-only loss, length-grouped
batches, and the sequence classifier's pooling and loss."""
from __future__ import annotations

import random

import pytest
import torch

from speechlm.paralin.meld import EMOTIONS, SENTIMENTS, Turn, build_windows
from speechlm.paralin.model import _rank_labels, _target_loss, evaluate, predict
from speechlm.paralin.serialize import (
    CUR,
    RESP,
    FormatConfig,
    parse_emotion,
    parse_target,
    prompt_text,
    response_text,
    window_target,
)
from speechlm.testing.llm import tiny_llm, tiny_model, tiny_tokenizer

EMO = FormatConfig(with_emotion=True)
RESPONSE_ONLY = FormatConfig(task="response")


def dialogue(n: int = 4) -> list[Turn]:
    words = ["the cat sat", "a dog ran", "we go now", "you see it", "it is red"]
    return [Turn("5", i, "Ann" if i % 2 else "Bob", words[i % len(words)],
                 EMOTIONS[i % 7], SENTIMENTS[i % 3]) for i in range(n)]


def test_emotion_and_response_only_round_trip():
    w = build_windows([dialogue()], 2)[-1]  # context 0, 1; current 2; response 3
    assert prompt_text(w, EMO).splitlines() == [
        "<turn> Bob: the cat sat <emotion> anger <sentiment> negative",
        "<turn> Ann: a dog ran <emotion> disgust <sentiment> neutral",
        "<turn> Bob: we go now"]
    assert "<emotion>" not in prompt_text(w, FormatConfig())
    assert "<emotion>" not in prompt_text(w, FormatConfig(with_emotion=True,
                                                          with_context_sentiment=False))
    target = window_target(w, EMO)
    assert target.startswith("<cur_emotion> fear <cur_sentiment> positive")
    assert parse_emotion(target) == "fear"
    assert parse_target(target) == ("positive", "negative", "Ann: you see it")
    assert window_target(w, FormatConfig()) == \
        "<cur_sentiment> positive <resp_sentiment> negative <response> Ann: you see it"
    only = window_target(w, RESPONSE_ONLY)
    assert only == "<response> Ann: you see it" == f"<response> {response_text(w)}"
    assert parse_target(only) == (None, None, "Ann: you see it")
    assert parse_emotion("<cur_emotion> bored") is None
    assert prompt_text(w, RESPONSE_ONLY) == prompt_text(w, FormatConfig())
    with pytest.raises(ValueError, match="task 'labels'"):
        FormatConfig(task="labels")
    with pytest.raises(ValueError, match="with_emotion"):
        FormatConfig(task="response", with_emotion=True)


@pytest.mark.parametrize("fmt", [FormatConfig(), EMO])
def test_joint_ranking_equals_one_score_call_per_label(fmt, one_torch_thread):
    # one thread: the tiny random model's label scores nearly tie, and multi-threaded float
    # sums of differently shaped batches can flip a near-tie
    from speechlm.paralin.model import _Prompt

    llm = tiny_llm()
    w = build_windows([dialogue()], 2)[-1]
    prompt = prompt_text(w, fmt)
    p = _Prompt(llm, prompt, None)
    labels, response_logprobs = _rank_labels(llm, p, fmt, w)
    head = ""
    if fmt.with_emotion:  # the slow way: one call per label, each after the ones chosen
        emo = llm.score([f" <cur_emotion> {e}" for e in EMOTIONS], prefix=prompt)
        assert labels["emotion"] == EMOTIONS[max(range(7), key=lambda i: emo[i])]
        head = f" <cur_emotion> {labels['emotion']}"
    cur = llm.score([f" {CUR} {s}" for s in SENTIMENTS], prefix=prompt + head)
    assert labels["cur"] == SENTIMENTS[max(range(3), key=lambda i: cur[i])]
    resp = llm.score([f" {RESP} {s}" for s in SENTIMENTS],
                     prefix=prompt + head + f" {CUR} {labels['cur']}")
    assert labels["resp"] == SENTIMENTS[max(range(3), key=lambda i: resp[i])]
    target = window_target(w, fmt)  # the reference response after the reference labels
    labels_part = target[:target.index("<response>") + len("<response>")]
    ref = llm.score([" " + response_text(w, fmt)], prefix=f"{prompt} {labels_part}")[0]
    assert sum(response_logprobs) == pytest.approx(ref, abs=1e-4)
    assert len(response_logprobs) == len(llm.tokenizer(" " + response_text(w, fmt),
                                                       add_special_tokens=False)["input_ids"])


def test_predict_and_scores_per_task():
    llm = tiny_llm()
    windows = build_windows([dialogue(4)], 2)
    preds, extra = predict(llm, windows, RESPONSE_ONLY, max_tokens=128, max_new_tokens=3,
                           batch_size=3, progress=False)
    assert all(p.cur is None and p.resp is None and p.response is not None for p in preds)
    scores = evaluate(windows, preds, RESPONSE_ONLY, extra)
    assert "cur_acc" not in scores and "response_bleu" in scores and scores["response_ppl"] > 1
    preds, extra = predict(llm, windows, EMO, max_tokens=128, max_new_tokens=3,
                           batch_size=2, progress=False)
    assert all(p.emotion in EMOTIONS and p.cur in SENTIMENTS for p in preds)
    scores = evaluate(windows, preds, EMO, extra)
    assert {"emo_acc", "emo_f1", "cur_acc", "resp_acc", "response_bleu"} <= set(scores)


def test_target_loss_equals_the_full_head_loss_and_batches_group_by_length():
    from peft import LoraConfig, get_peft_model

    from speechlm.llm.lora import _batch, _grouped, _loss

    torch.manual_seed(0)
    model = get_peft_model(tiny_model(), LoraConfig(r=2, target_modules=["q_proj"],
                                                    task_type="CAUSAL_LM"))
    items = [([1, 5 + i, 6, 7][:2 + i % 3], [8, 9, 2][:1 + i % 2]) for i in range(6)]
    want = _loss(model, *_batch(items, 0))
    got = _target_loss(model, items, lambda m, b: _batch(b, 0))
    torch.testing.assert_close(got, want)
    items = [([1] * n, [2]) for n in random.Random(0).choices(range(1, 40), k=64)]
    order = list(range(64))
    random.Random(1).shuffle(order)
    grouped = _grouped(order, items, 8, random.Random(1))
    assert sorted(grouped) == list(range(64))

    def padded(o):
        return sum(8 * max(len(items[i][0]) for i in o[b:b + 8]) for b in range(0, 64, 8))
    assert padded(grouped) < padded(order)


def test_sequence_classifier_pools_the_last_real_token_and_sums_both_heads():
    from transformers import AutoModelForSequenceClassification

    from speechlm.paralin import seqcls

    tok = tiny_tokenizer()
    config = tiny_model().config
    config.num_labels, config.pad_token_id = 6, tok.pad_token_id
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    windows = build_windows([dialogue(6)], 2)
    fmt = FormatConfig()
    together, _ = seqcls.predict(model, tok, windows, fmt, max_tokens=128, batch_size=4)
    alone = [seqcls.predict(model, tok, [w], fmt, max_tokens=128)[0][0] for w in windows]
    assert together == alone and set(together[0]) == {"cur", "resp"}
    items = [([5, 6, 7], (0, 2)), ([5, 6], (1, 1))]
    ids, mask = seqcls._pad([i for i, _ in items], tok.pad_token_id)
    logits = model(input_ids=ids, attention_mask=mask).logits
    ce = torch.nn.functional.cross_entropy
    want = ce(logits[:, :3], torch.tensor([0, 1])) + ce(logits[:, 3:], torch.tensor([2, 1]))
    torch.testing.assert_close(seqcls._loss(model, items, tok.pad_token_id), want)
    with pytest.raises(ValueError, match="sentiments only"):
        seqcls.train(windows, "unused", base="unused", fmt=EMO)
