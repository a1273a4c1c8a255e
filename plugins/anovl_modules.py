"""AnoVL's test-time text adapter and its unsupervised loss, kept apart from ``anovl`` so listing the
plugin does not import torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TextAdapter(nn.Module):
    """``0.5 x + 0.5 tanh(Linear(unit x)) @ sentences``: tokens re-expressed through the T sentence
    features (T, C), which stay fixed; one ``Linear(C, T)`` is learned per image."""

    def __init__(self, sentences: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("sentences", sentences.detach().clone(), persistent=False)
        self.ad = nn.Linear(sentences.shape[1], sentences.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        affinity = torch.tanh(self.ad(F.normalize(x, dim=-1)))
        return 0.5 * x + 0.5 * affinity @ self.sentences


def adaptation_loss(probs: torch.Tensor, hard_weight: float) -> torch.Tensor:
    """AnoVL's ``loss_func``: entropy of the clean map ``probs[0]`` plus ``hard_weight`` x the
    cross-entropy of "anomalous" on the noised maps ``probs[1:]`` and of "normal" on the clean one.
    ``probs`` (1 + K, h, w, 2) are softmax pairs."""
    eps = 1e-12
    clean, noised = probs[0], probs[1:]
    soft = -(clean * (clean + eps).log()).sum(-1).mean()
    mask = torch.zeros_like(noised)
    mask[..., 1] = 1
    hard = (-mask * (noised + eps).log() - (1 - mask) * (clean + eps).log()).sum(-1).mean()
    return soft + hard_weight * hard
