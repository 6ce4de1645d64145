"""kNN-LM keys: the LLM's final hidden state (the LM head's input) before each token.

* **text keys**: the LLM reads ``BOS + " " + text``; the key at each position is the final
  hidden state, the value the next token (the text's tokens, then EOS).
* **speech keys**: the same positions, with the speech-prefix LLM reading the utterance's
  speech prefix (``SpeechLLM.prompt_embeds``) before the text, so the key also carries the
  acoustics. The first key is the prompt's last position (it predicts the first token).

Both use the transcript with a leading space, as the speech-prefix LLM writes it.
Fingerprints name the LLM (config + a hash of its output layer) and the key type.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def llm_fingerprint(llm: Any) -> str:
    """``llm=<12 hex>`` from the model config and the LM head's weights."""
    model = llm.model
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str)
                       .encode())
    w = model.get_output_embeddings().weight.detach().float().cpu()
    h.update(w[:: max(1, w.shape[0] // 4096)].numpy().tobytes())  # a strided sample: fast
    return f"llm={h.hexdigest()[:12]}"


def _pairs(states: Sequence[torch.Tensor], targets: Sequence[list[int]], eos: int,
           utts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    keys, values, names = [], [], []
    for s, t, u in zip(states, targets, utts, strict=True):
        vals = [*t, eos]
        if s.shape[0] != len(vals):
            raise ValueError(f"utterance {u!r}: {s.shape[0]} states for {len(vals)} tokens")
        keys.append(s.numpy())
        values.extend(vals)
        names.extend(f"{u}:{i}" for i in range(len(vals)))
    if not keys:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), []
    return np.concatenate(keys).astype(np.float32), np.asarray(values, np.int64), names


def text_keys(llm: Any, texts: Sequence[str], utts: Sequence[str] | None = None,
              batch_size: int = 16) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Keys ``(N, D)``, values ``(N,)``, row names and the fingerprint for text keys."""
    utts = list(utts) if utts is not None else [str(i) for i in range(len(texts))]
    tok = llm.tokenizer
    if tok.eos_token_id is None:
        raise ValueError("text keys need an EOS token (the value after each text)")
    spaced = [" " + t.strip() for t in texts]
    states = llm.hidden_states(spaced, layer=-1, batch_size=batch_size)  # (1 + T, D) each
    targets = [list(tok(t, add_special_tokens=False)["input_ids"]) for t in spaced]
    if tok.bos_token_id is None:  # no BOS: the first token is context only
        states = [s[:-1] for s in states]
        targets = [t[1:] for t in targets]
    keys, values, names = _pairs(states, targets, tok.eos_token_id, utts)
    return keys, values, names, f"text|{llm_fingerprint(llm)}"


def speech_keys(speech_llm: Any, feats: Sequence[np.ndarray], texts: Sequence[str],
                utts: Sequence[str] | None = None, batch_size: int = 8
                ) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Like :func:`text_keys`, with the LLM conditioned on each utterance's speech prefix."""
    utts = list(utts) if utts is not None else [str(i) for i in range(len(texts))]
    llm = speech_llm.llm
    prefixes = [speech_llm.prompt_embeds(f) for f in feats]
    spaced = [" " + t.strip() for t in texts]
    states = llm.hidden_states(spaced, layer=-1, batch_size=batch_size, prefix_embeds=prefixes)
    targets = [speech_llm.target_ids(t) for t in texts]
    keys, values, names = _pairs(states, targets, llm.tokenizer.eos_token_id, utts)
    return keys, values, names, f"speech|{speech_llm.fingerprint()}"
