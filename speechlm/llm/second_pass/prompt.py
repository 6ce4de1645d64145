"""Prompts of the second pass: rescoring (zero-/k-shot), task-activating prompting, GER.

Every prompt is a chat (a list of ``{"role", "content"}`` turns) that ends where the model
is to write the transcript; :func:`render` turns it into the text the runtime scores after
(through the tokenizer's chat template when it has one, else ``role: content`` lines).
The hypotheses are scored or generated as the answer to the last turn, so the common part
(instructions, activation turns, demonstrations, the N-best for GER) is one shared prefix
per utterance: ``LLM.score(hyps, prefix=...)`` encodes it once.

Task-activating prompting (Yang et al., 2023, arXiv 2309.15649) first asks the model
about the task, with its own answers kept as turns ("Do you know speech recognition?",
"Do you know language-model rescoring?", ...), then gives demonstrations, then the input.
The answers are generated once per model (:func:`activation_turns`) and reused.

>>> p = PromptBuilder(template=False)
>>> print(p.render(p.ger(["a b", "a c"])))
user: Below are the 2 best hypotheses of a speech recognizer for one utterance, best first.
1. a b
2. a c
Write the correct transcript, in lower case, without punctuation.
assistant:
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ACTIVATION_QUESTIONS", "PromptBuilder", "activation_turns"]

ACTIVATION_QUESTIONS = (
    "Do you know speech recognition?",
    "Do you know language model rescoring in speech recognition?",
    "Do you know how to pick the most likely sentence among the N-best hypotheses of a "
    "speech recognizer?",
)
RESCORE_TASK = ("Write one sentence that a speech recognizer heard in an English audiobook, "
                "in lower case, without punctuation.")
GER_TASK = ("Write the correct transcript, in lower case, without punctuation.")


def activation_turns(llm, max_tokens: int = 48) -> list[dict[str, str]]:
    """The activation questions with the model's own greedy answers (one chat per question,
    each seeing the turns before it), as chat turns."""
    from speechlm.runtime.base import SamplingParams

    turns: list[dict[str, str]] = []
    for q in ACTIVATION_QUESTIONS:
        turns.append({"role": "user", "content": q})
        if getattr(llm.tokenizer, "chat_template", None):
            answer = llm.chat(turns, SamplingParams(max_tokens=max_tokens)).text
        else:
            answer = llm.generate(PromptBuilder(template=False).render(turns),
                                  SamplingParams(max_tokens=max_tokens, stop=("\n",)))[0].text
        turns.append({"role": "assistant", "content": " ".join(answer.split()) or "Yes."})
    return turns


@dataclass
class PromptBuilder:
    """Builds the chats; ``tokenizer`` renders them with its chat template when
    ``template`` is on and it has one.

    Args:
        tokenizer: the LLM's tokenizer (None: plain ``role: content`` lines).
        template: use the chat template when there is one.
        activation: task-activating turns (:func:`activation_turns`) put before the task.
    """

    tokenizer: object = None
    template: bool = True
    activation: Sequence[dict[str, str]] = ()

    @property
    def chat_template(self) -> bool:
        return bool(self.template and getattr(self.tokenizer, "chat_template", None))

    def render(self, turns: Sequence[dict[str, str]]) -> str:
        """The prefix text: the chat up to where the assistant's answer starts."""
        if self.chat_template:
            return self.tokenizer.apply_chat_template(list(turns), add_generation_prompt=True,
                                                      tokenize=False)
        return "".join(f"{t['role']}: {t['content']}\n" for t in turns) + "assistant:"

    def answer(self, text: str) -> str:
        """The scored continuation: the hypothesis as the assistant's answer."""
        return text if self.chat_template else " " + text

    def rescore(self, demos: Sequence[str] = (), *, tap: bool = False) -> list[dict[str, str]]:
        """Zero-shot (no demos), k-shot (demos: correct sentences) or task-activating."""
        turns = list(self.activation) if tap else []
        task = RESCORE_TASK
        if demos:
            task = ("Here are correct transcripts of other sentences:\n"
                    + "".join(f"- {d}\n" for d in demos) + task)
        return [*turns, {"role": "user", "content": task}]

    def ger(self, hyps: Sequence[str], demos: Sequence[tuple[Sequence[str], str]] = (), *,
            tap: bool = False) -> list[dict[str, str]]:
        """Generative error correction: the N-best in the prompt, the transcript as answer;
        demos are (N-best, reference) pairs given as earlier turns."""
        turns = list(self.activation) if tap else []
        for d_hyps, d_ref in demos:
            turns += [{"role": "user", "content": self._ger_task(d_hyps)},
                      {"role": "assistant", "content": d_ref}]
        return [*turns, {"role": "user", "content": self._ger_task(hyps)}]

    @staticmethod
    def _ger_task(hyps: Sequence[str]) -> str:
        lines = "".join(f"{k + 1}. {h}\n" for k, h in enumerate(hyps))
        return (f"Below are the {len(hyps)} best hypotheses of a speech recognizer for one "
                f"utterance, best first.\n{lines}{GER_TASK}")
