"""Fiddler: popular experts on the GPU, the others run on the CPU or are copied over,
whichever a latency model measured on this machine says is faster.

After Kamahori et al., "Fiddler: CPU-GPU Orchestration for Fast Inference of
Mixture-of-Experts Models" (arXiv 2402.07033). Their prototype (efeslab/fiddler) runs
Mixtral-8x7B in bf16 at batch 1 with hard-coded cost constants; this is our own
executor for any transformers sparse-MoE block (Mixtral, Qwen2-MoE, Qwen3-MoE, ...), at
any batch size, with costs measured at start-up (``latency.measure_latency``).

Per MoE block and step, for each activated expert: resident -> device; otherwise the
latency model picks ``cpu`` (few tokens: decode) or ``copy`` (many tokens: prefill).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from speechlm.runtime.moe.latency import LatencyModel, measure_latency
from speechlm.runtime.moe.offload import OffloadConfig, OffloadExecutor, Routing, expert_forward
from speechlm.runtime.moe.placement import Placement


class FiddlerExecutor(OffloadExecutor):
    """The Fiddler expert executor.

    Args:
        placement: resident experts (``plan_placement``).
        config: ``OffloadConfig``.
        latency: a ready latency model; None = measure it in ``prepare`` on one real
            expert of the model (tests inject one to pin the decisions).
    """

    name: ClassVar[str] = "fiddler"

    def __init__(
        self, placement: Placement, config: OffloadConfig, latency: LatencyModel | None = None
    ) -> None:
        super().__init__(placement, config)
        self.latency = latency

    def prepare(self) -> None:
        if self.latency is None:
            self.latency = self.measure()

    def measure(self) -> LatencyModel:
        """Time the CPU path, the device path and a weight copy on one offloaded expert."""
        layer_idx, e = self._probe_expert()
        layer = self.layers[layer_idx]
        m = layer.module
        layer.cpu.pack(e)  # the CPU path as it will run (packed when configured)
        gu, dn = self.copy_in(layer, e, 0)
        if self.cuda:
            torch.cuda.synchronize(self.device)

        def copy() -> None:
            self.copy_in(layer, e, 0)
            if self.cuda:  # the slot is "free" again once the copy is done
                self._free[0].record(self._copy_stream)

        return measure_latency(
            cpu_expert=lambda x: layer.cpu(e, x),
            device_expert=lambda x: expert_forward(x, gu, dn, m.act_fn),
            copy_in=copy,
            hidden_size=m.gate_up_proj.shape[2],
            dtype=m.gate_up_proj.dtype,
            device=self.device,
            expert_bytes=self.placement.expert_bytes,
            tokens=self.config.latency_tokens,
            repeats=self.config.latency_repeats,
        )

    def _probe_expert(self) -> tuple[int, int]:
        for layer_idx, layer in sorted(self.layers.items()):
            for e in range(layer.module.gate_up_proj.shape[0]):
                if e not in layer.resident:
                    return layer_idx, e
        return min(self.layers), 0  # all resident: the model is never consulted

    def plan(self, layer_idx: int, counts: list[int]) -> dict[int, str]:
        """``expert -> "device" | "cpu" | "copy"`` for every activated expert of a block."""
        layer = self.layers[layer_idx]
        where = {}
        for e, n in enumerate(counts):
            if n == 0:
                continue
            if e in layer.resident:
                where[e] = "device"
            elif self.latency is None:
                raise RuntimeError("FiddlerExecutor has no latency model: call prepare()")
            else:
                where[e] = self.latency.choose(n)
        return where

    def __call__(self, experts, hidden_states, top_k_index, top_k_weights, *, layer_idx):
        layer = self.layers[layer_idx]
        routing = Routing.of(top_k_index, top_k_weights, experts.gate_up_proj.shape[0])
        where = self.plan(layer_idx, routing.counts)
        device = {e: layer.resident[e] for e, w in where.items() if w == "device"}
        copy = [e for e, w in where.items() if w == "copy"]
        cpu = [e for e, w in where.items() if w == "cpu"]
        return self.run(layer, hidden_states, routing, device, copy, cpu)


__all__ = ["FiddlerExecutor"]
