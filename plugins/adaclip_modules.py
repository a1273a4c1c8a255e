"""AdaCLIP's learnable parts and its hybrid semantic fusion, kept apart from ``adaclip`` so listing the
plugin does not import torch."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn


class HybridPrompts(nn.Module):
    """Static prompts (depth, length, width) per branch and the generators of the dynamic ones.

    ``static_text`` / ``static_visual``: the code's ``text_prompter`` / ``visual_prompter``;
    ``dynamic_text`` / ``dynamic_visual``: one ``Linear(C, width)`` per prompt token, applied to the
    frozen image embedding (the code's ``dynamic_*_prompt_generator``).
    """

    def __init__(self, depth: int, length: int, text_width: int, visual_width: int, embed_dim: int) -> None:
        super().__init__()
        self.static_text = nn.ParameterList(
            [nn.Parameter(torch.randn(length, text_width) * 0.02) for _ in range(depth)]
        )
        self.static_visual = nn.ParameterList(
            [nn.Parameter(torch.randn(length, visual_width) * 0.02) for _ in range(depth)]
        )
        self.dynamic_text = nn.ModuleList([nn.Linear(embed_dim, text_width) for _ in range(length)])
        self.dynamic_visual = nn.ModuleList([nn.Linear(embed_dim, visual_width) for _ in range(length)])

    def dynamic(self, image_embed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image text and visual prompt tokens (N, length, width) from the frozen embedding (N, C)."""
        text = torch.stack([head(image_embed) for head in self.dynamic_text], dim=1)
        visual = torch.stack([head(image_embed) for head in self.dynamic_visual], dim=1)
        return text, visual


def hybrid_semantic_fusion(
    patch_tokens: list[torch.Tensor], anomaly: torch.Tensor, k_clusters: int, seed: int = 0
) -> torch.Tensor:
    """AdaCLIP's HSF as the official code computes it (the upgraded version its README mentions): the
    ``5 k`` most anomalous patches (by ``anomaly`` (N, P)), clustered with k-means on their tokens
    concatenated over levels; each cluster's centre is the mean of its tokens over all levels, and the
    image's fused feature is the unit-normalised mean of the centres. ``patch_tokens``: (N, P, C) per level."""
    n_select = min(anomaly.shape[1], 5 * k_clusters)
    top = anomaly.topk(n_select, dim=1).indices
    chosen = [t.gather(1, top[..., None].expand(-1, -1, t.shape[-1])) for t in patch_tokens]
    stacked = torch.cat(chosen, dim=2).detach().float().cpu().numpy()
    centres = []
    for b in range(anomaly.shape[0]):
        k = min(k_clusters, n_select)
        labels = KMeans(n_clusters=k, n_init="auto", random_state=seed).fit_predict(stacked[b])
        per_cluster = [
            torch.cat([c[b][torch.as_tensor(labels == j, device=c.device)] for c in chosen]).mean(0)
            for j in np.unique(labels)
        ]
        centres.append(torch.stack(per_cluster).mean(0))
    return torch.nn.functional.normalize(torch.stack(centres), dim=-1)
