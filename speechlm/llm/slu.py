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

Context limit: a local LM has ``max_length`` positions (64 for the embedded LM, 8192 for
SmolLM2). The prompt is fitted to leave room for the longest label (and EOS): few-shot
examples are dropped first (least similar first); then a WCN is pruned by posterior (its
``wcn_variants``: higher thresholds, then one word a bin); only then are whole words cut
from the **left** of the input, with a warning naming the utterance. How often each
happened is logged after ``predict`` (``PromptFitter.counts``). A remote LM is not fitted
(no tokenizer here).

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
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from speechlm.data.kaldi_dir import c_sorted, read_table
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
        shot_selection: ``similar`` (TF-IDF), ``embedding`` (sentence embeddings of
            ``shot_encoder``), ``random`` or ``first`` (see ``speechlm.llm.icl``).
        shot_encoder: the sentence encoder of ``embedding`` selection (a catalogue name,
            ``speechlm models list``, or a local model dir).
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
    shot_encoder: str = "minilm-l6"
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

    ``counts`` says how often shots were dropped, a WCN was pruned and an input was cut.
    """

    MAX_WARNINGS = 5

    def __init__(self, llm: Any, reserve: int) -> None:
        self.counts = {"shots_dropped": 0, "wcn_pruned": 0, "cut": 0}
        self.tokenizer = getattr(llm, "tokenizer", None)
        self.max_length = getattr(llm, "max_length", None)
        self.budget = None if self.max_length is None else self.max_length - reserve

    @property
    def cut(self) -> int:
        return self.counts["cut"]

    def _n(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, add_special_tokens=True, verbose=False)["input_ids"])

    def _fits(self, prompt: PromptConfig, text: str, shots: list[tuple[str, str]]) -> bool:
        return self._n(prompt.build(text, shots)) <= self.budget

    def fit(self, prompt: PromptConfig, text: str | Sequence[str],
            shots: list[tuple[str, str]], utt: str = "?") -> str:
        """The prompt for ``text`` (or its serializations, longest first, as
        ``wcn_variants`` gives them): shots dropped first (first = least useful), then the
        next shorter serialization, and last the words of the shortest cut from the left."""
        variants = [text] if isinstance(text, str) else list(text)
        if not variants:
            raise ValueError(f"utterance {utt}: no serialized input")
        if self.tokenizer is None or self.budget is None:
            return prompt.build(variants[0], shots)
        if self.budget < 2:
            raise ValueError(f"the context ({self.max_length} tokens) has no room for a prompt")
        shots = list(shots)
        if shots and not self._fits(prompt, variants[0], shots):
            self.counts["shots_dropped"] += 1
            while shots and not self._fits(prompt, variants[0], shots):
                shots.pop(0)
        for k, v in enumerate(variants):
            if self._fits(prompt, v, shots):
                self.counts["wcn_pruned"] += k > 0
                return prompt.build(v, shots)
        if len(variants) > 1:
            self.counts["wcn_pruned"] += 1
        words = variants[-1].split()
        lo, hi = 0, len(words)  # smallest cut from the left that fits
        while lo < hi:
            mid = (lo + hi) // 2
            if self._fits(prompt, " ".join(words[mid:]), shots):
                hi = mid
            else:
                lo = mid + 1
        self.counts["cut"] += 1
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


def marginalize(scores: Any, hyps: Sequence[tuple[str, float]], utt: str = "?") -> list[float]:
    """``log sum_h w_h P(label | h)`` with ``scores(text, utt)`` the label scores of one
    hypothesis (normalized over the labels here); an empty list is the empty hypothesis.

    Raises:
        ValueError: a negative weight, or weights that do not sum to a positive number.
    """
    hyps = list(hyps) or [("", 1.0)]
    total = sum(w for _, w in hyps)
    if any(w < 0 for _, w in hyps) or not total > 0:
        raise ValueError(f"utterance {utt}: hypothesis weights must be >= 0 with a "
                         f"positive sum, got {[w for _, w in hyps]}")
    terms = []  # (hypotheses, labels): log w_h + log P(label | h)
    for text, w in hyps:
        if w > 0:
            s = np.asarray(scores(text, utt), dtype=np.float64)
            terms.append(math.log(w / total) + s - np.logaddexp.reduce(s))
    return np.logaddexp.reduce(np.stack(terms), axis=0).tolist()


def best_label(labels: Sequence[str], scores: Sequence[float]) -> str:
    """The label of the highest score (the first of equal ones)."""
    return labels[max(range(len(scores)), key=scores.__getitem__)]


class IntentClassifier:
    """An LM plus the prompt, labels and few-shot pool of an SLU dir.

    Args:
        llm: any ``LanguageModel``.
        labels: the label set.
        prompt: prompt and ranking options.
        pool: few-shot examples (needed when ``prompt.shots > 0``); for ``embedding``
            selection without its own ``embed``, ``prompt.shot_encoder`` is loaded for it.
        shown: what each pool example shows as a shot, by example id, instead of its text
            (a spoken pool's first-pass output: ``speechlm.llm.shot_pool``); shots are
            still chosen by their text.

    Label scores are cached by prompt: inputs that serialize the same (a 1-best equal to
    the reference) are ranked once.
    """

    def __init__(self, llm: LanguageModel, labels: Sequence[str], prompt: PromptConfig,
                 pool: ExamplePool | None = None, shown: Mapping[str, str] | None = None) -> None:
        if prompt.shots > 0 and pool is None:
            raise ValueError(f"shots={prompt.shots} needs a pool of examples")
        if shown is not None and pool is not None:
            missing = [e.id for e in pool.examples if e.id not in shown]
            if missing:
                raise ValueError(f"{len(missing)} pool example(s) have nothing to show as a "
                                 f"shot, e.g. {missing[0]}")
        if (prompt.shots > 0 and prompt.shot_selection == "embedding" and pool is not None
                and pool.embed is None):
            pool.embed = sentence_embedder(prompt.shot_encoder)
        self._cache: dict[str, list[float]] = {}
        self.llm, self.labels, self.prompt, self.pool = llm, list(labels), prompt, pool
        self.shown = shown
        self.label_texts = [prompt.label_text(x) for x in self.labels]
        tok = getattr(llm, "tokenizer", None)
        reserve = 0
        if tok is not None:
            reserve = max(len(tok(t, add_special_tokens=False)["input_ids"])
                          for t in self.label_texts) + int(prompt.append_eos)
        self.fitter = PromptFitter(llm, reserve)

    def _shots(self, text: str | Sequence[str]) -> list[tuple[str, str]]:
        if not (self.prompt.shots and self.pool is not None):
            return []
        query = text if isinstance(text, str) else text[0]
        chosen = self.pool.select(query, self.prompt.shots, self.prompt.shot_selection)
        return [(e.text if self.shown is None else self.shown[e.id],
                 self.prompt.label_text(e.intent)) for e in chosen]

    def prompt_for(self, text: str | Sequence[str], utt: str = "?") -> str:
        return self.fitter.fit(self.prompt, text, self._shots(text), utt)

    def _rank(self, prompt: str) -> list[float]:
        if prompt not in self._cache:
            self._cache[prompt] = rank_labels(self.llm, prompt, self.label_texts,
                                              length_norm=self.prompt.length_norm,
                                              append_eos=self.prompt.append_eos)
        return self._cache[prompt]

    def scores(self, text: str | Sequence[str], utt: str = "?") -> list[float]:
        """Label scores for ``text``: one serialized input, or its serializations longest
        first (``load_input_variants``), the shorter ones used only when the longest does
        not fit the context."""
        shots = self._shots(text)
        s = self._rank(self.fitter.fit(self.prompt, text, shots, utt))
        if not self.prompt.calibrate:
            return s
        prior = self._rank(self.fitter.fit(self.prompt, CONTENT_FREE, shots, utt))
        return [a - b for a, b in zip(s, prior, strict=True)]

    def marginal_scores(self, hyps: Sequence[tuple[str, float]], utt: str = "?") -> list[float]:
        """``log sum_h w_h P(label | h)``: each hypothesis ranked alone (its own shots),
        its label scores normalized over the labels, averaged with the weights ``w_h``
        (``load_weighted_hypotheses``: N-best or WCN-path posteriors). Costs one ranking
        per distinct hypothesis; an empty list is the empty hypothesis.

        Raises:
            ValueError: a negative weight, or weights that do not sum to a positive number.
        """
        return marginalize(self.scores, hyps, utt)

    def label_posteriors(self, text: str | Sequence[str] | Sequence[tuple[str, float]],
                         utt: str = "?") -> list[float]:
        """Log posterior of each label (``self.labels`` order, normalized over the labels)
        for one input: a serialized line, its serializations (longest first), or weighted
        hypotheses ``[(text, weight)]`` (:meth:`marginal_scores`)."""
        weighted = not isinstance(text, str) and bool(text) and isinstance(text[0], tuple)
        s = np.asarray(self.marginal_scores(text, utt) if weighted else self.scores(text, utt),
                       dtype=np.float64)
        return (s - np.logaddexp.reduce(s)).tolist()

    def classify(self, text: str | Sequence[str] | Sequence[tuple[str, float]],
                 utt: str = "?") -> str:
        """The best label for one input (:meth:`label_posteriors`)."""
        return best_label(self.labels, self.label_posteriors(text, utt))

    def predict(self, inputs: dict[str, str] | dict[str, list[str]]
                | dict[str, list[tuple[str, float]]], progress: bool = True) -> dict[str, str]:
        """Intent of each utterance; ``inputs`` maps utterance -> serialized input (or its
        serializations, longest first, or weighted hypotheses). An empty input is
        classified (the prompt shows an empty hypothesis), never skipped."""
        return {utt: best_label(self.labels, s)
                for utt, s in self.predict_posteriors(inputs, progress).items()}

    def predict_posteriors(self, inputs: dict[str, str] | dict[str, list[str]]
                           | dict[str, list[tuple[str, float]]],
                           progress: bool = True) -> dict[str, list[float]]:
        """:meth:`label_posteriors` of each utterance of ``inputs`` (as :meth:`predict`):
        what ``slu predict`` keeps in ``utt2posteriors``, so that combining inputs or
        checking the labels' calibration needs no second LLM pass."""
        before = dict(self.fitter.counts)
        out = {utt: self.label_posteriors(inputs[utt], utt)
               for utt in tqdm(c_sorted(inputs), disable=not progress, desc="slu", unit="utt")}
        fitted = {k: v - before[k] for k, v in self.fitter.counts.items() if v > before[k]}
        if fitted:
            logger.warning("fitting %d inputs to the context (%s tokens): %s", len(inputs),
                           self.fitter.max_length,
                           ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in fitted.items()))
        return out


