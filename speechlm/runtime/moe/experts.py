"""The MoE expert-executor hook, applied to a built model from outside (like gpt-fast's
``apply_*`` functions).

transformers' sparse-MoE blocks (Mixtral, Qwen2-MoE, ...) route tokens in a router and
call an ``experts`` module ``experts(hidden_states, top_k_index, top_k_weights)`` whose
weights are 3D tensors ``gate_up_proj (E, 2I, D)`` and ``down_proj (E, D, I)``.
``apply_moe_executor(model, executor)`` swaps that module's ``forward`` for the
executor, so a later executor can keep experts on the CPU, stream them to the GPU, or
cache the hot ones, with no model code forked and the state dict unchanged.
"""

from __future__ import annotations

import abc
import re
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

_ORIGINAL = "_speechlm_original_forward"
_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.")


class ExpertExecutor(abc.ABC):
    """Computes the routed experts' output of one MoE block.

    ``__call__`` receives the model's experts module (for its weights and activation),
    ``hidden_states (N, D)`` (N = tokens in the batch), ``top_k_index (N, K)`` and
    ``top_k_weights (N, K)`` from the router, and the decoder layer index; it returns the
    weighted sum of the chosen experts' outputs, ``(N, D)``.
    """

    name: ClassVar[str]

    def validate(self, experts: torch.nn.Module) -> list[str]:
        """Reasons this executor cannot run ``experts`` (empty list = fine)."""
        return []

    def attach(self, experts: torch.nn.Module, layer_idx: int) -> None:  # noqa: B027
        """Called once per experts module when applied (e.g. to move weights)."""

    @abc.abstractmethod
    def __call__(
        self,
        experts: torch.nn.Module,
        hidden_states: torch.Tensor,
        top_k_index: torch.Tensor,
        top_k_weights: torch.Tensor,
        *,
        layer_idx: int,
    ) -> torch.Tensor: ...


class TransformersExecutor(ExpertExecutor):
    """Reference no-op: calls the experts module's own forward (bit-equal to no hook)."""

    name: ClassVar[str] = "transformers"

    def __call__(self, experts, hidden_states, top_k_index, top_k_weights, *, layer_idx):
        return getattr(experts, _ORIGINAL)(hidden_states, top_k_index, top_k_weights)


class LoopExecutor(ExpertExecutor):
    """Plain per-expert loop over the weights: the readable spec offload executors match.

    For each expert e hit by some token: ``y = down_e(act(gate_e x) * up_e x)``, weighted
    by the router weight of (token, e) and summed per token.
    """

    name: ClassVar[str] = "loop"

    def validate(self, experts: torch.nn.Module) -> list[str]:
        reasons = []
        for attr in ("gate_up_proj", "down_proj", "act_fn"):
            if not hasattr(experts, attr):
                reasons.append(f"{type(experts).__name__} has no {attr}")
        if getattr(experts, "has_bias", False):
            reasons.append("expert biases are not supported")
        if getattr(experts, "is_transposed", False) or not getattr(
            experts, "is_concatenated", True
        ):
            reasons.append("only the concatenated, non-transposed [gate; up] layout is supported")
        if not getattr(experts, "has_gate", True):
            reasons.append("experts without a gate projection are not supported")
        return reasons

    def __call__(self, experts, hidden_states, top_k_index, top_k_weights, *, layer_idx):
        out = torch.zeros_like(hidden_states)  # (N, D)
        for e in torch.unique(top_k_index).tolist():
            if e >= experts.gate_up_proj.shape[0]:
                continue  # transformers marks dropped slots with index E (capacity overflow)
            token_idx, slot = torch.where(top_k_index == e)
            x = hidden_states[token_idx]  # (n_e, D)
            gate, up = F.linear(x, experts.gate_up_proj[e]).chunk(2, dim=-1)  # (n_e, I) each
            y = F.linear(experts.act_fn(gate) * up, experts.down_proj[e])  # (n_e, D)
            y = y * top_k_weights[token_idx, slot, None]
            out.index_add_(0, token_idx, y.to(out.dtype))
        return out


def find_expert_modules(model: torch.nn.Module) -> list[tuple[int, str, torch.nn.Module]]:
    """``(layer_idx, qualified_name, module)`` of every experts module with 3D weights."""
    found = []
    for qname, module in model.named_modules():
        w = getattr(module, "gate_up_proj", None)
        if not (
            isinstance(w, torch.nn.Parameter) and w.dim() == 3 and hasattr(module, "down_proj")
        ):
            continue
        m = _LAYER_RE.search(qname + ".")
        if m is None:
            raise ValueError(f"cannot tell the decoder layer of experts module {qname!r}")
        found.append((int(m.group(1)), qname, module))
    return found


def apply_moe_executor(model: torch.nn.Module, executor: ExpertExecutor) -> int:
    """Route every experts module of ``model`` through ``executor``.

    Returns:
        The number of experts modules hooked (0 for a dense model).

    Raises:
        ValueError: when the executor gives reasons it cannot run a module.
    """
    remove_moe_executor(model)
    modules = find_expert_modules(model)
    for _, qname, module in modules:
        reasons = executor.validate(module)
        if reasons:
            raise ValueError(
                f"moe executor {executor.name!r} cannot run {qname}: " + "; ".join(reasons)
            )
    for layer_idx, _, module in modules:
        original = module.forward
        setattr(module, _ORIGINAL, original)
        executor.attach(module, layer_idx)

        def forward(
            hidden_states, top_k_index, top_k_weights, *, _m=module, _i=layer_idx, **kw: Any
        ):
            return executor(_m, hidden_states, top_k_index, top_k_weights, layer_idx=_i)

        module.forward = forward  # instance attribute: nn.Module.__call__ picks it up
    return len(modules)


def remove_moe_executor(model: torch.nn.Module) -> None:
    """Undo ``apply_moe_executor`` (restore each experts module's own forward)."""
    for _, _, module in find_expert_modules(model):
        if hasattr(module, _ORIGINAL):
            del module.forward  # drop the instance attribute; the class forward shows again
            delattr(module, _ORIGINAL)
