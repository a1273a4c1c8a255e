"""Nearest-neighbour scoring against a memory of normal features (the few-shot branches of WinCLIP+
and APRIL-GAN).

Kept local for now: a shared cross-image nearest-neighbour module is being factored out of
``patchead`` at the same time; this function folds into it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nearest_cosine_distance(
    query: torch.Tensor, memory: torch.Tensor, max_elements: int = 2**25
) -> torch.Tensor:
    """1 - the largest cosine similarity of each query feature (..., C) to any memory row (M, C); (...,).

    Query rows are processed in chunks so the similarity block stays under ``max_elements`` entries.
    """
    flat = F.normalize(query.reshape(-1, query.shape[-1]).float(), dim=-1)
    mem = F.normalize(memory.float(), dim=-1)
    rows = max(1, max_elements // max(1, mem.shape[0]))
    best = torch.cat([(part @ mem.T).amax(dim=-1) for part in flat.split(rows)])
    return (1.0 - best).view(query.shape[:-1])
