"""The language-model interface every LLM backend implements (local runtime, remote server).

Only plain data and an abstract class live here, so a backend (or a test double) can
depend on it without importing torch or transformers.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # metrics imports nothing heavy either, but keep base import-free
    from speechlm.runtime.metrics import RuntimeMetrics

__all__ = ["SamplingParams", "Completion", "ScoreResult", "LanguageModel", "OnToken"]

OnToken = Callable[[int, int, str], None]
"""Streaming callback: ``on_token(prompt_index, token_id, text_piece)``."""

FINISH_REASONS = ("stop", "length", "eos")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick generated tokens.

    ``temperature == 0`` is greedy; ``num_beams > 1`` is beam search (deterministic,
    so it needs ``temperature == 0``). ``top_k == 0`` and ``top_p == 1`` turn those
    filters off. Generation stops at EOS, at any string of ``stop`` (the stop string is
    cut from the text), or after ``max_tokens`` new tokens.

    >>> SamplingParams(max_tokens=8, temperature=0.7, top_p=0.9, seed=1).top_p
    0.9
    >>> SamplingParams(top_p=0.0)
    Traceback (most recent call last):
    ...
    ValueError: top_p must be in (0, 1], got 0.0
    """

    max_tokens: int = 64
    temperature: float = 0.0  # 0 -> greedy
    top_p: float = 1.0
    top_k: int = 0
    num_beams: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be an int >= 1, got {self.max_tokens!r}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be finite and >= 0, got {self.temperature!r}")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not _is_int(self.top_k) or self.top_k < 0:
            raise ValueError(f"top_k must be an int >= 0 (0 = off), got {self.top_k!r}")
        if not _is_int(self.num_beams) or self.num_beams < 1:
            raise ValueError(f"num_beams must be an int >= 1, got {self.num_beams!r}")
        if self.num_beams > 1 and self.temperature > 0:
            raise ValueError(
                "num_beams > 1 (beam search) needs temperature == 0; beam sampling is not supported"
            )
        if isinstance(self.stop, str):
            # A bare string would iterate as characters: a classic silent bug.
            raise ValueError(f"stop must be a tuple of str, not a str: use stop=({self.stop!r},)")
        stop = tuple(self.stop)
        if any(not isinstance(s, str) or not s for s in stop):
            raise ValueError(f"stop strings must be non-empty str, got {stop!r}")
        object.__setattr__(self, "stop", stop)  # accept a list, store a tuple (hashable)
        if self.seed is not None and not _is_int(self.seed):
            raise ValueError(f"seed must be an int or None, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 and self.num_beams == 1


@dataclass
class Completion:
    """One generated continuation.

    Args:
        text: decoded new text (prompt excluded, stop string cut off).
        token_ids: the new token ids (EOS excluded; tokens past a stop string dropped).
        logprob: sum of natural-log probabilities of ``token_ids`` under the model
            (untempered distribution), plus EOS's when ``finish_reason == "eos"``.
        finish_reason: ``"stop"`` (a stop string), ``"length"`` (max_tokens) or ``"eos"``.

    >>> Completion(text=" yes", token_ids=[7], logprob=-0.2, finish_reason="eos").finish_reason
    'eos'
    """

    text: str
    token_ids: list[int]
    logprob: float
    finish_reason: str

    def __post_init__(self) -> None:
        if self.finish_reason not in FINISH_REASONS:
            raise ValueError(
                f"finish_reason must be one of {FINISH_REASONS}, got {self.finish_reason!r}"
            )


@dataclass
class ScoreResult:
    """Per-token scores of one text.

    ``total == sum(token_logprobs)`` (natural log); ``tokens[i]`` is the token string
    scored by ``token_logprobs[i]`` (EOS included when ``append_eos``).

    >>> ScoreResult(total=-1.5, tokens=["a", "b"], token_logprobs=[-1.0, -0.5]).total
    -1.5
    """

    total: float
    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)


class LanguageModel(abc.ABC):
    """What an N-best rescorer, a corrector or an SLU task needs from an LLM.

    Scoring semantics (every backend must follow them, so scores are comparable):

    * with ``prefix``: ids = ``tokenizer(prefix)`` *with* the tokenizer's special tokens
      (BOS if it has one) followed by ``tokenizer(text, add_special_tokens=False)``; only
      the text's tokens are scored, each conditioned on everything before it.
    * without ``prefix``: the text is tokenized with special tokens; when the tokenizer
      has a BOS token, the first text token is conditioned on BOS. If the tokenizer has
      no BOS (GPT-2 style), there is nothing to condition the first token on, so it is
      **not scored** (the total covers tokens 2..n).
    * ``append_eos`` adds the log-prob of EOS after the text.
    * An empty text raises ``ValueError``.
    """

    metrics: RuntimeMetrics

    @abc.abstractmethod
    def score(
        self,
        texts: Sequence[str],
        prefix: str | None = None,
        *,
        per_token: bool = False,
        append_eos: bool = False,
        batch_size: int = 16,
    ) -> list[float] | list[ScoreResult]:
        """Log-probability of each text (optionally after a shared ``prefix``).

        Args:
            texts: N texts (e.g. N-best hypotheses).
            prefix: a prompt shared by every text, scored once and not counted.
            per_token: return ``ScoreResult`` with per-token values instead of floats.
            append_eos: also score EOS after each text.
            batch_size: texts per forward pass.

        Returns:
            N natural-log totals, or N ``ScoreResult`` when ``per_token``.
        """

    @abc.abstractmethod
    def generate(
        self,
        prompts: str | Sequence[str],
        params: SamplingParams | None = None,
        *,
        on_token: OnToken | None = None,
    ) -> list[Completion]:
        """Continue each prompt; ``on_token(prompt_index, token_id, text_piece)`` streams.

        Returns:
            One ``Completion`` per prompt (a single ``str`` prompt gives a list of one).
        """

    @abc.abstractmethod
    def chat(
        self,
        messages: list[dict[str, str]],
        params: SamplingParams | None = None,
        *,
        on_token: OnToken | None = None,
    ) -> Completion:
        """Answer a chat (``[{"role": ..., "content": ...}]``) using the model's chat template."""
