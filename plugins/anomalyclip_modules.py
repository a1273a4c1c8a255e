"""AnomalyCLIP's learnable parts beyond the shared prompt learner: the deep text prompts.

Kept apart from ``anomalyclip`` so listing the plugin does not import torch.
"""

from __future__ import annotations

import torch
from torch import nn


class DeepTextPrompts(nn.Module):
    """Learnable text tokens for text layers 2..depth; optionally the official unused projections."""

    def __init__(self, depth: int, length: int, width: int, unused_width: int | None, init_std: float = 0.02):
        super().__init__()
        self.tokens = nn.ParameterList(
            [nn.Parameter(torch.randn(length, width) * init_std) for _ in range(depth - 1)]
        )
        # Never called (see the anomalyclip module docstring): the official checkpoint layout and parameter count.
        self.unused_projections = (
            nn.ModuleList([nn.Linear(width, unused_width) for _ in range(depth - 1)])
            if unused_width
            else None
        )

    def forward(self) -> list[torch.Tensor]:
        return list(self.tokens)
