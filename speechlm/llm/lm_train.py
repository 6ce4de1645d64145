"""Train the embedded default LM: a byte-level BPE tokenizer and a small Llama on a text file.

The result is a plain transformers checkpoint (``config.json``, ``model.safetensors``,
``generation_config.json``, ``tokenizer.json``, ``tokenizer_config.json``), so both
``LLM.from_pretrained(out_dir)`` and ``AutoModelForCausalLM.from_pretrained(out_dir)`` load it.

One line of the text file is one sentence: it is trained and scored as
``<s> tokens </s>``, never packed with its neighbours, because that is how a rescorer
scores a hypothesis. Lines are grouped by length into batches, so padding costs little.

Held-out lines are chosen among *distinct* lines (seeded): corpora like SLURP repeat the
same command many times, and a held-out line that also sits in the training set would
measure memory, not generalisation. The held-out perplexity is per token (EOS included,
BOS never predicted), and a Laplace-smoothed unigram model over the same tokens is
reported beside it as the floor any real LM must beat.

>>> LMTrainConfig(hidden_size=130, num_heads=4)
Traceback (most recent call last):
...
speechlm.core.errors.UsageError: hidden_size (130) must be divisible by num_heads (4)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm.auto import tqdm
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from speechlm.core.errors import InputError, UsageError
from speechlm.core.hashing import file_sha256
from speechlm.llm.threads import torch_threads

logger = logging.getLogger(__name__)

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
REPORT = "train_report.json"
STATE = "train_state.pt"
RUN_CONFIG = "train_config.json"
# Files this trainer writes; --overwrite removes only these, never anything else in DIR.
OWN_FILES = (
    REPORT,
    STATE,
    RUN_CONFIG,
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
# A plain "role: content" template, so ``chat`` works on a model that never saw a chat.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


@dataclass(frozen=True)
class LMTrainConfig:
    """Sizes and schedule of one training run; the defaults fit SLURP's text in minutes.

    Args:
        vocab_size: BPE vocabulary, including the 256 byte tokens and 3 specials.
        num_layers: transformer blocks.
        hidden_size: model width; the MLP is 8/3 of it (Llama's ratio), rounded to 32.
        num_heads: attention heads (no grouped-query attention at this size).
        context_length: longest line in tokens (BOS and EOS included); longer lines
            are cut, and the count is logged.
        epochs: passes over the training lines.
        max_steps: stop after this many optimiser steps (overrides ``epochs``).
        lr: peak AdamW learning rate (linear warmup, cosine decay to 10%).
        warmup_steps: steps of linear warmup.
        weight_decay: AdamW weight decay on matrices (not norms or embeddings).
        batch_size: lines per step.
        holdout_fraction: share of distinct lines held out for perplexity.
        seed: seeds the split, the initialisation and the batch order.
        threads: torch CPU threads (None: leave torch's setting).
        min_frequency: a BPE merge needs a pair seen this often.
    """

    vocab_size: int = 2000
    num_layers: int = 3
    hidden_size: int = 192
    num_heads: int = 4
    context_length: int = 64
    epochs: int = 4
    max_steps: int | None = None
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1
    batch_size: int = 64
    holdout_fraction: float = 0.05
    seed: int = 0
    threads: int | None = None
    min_frequency: int = 2

    def __post_init__(self) -> None:
        # 256 byte symbols + 3 specials must fit, or some text would not be encodable.
        if self.vocab_size < 260:
            raise UsageError(
                f"vocab_size must be >= 260 (256 bytes + specials), got {self.vocab_size}"
            )
        for name in (
            "num_layers",
            "hidden_size",
            "num_heads",
            "epochs",
            "batch_size",
            "min_frequency",
        ):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise UsageError(
                f"hidden_size ({self.hidden_size}) must be divisible by "
                f"num_heads ({self.num_heads})"
            )
        if (self.hidden_size // self.num_heads) % 2:
            raise UsageError(
                f"head size hidden_size/num_heads = "
                f"{self.hidden_size // self.num_heads} must be even (RoPE)"
            )
        if self.context_length < 3:
            raise UsageError(
                f"context_length must be >= 3 (BOS, a token, EOS), got {self.context_length}"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"lr must be a positive number, got {self.lr}")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise UsageError("warmup_steps and weight_decay must be >= 0")
        if not (0.0 < self.holdout_fraction < 1.0):
            raise UsageError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1 or None, got {self.threads}")

    @property
    def intermediate_size(self) -> int:
        return max(32, round(self.hidden_size * 8 / 3 / 32) * 32)


@dataclass
class LMTrainReport:
    """What ``train_lm`` measured; written as ``DIR/train_report.json``."""

    out_dir: str
    text: str
    text_sha256: str
    config: dict
    num_params: int
    train_lines: int
    heldout_lines: int
    train_tokens: int
    heldout_tokens: int
    truncated_lines: int
    steps: int
    train_seconds: float
    heldout_perplexity: float
    unigram_perplexity: float
    torch_threads: int
    history: list[dict] = field(default_factory=list)
    versions: dict = field(default_factory=dict)


def read_lines(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file, whitespace-normalised.

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: the file has no non-empty line, or is not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"text file {path} is not UTF-8: {e}") from e
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise InputError(f"text file {path} has no non-empty lines")
    return lines


def split_heldout(lines: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split lines by distinct text: every copy of a held-out sentence is held out.

    Returns:
        (train, heldout), each in the order of ``lines``.
    """
    distinct = sorted(set(lines))
    if len(distinct) < 2:
        raise InputError("need at least 2 distinct lines to hold some out")
    n_out = min(len(distinct) - 1, max(1, round(len(distinct) * fraction)))
    held = set(random.Random(seed).sample(distinct, n_out))
    return [s for s in lines if s not in held], [s for s in lines if s in held]


def train_tokenizer(
    lines: list[str], vocab_size: int, min_frequency: int, context_length: int
) -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2 style) tokenizer: any UTF-8 text encodes, nothing is <unk>.

    ``tokenizer(text)`` prepends ``<s>`` (Llama's convention, which ``LLM.score`` relies
    on); ``</s>`` is the end of a line and ``<pad>`` pads batches.
    """
    tok = Tokenizer(models.BPE())
    # No prefix space: "play music" and " play music" stay different, so a text scored
    # after a prefix (" play ...") tokenizes exactly as inside the whole string.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[PAD, BOS, EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(lines, trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=context_length,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: Path) -> None:
    """``save_pretrained``, naming the class ``PreTrainedTokenizerFast``.

    transformers 5 writes its internal ``TokenizersBackend``, which transformers 4 cannot
    resolve; ``PreTrainedTokenizerFast`` loads the same ``tokenizer.json`` in both.
    """
    tokenizer.save_pretrained(out_dir)
    path = out_dir / "tokenizer_config.json"
    data = json.loads(path.read_text())
    data["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(data, indent=2) + "\n")


def encode_lines(
    tokenizer: PreTrainedTokenizerFast, lines: list[str], context_length: int
) -> tuple[list[list[int]], int]:
    """``<s> line </s>`` ids per line, cut to ``context_length``.

    Returns:
        (sequences, number of lines that were cut).
    """
    ids = tokenizer(lines, add_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    seqs, cut = [], 0
    for x in ids:
        x = list(x) + [eos]
        if len(x) > context_length:
            x, cut = x[:context_length], cut + 1
        seqs.append(x)
    return seqs, cut


def length_batches(
    seqs: list[list[int]], batch_size: int, rng: random.Random | None
) -> Iterator[list[list[int]]]:
    """Batches of similar length (little padding); batch order shuffled when ``rng``."""
    order = list(range(len(seqs)))
    if rng is not None:
        rng.shuffle(order)  # ties in length break randomly, so batches differ per epoch
    order.sort(key=lambda i: len(seqs[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    for b in batches:
        yield [seqs[i] for i in b]


def collate(batch: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, mask)``, both (B, T); mask is 1 on real tokens."""
    width = max(len(x) for x in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, x in enumerate(batch):
        ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return ids, mask


def sequence_nll(
    model: LlamaForCausalLM, ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Summed next-token NLL (nats) of a padded batch and the number of predicted tokens."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]  # (B, T-1, V)
    target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    nll = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        target.reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )
    return nll, int((target != -100).sum())


@torch.no_grad()
def perplexity(
    model: LlamaForCausalLM, seqs: list[list[int]], pad_id: int, batch_size: int = 64
) -> float:
    """Per-token perplexity of ``seqs`` (BOS is context, every later token is predicted)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in length_batches(seqs, batch_size, rng=None):
        nll, n = sequence_nll(model, *collate(batch, pad_id))
        total, count = total + float(nll), count + n
    model.train(was_training)
    return math.exp(total / max(count, 1))


def unigram_perplexity(train: list[list[int]], heldout: list[list[int]], vocab_size: int) -> float:
    """Held-out perplexity of an add-one (Laplace) unigram over the same predicted tokens."""
    counts = Counter(t for x in train for t in x[1:])  # x[0] is BOS: never predicted
    denom = sum(counts.values()) + vocab_size
    logp = sum(math.log((counts[t] + 1) / denom) for x in heldout for t in x[1:])
    n = sum(len(x) - 1 for x in heldout)
    return math.exp(-logp / max(n, 1))


def build_model(config: LMTrainConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A freshly initialised Llama sized by ``config``, ids matching ``tokenizer``."""
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.context_length,
        # Tied input/output embeddings: at this size the embedding is a third of the model.
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    model = LlamaForCausalLM(model_config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_length=config.context_length,
    )
    return model


def make_optimizer(model: torch.nn.Module, config: LMTrainConfig) -> torch.optim.AdamW:
    # nanoGPT's rule: decay matrices only; norms' gains and the (tied) embedding stay free.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "embed" not in name else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-8)


def lr_at(step: int, total: int, config: LMTrainConfig) -> float:
    """Linear warmup to ``lr``, then cosine decay to 10% of it at ``total``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total - config.warmup_steps))
    return config.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def prepare_out_dir(out_dir: Path, run_config: dict, overwrite: bool) -> dict | None:
    """Decide between a fresh start and a resume; refuse to clobber anything else.

    Returns:
        The saved training state to resume from, or None for a fresh start.

    Raises:
        InputError: DIR holds a finished model, another run, or foreign files, and
            ``overwrite`` is off.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} exists and is not a directory")
    if overwrite:
        for name in OWN_FILES:
            (out_dir / name).unlink(missing_ok=True)
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return None
    if (out_dir / REPORT).exists():
        raise InputError(
            f"{out_dir} already holds a finished model ({REPORT}); pass --overwrite to train again"
        )
    if not (out_dir / RUN_CONFIG).exists():
        raise InputError(
            f"{out_dir} exists and is not empty (no {RUN_CONFIG} of an "
            f"unfinished run); choose another --out or pass --overwrite"
        )
    saved = json.loads((out_dir / RUN_CONFIG).read_text())
    if saved != run_config:
        diff = sorted(k for k in set(saved) | set(run_config) if saved.get(k) != run_config.get(k))
        raise InputError(
            f"{out_dir} holds an unfinished run with different settings "
            f"({', '.join(diff)}); pass the same options to resume, or --overwrite"
        )
    if not (out_dir / STATE).exists():
        return None  # killed before the first epoch ended: nothing to resume
    try:
        return torch.load(out_dir / STATE, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise InputError(
            f"{out_dir / STATE}: cannot read the saved training state ({e}); it is cut off "
            f"or corrupt: delete it to restart the unfinished run, or pass --overwrite"
        ) from None


def train_lm(
    text: str | Path,
    out_dir: str | Path,
    config: LMTrainConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> LMTrainReport:
    """Train tokenizer and model on ``text``; save a transformers checkpoint in ``out_dir``.

    A killed run resumes from the last finished epoch when started again with the same
    text and options. A finished ``out_dir`` (with ``train_report.json``) is never
    touched unless ``overwrite``.

    Args:
        text: UTF-8 text file, one sentence per line.
        out_dir: where the checkpoint, ``train_report.json`` and ``train_config.json`` go.
        config: sizes and schedule (default ``LMTrainConfig()``).
        overwrite: retrain from scratch even if ``out_dir`` holds a finished model.
        progress: show a tqdm bar over steps.
        tokenizer: a ready tokenizer (e.g. a speech-unit vocabulary) used instead of
            training BPE on the text (``vocab_size`` and ``min_frequency`` are then unused);
            it must add BOS itself and define ``<pad>`` and ``</s>``.

    Returns:
        The report, also written to ``out_dir/train_report.json``.
    """
    config = config or LMTrainConfig()
    text, out_dir = Path(text), Path(out_dir)
    lines = read_lines(text)
    text_sha = file_sha256(text)
    run_config = {"text_sha256": text_sha, **asdict(config)}
    if tokenizer is not None:
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise UsageError("the given tokenizer needs a pad and an eos token")
        vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
        run_config["tokenizer_vocab_sha256"] = hashlib.sha256(vocab.encode()).hexdigest()
    state = prepare_out_dir(out_dir, run_config, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUN_CONFIG).write_text(json.dumps(run_config, indent=2) + "\n")

    with torch_threads(config.threads):
        return _train(lines, text, text_sha, out_dir, config, state, progress, tokenizer)


def _train(
    lines: list[str],
    text: Path,
    text_sha: str,
    out_dir: Path,
    config: LMTrainConfig,
    state: dict | None,
    progress: bool,
    given_tokenizer: PreTrainedTokenizerFast | None = None,
) -> LMTrainReport:
    started = time.monotonic()
    train_lines, heldout_lines = split_heldout(lines, config.holdout_fraction, config.seed)
    if given_tokenizer is not None:
        tokenizer = given_tokenizer
        save_tokenizer(tokenizer, out_dir)
    elif state is None:
        tokenizer = train_tokenizer(
            train_lines, config.vocab_size, config.min_frequency, config.context_length
        )
        save_tokenizer(tokenizer, out_dir)
    else:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(out_dir, local_files_only=True)
    train_seqs, cut = encode_lines(tokenizer, train_lines, config.context_length)
    heldout_seqs, cut_heldout = encode_lines(tokenizer, heldout_lines, config.context_length)
    if cut + cut_heldout:
        logger.warning(
            "%d line(s) longer than context_length=%d tokens were cut",
            cut + cut_heldout,
            config.context_length,
        )
    pad_id = tokenizer.pad_token_id

    torch.manual_seed(config.seed)
    model = build_model(config, tokenizer)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = math.ceil(len(train_seqs) / config.batch_size)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    step, first_epoch, history, elapsed_before = 0, 0, [], 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, first_epoch = state["step"], state["epoch"]
        history, elapsed_before = state["history"], state["seconds"]
        logger.info("resuming %s at epoch %d, step %d", out_dir, first_epoch, step)
    num_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "training %.2fM-parameter Llama on %d lines (%d held out), %d steps",
        num_params / 1e6,
        len(train_seqs),
        len(heldout_seqs),
        total_steps,
    )

    model.train()
    bar = tqdm(total=total_steps, initial=step, disable=not progress, unit="step", desc="lm train")
    for epoch in range(first_epoch, epochs):
        rng = random.Random(config.seed * 1000 + epoch)  # order depends only on the epoch
        loss_sum, tok_sum = 0.0, 0
        for batch in length_batches(train_seqs, config.batch_size, rng):
            if step >= total_steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, config)
            nll, n = sequence_nll(model, *collate(batch, pad_id))
            (nll / n).backward()
            # Clipping keeps the high peak lr of a tiny model from blowing up early steps.
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_sum, tok_sum = loss_sum + nll.item(), tok_sum + n
            bar.update(1)
            bar.set_postfix(loss=f"{nll.item() / n:.3f}", refresh=False)
        ppl = perplexity(model, heldout_seqs, pad_id)
        history.append(
            {
                "epoch": epoch + 1,
                "step": step,
                "train_loss": loss_sum / max(tok_sum, 1),
                "heldout_perplexity": ppl,
            }
        )
        logger.info(
            "epoch %d/%d step %d: train loss %.3f, held-out perplexity %.2f",
            epoch + 1,
            epochs,
            step,
            history[-1]["train_loss"],
            ppl,
        )
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "epoch": epoch + 1,
                "history": history,
                "seconds": elapsed_before + time.monotonic() - started,
            },
            out_dir / f".{STATE}.tmp",
        )
        os.replace(out_dir / f".{STATE}.tmp", out_dir / STATE)  # a kill never leaves half a file
    bar.close()

    model.save_pretrained(out_dir)
    report = LMTrainReport(
        out_dir=str(out_dir),
        text=str(text),
        text_sha256=text_sha,
        config=asdict(config),
        num_params=num_params,
        train_lines=len(train_seqs),
        heldout_lines=len(heldout_seqs),
        train_tokens=sum(len(x) - 1 for x in train_seqs),
        heldout_tokens=sum(len(x) - 1 for x in heldout_seqs),
        truncated_lines=cut + cut_heldout,
        steps=step,
        train_seconds=round(elapsed_before + time.monotonic() - started, 1),
        heldout_perplexity=history[-1]["heldout_perplexity"]
        if history
        else perplexity(model, heldout_seqs, pad_id),
        unigram_perplexity=unigram_perplexity(train_seqs, heldout_seqs, len(tokenizer)),
        torch_threads=torch.get_num_threads(),
        history=history,
        versions={"torch": torch.__version__, "transformers": transformers.__version__},
    )
    # The report is written last: its presence marks the directory as finished.
    (out_dir / REPORT).write_text(json.dumps(asdict(report), indent=2) + "\n")
    (out_dir / STATE).unlink(missing_ok=True)
    logger.info(
        "held-out perplexity %.2f (unigram %.2f) in %.0f s; saved %s",
        report.heldout_perplexity,
        report.unigram_perplexity,
        report.train_seconds,
        out_dir,
    )
    return report
