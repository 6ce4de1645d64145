"""``LLM``: a local transformers causal LM with scoring, generation, chat and hidden states.

>>> from speechlm.testing.llm import tiny_config, tiny_tokenizer
>>> llm = LLM.from_config(tiny_config("llama"), tiny_tokenizer("llama"), seed=0)
>>> len(llm.score(["one two three", "three two one"], prefix="count :"))
2
>>> llm.generate("one two", SamplingParams(max_tokens=3))[0].finish_reason in ("length", "eos")
True
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from speechlm.runtime.attention import build_attention
from speechlm.runtime.attention.base import AttentionBackend
from speechlm.runtime.base import (
    Completion,
    LanguageModel,
    OnToken,
    SamplingParams,
    ScoreResult,
)
from speechlm.runtime.beam import beam_search
from speechlm.runtime.cache import KV_CACHES
from speechlm.runtime.energy import build_governor
from speechlm.runtime.energy.governor import EnergyGovernor, NullGovernor
from speechlm.runtime.energy.meter import EnergyMeter
from speechlm.runtime.engine import CallStats, Engine
from speechlm.runtime.generate import (
    TextStream,
    hidden_states_of,
    sample_loop,
    score_sequences,
)
from speechlm.runtime.loading import (
    check_vocab,
    context_length,
    load_model_and_tokenizer,
    parse_device,
    parse_dtype,
    resolve_model,
)
from speechlm.runtime.metrics import CallRecord, RuntimeMetrics
from speechlm.runtime.moe import build_executor
from speechlm.runtime.moe.experts import ExpertExecutor, apply_moe_executor
from speechlm.runtime.retrieval import LogitsProcessor


class LLM(LanguageModel):
    """A causal LM and its tokenizer, with the runtime's plug-ins attached.

    Args:
        model: a transformers ``*ForCausalLM`` (put in eval mode here).
        tokenizer: its tokenizer (``len(tokenizer) <= config.vocab_size``).
        attention: attention backend name (``ATTENTION_BACKENDS``), or an instance.
        attention_conf: kwargs of the backend.
        kv_cache: KV-cache kind (``KV_CACHES``: ``"contiguous"`` or ``"dynamic"``).
        moe_executor: expert executor name (``MOE_EXECUTORS``) or instance; None leaves
            the model's own experts computation.
        moe_executor_conf: kwargs of the executor.
        energy_governor: governor name (``ENERGY_GOVERNORS``) or instance; None = no-op.
        energy_governor_conf: kwargs of the governor.
        metrics_path: append one JSON line per call here.
        measure_energy: try to read energy with zeus (None is recorded where it cannot).

    Raises:
        ValueError: tokenizer/model vocab mismatch, unknown plug-in names, or a plug-in
            that refuses the model (its reasons are listed).

    Thread safety: public calls on one ``LLM`` are serialized by a lock (one forward
    pass at a time per model); concurrent callers queue.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        attention: str | AttentionBackend = "sdpa",
        attention_conf: dict[str, Any] | None = None,
        kv_cache: str = "contiguous",
        moe_executor: str | ExpertExecutor | None = None,
        moe_executor_conf: dict[str, Any] | None = None,
        energy_governor: str | EnergyGovernor | None = None,
        energy_governor_conf: dict[str, Any] | None = None,
        metrics_path: str | Path | None = None,
        measure_energy: bool = True,
    ) -> None:
        check_vocab(tokenizer, model.config)
        if kv_cache not in KV_CACHES:
            raise ValueError(f"kv_cache: unknown {kv_cache!r}; registered: {KV_CACHES.names()}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = context_length(model.config)
        backend = (
            attention
            if isinstance(attention, AttentionBackend)
            else build_attention(attention, attention_conf)
        )
        backend.install(model)
        if isinstance(moe_executor, str):
            moe_executor = build_executor(moe_executor, moe_executor_conf)
        self.moe_executor = moe_executor
        if moe_executor is not None:
            apply_moe_executor(model, moe_executor)
        if isinstance(energy_governor, str):
            energy_governor = build_governor(energy_governor, energy_governor_conf)
        self.engine = Engine(model, backend, kv_cache, energy_governor or NullGovernor())
        self.metrics = RuntimeMetrics(metrics_path)
        self._meter = EnergyMeter(enabled=measure_energy)
        self._lock = threading.RLock()
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
            eos.append(tokenizer.eos_token_id)
        self.eos_ids = eos
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (eos[0] if eos else 0)

    # ---- construction -----------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        dtype: str | torch.dtype = "float32",
        device: str | torch.device = "cpu",
        moe_offload: str | None = None,
        gpu_memory_gb: float | None = None,
        moe_offload_conf: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> LLM:
        """Load a causal LM and its tokenizer (never from the network).

        Args:
            path: a catalogue name (``"smollm2-135m-instruct"``, see ``speechlm models``),
                a local transformers directory, or a local ``.gguf`` file (GGUF weights
                are dequantized to ``dtype``).
            moe_offload: offload the experts of an MoE model (``"fiddler"``,
                ``"lru_experts"``, ``"cpu_experts"``; see ``speechlm.runtime.moe.offload``):
                the model is loaded in CPU memory, non-expert weights and the most popular
                experts that fit ``gpu_memory_gb`` go to ``device``.
            gpu_memory_gb: the device memory budget for ``moe_offload``.
            moe_offload_conf: further ``OffloadConfig`` fields (``reserve_gb``,
                ``calibration_text``, ``placement_path``, ...).

        Raises:
            FileNotFoundError: not a catalogue name and no such path; missing config,
                weights, shards or tokenizer.
            ValueError: bad config, dtype, device, or a tokenizer/model vocab mismatch;
                a bad ``moe_offload`` budget or a dense model; a catalogue non-LLM.
            ModelNotInstalled: a catalogue model whose package is missing (pip command).
            ModelFileError: a partial or corrupt model file (named).
        """
        # local_files_only on every load (load_model_and_tokenizer), not HF_HUB_OFFLINE in
        # os.environ: the runtime stays local without switching off a user's own downloads.
        source = resolve_model(path)
        torch_dtype, dev = parse_dtype(dtype), parse_device(device)
        model, tokenizer = load_model_and_tokenizer(source, torch_dtype)
        if moe_offload is not None:  # the model stays in CPU memory; the offload places it
            from speechlm.runtime.moe.offload import offload_pretrained

            if kwargs.get("moe_executor") is not None:
                raise ValueError("pass either moe_offload or moe_executor, not both")
            kwargs["moe_executor"] = offload_pretrained(
                model,
                tokenizer,
                moe_offload,
                gpu_memory_gb=gpu_memory_gb,
                device=dev,
                conf=moe_offload_conf,
            )
            return cls(model, tokenizer, **kwargs)
        if gpu_memory_gb is not None or moe_offload_conf is not None:
            raise ValueError("gpu_memory_gb and moe_offload_conf need moe_offload")
        return cls(model.to(dev), tokenizer, **kwargs)

    @classmethod
    def from_config(
        cls,
        config: Any,
        tokenizer: Any,
        *,
        seed: int = 0,
        dtype: str | torch.dtype = "float32",
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> LLM:
        """A randomly initialised model from a transformers config (tiny test models).

        Args:
            config: a transformers config, e.g. ``speechlm.testing.llm.tiny_config()``.
            tokenizer: a tokenizer object, or a local directory to load one from.
            seed: torch seed for the weights.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if isinstance(tokenizer, (str, Path)):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
        check_vocab(tokenizer, config)
        torch_dtype, dev = parse_dtype(dtype), parse_device(device)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(
            config, dtype=torch_dtype, attn_implementation="sdpa"
        )
        return cls(model.to(dev), tokenizer, **kwargs)

    # ---- tokenisation -----------------------------------------------------------------
    def _encode(self, text: str, special: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _check_length(self, n: int, what: str) -> None:
        if n > self.max_length:
            raise ValueError(
                f"{what} is {n} tokens, over the model's context length "
                f"(max_position_embeddings = {self.max_length})"
            )

    def _score_inputs(
        self, texts: Sequence[str], prefix: str | None, append_eos: bool
    ) -> tuple[list[int], list[list[int]]]:
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not a str")
        bos = self.tokenizer.bos_token_id
        if prefix is not None:
            if not prefix:
                raise ValueError("prefix is empty: pass None for no prefix")
            context = self._encode(prefix, special=True)
        else:
            context = [bos] if bos is not None else []
        seqs = []
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"texts[{i}] is empty: nothing to score")
            ids = self._encode(text, special=False)
            if not ids:
                raise ValueError(f"texts[{i}] ({text!r}) tokenizes to no tokens")
            self._check_length(len(context) + len(ids), f"prefix + texts[{i}]")
            seqs.append(ids)
        return context, seqs

    # ---- LanguageModel API ------------------------------------------------------------
    def score(
        self,
        texts: Sequence[str],
        prefix: str | None = None,
        *,
        per_token: bool = False,
        append_eos: bool = False,
        batch_size: int = 16,
        logits_processor: LogitsProcessor | None = None,
        prefix_embeds: torch.Tensor | None = None,
    ) -> list[float] | list[ScoreResult]:
        """Natural-log probability of each text, optionally after a shared ``prefix``.

        Token ids follow the ``LanguageModel`` scoring semantics:

        * with ``prefix``: ``tokenizer(prefix)`` *with* special tokens (BOS where the
          tokenizer adds one) followed by ``tokenizer(text, add_special_tokens=False)``;
          the prefix is run once and its KV cache is shared by all texts;
        * without: ``tokenizer(text, add_special_tokens=False)`` conditioned on BOS
          whenever the tokenizer defines ``bos_token_id`` (also when it does not add it
          itself, like GPT-2's ``<|endoftext|>``). With no BOS at all (Qwen2), the text's
          first token is context only and is **not scored** (a one-token text then
          scores 0.0 unless ``append_eos``).
        * ``append_eos`` adds ln p(EOS | text).
        * ``prefix_embeds`` ``(P, D)``: a context of embeddings (e.g. built with
          :meth:`embed_tokens` around a non-text prefix) instead of ``prefix``; all tokens
          of each text are scored after it.
        * ``logits_processor`` (e.g. ``KNNLogitsProcessor``) turns ``(hidden, logits)`` into
          the scores at every position before the log-softmax.

        Mind the boundary: ``prefix + text`` is tokenized in two pieces, so the text
        usually wants its leading space (``" hello"``) for BPE tokenizers.

        Raises:
            ValueError: an empty text, or prefix + text over the context length.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if append_eos and not self.eos_ids:
            raise ValueError("append_eos: the tokenizer has no eos_token_id")
        if prefix_embeds is not None:
            if prefix is not None:
                raise ValueError("pass either prefix or prefix_embeds, not both")
            prefix_embeds = self._check_embeds(prefix_embeds, "prefix_embeds")
        context, seqs = self._score_inputs(texts, prefix, append_eos)
        if prefix_embeds is not None:
            context = [self.pad_id] * prefix_embeds.shape[0]  # placeholders: embeds are fed
            for i, ids in enumerate(seqs):
                self._check_length(len(context) + len(ids), f"prefix_embeds + texts[{i}]")
        stats = CallStats()
        with self._call("score", stats, len(seqs)):
            values = score_sequences(
                self.engine,
                context,
                seqs,
                eos_id=self.eos_ids[0] if append_eos else None,
                batch_size=batch_size,
                pad_id=self.pad_id,
                stats=stats,
                processor=logits_processor,
                context_embeds=prefix_embeds,
            )
        if not per_token:
            return [float(sum(v)) for v in values]
        out = []
        for ids, vals in zip(seqs, values, strict=True):
            scored = ids if context else ids[1:]
            if append_eos:
                scored = [*scored, self.eos_ids[0]]
            tokens = self.tokenizer.convert_ids_to_tokens(scored)
            out.append(
                ScoreResult(total=float(sum(vals)), tokens=list(tokens), token_logprobs=vals)
            )
        return out

    def generate(
        self,
        prompts: str | Sequence[str],
        params: SamplingParams | None = None,
        *,
        on_token: OnToken | None = None,
        logits_processor: LogitsProcessor | None = None,
    ) -> list[Completion]:
        """Continue each prompt (tokenized *with* special tokens, e.g. BOS).

        Greedy (``temperature == 0``), sampling (temperature, top-k, top-p; ``seed`` makes
        it reproducible) or beam search (``num_beams > 1``, transformers' algorithm). The
        new tokens are capped by ``max_tokens`` and by the context length.

        Streaming: ``on_token(prompt_index, token_id, text_piece)`` is called once per
        generated token (greedy/sampling) with the text that became final; text that
        might start a stop string is held back and handed over in one extra call when
        the row ends (``token_id`` = EOS if it ended on EOS), so the pieces join to
        exactly ``Completion.text``. Beam search streams the chosen hypothesis once it is
        known. Stop strings end sampling at once; beam search applies them to the final
        text only.

        Raises:
            ValueError: an empty prompt or one that fills the context length.
        """
        params = params or SamplingParams()
        if isinstance(prompts, str):
            prompts = [prompts]
        ids = []
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise ValueError(f"prompts[{i}] must be a str, got {type(prompt).__name__}")
            x = self._encode(prompt, special=True)
            if not x:
                raise ValueError(
                    f"prompts[{i}] is empty (no tokens, and the tokenizer adds no BOS)"
                )
            if len(x) >= self.max_length:
                self._check_length(len(x) + 1, f"prompts[{i}] plus one new token")
            ids.append(x)
        return self._generate_ids(ids, params, on_token, kind="generate",
                                  processor=logits_processor)

    def generate_from_embeds(
        self,
        prompt_embeds: Sequence[torch.Tensor],
        params: SamplingParams | None = None,
        *,
        on_token: OnToken | None = None,
        logits_processor: LogitsProcessor | None = None,
    ) -> list[Completion]:
        """Continue prompts given as input embeddings ``(P_i, D)`` (greedy or sampling).

        The runtime never sees what the embeddings stand for (a projected speech prefix,
        retrieved items...): build them with :meth:`embed_tokens` for the text parts.

        Raises:
            ValueError: a prompt that is not (P, D) with D the model's hidden size, is
                empty or fills the context; beam search (not supported here).
        """
        params = params or SamplingParams()
        if params.num_beams > 1:
            raise ValueError("generate_from_embeds: beam search is not supported; num_beams=1")
        embeds = [self._check_embeds(e, f"prompt_embeds[{i}]")
                  for i, e in enumerate(prompt_embeds)]
        for i, e in enumerate(embeds):
            self._check_length(e.shape[0] + 1, f"prompt_embeds[{i}] plus one new token")
        ids = [[self.pad_id] * e.shape[0] for e in embeds]  # lengths only; embeds are fed
        return self._generate_ids(ids, params, on_token, kind="generate",
                                  processor=logits_processor, prompt_embeds=embeds)

    def embed_tokens(self, ids: Sequence[int]) -> torch.Tensor:
        """The model's input embeddings ``(T, D)`` of token ids (to build embeds prompts)."""
        table = self.model.get_input_embeddings()
        with torch.no_grad():
            return table(torch.tensor(list(ids), dtype=torch.long, device=self.engine.device))

    def _check_embeds(self, e: torch.Tensor, what: str) -> torch.Tensor:
        d = self.model.config.get_text_config(decoder=True).hidden_size
        if not isinstance(e, torch.Tensor) or e.ndim != 2 or e.shape[1] != d or not len(e):
            shape = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
            raise ValueError(f"{what} must be a non-empty (P, {d}) tensor, got {shape}")
        if not torch.isfinite(e).all():
            raise ValueError(f"{what} has NaN or infinite values")
        p = next(self.model.parameters())
        return e.to(device=p.device, dtype=p.dtype)

    def chat(
        self,
        messages: list[dict[str, str]],
        params: SamplingParams | None = None,
        *,
        on_token: OnToken | None = None,
    ) -> Completion:
        """Answer ``messages`` using the tokenizer's chat template.

        Raises:
            ValueError: the tokenizer has no chat template, or a message lacks role/content.
        """
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise ValueError("this tokenizer has no chat_template; use generate() with a prompt")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(f"messages[{i}] needs 'role' and 'content', got {m!r}")
        text = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        # Templates write their own BOS and special tokens; do not add them twice.
        ids = self._encode(text, special=False)
        if not ids:
            raise ValueError("the chat template produced an empty prompt")
        self._check_length(len(ids) + 1, "chat prompt plus one new token")
        return self._generate_ids([ids], params or SamplingParams(), on_token, kind="chat")[0]

    def hidden_states(
        self,
        texts: Sequence[str],
        layer: int,
        *,
        batch_size: int = 16,
        prefix_embeds: Sequence[torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """Hidden states of one layer, e.g. kNN-LM keys.

        Args:
            texts: tokenized *with* special tokens (as ``tokenizer(text)``).
            layer: 0 = embedding output, ``num_hidden_layers`` = last layer (after the
                final norm, as transformers returns it); negative counts from the end.
            prefix_embeds: one ``(P_i, D)`` tensor per text, run before it; the text is
                then tokenized *without* special tokens, and the states returned are the
                prefix's last position followed by the text's (``(1 + T_i, D)``).

        Returns:
            One float32 CPU tensor ``(T_i, D)`` per text; row t is the state at token t,
            i.e. the one that predicts token t+1.
        """
        n_layers = self.model.config.get_text_config(decoder=True).num_hidden_layers
        if not -(n_layers + 1) <= layer <= n_layers:
            raise ValueError(f"layer must be in [-{n_layers + 1}, {n_layers}], got {layer}")
        seqs = []
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"texts[{i}] is empty")
            ids = self._encode(text, special=prefix_embeds is None)
            extra = 0
            if prefix_embeds is not None:
                extra = self._check_embeds(prefix_embeds[i], f"prefix_embeds[{i}]").shape[0]
            self._check_length(extra + len(ids), f"texts[{i}]")
            seqs.append(ids)
        if prefix_embeds is not None:
            if len(prefix_embeds) != len(seqs):
                raise ValueError(f"{len(prefix_embeds)} prefix_embeds for {len(seqs)} texts")
            prefix_embeds = [self._check_embeds(e, "prefix_embeds") for e in prefix_embeds]
        stats = CallStats()
        with self._call("hidden_states", stats, len(seqs)):
            return hidden_states_of(
                self.engine, seqs, layer, batch_size=batch_size, pad_id=self.pad_id, stats=stats,
                prefix_embeds=prefix_embeds,
            )

    # ---- internals ----------------------------------------------------------------------
    def _generate_ids(
        self,
        ids: list[list[int]],
        params: SamplingParams,
        on_token: OnToken | None,
        kind: str,
        processor: LogitsProcessor | None = None,
        prompt_embeds: list[torch.Tensor] | None = None,
    ) -> list[Completion]:
        max_new = [min(params.max_tokens, self.max_length - len(x)) for x in ids]
        decode = self._decode
        stats = CallStats()
        with self._call(kind, stats, len(ids)):
            if params.num_beams > 1:
                if processor is not None:
                    raise ValueError("logits processors (kNN-LM) work with greedy/sampling, "
                                     "not beam search")
                out = []
                for i, x in enumerate(ids):
                    res = beam_search(
                        self.engine,
                        x,
                        num_beams=params.num_beams,
                        max_new=max_new[i],
                        eos_ids=self.eos_ids,
                        stats=stats,
                    )
                    stream = TextStream(decode, params.stop, _bind(on_token, i))
                    reason = res.finish_reason
                    kept = []
                    for tok in res.token_ids:
                        kept.append(tok)
                        if stream.push(tok):
                            reason = "stop"
                            break
                    stream.flush()
                    out.append((kept, res.logprob if reason != "stop" else None, reason, stream))
                return [
                    self._completion(k, lp, r, s, x)
                    for (k, lp, r, s), x in zip(out, ids, strict=True)
                ]
            streams = [TextStream(decode, params.stop, _bind(on_token, i)) for i in range(len(ids))]
            rows = sample_loop(
                self.engine,
                ids,
                params,
                max_new=max_new,
                eos_ids=set(self.eos_ids),
                streams=streams,
                pad_id=self.pad_id,
                stats=stats,
                processor=processor,
                prompt_embeds=prompt_embeds,
            )
        return [
            Completion(
                text=s.text,
                token_ids=r.token_ids,
                logprob=float(sum(r.logprobs)),
                finish_reason=r.finish_reason,
            )
            for r, s in zip(rows, streams, strict=True)
        ]

    def _completion(
        self,
        kept: list[int],
        logprob: float | None,
        reason: str,
        stream: TextStream,
        prompt: list[int],
    ) -> Completion:
        if logprob is None:  # beam cut by a stop string: sum the kept tokens' log-probs
            logprob = self._sum_logprob(prompt, kept)
        return Completion(
            text=stream.text, token_ids=kept, logprob=float(logprob), finish_reason=reason
        )

    def _sum_logprob(self, prompt: list[int], tokens: list[int]) -> float:
        stats = CallStats()
        vals = score_sequences(
            self.engine,
            prompt,
            [tokens],
            eos_id=None,
            batch_size=1,
            pad_id=self.pad_id,
            stats=stats,
        )
        return float(sum(vals[0]))

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def _call(self, kind: str, stats: CallStats, n: int) -> _CallRecorder:
        return _CallRecorder(self, kind, stats, n)


def _bind(on_token: OnToken | None, index: int):
    if on_token is None:
        return None
    return lambda token_id, piece: on_token(index, token_id, piece)


class _CallRecorder:
    """Context manager around one public call: energy window, peak memory, metrics record."""

    def __init__(self, llm: LLM, kind: str, stats: CallStats, n: int) -> None:
        self.llm, self.kind, self.stats, self.n = llm, kind, stats, n

    def __enter__(self) -> _CallRecorder:
        # One call at a time per model: the attention backend's bound cache, the energy
        # window and the governor's step trace are per-model state.
        self.llm._lock.acquire()
        self.cuda = self.llm.engine.device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.llm.engine.device)
        self.llm._meter.begin()
        self.start = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._record(exc_type is None)
        finally:
            self.llm._lock.release()

    def _record(self, ok: bool) -> None:
        energy = self.llm._meter.end()
        if not ok:
            return
        if self.cuda:
            peak = int(torch.cuda.max_memory_allocated(self.llm.engine.device))
        else:  # Linux reports KiB: the process's lifetime peak resident set
            peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        s = self.stats
        self.llm.metrics.record(
            CallRecord(
                kind=self.kind,
                prompt_tokens=s.prompt_tokens,
                generated_tokens=s.generated_tokens,
                prefill_s=s.prefill_s,
                decode_s=s.decode_s,
                peak_memory_bytes=peak,
                kv_cache_bytes=s.kv_cache_bytes,
                energy_j=energy,
                batch_size=s.batch_size,
                num_sequences=self.n,
            )
        )
