"""Tiny, seeded LLM pieces for tests: a word-level tokenizer and 2-layer configs per family.

Nothing is downloaded: the tokenizer is built with ``tokenizers`` from a fixed word list,
and the models come from configs (hidden 64, 2 layers, vocab 256) with seeded weights.

>>> tok = tiny_tokenizer("llama")
>>> tok("one two three")["input_ids"][:1] == [tok.bos_token_id]
True
>>> sorted(FAMILIES)
['gpt2', 'llama', 'mistral', 'mixtral', 'qwen2', 'qwen2_moe']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

VOCAB_SIZE = 256
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
_BASE_WORDS = """
zero one two three four five six seven eight nine ten yes no the a an of to and in is it
you that he was for on are with as i his they be at have this from or had by word but what
some we can out other were all there when up use your how said each she which do their time
if will way about many then them write would like so these her long make thing see him
look more day could go come did number sound most people my over know water than call first
who may down side been now find any new work part take get place made live where after back
little only round man year came show every good me give our under name very through just form
sentence great think say help low line differ turn cause much mean before move right boy old
too same tell does set three want air well also play small end put home read hand port large
spell add even land here must big high such follow act why ask men change went light kind off
need house picture try us again animal point mother world near build self earth father user
assistant system : , . ? !
""".split()
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} . {% endfor %}"
    "{% if add_generation_prompt %}assistant :{% endif %}"
)

# family -> (transformers model_type, tokenizer adds BOS, has BOS)
FAMILIES = {
    "llama": ("llama", True, True),
    "mistral": ("mistral", True, True),
    "mixtral": ("mixtral", True, True),
    "qwen2": ("qwen2", False, False),
    "qwen2_moe": ("qwen2_moe", False, False),
    "gpt2": ("gpt2", False, True),  # GPT-2: BOS (= EOS) exists but is not added
}


def tiny_words(vocab_size: int = VOCAB_SIZE) -> list[str]:
    """``vocab_size - 4`` distinct words: the list above, then ``w0``, ``w1``, ..."""
    words = list(dict.fromkeys(_BASE_WORDS))
    i = 0
    while len(words) < vocab_size - len(SPECIALS):
        words.append(f"w{i}")
        i += 1
    return words[: vocab_size - len(SPECIALS)]


def tiny_tokenizer(family: str = "llama", vocab_size: int = VOCAB_SIZE) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` (whitespace/punctuation split).

    Args:
        family: decides the special-token behaviour (see ``FAMILIES``).
        vocab_size: total vocabulary including the 4 special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    _, adds_bos, has_bos = FAMILIES[family]
    vocab = {t: i for i, t in enumerate([*SPECIALS, *tiny_words(vocab_size)])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # words joined by " "
    if adds_bos:
        tk.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
        )
    kwargs: dict[str, Any] = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    if family == "gpt2":
        kwargs["bos_token"] = "</s>"  # like GPT-2's <|endoftext|>: BOS == EOS
    elif has_bos:
        kwargs["bos_token"] = "<s>"
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, **kwargs)
    if family == "llama":
        tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_config(
    family: str = "llama",
    vocab_size: int = VOCAB_SIZE,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    max_positions: int = 128,
) -> Any:
    """A small transformers config of ``family`` (GQA where the family has it)."""
    from transformers import AutoConfig

    model_type = FAMILIES[family][0]
    tok_ids = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    if family == "gpt2":
        return AutoConfig.for_model(
            "gpt2",
            vocab_size=vocab_size,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            n_positions=max_positions,
            bos_token_id=2,
            eos_token_id=2,
            pad_token_id=0,
        )
    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        **tok_ids,
    )
    if family == "mixtral":
        common.update(num_local_experts=4, num_experts_per_tok=2)
    if family == "qwen2_moe":
        common.update(
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=hidden_size // 2,
            shared_expert_intermediate_size=hidden_size,
            decoder_sparse_step=1,
            mlp_only_layers=[],
        )
    return AutoConfig.for_model(model_type, **common)


def tiny_model(family: str = "llama", seed: int = 0, **config_kwargs: Any) -> Any:
    """A seeded, randomly initialised fp32 ``AutoModelForCausalLM`` in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    config = tiny_config(family, **config_kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Default init (std 0.02) gives near-uniform next-token distributions; larger weights
    # make greedy / beam choices decisive, so comparisons test something.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "norm" not in name:
                p.normal_(0.0, 0.08)
    return model.eval()


def save_tiny_model(path: str | Path, family: str = "llama", seed: int = 0) -> Path:
    """Write a tiny model and its tokenizer to ``path`` (a local HF checkpoint directory)."""
    path = Path(path)
    tiny_model(family, seed).save_pretrained(path)
    tiny_tokenizer(family).save_pretrained(path)
    return path


def tiny_llm(family: str = "llama", seed: int = 0, **kwargs: Any) -> Any:
    """A ``speechlm.runtime.LLM`` over ``tiny_model(family, seed)`` (energy metering off)."""
    from speechlm.runtime import LLM

    kwargs.setdefault("measure_energy", False)
    return LLM(tiny_model(family, seed), tiny_tokenizer(family), **kwargs)


def reference_logprobs(model: Any, context: list[int], ids: list[int]) -> list[float]:
    """ln p of each of ``ids`` after ``context``: one plain transformers forward, no cache.

    ``context`` must be non-empty (the first id is predicted from its last position).
    """
    import torch

    full = torch.tensor([list(context) + list(ids)])
    with torch.no_grad():
        logits = model(input_ids=full, use_cache=False).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    start = len(context)
    return [lp[start - 1 + j, ids[j]].item() for j in range(len(ids))]


__all__ = [
    "FAMILIES",
    "tiny_words",
    "tiny_tokenizer",
    "tiny_config",
    "tiny_model",
    "save_tiny_model",
    "tiny_llm",
    "reference_logprobs",
]
