"""What an attention backend is: static facts, per-model validation, a per-layer forward.

Split the way vLLM splits its backends: class attributes state what a backend can do;
``validate(config)`` returns the *reasons* it cannot serve a model (empty list = fine);
``forward`` runs per layer. Backends never fork model code: ``install(model)`` registers
the backend with transformers' ``AttentionInterface`` under a unique name, together with
a mask builder in ``AttentionMaskInterface`` (without one, transformers hands the
function ``attention_mask=None``, silently discarding causal masking), and switches the
model to it with ``model.set_attn_implementation``.

A backend sees the layer index (``module.layer_idx``) and, while the runtime has bound
its cache (``with backend.bound(cache):``), that layer's cache object
(``cache_layer(layer_idx)``): what a sparse backend needs to keep per-block key summaries
next to the keys (Quest) or to pick blocks per query (Tactic).
"""

from __future__ import annotations

import abc
import contextlib
import itertools
from collections.abc import Iterator
from typing import Any, ClassVar

import torch

_MASK_KINDS = ("sdpa", "eager", "none")
_install_ids = itertools.count()


class AttentionBackend(abc.ABC):
    """Base class of attention backends.

    Class attributes (capabilities, checked by ``validate``):
        name: registry name.
        mask: which mask the backend receives: ``"sdpa"`` (boolean ``(B, 1, Tq, Tk)`` or
            ``None`` for a plain causal prefill, like torch SDPA's ``is_causal``),
            ``"eager"`` (additive float ``(B, 1, Tq, Tk)``), or ``"none"`` (the backend
            builds its own causal/padding masking; it must then say so here).
        dtypes: supported compute dtypes.
        supports_padding: handles a 2D padding mask (batched scoring and generation).
        supports_output_attentions: can return attention weights.
    """

    name: ClassVar[str]
    mask: ClassVar[str]
    dtypes: ClassVar[tuple[torch.dtype, ...]] = (torch.float32, torch.float16, torch.bfloat16)
    supports_padding: ClassVar[bool] = True
    supports_output_attentions: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "mask", None) not in _MASK_KINDS:
            raise TypeError(
                f"{cls.__name__}.mask must be one of {_MASK_KINDS}: a backend declares how its "
                "mask is built (none may receive None without saying so)"
            )

    def __init__(self) -> None:
        self._cache: Any = None
        self.registered_name: str | None = None

    # ---- static validation -------------------------------------------------------------
    def validate(self, config: Any) -> list[str]:
        """Reasons this backend cannot run a model with this transformers ``config``.

        Returns:
            An empty list when the backend can serve the model.
        """
        reasons = []
        dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        if isinstance(dtype, torch.dtype) and dtype not in self.dtypes:
            reasons.append(f"{self.name}: dtype {dtype} not in {self.dtypes}")
        if getattr(config, "is_encoder_decoder", False):
            reasons.append(f"{self.name}: encoder-decoder models are not supported")
        return reasons

    # ---- per-layer forward ---------------------------------------------------------------
    @abc.abstractmethod
    def forward(
        self,
        module: torch.nn.Module,
        query: torch.Tensor,  # (B, H, Tq, D)
        key: torch.Tensor,  # (B, Hkv, Tk, D), cache included
        value: torch.Tensor,  # (B, Hkv, Tk, D)
        attention_mask: torch.Tensor | None,
        *,
        layer_idx: int,
        cache_layer: Any,
        scaling: float | None = None,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One layer's attention.

        Returns:
            ``(out, weights)`` with ``out`` of shape ``(B, Tq, H, D)`` (transformers'
            convention) and ``weights`` ``(B, H, Tq, Tk)`` or ``None``.
        """

    def mask_function(self) -> Any:
        """The transformers mask builder for ``AttentionMaskInterface`` (None for "none").

        A backend with its own mask format (e.g. block masks) overrides this and returns a
        builder with the signature of ``transformers.masking_utils.sdpa_mask``.
        """
        from transformers.masking_utils import eager_mask, sdpa_mask

        return {"sdpa": sdpa_mask, "eager": eager_mask, "none": None}[self.mask]

    # ---- wiring into transformers ------------------------------------------------------
    def install(self, model: Any) -> str:
        """Register this backend instance with transformers and switch ``model`` to it.

        Each instance gets its own name (``speechlm_<name>_<n>``) because an instance holds
        per-model state (its conf and the bound cache).

        Raises:
            ValueError: when ``validate(model.config)`` gives reasons.
        """
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        reasons = self.validate(model.config)
        if reasons:
            raise ValueError(
                f"attention backend {self.name!r} cannot run this model: " + "; ".join(reasons)
            )
        reg = f"speechlm_{self.name}_{next(_install_ids)}"

        def attention_forward(module, query, key, value, attention_mask, **kwargs):
            layer_idx = getattr(module, "layer_idx", None)
            return self.forward(
                module,
                query,
                key,
                value,
                attention_mask,
                layer_idx=layer_idx,
                cache_layer=self.cache_layer(layer_idx),
                **kwargs,
            )

        AttentionInterface.register(reg, attention_forward)
        mask_fn = self.mask_function()
        if mask_fn is not None:
            AttentionMaskInterface.register(reg, mask_fn)
        model.set_attn_implementation(reg)
        self.registered_name = reg
        return reg

    @contextlib.contextmanager
    def bound(self, cache: Any) -> Iterator[None]:
        """Make ``cache`` visible to ``cache_layer`` for the duration of a forward pass."""
        previous, self._cache = self._cache, cache
        try:
            yield
        finally:
            self._cache = previous

    def cache_layer(self, layer_idx: int | None) -> Any:
        """The bound cache's layer ``layer_idx`` (a ``CacheLayerMixin``), or None."""
        cache = self._cache
        if cache is None or layer_idx is None or layer_idx >= len(getattr(cache, "layers", ())):
            return None
        return cache.layers[layer_idx]
