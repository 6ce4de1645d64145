"""Beam search, step for step the algorithm of transformers' ``GenerationMixin._beam_search``.

Same defaults as transformers (``length_penalty=1.0``, ``early_stopping=False``), so
``num_beams=4`` gives the same output tokens (tested). Per prompt, with ``nb`` beams:

1. log-probs of every (beam, token) continuation, plus the beam's running score;
2. keep the top ``K = max(2, 1 + n_eos) * nb`` candidates (enough to continue ``nb``
   beams even if the best all end in EOS);
3. a candidate that ends in EOS or reaches the length limit, if among the top ``nb``,
   becomes a finished hypothesis scored ``sum_logprob / gen_len ** length_penalty``; the
   best ``nb`` finished ones are kept;
4. the best ``nb`` unfinished candidates continue (the cache is reordered to their
   parents);
5. stop when no running beam can beat the worst kept finished one (transformers'
   heuristic: the best running score divided by the *current* length), or when every
   candidate has finished.

The prompt's prefill runs once at batch 1 and its cache is forked to ``nb`` rows
(transformers prefills ``nb`` copies; the rows are equal up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from speechlm.runtime.engine import CallStats, Engine, track_cache

_NEG = -1.0e9


@dataclass
class BeamResult:
    token_ids: list[int]  # generated tokens, EOS excluded
    logprob: float  # sum of ln p of the generated tokens (EOS included if it ended there)
    finish_reason: str  # "eos" | "length"


def beam_search(
    engine: Engine,
    prompt: list[int],
    *,
    num_beams: int,
    max_new: int,
    eos_ids: list[int],
    stats: CallStats,
    length_penalty: float = 1.0,
) -> BeamResult:
    """Best hypothesis of a beam search over ``max_new`` new tokens after ``prompt``."""
    device = engine.device
    nb, p = num_beams, len(prompt)
    max_length = p + max_new
    k = max(2, 1 + len(eos_ids)) * nb
    eos = torch.tensor(eos_ids, device=device)

    prefix = engine.new_cache()
    ids = torch.tensor([prompt], device=device)
    logits = engine.forward(
        ids,
        torch.ones_like(ids),
        torch.arange(p, device=device)[None],
        prefix,
        phase="prefill",
        stats=stats,
        logits_to_keep=1,
    ).logits[:, -1]
    stats.prompt_tokens += p
    cache = prefix.fork(nb, reserve=max_new)
    logits = logits.float().expand(nb, -1)  # (nb, V)
    del prefix

    running = [[] for _ in range(nb)]  # generated tokens per running beam
    running_scores = torch.full((nb,), _NEG, device=device)
    running_scores[0] = 0.0  # only beam 0 is live at first, so beams do not start identical
    finished: list[tuple[list[int], float, float, bool]] = []  # (tokens, score, raw, by_eos)
    finished_scores = torch.full((nb,), _NEG, device=device)
    is_finished = torch.zeros(nb, dtype=torch.bool, device=device)
    improvable = True
    cur_len = p
    mask = torch.ones(nb, p, dtype=torch.long, device=device)
    while True:
        vocab = logits.shape[-1]
        log_probs = torch.log_softmax(logits, dim=-1) + running_scores[:, None]  # (nb, V)
        top_lp, top_idx = torch.topk(log_probs.reshape(-1), k)  # (K,)
        parents, tokens = top_idx // vocab, top_idx % vocab
        hits = torch.isin(tokens, eos) | (cur_len + 1 >= max_length)  # (K,)
        cands = [running[b] + [t] for b, t in zip(parents.tolist(), tokens.tolist(), strict=True)]

        # running beams for the next step: best nb candidates that did not finish
        run_lp = top_lp + hits.float() * _NEG
        nxt = torch.topk(run_lp, nb).indices
        # finished hypotheses: merge the top-nb candidates that just finished
        gen_len = cur_len + 1 - p
        cand_scores = top_lp / (gen_len**length_penalty)
        just_finished = hits.clone()
        just_finished[nb:] = False
        cand_scores = cand_scores + (~just_finished).float() * _NEG
        if not improvable:
            cand_scores = cand_scores + _NEG
        merged = torch.cat([finished_scores, cand_scores])
        keep = torch.topk(merged, nb).indices.tolist()
        old = finished
        finished_new, fin_scores, fin_flags = [], [], []
        for j in keep:
            if j < nb:
                entry = old[j] if j < len(old) else ([], _NEG, _NEG, False)
                flag = bool(is_finished[j])
            else:
                c = j - nb
                by_eos = bool(torch.isin(tokens[c], eos))
                entry = (cands[c], float(cand_scores[c]), float(top_lp[c]), by_eos)
                flag = bool(just_finished[c])
            finished_new.append(entry)
            fin_scores.append(merged[j])
            fin_flags.append(flag)
        finished = finished_new
        finished_scores = torch.stack(fin_scores)
        is_finished = torch.tensor(fin_flags, device=device)

        running = [cands[j] for j in nxt.tolist()]
        running_scores = run_lp[nxt]
        cache.reorder_cache(parents[nxt])
        cur_len += 1
        if improvable:
            best_possible = running_scores[0] / ((cur_len - p) ** length_penalty)
            worst = torch.where(
                is_finished, finished_scores.min(), torch.tensor(_NEG, device=device)
            )
            improvable = bool(torch.any(best_possible > worst))
        if not improvable or bool(hits.all()):
            break
        # one decode step for the surviving beams (the next token of each running beam)
        last = torch.tensor([r[-1] for r in running], device=device)[:, None]  # (nb, 1)
        mask = torch.cat([mask, mask.new_ones(nb, 1)], dim=1)
        positions = torch.full((nb, 1), cur_len - 1, device=device)
        logits = (
            engine.forward(last, mask, positions, cache, phase="decode", stats=stats)
            .logits[:, -1]
            .float()
        )
    track_cache(stats, cache)
    tokens, _, raw, by_eos = finished[0]
    stats.generated_tokens += len(tokens)
    if by_eos:
        return BeamResult(tokens[:-1], raw, "eos")
    return BeamResult(tokens, raw, "length")
