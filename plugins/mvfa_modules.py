"""MVFA-AD's residual CLIP adapter, kept apart from ``mvfa`` so listing the plugin does not import torch."""

from __future__ import annotations

import torch
from torch import nn


class ClipAdapter(nn.Module):
    """Two bias-free linear layers with LeakyReLU; returns the bottleneck tokens and the output tokens."""

    def __init__(self, width: int, bottleneck: int) -> None:
        super().__init__()
        self.fc1 = nn.Sequential(nn.Linear(width, bottleneck, bias=False), nn.LeakyReLU())
        self.fc2 = nn.Sequential(nn.Linear(bottleneck, width, bias=False), nn.LeakyReLU())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mid = self.fc1(x)
        return mid, self.fc2(mid)
