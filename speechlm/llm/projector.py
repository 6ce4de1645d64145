"""Speech-encoder states -> LLM input embeddings: frame stacking + a two-layer MLP.

Shared by the speech-prefix LLM (``speechlm.llm.speech_llm``) and ParalinGPT: ``downsample``
consecutive encoder states are concatenated (a 20 ms Whisper state becomes one embedding
per ``20 * downsample`` ms), then ``Linear -> GELU -> Linear`` maps them to the LLM's width.
The output layer starts small so the LLM first sees a near-silent prefix.

>>> import torch
>>> p = Projector(ProjectorConfig(in_dim=8, out_dim=16, downsample=4, hidden=32))
>>> p(torch.zeros(2, 10, 8)).shape   # 10 frames -> ceil(10 / 4) = 3 embeddings
torch.Size([2, 3, 16])
>>> p.output_lengths(torch.tensor([10, 4, 1])).tolist()
[3, 1, 1]
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ProjectorConfig:
    """Args:
        in_dim: encoder state size (384 for Whisper tiny).
        out_dim: LLM hidden size (576 for SmolLM2-135M).
        downsample: encoder states stacked into one embedding.
        hidden: MLP hidden size.
        out_scale: initial std of the output layer's weights.
    """

    in_dim: int
    out_dim: int
    downsample: int = 4
    hidden: int = 1024
    out_scale: float = 0.02

    def __post_init__(self) -> None:
        for name in ("in_dim", "out_dim", "downsample", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"projector: {name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


class Projector(nn.Module):
    """``(B, T, in_dim)`` encoder states -> ``(B, ceil(T / downsample), out_dim)``."""

    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__()
        self.config = config
        self.norm = nn.LayerNorm(config.in_dim * config.downsample)
        self.fc1 = nn.Linear(config.in_dim * config.downsample, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.out_dim)
        nn.init.normal_(self.fc2.weight, std=config.out_scale)
        nn.init.zeros_(self.fc2.bias)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return (lengths + self.config.downsample - 1) // self.config.downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        if d != self.config.in_dim:
            raise ValueError(f"projector expects {self.config.in_dim}-dim states, got {d}")
        k = self.config.downsample
        pad = (-t) % k
        if pad:  # repeat the last state rather than add zeros the encoder never produced
            x = torch.cat([x, x[:, -1:].expand(b, pad, d)], dim=1)
        x = x.reshape(b, (t + pad) // k, k * d)  # (B, T / k, k * D)
        return self.fc2(nn.functional.gelu(self.fc1(self.norm(x))))
