"""Which experts live on the GPU: popularity on a calibration text, packed into a budget.

Fiddler (arXiv 2402.07033, section 3) keeps the non-expert weights and the most often
routed experts on the GPU and leaves the rest in CPU memory. ``plan_placement`` does that
for any transformers sparse-MoE model: it ranks every ``(layer, expert)`` by how many
calibration tokens were routed to it and takes them in that order while they fit into
``budget - non-expert weights - reserve - staging slots``. The popularity counts and a
hash of the calibration tokens are stored with the placement, so a saved placement says
what it was measured on.

>>> p = Placement(
...     resident=((0, 2), ()), popularity=((5, 0, 9, 1), (3, 3, 3, 3)), budget_bytes=100,
...     non_expert_bytes=40, expert_bytes=10, reserve_bytes=0, staging_slots=2,
...     calibration_tokens=12, calibration_sha256="")
>>> p.device_bytes(), p.is_resident(0, 2), p.is_resident(1, 2)
(80, True, False)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from speechlm.runtime.moe.experts import (
    ExpertExecutor,
    apply_moe_executor,
    find_expert_modules,
    remove_moe_executor,
)

GB = 1e9  # budgets are decimal gigabytes, like the memory figures GPU vendors print
PLACEMENT_VERSION = 1

# Used when the caller gives no calibration text: plain running English, so routing is
# measured on ordinary tokens rather than on nothing (uniform popularity).
DEFAULT_CALIBRATION_TEXT = (
    "The meeting was moved to Thursday afternoon because two of the speakers were "
    "travelling. Please send the slides by Wednesday evening, and include the numbers from "
    "the last quarter. We will start with a short review of the open questions, then "
    "discuss the budget, the hiring plan and the schedule for the next release. If you "
    "cannot attend, leave your comments in the shared document before noon."
)


def fmt_bytes(n: float) -> str:
    """``"1.23 GB"`` for messages; small sizes (tiny test models) keep their digits."""
    return f"{n / GB:.3f} GB" if abs(n) >= 1e7 else f"{n / GB:.3g} GB ({int(n)} bytes)"


@dataclass(frozen=True)
class ModelSizes:
    """Byte counts of an MoE model as the placement sees it.

    Args:
        non_expert_bytes: parameters and buffers outside the experts modules (embeddings,
            attention, norms, routers, shared experts, LM head), tied weights once.
        expert_bytes: one expert's ``gate_up_proj[e]`` + ``down_proj[e]``.
        num_experts: per MoE layer, keyed by decoder layer index.
    """

    non_expert_bytes: int
    expert_bytes: int
    num_experts: dict[int, int]

    @classmethod
    def of(cls, model: torch.nn.Module) -> ModelSizes:
        modules = find_expert_modules(model)
        if not modules:
            raise ValueError("the model has no sparse-MoE experts modules to place")
        expert_ids = set()
        num_experts, sizes = {}, set()
        for layer, _, m in modules:
            expert_ids.update({id(m.gate_up_proj), id(m.down_proj)})
            e = m.gate_up_proj.shape[0]
            num_experts[layer] = e
            sizes.add((m.gate_up_proj.nbytes + m.down_proj.nbytes) // e)
        if len(sizes) != 1:
            raise ValueError(f"experts of different sizes are not supported: {sorted(sizes)}")
        tensors = list(model.parameters()) + list(model.buffers())  # tied weights appear once
        non_expert = sum(t.nbytes for t in tensors if id(t) not in expert_ids)
        return cls(non_expert, sizes.pop(), num_experts)


@dataclass(frozen=True)
class Placement:
    """Experts kept on the compute device, with the measurements that chose them.

    Args:
        resident: per layer index (position in the tuple = decoder layer), the experts
            kept on the device.
        popularity: per layer, tokens routed to each expert on the calibration text.
        budget_bytes: the device memory budget the placement was planned for.
        non_expert_bytes, expert_bytes: model sizes (see ``ModelSizes``).
        reserve_bytes: kept free in the budget (activations, KV cache).
        staging_slots: expert-sized device buffers for weights copied on demand.
        calibration_tokens, calibration_sha256: what the popularity was measured on.
    """

    resident: tuple[tuple[int, ...], ...]
    popularity: tuple[tuple[int, ...], ...]
    budget_bytes: int
    non_expert_bytes: int
    expert_bytes: int
    reserve_bytes: int
    staging_slots: int
    calibration_tokens: int
    calibration_sha256: str

    def __post_init__(self) -> None:
        if len(self.resident) != len(self.popularity):
            raise ValueError("resident and popularity must cover the same layers")
        if self.device_bytes() > self.budget_bytes:
            raise ValueError(
                f"placement needs {fmt_bytes(self.device_bytes())} of device memory, over "
                f"its budget of {fmt_bytes(self.budget_bytes)}"
            )

    def is_resident(self, layer: int, expert: int) -> bool:
        return expert in self.resident[layer]

    def num_resident(self) -> int:
        return sum(len(r) for r in self.resident)

    def device_bytes(self) -> int:
        """Device memory this placement plans for (non-expert + resident + staging + reserve)."""
        slots = self.num_resident() + self.staging_slots
        return self.non_expert_bytes + slots * self.expert_bytes + self.reserve_bytes

    def check_model(self, sizes: ModelSizes) -> None:
        """Raise ``ValueError`` if this placement was made for a differently shaped model."""
        shape = {i: len(p) for i, p in enumerate(self.popularity) if p}
        if (sizes.expert_bytes, sizes.non_expert_bytes, sizes.num_experts) != (
            self.expert_bytes,
            self.non_expert_bytes,
            shape,
        ):
            raise ValueError(
                "placement was planned for another model (expert/non-expert bytes or expert "
                f"counts differ: {self.expert_bytes}/{self.non_expert_bytes}/{shape} vs "
                f"{sizes.expert_bytes}/{sizes.non_expert_bytes}/{sizes.num_experts})"
            )

    def save(self, path: str | Path) -> None:
        data = {"format_version": PLACEMENT_VERSION, **asdict(self)}
        Path(path).write_text(json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Placement:
        data = json.loads(Path(path).read_text())
        version = data.pop("format_version", None)
        if version != PLACEMENT_VERSION:
            raise ValueError(
                f"{path}: placement format {version}, expected {PLACEMENT_VERSION}; "
                "delete it to re-plan"
            )
        data["resident"] = tuple(tuple(r) for r in data["resident"])
        data["popularity"] = tuple(tuple(p) for p in data["popularity"])
        return cls(**data)


class _PopularityCounter(ExpertExecutor):
    """Counts routed tokens per (layer, expert), then runs the model's own experts."""

    name = "popularity"

    def __init__(self) -> None:
        self.counts: dict[int, torch.Tensor] = {}

    def __call__(self, experts, hidden_states, top_k_index, top_k_weights, *, layer_idx):
        e = experts.gate_up_proj.shape[0]
        # index e marks slots transformers dropped (capacity overflow): not routed
        hits = torch.bincount(top_k_index.flatten(), minlength=e + 1)[:e].cpu()
        self.counts[layer_idx] = self.counts.get(layer_idx, 0) + hits
        return experts._speechlm_original_forward(hidden_states, top_k_index, top_k_weights)


