"""Joint CTC / LLM decoding: CTC prefix scores as a row-aware logits processor.

The speech-prefix LLM's CTC head (``speech_llm.TiedCTC``) gives a posteriorgram over the
LLM's own tokens. Decoding with ``(1 - w) ln p_LLM(c | g) + w (ln psi(g c) - ln psi(g))``,
where ``psi`` is the CTC prefix probability (Watanabe et al. 2017, "Hybrid CTC/attention";
ESPnet's ``CTCPrefixScore``), keeps the LLM from writing fluent text the audio does not
support: a token the frames cannot carry gets a very low CTC increment. End of sentence
scores the CTC probability of the whole prefix instead.

The runtime stays speech-agnostic: it only calls the processor's ``set_rows`` / ``observe``
hooks (``speechlm.runtime.retrieval.LogitsProcessor``) and never sees the posteriorgrams.

>>> import torch
>>> x = torch.full((3, 4), -9.0)            # 3 frames, tokens 0-2, blank = 3
>>> x[0, 1] = x[1, 3] = x[2, 2] = 0.0       # best path: 1, blank, 2
>>> s = CTCPrefixScorer(x.log_softmax(-1), blank=3)
>>> int(s.scores().argmax()); s.advance(1); int(s.scores().argmax())
1
2
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from speechlm.runtime.retrieval import LogitsProcessor

NEG = -1e10  # log 0 that stays finite (differences of two log-zeros must not be NaN)


class CTCPrefixScorer:
    """CTC prefix probabilities of one utterance, for every next token at once.

    Args:
        logp: ``(T, V + 1)`` CTC log-posteriors; class ``blank`` is the blank.
        blank: the blank's index (``V``: the tokens are ``0 .. V - 1``).
    """

    def __init__(self, logp: torch.Tensor, blank: int) -> None:
        if logp.ndim != 2 or logp.shape[0] < 1 or not 0 <= blank < logp.shape[1]:
            raise ValueError(f"CTC prefix scorer: (T >= 1, C) log-posteriors and a blank "
                             f"index below C, got {tuple(logp.shape)} and {blank}")
        self.x = logp.detach().float()
        self.blank = blank
        self.tokens = self.x[:, [i for i in range(logp.shape[1]) if i != blank]]  # (T, V)
        self.prefix: list[int] = []
        # r_n[t] / r_b[t]: ln P(the prefix, its path at frame t ends in a token / a blank)
        self.r_n = torch.full((self.x.shape[0],), NEG)
        self.r_b = torch.cumsum(self.x[:, blank], dim=0)
        self.log_psi = 0.0  # the empty prefix has probability 1
        self._r_n_next: torch.Tensor | None = None  # (T, V) and (V,) from the last scores()
        self._psi_next: torch.Tensor | None = None

    def full(self) -> float:
        """ln P(exactly the prefix): the score of ending the sentence here."""
        return float(torch.logaddexp(self.r_n[-1], self.r_b[-1]))

    def scores(self) -> torch.Tensor:
        """``(V,)`` ln psi(prefix + c) for every token c (blank excluded)."""
        x = self.tokens
        t_len, v = x.shape
        phi = torch.logaddexp(self.r_n, self.r_b)[:, None].expand(t_len, v).clone()
        if self.prefix and self.prefix[-1] < v:  # a repeated token needs a blank between
            phi[:, self.prefix[-1]] = self.r_b
        r_n = torch.full((t_len, v), NEG)
        r_n[0] = x[0] if not self.prefix else NEG
        psi = r_n[0].clone()
        for t in range(1, t_len):
            r_n[t] = torch.logaddexp(r_n[t - 1], phi[t - 1]) + x[t]
            psi = torch.logaddexp(psi, phi[t - 1] + x[t])
        self._r_n_next, self._psi_next = r_n, psi.clamp(min=NEG)
        return self._psi_next

    def advance(self, token: int) -> None:
        """Append ``token`` to the prefix (``scores()`` must have run for this prefix)."""
        if self._r_n_next is None:
            self.scores()
        v = self.tokens.shape[1]
        if not 0 <= token < v:
            raise ValueError(f"CTC prefix scorer: token {token} outside 0..{v - 1}")
        r_n = self._r_n_next[:, token].clone()
        r_b = torch.full_like(r_n, NEG)
        for t in range(1, r_n.shape[0]):
            r_b[t] = torch.logaddexp(r_b[t - 1], r_n[t - 1]) + self.x[t, self.blank]
        self.log_psi = float(self._psi_next[token])
        self.r_n, self.r_b = r_n, r_b
        self.prefix.append(token)
        self._r_n_next = None


class CTCJointProcessor(LogitsProcessor):
    """Joint CTC / LLM scores for greedy or sampled generation through the runtime.

    Args:
        log_posteriors: one ``(T_i, V + 1)`` CTC posteriorgram per prompt, blank last, V =
            the LLM's vocabulary (its logits' width).
        eos_ids: the LLM's end-of-sentence ids (scored with the CTC full-sequence
            probability).
        weight: w in ``(1 - w) ln p_LLM + w * CTC increment``, in [0, 1]; 0 returns the
            inner scores untouched.
        inner: a processor applied to the logits first (e.g. kNN-LM).
    """

    def __init__(self, log_posteriors: Sequence[torch.Tensor], eos_ids: Sequence[int],
                 weight: float, inner: LogitsProcessor | None = None) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"CTC weight must be in [0, 1], got {weight}")
        self.scorers = [CTCPrefixScorer(p, blank=p.shape[1] - 1) for p in log_posteriors]
        self.eos_ids, self.weight, self.inner = list(eos_ids), weight, inner
        self.rows = list(range(len(self.scorers)))

    def set_rows(self, rows: list[int]) -> None:
        self.rows = list(rows)
        if hasattr(self.inner, "set_rows"):
            self.inner.set_rows(rows)

    def observe(self, rows: list[int], tokens: list[int]) -> None:
        for r, tok in zip(rows, tokens, strict=True):
            if tok not in self.eos_ids:
                self.scorers[r].advance(tok)
        if hasattr(self.inner, "observe"):
            self.inner.observe(rows, tokens)

    def __call__(self, hidden: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        base = self.inner(hidden, logits) if self.inner is not None else logits
        if self.weight == 0.0:
            return base
        if len(self.rows) != base.shape[0]:
            raise ValueError(f"CTC joint decoding: {base.shape[0]} rows of logits but "
                             f"{len(self.rows)} rows set (generation and scoring with "
                             "teacher forcing are not supported)")
        logp = torch.log_softmax(base.float(), dim=-1)
        out = torch.empty_like(logp)
        for i, r in enumerate(self.rows):
            s = self.scorers[r]
            if s.tokens.shape[1] != logp.shape[1]:
                raise ValueError(f"CTC joint decoding: posteriorgram of prompt {r} has "
                                 f"{s.tokens.shape[1]} tokens, the LLM {logp.shape[1]}")
            delta = s.scores() - s.log_psi
            delta[self.eos_ids] = s.full() - s.log_psi
            out[i] = (1.0 - self.weight) * logp[i] + self.weight * delta
        return out
