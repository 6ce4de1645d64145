"""LLM calls for the agents: versioned prompt files, a log line per call (tokens, seconds),
and a cassette that records real answers once and replays them (the tests' fixture).

Any ``speechlm.runtime.LanguageModel`` with ``chat`` works: the local ``LLM`` (SmolLM2 by
default) or ``RemoteLLM`` (any OpenAI-compatible endpoint). Replaying needs no model: the
answer for a prompt is looked up by the SHA-256 of (model, messages, sampling settings),
so a changed prompt or model is a miss, reported with how to record again, never a
made-up answer.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from speechlm.core.errors import InputError
from speechlm.runtime.base import SamplingParams

__all__ = ["LLMClient", "load_prompt", "PROMPT_DIR", "ReplayMiss"]

PROMPT_DIR = Path(__file__).with_name("prompts")


class ReplayMiss(InputError):
    """A prompt with no recorded answer in the cassette being replayed."""


def load_prompt(name: str) -> tuple[str, str]:
    """(text, sha256) of ``prompts/<name>.txt``; ``name`` carries the version (``detect_v1``)."""
    path = PROMPT_DIR / f"{name}.txt"
    if not path.is_file():
        raise ValueError(f"no prompt file {path}")
    text = path.read_text()
    return text, hashlib.sha256(text.encode()).hexdigest()


class LLMClient:
    """Chat with an LLM, logging every call; optionally record to or replay from a cassette.

    Args:
        llm: a runtime ``LanguageModel`` (None when replaying).
        model: the model's name, written in logs, rule provenance and cassette keys.
        log_path: JSON-lines file, one line per call (appended).
        record_to: cassette file to append real answers to.
        replay_from: cassette file to answer from instead of ``llm``; a ``calls.jsonl``
            log of an earlier run also works (its keys are the hashes' first 16 digits),
            so a finished run can be reviewed again without the model.
    """

    def __init__(self, llm: Any = None, *, model: str, log_path: str | Path | None = None,
                 record_to: str | Path | None = None,
                 replay_from: str | Path | None = None) -> None:
        if (llm is None) == (replay_from is None):
            raise ValueError("give an llm or a cassette to replay, not both or neither")
        self.llm, self.model = llm, model
        self.log_path = Path(log_path) if log_path else None
        self.record_to = Path(record_to) if record_to else None
        self.replay_from = Path(replay_from) if replay_from else None
        self._tape: dict[str, dict] = {}
        if self.replay_from is not None:
            for n, line in enumerate(self.replay_from.read_text().splitlines(), 1):
                try:
                    entry = json.loads(line)
                    # a cassette keys by the full hash; a calls.jsonl log by its first 16
                    self._tape[entry["key"]] = entry
                except (json.JSONDecodeError, KeyError) as e:
                    raise InputError(f"{self.replay_from}: line {n}: not a cassette entry: "
                                     f"{e}") from e
        self.calls: list[dict] = []

    def key(self, messages: list[dict], params: SamplingParams) -> str:
        blob = json.dumps({"model": self.model, "messages": messages,
                           "max_tokens": params.max_tokens, "temperature": params.temperature,
                           "top_p": params.top_p, "seed": params.seed}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def chat(self, agent: str, prompt: str, messages: list[dict],
             params: SamplingParams) -> str:
        """The answer's text; ``agent`` and ``prompt`` (file name with version) are logged."""
        key = self.key(messages, params)
        if self.replay_from is not None:
            if key not in self._tape and key[:16] in self._tape:
                key = key[:16]
            if key not in self._tape:
                raise ReplayMiss(f"{self.replay_from}: no recorded answer for this {agent} "
                                 f"prompt ({prompt}, key {key[:12]}); the prompt, data or "
                                 f"model changed: record again (see tests/monitor/"
                                 f"record_llm_fixture.py)")
            entry = self._tape[key]
            text, finish = entry["text"], entry["finish_reason"]
            usage = (entry["prompt_tokens"], entry["generated_tokens"], entry["seconds"])
        else:
            start = time.perf_counter()
            completion = self.llm.chat(messages, params)
            seconds = time.perf_counter() - start
            text, finish = completion.text, completion.finish_reason
            records = getattr(getattr(self.llm, "metrics", None), "records", None)
            prompt_tokens = records[-1].prompt_tokens if records else None
            usage = (prompt_tokens, len(completion.token_ids), seconds)
            if self.record_to is not None:
                self.record_to.parent.mkdir(parents=True, exist_ok=True)
                with self.record_to.open("a") as f:
                    f.write(json.dumps({
                        "key": key, "model": self.model, "agent": agent, "prompt": prompt,
                        "messages": messages, "max_tokens": params.max_tokens,
                        "temperature": params.temperature, "text": text,
                        "finish_reason": finish, "prompt_tokens": usage[0],
                        "generated_tokens": usage[1], "seconds": round(seconds, 3),
                        "recorded_unix_time": time.time()}) + "\n")
        call = {"i": len(self.calls), "agent": agent, "prompt": prompt, "model": self.model,
                "key": key[:16], "prompt_tokens": usage[0], "generated_tokens": usage[1],
                "seconds": usage[2], "finish_reason": finish,
                "replayed": self.replay_from is not None, "text": text}
        self.calls.append(call)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a") as f:
                f.write(json.dumps(call) + "\n")
        return text
