"""Intent classification through the runtime by rank classification.

Any ``LanguageModel`` (local ``LLM``, ``RemoteLLM``) classifies the same way: the prompt
(few-shot examples, then the serialized input, then ``arrow``) is a shared prefix, and
every candidate label is scored as its continuation with one
``llm.score(labels, prefix=prompt)`` call; the best total wins (or the best per-token
mean with ``length_norm``). Labels are verbalized (``alarm_set`` -> ``" alarm set"``) so
an LM trained on words can read them. No generated text has to be parsed, and the answer
is always a valid label.

An SLU dir (``speechlm slu train``) holds:

    slu.json           mode, labels, SerializeConfig, PromptConfig, the LM (path or URL),
                       training options: the resolved config
    examples.jsonl     the few-shot pool (icl)
    adapter/           the LoRA adapter (lora; peft's save_pretrained)
    train_report.json  training time and dev accuracy (lora)

Context limit: a local LM has ``max_length`` positions (64 for the embedded LM). The prompt
is fitted to leave room for the longest label (and EOS): few-shot examples are dropped
first (least similar first), then whole words are cut from the **left** of the input,
with a warning naming the utterance. A remote LM is not fitted (no tokenizer here).

>>> PromptConfig(shots=-1)
Traceback (most recent call last):
...
ValueError: shots must be >= 0, got -1
>>> PromptConfig().build("wake me up", [("play jazz", " play music")])
'play jazz => play music\\nwake me up =>'
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from speechlm.data.kaldi_dir import c_sorted
from speechlm.llm.icl import SELECTIONS, Example, ExamplePool, read_examples
from speechlm.llm.serialize import SerializeConfig
from speechlm.runtime.base import LanguageModel

logger = logging.getLogger(__name__)

MODES = ("lora", "icl")
SLU_JSON = "slu.json"
EXAMPLES = "examples.jsonl"
ADAPTER = "adapter"
REPORT = "train_report.json"
# 2: CamelCase labels are verbalized as words (AddToPlaylist -> "add to playlist").
FORMAT_VERSION = 2
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


CONTENT_FREE = "N/A"  # the calibration input (Zhao et al. 2021)


@dataclass(frozen=True)
class PromptConfig:
    """How a prompt is built and how labels are ranked.

    Args:
        instruction: text before everything (e.g. "Classify the intent."); '' for none.
        arrow: written after an input, before its label.
        shot_separator: between examples, and between the last example and the query.
        shots: few-shot examples per query (0 for the LoRA model).
        shot_selection: ``similar``, ``random`` or ``first`` (see ``speechlm.llm.icl``).
        verbalize: ``alarm_set`` -> ``alarm set``, ``AddToPlaylist`` -> ``add to playlist``
            (labels read as words).
        length_norm: rank by mean log-prob per label token instead of the total.
        append_eos: also score EOS after the label (the LoRA model is trained to emit it).
        calibrate: contextual calibration (Zhao et al. 2021, "Calibrate Before Use"):
            subtract each label's score after a content-free input ("N/A") shown with the
            same shots, so labels the LM likes regardless of the input (short ones) stop
            winning every query. Costs a second ranking per query.
    """

    instruction: str = ""
    arrow: str = " =>"
    shot_separator: str = "\n"
    shots: int = 4
    shot_selection: str = "similar"
    verbalize: bool = True
    length_norm: bool = False
    append_eos: bool = False
    calibrate: bool = False

    def __post_init__(self) -> None:
        if self.shots < 0:
            raise ValueError(f"shots must be >= 0, got {self.shots}")
        if self.shot_selection not in SELECTIONS:
            raise ValueError(
                f"shot_selection must be one of {SELECTIONS}, got {self.shot_selection!r}"
            )
        if not self.arrow.strip():
            raise ValueError(f"arrow must show something, got {self.arrow!r}")
        if not self.shot_separator:
            raise ValueError("shot_separator must not be empty")

    def label_text(self, label: str) -> str:
        """The continuation scored for ``label`` (leading space: a BPE word boundary).

        >>> PromptConfig().label_text("alarm_set"), PromptConfig().label_text("AddToPlaylist")
        (' alarm set', ' add to playlist')
        """
        if not self.verbalize:
            return " " + label
        words = _CAMEL.sub(" ", label).replace("_", " ")  # SLURP snake_case, SNIPS CamelCase
        return " " + " ".join(words.lower().split())

    def build(self, text: str, shots: Sequence[tuple[str, str]] = ()) -> str:
        """Prompt for ``text`` after ``shots`` = [(input, label_text)]; ends with ``arrow``."""
        parts = [f"{inp}{self.arrow}{lab}" for inp, lab in shots]
        parts.append(f"{text}{self.arrow}" if text else self.arrow.lstrip())
        body = self.shot_separator.join(parts)
        return f"{self.instruction}{self.shot_separator}{body}" if self.instruction else body


@dataclass
class SLUConfig:
    """Everything ``slu.json`` holds; ``SLUConfig.load(dir)`` is the one reader."""

    mode: str
    labels: list[str]
    serialize: SerializeConfig = field(default_factory=SerializeConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    llm_path: str | None = None
    llm_url: str | None = None
    llm_model: str | None = None
    train: dict = field(default_factory=dict)
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.labels:
            raise ValueError("labels is empty")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels has duplicates")
        if (self.llm_path is None) == (self.llm_url is None):
            raise ValueError("give exactly one of llm_path (a local LM dir) and llm_url")
        if self.mode == "lora" and self.llm_url is not None:
            raise ValueError("mode 'lora' needs a local LM (llm_path), not a server URL")
        if self.version != FORMAT_VERSION:
            raise ValueError(f"slu.json version {self.version}, this code reads {FORMAT_VERSION}: "
                             "train the SLU dir again (speechlm slu train --overwrite)")

    def save(self, out_dir: Path) -> None:
        (out_dir / SLU_JSON).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, slu_dir: str | Path) -> SLUConfig:
        path = Path(slu_dir) / SLU_JSON
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: not an SLU dir (speechlm slu train)")
        d = json.loads(path.read_text())
        try:
            d["serialize"] = SerializeConfig(**d.get("serialize", {}))
            d["prompt"] = PromptConfig(**d.get("prompt", {}))
            return cls(**d)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None


class PromptFitter:
    """Fits prompts into a local LM's context (a no-op without a tokenizer).

    Args:
        llm: the LM; fitting needs ``llm.tokenizer`` and ``llm.max_length``.
        reserve: positions kept free for the longest label (plus EOS).
    """

    MAX_WARNINGS = 5

    def __init__(self, llm: Any, reserve: int) -> None:
        self.cut = 0  # inputs cut so far
        self.tokenizer = getattr(llm, "tokenizer", None)
        self.max_length = getattr(llm, "max_length", None)
        self.budget = None if self.max_length is None else self.max_length - reserve

    def _n(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, add_special_tokens=True, verbose=False)["input_ids"])

    def fit(self, prompt: PromptConfig, text: str, shots: list[tuple[str, str]],
            utt: str = "?") -> str:
        """The prompt, with shots dropped (first = least useful) and then the input cut."""
        if self.tokenizer is None or self.budget is None:
            return prompt.build(text, shots)
        if self.budget < 2:
            raise ValueError(f"the context ({self.max_length} tokens) has no room for a prompt")
        shots = list(shots)
        while shots and self._n(prompt.build(text, shots)) > self.budget:
            shots.pop(0)
        words = text.split()
        if self._n(prompt.build(text, shots)) <= self.budget:
            return prompt.build(text, shots)
        lo, hi = 0, len(words)  # smallest cut from the left that fits
        while lo < hi:
            mid = (lo + hi) // 2
            if self._n(prompt.build(" ".join(words[mid:]), shots)) <= self.budget:
                hi = mid
            else:
                lo = mid + 1
        self.cut += 1
        # The first few by name, then quiet: a training set can hold thousands.
        log = logger.warning if self.cut <= self.MAX_WARNINGS else logger.debug
        log("utterance %s: input of %d words cut to its last %d to fit %d tokens%s",
            utt, len(words), len(words) - lo, self.max_length,
            " (further cuts are logged at DEBUG)" if self.cut == self.MAX_WARNINGS else "")
        return prompt.build(" ".join(words[lo:]), shots)


def rank_labels(llm: LanguageModel, prompt: str, label_texts: Sequence[str], *,
                length_norm: bool = False, append_eos: bool = False) -> list[float]:
    """Score of each label text as the continuation of ``prompt`` (one shared-prefix call).

    Returns:
        Natural-log totals, or per-token means when ``length_norm``.
    """
    results = llm.score(list(label_texts), prefix=prompt, per_token=True,
                        append_eos=append_eos, batch_size=len(label_texts))
    if length_norm:
        return [r.total / max(len(r.token_logprobs), 1) for r in results]
    return [r.total for r in results]


class IntentClassifier:
    """An LM plus the prompt, labels and few-shot pool of an SLU dir.

    Args:
        llm: any ``LanguageModel``.
        labels: the label set.
        prompt: prompt and ranking options.
        pool: few-shot examples (needed when ``prompt.shots > 0``).
        serialize: how the pool's texts are shown (as given: reference text).
    """

    def __init__(self, llm: LanguageModel, labels: Sequence[str], prompt: PromptConfig,
                 pool: ExamplePool | None = None) -> None:
        if prompt.shots > 0 and pool is None:
            raise ValueError(f"shots={prompt.shots} needs a pool of examples")
        self.llm, self.labels, self.prompt, self.pool = llm, list(labels), prompt, pool
        self.label_texts = [prompt.label_text(x) for x in self.labels]
        tok = getattr(llm, "tokenizer", None)
        reserve = 0
        if tok is not None:
            reserve = max(len(tok(t, add_special_tokens=False)["input_ids"])
                          for t in self.label_texts) + int(prompt.append_eos)
        self.fitter = PromptFitter(llm, reserve)

    def _shots(self, text: str) -> list[tuple[str, str]]:
        if not (self.prompt.shots and self.pool is not None):
            return []
        chosen = self.pool.select(text, self.prompt.shots, self.prompt.shot_selection)
        return [(e.text, self.prompt.label_text(e.intent)) for e in chosen]

    def prompt_for(self, text: str, utt: str = "?") -> str:
        return self.fitter.fit(self.prompt, text, self._shots(text), utt)

    def _rank(self, prompt: str) -> list[float]:
        return rank_labels(self.llm, prompt, self.label_texts,
                           length_norm=self.prompt.length_norm,
                           append_eos=self.prompt.append_eos)

    def scores(self, text: str, utt: str = "?") -> list[float]:
        shots = self._shots(text)
        s = self._rank(self.fitter.fit(self.prompt, text, shots, utt))
        if not self.prompt.calibrate:
            return s
        prior = self._rank(self.fitter.fit(self.prompt, CONTENT_FREE, shots, utt))
        return [a - b for a, b in zip(s, prior, strict=True)]

    def classify(self, text: str, utt: str = "?") -> str:
        s = self.scores(text, utt)
        return self.labels[max(range(len(s)), key=s.__getitem__)]

    def predict(self, inputs: dict[str, str], progress: bool = True) -> dict[str, str]:
        """Intent of each utterance; ``inputs`` maps utterance -> serialized input."""
        before = self.fitter.cut
        out = {utt: self.classify(inputs[utt], utt)
               for utt in tqdm(c_sorted(inputs), disable=not progress, desc="slu", unit="utt")}
        if self.fitter.cut > before:
            logger.warning("%d of %d inputs were cut from the left to fit the context (%s tokens)",
                           self.fitter.cut - before, len(inputs), self.fitter.max_length)
        return out


def load_classifier(slu_dir: str | Path, **llm_kwargs: Any) -> tuple[IntentClassifier, SLUConfig]:
    """Load an SLU dir: its LM (LoRA merged, local checkpoint or server) and prompt.

    Raises:
        FileNotFoundError: not an SLU dir, or its LM / adapter is missing.
    """
    slu_dir = Path(slu_dir)
    config = SLUConfig.load(slu_dir)
    if config.mode == "lora":
        from speechlm.llm.lora import load_lora_llm

        llm = load_lora_llm(config.llm_path, slu_dir / ADAPTER, **llm_kwargs)
    elif config.llm_url is not None:
        from speechlm.runtime.remote import RemoteLLM

        llm = RemoteLLM(config.llm_url, model=config.llm_model)
    else:
        from speechlm.runtime import LLM

        llm = LLM.from_pretrained(config.llm_path, **llm_kwargs)
    pool = None
    if (slu_dir / EXAMPLES).is_file():
        pool = ExamplePool(read_examples(slu_dir / EXAMPLES))
    return IntentClassifier(llm, config.labels, config.prompt, pool), config


def accuracy(hyp: dict[str, str], ref: dict[str, str]) -> dict[str, Any]:
    """Intent accuracy over the reference utterances (a missing prediction is an error)."""
    if not ref:
        raise ValueError("the reference utt2intent is empty")
    correct = sum(hyp.get(u) == lab for u, lab in ref.items())
    missing = sum(u not in hyp for u in ref)
    return {"accuracy": correct / len(ref), "correct": correct, "total": len(ref),
            "missing": missing}


def labels_of(examples: Sequence[Example]) -> list[str]:
    return c_sorted({e.intent for e in examples})
