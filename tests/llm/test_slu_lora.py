import json

import pytest
import torch

from speechlm.llm.icl import read_examples
from speechlm.llm.lora import LoRAConfig, load_lora_llm, train_lora, training_inputs
from speechlm.llm.serialize import SerializeConfig
from speechlm.llm.slu import IntentClassifier, PromptConfig, accuracy, labels_of

PROMPT = PromptConfig(shots=0, append_eos=True)


def _accuracy(llm, labels, rows):
    clf = IntentClassifier(llm, labels, PROMPT)
    hyp = clf.predict({r.id: r.text for r in rows}, progress=False)
    return accuracy(hyp, {r.id: r.intent for r in rows})["accuracy"]


def test_training_inputs_cover_text_wcn_and_nbest(slu_data):
    ex = read_examples(slu_data["train"])[:10]
    pairs = training_inputs(ex, SerializeConfig(nbest_k=2),
                            LoRAConfig(wcn_noise=1.0, nbest_noise=0.5))
    assert len(pairs) == 30 and [p[1] for p in pairs[:3]] == [ex[0].intent] * 3
    assert pairs[0][0] == ex[0].text
    assert "/" in pairs[1][0] and ":" in pairs[1][0]  # every word confused: a WCN form
    assert " | " in pairs[2][0] and ex[0].text in pairs[2][0].split(" | ")
    assert len(training_inputs(ex, SerializeConfig(), LoRAConfig(wcn_noise=0,
                                                                 nbest_noise=0))) == 10


def test_lora_learns_the_task_and_merges_into_the_runtime(slu_data, tiny_lm, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from speechlm.runtime import LLM

    train, dev = read_examples(slu_data["train"]), read_examples(slu_data["dev"])
    labels = labels_of(train)
    before = _accuracy(LLM.from_pretrained(tiny_lm), labels, dev)
    config = LoRAConfig(rank=16, epochs=8, lr=1e-2, batch_size=32, threads=1)
    report = train_lora(tiny_lm, train, labels, tmp_path / "adapter", prompt=PROMPT,
                        serialize=SerializeConfig(), config=config, progress=False)
    assert report["examples"] == 3 * len(train) and report["steps"] == 8 * 15
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == 16
    llm = load_lora_llm(tiny_lm, tmp_path / "adapter")
    after = _accuracy(llm, labels, dev)
    # a 2-layer, 64-wide LM learns slowly through LoRA (0.7+ takes 15 epochs): the test
    # asks for a clear gain over the base LM's own ranking, not a high accuracy
    assert after >= 0.5 and after >= before + 0.15, (before, after)
    # the merged weights compute what the unmerged adapter does
    base = AutoModelForCausalLM.from_pretrained(tiny_lm, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    ids = llm.tokenizer("turn on the lights =>", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(llm.model(ids).logits, peft_model(ids).logits,
                                   atol=1e-4, rtol=1e-4)


def test_unknown_training_intent_and_missing_adapter(slu_data, tiny_lm, tmp_path):
    train = read_examples(slu_data["train"])
    with pytest.raises(ValueError, match="not in the label set"):
        train_lora(tiny_lm, train, ["light_on"], tmp_path / "a", prompt=PROMPT,
                   serialize=SerializeConfig(), config=LoRAConfig(epochs=1), progress=False)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_lora_llm(tiny_lm, tmp_path / "nothing")
    # the base LM is found as the runtime finds it: catalogue name, dir or .gguf file
    with pytest.raises(FileNotFoundError, match="neither a catalogue LLM .*smollm2"):
        train_lora(tmp_path / "no_such_lm", train, labels_of(train), tmp_path / "a",
                   prompt=PROMPT, serialize=SerializeConfig(), config=LoRAConfig(epochs=1),
                   progress=False)


def test_lora_config_checks():
    for kw, msg in [({"epochs": 0}, "epochs"), ({"lr": 0.0}, "lr"), ({"dropout": 1.0}, "drop"),
                    ({"wcn_noise": 2.0}, "wcn_noise"), ({"target_modules": ()}, "target")]:
        with pytest.raises(ValueError, match=msg):
            LoRAConfig(**kw)