def sentence_embedder(name: str):
    """``texts -> (N, D)`` embeddings of a sentence encoder (disk-cached), for the pool."""
    from speechlm.encoders import load_encoder

    return load_encoder(name, cache=True).embed


def load_classifier(slu_dir: str | Path, *, prompt: PromptConfig | None = None,
                    llm: str | None = None, llm_url: str | None = None,
                    llm_model: str | None = None, examples: Sequence[Example] | None = None,
                    shown: Mapping[str, str] | None = None,
                    **llm_kwargs: Any) -> tuple[IntentClassifier, SLUConfig]:
    """Load an SLU dir: its LM (LoRA merged, local checkpoint or server) and prompt.

    Args:
        slu_dir: from ``speechlm slu train``.
        prompt: replaces the dir's prompt options (shots, selection...).
        llm, llm_url, llm_model: an in-context (``icl``) dir's LM replaced by another: a
            catalogue name or local dir, or a server.
        examples: the few-shot pool instead of the dir's (a spoken pool,
            ``speechlm.llm.shot_pool.read_spoken_pool``).
        shown: what each example shows as a shot (``IntentClassifier``'s ``shown``).

    Raises:
        FileNotFoundError: not an SLU dir, or its LM / adapter is missing.
        ValueError: an LM override for a LoRA dir (its adapter belongs to its LM).
    """
    slu_dir = Path(slu_dir)
    config = SLUConfig.load(slu_dir)
    if prompt is not None:
        config.prompt = prompt
    if llm is not None or llm_url is not None:
        if config.mode == "lora":
            raise ValueError(f"{slu_dir} is a LoRA SLU dir: its adapter belongs to its own LM "
                             f"({config.llm_path}); --llm/--llm-url are for icl dirs")
        if llm is not None and llm_url is not None:
            raise ValueError("give either llm or llm_url, not both")
        config.llm_path, config.llm_url = llm, llm_url
        config.llm_model = llm_model if llm_url is not None else None
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
    if examples is not None:
        pool = ExamplePool(examples)
    elif (slu_dir / EXAMPLES).is_file():
        pool = ExamplePool(read_examples(slu_dir / EXAMPLES))
    return IntentClassifier(llm, config.labels, config.prompt, pool, shown), config


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


def write_utt2posteriors(path: Path, labels: Sequence[str],
                         posteriors: dict[str, Sequence[float]]) -> None:
    """``utt label:logp label:logp ...``, the labels most likely first, utterances
    ``LC_ALL=C`` sorted (``head`` shows each utterance's runners-up)."""
    with open(path, "w", encoding="utf-8") as f:
        for utt in c_sorted(posteriors):
            pairs = sorted(zip(labels, posteriors[utt], strict=True), key=lambda p: -p[1])
            f.write(utt + "".join(f" {lab}:{lp:.4f}" for lab, lp in pairs) + "\n")


def read_utt2posteriors(path: Path) -> dict[str, dict[str, float]]:
    """``write_utt2posteriors``'s file -> {utt: {label: log posterior}}.

    Raises:
        DataDirError / ValueError: naming the file, line and field that is not
            ``label:number``.
    """
    out = {}
    for lineno, utt, value in read_table(path):
        row = {}
        for item in value.split():
            label, _, number = item.rpartition(":")
            try:
                if not label:
                    raise ValueError
                row[label] = float(number)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: {utt!r}: {item!r} is not label:logp") from None
        out[utt] = row
    return out
