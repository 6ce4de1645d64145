"""Argos agents: detection (data summary + labelled anomalies -> rule), repair (error ->
fixed rule, bounded retries) and review (accept only if training F1 does not drop).

Training runs per group of series (a NAB group such as ``realKnownCause``; the paper's
"dataset"). Its chunks are the training parts of the group's series that hold labelled
anomalies, in key order. For each chunk the detection agent writes ``candidates`` rules;
each is run in the sandbox over the training parts of *every* series of the group,
repaired up to ``max_repairs`` times if it fails, and scored as the OR of the rules
accepted so far plus itself. Review keeps the chunk's best candidate if the pooled
training point F1 does not drop, the rule flags at least one training point that the
rules accepted so far do not, and it is not the same program as one of them (small
models repeat themselves, sometimes with a cosmetic change); rules
that stay broken are rejected with their reason. The group's accepted rules, merged by
OR, are its Argos detector.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from speechlm.monitor.calls import LLMClient, load_prompt
from speechlm.monitor.nab import Series
from speechlm.monitor.rule import Rule, extract_code
from speechlm.monitor.sandbox import SandboxLimits, run_rule
from speechlm.monitor.scoring import prf
from speechlm.runtime.base import SamplingParams

__all__ = ["ArgosConfig", "GroupResult", "train_group", "summarize", "detection_messages",
           "repair_messages"]


@dataclass(frozen=True)
class ArgosConfig:
    """Settings of the agents (the YAML / CLI keys have the same names).

    Args:
        detect_prompt, repair_prompt, system_prompt: prompt files (name = version).
        candidates: detection answers per chunk (more than 1 needs temperature > 0).
        max_repairs: repair rounds for a rule that fails in the sandbox.
        max_tokens: generation limit per call.
        temperature: 0 = greedy.
        cpu_s, wall_s, memory_mb: sandbox limits per rule run (a group's training parts).
        max_chunks: cap on chunks per group (0 = all).
    """

    detect_prompt: str = "detect_v1"
    repair_prompt: str = "repair_v1"
    system_prompt: str = "system_v1"
    candidates: int = 1
    max_repairs: int = 2
    max_tokens: int = 256
    temperature: float = 0.0
    cpu_s: float = 5.0
    wall_s: float = 20.0
    memory_mb: int = 1024
    max_chunks: int = 0

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.max_repairs < 0 or self.max_chunks < 0:
            raise ValueError(f"candidates >= 1, max_repairs >= 0, max_chunks >= 0: {self}")
        if self.candidates > 1 and self.temperature == 0:
            raise ValueError("candidates > 1 with temperature 0 repeats one answer")

    @property
    def limits(self) -> SandboxLimits:
        return SandboxLimits(cpu_s=self.cpu_s, wall_s=self.wall_s, memory_mb=self.memory_mb)

    def sampling(self, seed: int) -> SamplingParams:
        return SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature,
                              seed=seed if self.temperature > 0 else None)


@dataclass
class GroupResult:
    """What training one group produced: accepted rules and a record per candidate."""

    group: str
    rules: list[Rule] = field(default_factory=list)
    train_f1: float = 0.0
    reviews: list[dict] = field(default_factory=list)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _step_text(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''}"
    return f"{seconds:g} seconds"


def _sample(values: np.ndarray, k: int) -> str:
    if values.size > k:
        values = values[np.linspace(0, values.size - 1, k).round().astype(int)]
    return "[" + ", ".join(_fmt(v) for v in values) + "]"


def summarize(chunk: Series, max_windows: int = 3, per_window: int = 8) -> dict:
    """The fields of the detection prompt for one chunk (deterministic text)."""
    v, labels = chunk.values, chunk.labels
    finite = np.isfinite(v)
    step = float(np.median(np.diff(chunk.timestamps))) if len(v) > 1 else 0.0
    anomalies = []
    for a, b in _runs(labels)[:max_windows]:
        anomalies.append(_sample(v[a:b][np.isfinite(v[a:b])], per_window))
    normal = v[~labels & finite]
    return {"key": chunk.key, "n": len(v), "step": _step_text(step),
            "min": _fmt(np.nanmin(v)), "max": _fmt(np.nanmax(v)), "mean": _fmt(np.nanmean(v)),
            "median": _fmt(np.nanmedian(v)), "std": _fmt(np.nanstd(v)),
            "normal": _sample(normal, 12), "anomalies": " ; ".join(anomalies) or "none"}


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    m = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def detection_messages(chunk: Series, config: ArgosConfig) -> list[dict]:
    system, _ = load_prompt(config.system_prompt)
    user, _ = load_prompt(config.detect_prompt)
    return [{"role": "system", "content": system.strip()},
            {"role": "user", "content": user.format(**summarize(chunk)).strip()}]


def repair_messages(source: str, error: str, config: ArgosConfig) -> list[dict]:
    system, _ = load_prompt(config.system_prompt)
    user, _ = load_prompt(config.repair_prompt)
    return [{"role": "system", "content": system.strip()},
            {"role": "user", "content": user.format(source=source.strip(),
                                                    error=error[:500]).strip()}]


def _pooled_f1(masks: list[np.ndarray], labels: list[np.ndarray]) -> float:
    tp = sum(int(np.sum(m & y)) for m, y in zip(masks, labels, strict=True))
    fp = sum(int(np.sum(m & ~y)) for m, y in zip(masks, labels, strict=True))
    fn = sum(int(np.sum(~m & y)) for m, y in zip(masks, labels, strict=True))
    return prf(tp, fp, fn)["f1"]


def train_group(group: str, train_parts: list[Series], client: LLMClient,
                config: ArgosConfig, log=print) -> GroupResult:
    """Detection -> sandbox -> repair -> review over the group's chunks.

    Args:
        group: its name (rule provenance, file names).
        train_parts: the training part of every series in the group.
        client: the logged LLM (or a replayed cassette).
        config: agent settings.
        log: a print-like function for progress lines.
    """
    result = GroupResult(group)
    data = [(s.values, s.timestamps) for s in train_parts]
    labels = [s.labels for s in train_parts]
    current = [np.zeros(len(s), dtype=bool) for s in train_parts]
    chunks = [s for s in train_parts if s.labels.any()]
    if config.max_chunks:
        chunks = chunks[: config.max_chunks]
    _, detect_sha = load_prompt(config.detect_prompt)
    for c, chunk in enumerate(chunks):
        best = None
        for k in range(config.candidates):
            review = {"group": group, "chunk": chunk.key, "candidate": k, "calls": [],
                      "attempts": []}
            start = time.perf_counter()
            text = client.chat("detect", config.detect_prompt,
                               detection_messages(chunk, config), config.sampling(1000 * c + k))
            review["calls"].append(len(client.calls) - 1)
            source = extract_code(text)
            run = run_rule(source, data, config.limits)
            review["attempts"].append({"kind": run.kind, "error": run.error})
            repairs = 0
            while not run.ok and repairs < config.max_repairs:
                repairs += 1
                text = client.chat("repair", config.repair_prompt,
                                   repair_messages(source, run.error, config),
                                   config.sampling(1000 * c + 100 * (repairs + 1) + k))
                review["calls"].append(len(client.calls) - 1)
                source = extract_code(text)
                run = run_rule(source, data, config.limits)
                review["attempts"].append({"kind": run.kind, "error": run.error})
            review.update(repairs=repairs, source=source, seconds=time.perf_counter() - start)
            if not run.ok:
                review.update(decision="rejected", reason=f"{run.kind}: {run.error}")
            else:
                merged = [a | b for a, b in zip(current, run.masks, strict=True)]
                f1 = _pooled_f1(merged, labels)
                flagged = int(sum(m.sum() for m in run.masks))
                review.update(train_f1=f1, train_f1_before=result.train_f1, flagged=flagged,
                              rule_alone_f1=_pooled_f1(run.masks, labels))
                if best is None or f1 > best[0]:
                    best = (f1, source, run.masks, review, repairs)
                review["decision"] = "candidate"
            result.reviews.append(review)
        if best is None:
            log(f"[argos] {group} chunk {c} ({chunk.key}): no working rule")
            continue
        f1, source, masks, review, repairs = best
        if any(r.source == source for r in result.rules):
            review.update(decision="not_accepted", reason="the same program as an accepted rule")
            log(f"[argos] {group} chunk {c}: not accepted (a duplicate)")
        elif not any((m & ~cur).any() for m, cur in zip(masks, current, strict=True)):
            review.update(decision="not_accepted",
                          reason="flags no training point the accepted rules do not")
            log(f"[argos] {group} chunk {c}: not accepted (adds nothing)")
        elif f1 >= result.train_f1 and f1 > 0:
            rule = Rule.from_source(source, {
                "author": "llm", "model": client.model, "prompt": config.detect_prompt,
                "prompt_sha256": detect_sha, "group": group, "chunk": chunk.key,
                "train_f1_before": result.train_f1, "train_f1": f1,
                "rule_alone_train_f1": review["rule_alone_f1"], "repairs": repairs,
                "calls": review["calls"]})
            result.rules.append(rule)
            current = [a | b for a, b in zip(current, masks, strict=True)]
            review.update(decision="accepted", rule=rule.name)
            log(f"[argos] {group} chunk {c}: accepted {rule.name}: train F1 "
                f"{result.train_f1:.3f} -> {f1:.3f}")
            result.train_f1 = f1
        else:
            review.update(decision="not_accepted",
                          reason=f"train F1 {f1:.3f} vs {result.train_f1:.3f} before, "
                                 f"{review['flagged']} points flagged")
            log(f"[argos] {group} chunk {c}: not accepted ({review['reason']})")
    return result


def save_group(result: GroupResult, out_dir: str | Path) -> None:
    """``<out>/rules/<group>/*.rule.json`` and one review line per candidate."""
    out = Path(out_dir)
    for rule in result.rules:
        rule.save(out / "rules" / result.group)
    with (out / "reviews.jsonl").open("a") as f:
        for review in result.reviews:
            f.write(json.dumps(review) + "\n")


def config_dict(config: ArgosConfig) -> dict:
    return asdict(config)
