"""Offload baselines Fiddler is measured against, in the same harness.

* ``LRUExecutor`` (``"lru_experts"``): every activated expert runs on the device; a
  missing one is copied into an LRU cache of expert slots first (the Mixtral-offloading
  approach, Eliseev & Mazur 2023, without its speculative prefetch). The cache has as
  many slots as Fiddler's budget gives resident experts + staging slots, and starts
  holding Fiddler's resident experts, so both start from the same memory.
* ``CPUExecutor`` (``"cpu_experts"``): every expert runs on the CPU (with
  ``device="cpu"``: all-CPU inference through the same CPU kernel as Fiddler).
* ``apply_accelerate_offload``: transformers/accelerate ``device_map`` offload: whole
  decoder layers that do not fit the budget stay in CPU memory and accelerate's hooks
  copy their weights to the GPU at every forward.
"""

from __future__ import annotations

import collections
from typing import Any, ClassVar

import torch

from speechlm.runtime.moe.offload import CPUExperts, OffloadConfig, OffloadExecutor, Routing, _Layer
from speechlm.runtime.moe.placement import GB, Placement


class LRUExecutor(OffloadExecutor):
    """On-demand weight copies into an LRU cache of device expert slots."""

    name: ClassVar[str] = "lru_experts"

    def __init__(self, placement: Placement, config: OffloadConfig) -> None:
        super().__init__(placement, config)
        self.capacity = placement.num_resident() + placement.staging_slots
        # (layer, expert) -> slot index; least recently used first
        self.cache: collections.OrderedDict[tuple[int, int], int] = collections.OrderedDict()
        self._slots: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.hits = self.misses = 0

    def attach(self, experts: torch.nn.Module, layer_idx: int) -> None:
        if layer_idx in self.layers and self.layers[layer_idx].module is experts:
            return
        if self.cuda and self.config.pin_memory:
            for p in (experts.gate_up_proj, experts.down_proj):
                if not p.data.is_pinned():
                    p.data = p.data.pin_memory()
        self.layers[layer_idx] = _Layer(experts, CPUExperts(experts, "plain"))
        gu, dn = experts.gate_up_proj.data[0], experts.down_proj.data[0]
        while len(self._slots) < self.capacity:
            self._slots.append(
                (torch.empty_like(gu, device=self.device), torch.empty_like(dn, device=self.device))
            )
        # start from the placement's resident experts, most popular last (= most recent)
        resident = (
            self.placement.resident[layer_idx] if layer_idx < len(self.placement.resident) else ()
        )
        pop = self.placement.popularity[layer_idx] if resident else ()
        for e in sorted(resident, key=lambda e: pop[e]):
            if len(self.cache) < self.capacity:
                self._load(layer_idx, e)

    def device_bytes(self) -> int:
        return self.placement.expert_bytes * len(self._slots)

    def _load(self, layer_idx: int, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.cache) < self.capacity:
            slot = len(self.cache)
        else:
            _, slot = self.cache.popitem(last=False)  # evict the least recently used
        m = self.layers[layer_idx].module
        gu, dn = self._slots[slot]
        # same stream as the compute that reads (and later evicts) the slot: ordered
        gu.copy_(m.gate_up_proj.data[e], non_blocking=True)
        dn.copy_(m.down_proj.data[e], non_blocking=True)
        self.cache[(layer_idx, e)] = slot
        return gu, dn

    def __call__(self, experts, hidden_states, top_k_index, top_k_weights, *, layer_idx):
        layer = self.layers[layer_idx]
        routing = Routing.of(top_k_index, top_k_weights, experts.gate_up_proj.shape[0])
        out = torch.zeros_like(hidden_states)
        self.stats.steps += 1
        for e, n in enumerate(routing.counts):
            if n == 0:
                continue
            key = (layer_idx, e)
            if key in self.cache:
                self.hits += 1
                self.cache.move_to_end(key)
                gu, dn = self._slots[self.cache[key]]
            else:
                self.misses += 1
                gu, dn = self._load(layer_idx, e)
            self.stats.device += 1
            # one expert at a time: a slot evicted later in this block is already used
            self._add_expert(out, hidden_states, routing, e, gu, dn, layer.module.act_fn)
        return out


class CPUExecutor(OffloadExecutor):
    """Every activated expert runs on the CPU (the all-CPU baseline with ``device="cpu"``)."""

    name: ClassVar[str] = "cpu_experts"

    def __init__(self, placement: Placement, config: OffloadConfig) -> None:
        super().__init__(placement, config)

    def attach(self, experts: torch.nn.Module, layer_idx: int) -> None:
        if layer_idx in self.layers and self.layers[layer_idx].module is experts:
            return
        every = range(experts.gate_up_proj.shape[0])
        self.layers[layer_idx] = _Layer(experts, CPUExperts(experts, self.config.cpu_layout, every))

    def device_bytes(self) -> int:
        return 0

    def __call__(self, experts, hidden_states, top_k_index, top_k_weights, *, layer_idx):
        layer = self.layers[layer_idx]
        routing = Routing.of(top_k_index, top_k_weights, experts.gate_up_proj.shape[0])
        cpu = [e for e, n in enumerate(routing.counts) if n]
        return self.run(layer, hidden_states, routing, {}, [], cpu)


def apply_accelerate_offload(
    model: torch.nn.Module, gpu_memory_gb: float, device: str | torch.device = "cuda"
) -> dict[str, Any]:
    """Dispatch a CPU-loaded model with accelerate: what fits ``gpu_memory_gb`` on the GPU,
    the rest offloaded to CPU memory and copied in per forward. Returns the device map.

    Raises:
        ValueError: a negative budget.
    """
    from accelerate import dispatch_model, infer_auto_device_map

    if gpu_memory_gb < 0:
        raise ValueError(f"gpu_memory_gb must be >= 0, got {gpu_memory_gb}")
    dev = torch.device(device)
    index = dev.index if dev.index is not None else 0
    no_split = getattr(model, "_no_split_modules", None) or []
    device_map = infer_auto_device_map(
        model,
        max_memory={index: int(gpu_memory_gb * GB), "cpu": 1 << 50},
        no_split_module_classes=list(no_split),
    )
    if not set(device_map.values()) - {"cpu", "disk"}:
        # accelerate would then run the whole model on the CPU: not the offload baseline
        raise ValueError(
            f"gpu_memory_gb={gpu_memory_gb:g} puts no module on {dev}: accelerate keeps the "
            "largest decoder layer's size free there for the offloaded layers; give more"
        )
    dispatch_model(model, device_map=device_map, main_device=index)
    return device_map


__all__ = ["CPUExecutor", "LRUExecutor", "apply_accelerate_offload"]
