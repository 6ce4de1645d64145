"""Expert offload: experts in (pinned) CPU memory, some on the device, run per step.

``apply_moe_offload(model, name, config)`` is the one entry point (a policy attached to a
built model, like gpt-fast's ``apply_tp``): on a model loaded in CPU memory it measures
expert popularity on a calibration text, plans a ``Placement`` in the device budget,
moves the non-expert weights to the device and routes every experts module through the
offload executor registered as ``name`` (``"fiddler"``, ``"lru_experts"``,
``"cpu_experts"``). No model code is forked and the state dict keeps its keys; the
experts' 3D parameters stay in CPU memory and are what the CPU path reads and the copy
path copies from.

``OffloadExecutor`` holds what the executors share: the resident experts' device copies,
the CPU kernel, the device staging slots for weights copied on demand, and ``run`` which
executes one MoE block given, per activated expert, where it runs:

* ``device``: weights already on the device (resident or cached);
* ``copy``: weights copied into a staging slot, then run on the device; copies go on a
  side CUDA stream, ``staging_slots`` ahead, so copy j+1 overlaps compute j;
* ``cpu``: the tokens' activations go to the CPU, the expert runs there, the result
  comes back. The device work of the block is queued first, so it overlaps the CPU
  experts also on the caller's thread (kernel launches are asynchronous).

With ``device="cpu"`` the same code runs with the CPU as "device" (copies are memcpys,
nothing overlaps): how it is tested on machines without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from speechlm.runtime.moe.experts import (
    ExpertExecutor,
    LoopExecutor,
    apply_moe_executor,
    find_expert_modules,
)
from speechlm.runtime.moe.placement import (
    DEFAULT_CALIBRATION_TEXT,
    GB,
    ModelSizes,
    Placement,
    measure_popularity,
    move_non_experts,
    plan_placement,
)

CPU_LAYOUTS = ("plain", "packed")


@dataclass(frozen=True)
class OffloadConfig:
    """Settings of an expert-offload executor.

    Args:
        gpu_memory_gb: device memory budget (decimal GB) for non-expert weights, resident
            experts, staging slots and ``reserve_gb``.
        device: compute device (``"cuda"``, ``"cuda:1"``, or ``"cpu"`` to run the same
            code path without a GPU).
        reserve_gb: kept free in the budget for activations and the KV cache.
        staging_slots: device buffers, one expert each, for weights copied on demand
            (2 = double buffering).
        pin_memory: pin the CPU expert weights (CUDA only) so copies are asynchronous.
        cpu_layout: ``"plain"`` runs CPU experts with ``F.linear`` on the model's own
            weights; ``"packed"`` also keeps oneDNN-packed copies of the offloaded experts
            (faster CPU GEMV on x86, at the price of a second copy of those experts in RAM).
        overlap: run CPU experts in a worker thread while the device runs the others
            (default off). Measured on one H200 machine (16 cores, 4 layers of Mixtral-8x7B
            shapes, ``tools/bench/moe_offload.py``), the worker made decode 2.1x slower
            at batch 1 than the caller's thread, which overlaps the device anyway.
        cpu_threads: torch threads of the CPU experts (None: torch's setting when the
            executor is built, by default one per physical core), set when the executor
            is built (and in the worker, with ``overlap``). torch keeps one process-wide
            count, so a value here also applies to the caller's other work.
        latency_tokens, latency_repeats: where and how often the start-up latency
            measurement times each path.
        calibration_text: text whose routing decides popularity (None: a built-in
            English paragraph).
        placement_path: JSON file; loaded when it exists (re-planned from its stored
            popularity when the budget changed), written otherwise.

    >>> OffloadConfig(gpu_memory_gb=24).staging_slots
    2
    >>> OffloadConfig(gpu_memory_gb=-1)
    Traceback (most recent call last):
    ...
    ValueError: gpu_memory_gb must be >= 0, got -1
    """

    gpu_memory_gb: float
    device: str = "cuda"
    reserve_gb: float = 0.0
    staging_slots: int = 2
    pin_memory: bool = True
    cpu_layout: str = "plain"
    overlap: bool = False
    cpu_threads: int | None = None
    latency_tokens: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    latency_repeats: int = 3
    calibration_text: str | None = None
    placement_path: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.gpu_memory_gb, (int, float)) or not self.gpu_memory_gb >= 0:
            raise ValueError(f"gpu_memory_gb must be >= 0, got {self.gpu_memory_gb}")
        if not self.reserve_gb >= 0:
            raise ValueError(f"reserve_gb must be >= 0, got {self.reserve_gb}")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"cpu_threads must be >= 1, got {self.cpu_threads}")
        if self.staging_slots < 1:
            raise ValueError(f"staging_slots must be >= 1, got {self.staging_slots}")
        if self.cpu_layout not in CPU_LAYOUTS:
            raise ValueError(f"cpu_layout must be one of {CPU_LAYOUTS}, got {self.cpu_layout!r}")
        if not self.latency_tokens or min(self.latency_tokens) < 1 or self.latency_repeats < 1:
            raise ValueError("latency_tokens must be counts >= 1 and latency_repeats >= 1")
        object.__setattr__(self, "latency_tokens", tuple(self.latency_tokens))
        torch.device(self.device)  # raises on a malformed device string

    @property
    def budget_bytes(self) -> int:
        return round(self.gpu_memory_gb * GB)

    @property
    def reserve_bytes(self) -> int:
        return round(self.reserve_gb * GB)


def expert_forward(
    x: torch.Tensor,  # (n, D)
    gate_up: Any,  # (2I, D), or a oneDNN-packed weight when linear says so
    down: Any,  # (D, I)
    act: Callable[[torch.Tensor], torch.Tensor],
    linear: Callable[..., torch.Tensor] = F.linear,
) -> torch.Tensor:
    """``down(act(gate x) * up x)`` for one expert: ``(n, D)``."""
    gate, up = linear(x, gate_up).chunk(2, dim=-1)  # (n, I) each
    return linear(act(gate) * up, down)


def _packed_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")


def packed_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(
        torch.ops.mkldnn, "_reorder_linear_weight"
    )


class CPUExperts:
    """One layer's experts as the CPU path reads them.

    ``plain``: views of the module's own (pinned) ``gate_up_proj[e]``/``down_proj[e]``.
    ``packed``: oneDNN-packed copies of the experts in ``packed`` (the plain GEMV of
    torch's bf16 ``F.linear`` reads memory at about half the rate of the packed one on
    AVX-512 CPUs, measured in ``tools/bench/moe_offload.py``).
    """

    def __init__(self, module: torch.nn.Module, layout: str, packed: Sequence[int] = ()) -> None:
        self.module, self.layout = module, layout
        self._packed: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if layout == "packed":
            for e in packed:
                self.pack(e)

    def pack(self, e: int) -> None:
        if self.layout == "packed" and e not in self._packed:
            m = self.module
            self._packed[e] = (
                torch.ops.mkldnn._reorder_linear_weight(m.gate_up_proj.data[e], 1),
                torch.ops.mkldnn._reorder_linear_weight(m.down_proj.data[e], 1),
            )

    def __call__(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert ``e`` on CPU activations ``x (n, D)`` -> ``(n, D)``."""
        m = self.module
        if e in self._packed:
            gu, dn = self._packed[e]
            return expert_forward(x, gu, dn, m.act_fn, _packed_linear)
        return expert_forward(x, m.gate_up_proj.data[e], m.down_proj.data[e], m.act_fn)