def measure_popularity(
    model: torch.nn.Module, input_ids: Sequence[int], *, chunk: int = 512
) -> dict[int, list[int]]:
    """Tokens routed to each expert of each MoE layer over ``input_ids``.

    The ids run through the model in chunks of ``chunk`` tokens without a cache (each
    chunk is its own short context: routing statistics, not perplexity, are wanted).
    Any executor already applied to the model is removed.

    Returns:
        ``{layer_idx: [count per expert]}``.
    """
    if len(input_ids) == 0:
        raise ValueError("calibration text is empty: nothing to measure popularity on")
    counter = _PopularityCounter()
    apply_moe_executor(model, counter)
    device = next(model.parameters()).device
    try:
        with torch.inference_mode():
            for start in range(0, len(input_ids), chunk):
                ids = torch.tensor([list(input_ids[start : start + chunk])], device=device)
                model(input_ids=ids, use_cache=False)
    finally:
        remove_moe_executor(model)
    return {layer: c.tolist() for layer, c in sorted(counter.counts.items())}


def plan_placement(
    sizes: ModelSizes,
    budget_bytes: int,
    popularity: dict[int, list[int]],
    *,
    reserve_bytes: int = 0,
    staging_slots: int = 2,
    calibration_ids: Sequence[int] = (),
) -> Placement:
    """Keep the most popular experts on the device while they fit ``budget_bytes``.

    Experts are ranked over all layers by their calibration count (ties: lower layer,
    then lower expert index first, so plans are reproducible).

    Raises:
        ValueError: a negative budget, or one below the non-expert weights + reserve +
            staging slots (nothing could run).
    """
    if budget_bytes < 0:
        raise ValueError(f"GPU memory budget must be >= 0, got {fmt_bytes(budget_bytes)}")
    if reserve_bytes < 0 or staging_slots < 0:
        raise ValueError("reserve_bytes and staging_slots must be >= 0")
    fixed = sizes.non_expert_bytes + reserve_bytes + staging_slots * sizes.expert_bytes
    if budget_bytes < fixed:
        raise ValueError(
            f"GPU memory budget {fmt_bytes(budget_bytes)} is below what must stay on the "
            f"device: non-expert weights {fmt_bytes(sizes.non_expert_bytes)} + reserve "
            f"{fmt_bytes(reserve_bytes)} + {staging_slots} staging expert slot(s) "
            f"{fmt_bytes(staging_slots * sizes.expert_bytes)} = {fmt_bytes(fixed)}"
        )
    if set(popularity) != set(sizes.num_experts):
        raise ValueError(
            f"popularity covers layers {sorted(popularity)}, the model's MoE layers are "
            f"{sorted(sizes.num_experts)}"
        )
    n_fit = (budget_bytes - fixed) // sizes.expert_bytes
    ranked = sorted(
        ((layer, e) for layer, counts in popularity.items() for e in range(len(counts))),
        key=lambda le: (-popularity[le[0]][le[1]], le[0], le[1]),
    )
    chosen = ranked[:n_fit]
    n_layers = max(sizes.num_experts) + 1
    resident = tuple(tuple(sorted(e for la, e in chosen if la == i)) for i in range(n_layers))
    pop = tuple(tuple(popularity.get(i, ())) for i in range(n_layers))
    digest = hashlib.sha256(json.dumps(list(calibration_ids)).encode()).hexdigest()
    return Placement(
        resident=resident,
        popularity=pop,
        budget_bytes=int(budget_bytes),
        non_expert_bytes=sizes.non_expert_bytes,
        expert_bytes=sizes.expert_bytes,
        reserve_bytes=int(reserve_bytes),
        staging_slots=staging_slots,
        calibration_tokens=len(calibration_ids),
        calibration_sha256=digest,
    )


def move_non_experts(model: torch.nn.Module, device: torch.device | str) -> None:
    """Move everything but the experts' 3D weights to ``device`` (they stay where they are).

    The experts' parameters are taken out of their modules while ``model.to`` runs and put
    back after, so the state dict keeps its keys and the experts stay in CPU memory.
    """
    held: list[tuple[torch.nn.Module, dict[str, Any]]] = []
    for _, _, m in find_expert_modules(model):
        held.append((m, {n: m._parameters.pop(n) for n in ("gate_up_proj", "down_proj")}))
    try:
        model.to(device)
    finally:
        for m, params in held:
            m._parameters.update(params)


__all__ = [
    "DEFAULT_CALIBRATION_TEXT",
    "GB",
    "ModelSizes",
    "Placement",
    "fmt_bytes",
    "measure_popularity",
    "move_non_experts",
    "plan_placement",
]