@dataclass
class Routing:
    """One block's routing, grouped by expert (one device->host sync, for the counts).

    ``order`` lists flat ``(token, slot)`` positions sorted by expert; expert e owns
    ``order[offsets[e]:offsets[e] + counts[e]]``; the token of position p is ``p // K``.
    """

    counts: list[int]  # tokens per expert, on the host
    order: torch.Tensor  # (N*K,) on the routing's device
    offsets: list[int]
    k: int
    weights: torch.Tensor  # (N*K,) router weights

    @classmethod
    def of(cls, top_k_index: torch.Tensor, top_k_weights: torch.Tensor, n_experts: int) -> Routing:
        flat = top_k_index.flatten()  # (N*K,); value n_experts marks a dropped slot
        counts = torch.bincount(flat, minlength=n_experts + 1)[:n_experts].tolist()
        offsets = [0]
        for c in counts:
            offsets.append(offsets[-1] + c)
        order = torch.argsort(flat, stable=True)
        return cls(counts, order, offsets, top_k_index.shape[1], top_k_weights.flatten())

    def tokens_of(self, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(token index (n_e,), router weight (n_e,))`` of expert ``e``."""
        pos = self.order[self.offsets[e] : self.offsets[e + 1]]
        return pos // self.k, self.weights[pos]

    def to(self, device: torch.device) -> Routing:
        return Routing(
            self.counts, self.order.to(device), self.offsets, self.k, self.weights.to(device)
        )


@dataclass
class _Layer:
    module: torch.nn.Module
    cpu: CPUExperts
    resident: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


@dataclass
class OffloadStats:
    """Where activated experts ran, counted per (layer, expert) activation."""

    device: int = 0
    copy: int = 0
    cpu: int = 0
    steps: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"device": self.device, "copy": self.copy, "cpu": self.cpu, "steps": self.steps}


class OffloadExecutor(ExpertExecutor):
    """Shared machinery of the offload executors (see the module docstring).

    Args:
        placement: which experts are kept on the device.
        config: the offload settings.
    """

    name: ClassVar[str] = "offload"

    def __init__(self, placement: Placement, config: OffloadConfig) -> None:
        self.placement, self.config = placement, config
        self.device = torch.device(config.device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.cuda = self.device.type == "cuda"
        self.layers: dict[int, _Layer] = {}
        self.stats = OffloadStats()
        self._staging: list[tuple[torch.Tensor, torch.Tensor]] = []
        overlap = config.overlap
        threads = config.cpu_threads or torch.get_num_threads()
        if config.cpu_threads is not None and not overlap:  # the CPU experts run here
            torch.set_num_threads(config.cpu_threads)
        self._pool = (
            # the worker sets its own thread count: OpenMP's is per calling thread
            ThreadPoolExecutor(
                1, "cpu_experts", initializer=torch.set_num_threads, initargs=(threads,)
            )
            if overlap
            else None
        )
        if self.cuda:
            self._copy_stream = torch.cuda.Stream(self.device)
            n = config.staging_slots
            self._ready = [torch.cuda.Event() for _ in range(n)]
            self._free = [torch.cuda.Event() for _ in range(n)]

    # ---- set-up -------------------------------------------------------------------------
    def validate(self, experts: torch.nn.Module) -> list[str]:
        reasons = LoopExecutor().validate(experts)
        w = getattr(experts, "gate_up_proj", None)
        if w is not None and w.device.type != "cpu":
            reasons.append(
                f"expert weights are on {w.device}, not in CPU memory: load the model on the "
                "CPU and let the offload move the rest"
            )
        if self.config.cpu_layout == "packed" and not packed_available():
            reasons.append("cpu_layout='packed' needs torch built with oneDNN (mkldnn)")
        return reasons

    def attach(self, experts: torch.nn.Module, layer_idx: int) -> None:
        layer = self.layers.get(layer_idx)
        if layer is not None and layer.module is experts:
            return  # applied again (e.g. by LLM after apply_moe_offload): keep the state
        if self.cuda and self.config.pin_memory:
            for p in (experts.gate_up_proj, experts.down_proj):
                if not p.data.is_pinned():
                    p.data = p.data.pin_memory()
        resident = (
            self.placement.resident[layer_idx] if layer_idx < len(self.placement.resident) else ()
        )
        n_experts = experts.gate_up_proj.shape[0]
        offloaded = [e for e in range(n_experts) if e not in resident]
        layer = _Layer(experts, CPUExperts(experts, self.config.cpu_layout, offloaded))
        for e in resident:
            # on a CPU "device" these are views (no copy): resident = the plain kernel
            layer.resident[e] = (
                experts.gate_up_proj.data[e].to(self.device),
                experts.down_proj.data[e].to(self.device),
            )
        self.layers[layer_idx] = layer
        if not self._staging:
            gu, dn = experts.gate_up_proj.data[0], experts.down_proj.data[0]
            self._staging = [
                (torch.empty_like(gu, device=self.device), torch.empty_like(dn, device=self.device))
                for _ in range(self.config.staging_slots)
            ]

    def prepare(self) -> None:
        """Called once by ``apply_moe_offload`` after every module is attached."""

    def device_bytes(self) -> int:
        """Bytes this executor holds on the device (resident experts + staging slots)."""
        if not self.layers:
            return 0
        per = self.placement.expert_bytes
        return per * (sum(len(la.resident) for la in self.layers.values()) + len(self._staging))

    # ---- one MoE block -----------------------------------------------------------------
    def copy_in(self, layer: _Layer, e: int, slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Copy expert ``e``'s weights into staging ``slot`` (side stream on CUDA)."""
        gu, dn = self._staging[slot]
        src_gu, src_dn = layer.module.gate_up_proj.data[e], layer.module.down_proj.data[e]
        if self.cuda:
            with torch.cuda.stream(self._copy_stream):
                self._copy_stream.wait_event(self._free[slot])  # last user of the slot
                gu.copy_(src_gu, non_blocking=True)
                dn.copy_(src_dn, non_blocking=True)
                self._ready[slot].record(self._copy_stream)
        else:
            gu.copy_(src_gu)
            dn.copy_(src_dn)
        return gu, dn

    def _add_expert(self, out, hidden, routing, e, gate_up, down, act) -> None:
        tok, w = routing.tokens_of(e)  # (n_e,), (n_e,)
        y = expert_forward(hidden[tok], gate_up, down, act)  # (n_e, D)
        out.index_add_(0, tok, (y * w[:, None]).to(out.dtype))

    def _cpu_part(self, layer: _Layer, cpu: list[int], hidden, routing: Routing):
        """D2H of the tokens the CPU experts need; returns (rows on device, CPU job)."""
        host = routing.to(torch.device("cpu"))
        toks = {e: host.tokens_of(e) for e in cpu}
        rows = torch.unique(torch.cat([t for t, _ in toks.values()]))  # (R,) sorted
        rows_dev = rows.to(self.device, non_blocking=True)
        x = hidden.index_select(0, rows_dev).to("cpu")  # (R, D)

        def job() -> torch.Tensor:
            # inference mode is per thread; without it the worker would record autograd
            with torch.inference_mode():
                y = torch.zeros_like(x)  # (R, D)
                for e in cpu:
                    tok, w = toks[e]
                    local = torch.searchsorted(rows, tok)
                    ye = layer.cpu(e, x[local])  # (n_e, D)
                    y.index_add_(0, local, (ye * w[:, None]).to(y.dtype))
                return y

        return rows_dev, job

    def run(
        self,
        layer: _Layer,
        hidden: torch.Tensor,  # (N, D) on the device
        routing: Routing,
        device_weights: dict[int, tuple[torch.Tensor, torch.Tensor]],
        copy: list[int],
        cpu: list[int],
    ) -> torch.Tensor:
        """Sum of the routed experts' outputs, ``(N, D)``, each run where it was told."""
        act = layer.module.act_fn
        out = torch.zeros_like(hidden)
        self.stats.steps += 1
        self.stats.device += len(device_weights)
        self.stats.copy += len(copy)
        self.stats.cpu += len(cpu)
        pending = None
        if cpu:  # start the CPU experts first: they are the long pole at decode
            rows_dev, job = self._cpu_part(layer, cpu, hidden, routing)
            pending = self._pool.submit(job) if self._pool is not None else job
        slots = len(self._staging)
        for j in range(min(slots, len(copy))):  # copies run while resident experts compute
            self.copy_in(layer, copy[j], j)
        for e, (gu, dn) in device_weights.items():
            self._add_expert(out, hidden, routing, e, gu, dn, act)
        for j, e in enumerate(copy):
            s = j % slots
            if self.cuda:
                torch.cuda.current_stream(self.device).wait_event(self._ready[s])
            gu, dn = self._staging[s]
            self._add_expert(out, hidden, routing, e, gu, dn, act)
            if self.cuda:
                self._free[s].record(torch.cuda.current_stream(self.device))
            if j + slots < len(copy):
                self.copy_in(layer, copy[j + slots], s)
        if pending is not None:
            y = pending.result() if self._pool is not None else pending()
            out.index_add_(0, rows_dev, y.to(self.device, non_blocking=True))
        return out


def apply_moe_offload(
    model: torch.nn.Module,
    name: str,
    config: OffloadConfig,
    *,
    calibration_ids: Sequence[int] | None = None,
    placement: Placement | None = None,
    **executor_kwargs: Any,
) -> OffloadExecutor:
    """Offload the experts of a model held in CPU memory; run it on ``config.device``.

    Args:
        model: a transformers sparse-MoE causal LM, all in CPU memory.
        name: an offload executor in ``MOE_EXECUTORS`` (``fiddler``, ``lru_experts``,
            ``cpu_experts``).
        config: budget, device and the rest (``OffloadConfig``).
        calibration_ids: token ids whose routing decides popularity; needed unless
            ``placement`` is given or ``config.placement_path`` exists.
        placement: a ready placement (skips calibration).
        executor_kwargs: extra arguments of the executor class (e.g. ``latency=``).

    Returns:
        The applied executor (``executor.placement``, ``executor.stats``).

    Raises:
        ValueError: an unknown or non-offload executor, a bad budget (negative, below the
            non-expert weights), a placement for another model, or no calibration ids.
    """
    from speechlm.runtime.moe import MOE_EXECUTORS

    cls = MOE_EXECUTORS.resolve(name)
    if not (isinstance(cls, type) and issubclass(cls, OffloadExecutor)):
        raise ValueError(f"moe executor {name!r} is not an offload executor")
    sizes = ModelSizes.of(model)
    if placement is None:
        placement = _placement_for(model, sizes, config, calibration_ids)
    placement.check_model(sizes)
    if placement.budget_bytes > config.budget_bytes:
        raise ValueError(
            f"placement budget {placement.budget_bytes / GB:.3f} GB is over gpu_memory_gb="
            f"{config.gpu_memory_gb}"
        )
    executor = cls(placement, config, **executor_kwargs)
    for _, _, m in find_expert_modules(model):  # refuse before anything moves
        reasons = executor.validate(m)
        if reasons:
            raise ValueError(f"moe executor {name!r} cannot run this model: " + "; ".join(reasons))
    move_non_experts(model, executor.device)
    apply_moe_executor(model, executor)
    executor.prepare()
    return executor


def _placement_for(
    model: torch.nn.Module,
    sizes: ModelSizes,
    config: OffloadConfig,
    calibration_ids: Sequence[int] | None,
) -> Placement:
    path = Path(config.placement_path) if config.placement_path else None
    plan = dict(reserve_bytes=config.reserve_bytes, staging_slots=config.staging_slots)
    if path is not None and path.exists():
        stored = Placement.load(path)
        stored.check_model(sizes)
        if (stored.budget_bytes, stored.reserve_bytes, stored.staging_slots) == (
            config.budget_bytes,
            config.reserve_bytes,
            config.staging_slots,
        ):
            return stored
        # another budget: re-plan from the stored popularity, keeping its provenance
        pop = {i: list(p) for i, p in enumerate(stored.popularity) if p}
        fresh = plan_placement(sizes, config.budget_bytes, pop, **plan)
        return Placement(
            **{
                **fresh.__dict__,
                "calibration_tokens": stored.calibration_tokens,
                "calibration_sha256": stored.calibration_sha256,
            }
        )
    if calibration_ids is None:
        raise ValueError("calibration_ids are needed to measure expert popularity")
    # Check the budget before the (possibly long) calibration pass.
    nothing = {i: [0] * n for i, n in sizes.num_experts.items()}
    plan_placement(sizes, config.budget_bytes, nothing, **plan)
    pop = measure_popularity(model, calibration_ids)
    placement = plan_placement(
        sizes, config.budget_bytes, pop, calibration_ids=calibration_ids, **plan
    )
    if path is not None:
        placement.save(path)
    return placement


def offload_pretrained(
    model: torch.nn.Module,
    tokenizer: Any,
    name: str,
    *,
    gpu_memory_gb: float | None,
    device: torch.device | str,
    conf: dict[str, Any] | None = None,
) -> OffloadExecutor:
    """What ``LLM.from_pretrained(moe_offload=name, gpu_memory_gb=...)`` runs.

    Raises:
        ValueError: no ``gpu_memory_gb``, or any ``apply_moe_offload`` refusal.
    """
    if gpu_memory_gb is None:
        raise ValueError(f"moe_offload={name!r} needs gpu_memory_gb (the device budget in GB)")
    conf = dict(conf or {})
    latency = conf.pop("latency", None)
    config = OffloadConfig(gpu_memory_gb=gpu_memory_gb, device=str(device), **conf)
    text = config.calibration_text or DEFAULT_CALIBRATION_TEXT
    ids = list(tokenizer(text)["input_ids"])
    extra = {"latency": latency} if latency is not None else {}
    return apply_moe_offload(model, name, config, calibration_ids=ids, **extra)


__all__ = [
    "CPUExperts",
    "OffloadConfig",
    "OffloadExecutor",
    "OffloadStats",
    "Routing",
    "apply_moe_offload",
    "expert_forward",
    "offload_pretrained",
]
