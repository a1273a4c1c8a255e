"""Cross-image patch nearest neighbours: the one place adbench computes patch-to-patch distances.

Training-free patch methods (PatchEAD, MuSc, AnomalyDINO) and the few-shot memories of WinCLIP+ and
APRIL-GAN all score a query patch by its distance to the nearest patch of other images. The similarity block (query patches x reference patches) grows as
O(N^2 P^2) over a category, so it is computed in chunks whose size stays under ``max_elements``
entries (query rows x reference columns) whatever the category size: memory is bounded by the
features themselves plus one block. Hand-written because no library does grouped, chunked nearest
neighbours on torch tensors on every device (faiss is not a dependency; sklearn is CPU-only).
"""

from __future__ import annotations

from typing import Literal

import lazy_loader as lazy

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free


Metric = Literal["cosine", "euclidean"]
#: Default cap of the similarity block: 2**25 float32 entries = 128 MiB.
MAX_ELEMENTS = 2**25


def _scores(query: torch.Tensor, refs: torch.Tensor, metric: Metric) -> torch.Tensor:
    """Block (Q, M) ordered like the distance, lower = nearer, in one fused matmul: ``-q.r`` (cosine,
    inputs L2-normalised) or ``|r|^2 - 2 q.r`` (euclidean: the query's own norm does not change which
    reference is nearest). Reducing this block first and converting only the reduced values with
    :func:`_to_distance` saves every elementwise pass over the block."""
    if metric == "cosine":
        return -(query @ refs.T)
    ref_sq = torch.linalg.vector_norm(refs, dim=-1).square()  # a reduction: no copy of the references
    return torch.addmm(ref_sq[None], query, refs.T, alpha=-2.0)


def _to_distance(reduced: torch.Tensor, query: torch.Tensor, metric: Metric) -> torch.Tensor:
    """Reduced block scores (Q, ...) -> distances: 1 - cosine similarity, or the L2 distance (MuSc's cdist)."""
    if metric == "cosine":
        return 1.0 + reduced.float()
    q_sq = (query.float() ** 2).sum(-1).view(-1, *([1] * (reduced.dim() - 1)))
    return (reduced.float() + q_sq).clamp_min(0.0).sqrt()


def per_reference_distances(
    query: torch.Tensor,
    refs: torch.Tensor,
    *,
    groups: torch.Tensor | None = None,
    num_groups: int | None = None,
    group_reduce: Literal["amin", "mean"] = "amin",
    exclude: int | None = None,
    metric: Metric = "cosine",
    max_elements: int = MAX_ELEMENTS,
) -> torch.Tensor:
    """For every query patch, the distance to its nearest patch in each reference image: (P, R).

    ``query`` (P, C), ``refs`` (R, P', C). With ``groups`` (R,) mapping reference images to
    ``num_groups`` groups (one source image and its augmented variants), the variants of a group are
    merged by ``group_reduce`` and the result is (P, num_groups). ``exclude`` sets one column (group)
    to ``inf``: the query's own image in mutual scoring. Both query rows and reference images are
    chunked so that one similarity block holds at most ``max(max_elements, P')`` entries.
    """
    r, pr, c = refs.shape
    ref_chunk = max(1, min(r, max_elements // max(1, pr)))
    rows = max(1, max_elements // max(1, ref_chunk * pr))
    out = []
    for start in range(0, query.shape[0], rows):
        q = query[start : start + rows]
        best = torch.cat(
            [
                _scores(q, refs[j : j + ref_chunk].reshape(-1, c), metric).view(len(q), -1, pr).amin(-1)
                for j in range(0, r, ref_chunk)
            ],
            dim=1,
        )
        best = _to_distance(best, q, metric)  # (rows, R): nearest patch in each reference image
        if groups is not None and num_groups is not None and num_groups != r:
            merged = torch.zeros((len(q), num_groups), device=best.device)
            merged.scatter_reduce_(
                1, groups.expand(len(q), -1), best, reduce=group_reduce, include_self=False
            )
            best = merged
        out.append(best)
    dist = torch.cat(out)
    if exclude is not None:
        dist[:, exclude] = float("inf")
    return dist


def bank_knn_distances(
    query: torch.Tensor,
    bank: torch.Tensor,
    *,
    k: int = 1,
    metric: Metric = "cosine",
    max_elements: int = MAX_ELEMENTS,
) -> torch.Tensor:
    """Mean distance of each query patch (P, C) to its ``k`` nearest rows of a flat memory bank (M, C): (P,).

    The bank is scanned in chunks with a running top-k, so one block holds at most
    ``max(max_elements, k)`` entries however large the bank (AnomalyDINO with rotations, full shot).
    """
    m = bank.shape[0]
    k = max(1, min(k, m))
    cols = max(k, min(m, max_elements))
    rows = max(1, max_elements // cols)
    out = []
    for start in range(0, query.shape[0], rows):
        q = query[start : start + rows]
        best = None
        for j in range(0, m, cols):
            block = _scores(q, bank[j : j + cols], metric)
            cand = block if best is None else torch.cat([best, block], dim=1)
            best = cand.topk(min(k, cand.shape[1]), dim=1, largest=False).values
        out.append(_to_distance(best, q, metric).mean(dim=1))  # type: ignore[arg-type]
    return torch.cat(out)


def nearest_cosine_distance(
    query: torch.Tensor, memory: torch.Tensor, max_elements: int = MAX_ELEMENTS
) -> torch.Tensor:
    """1 - the largest cosine similarity of each query feature (..., C) to any memory row (M, C): (...,).

    The few-shot memories of WinCLIP+ and APRIL-GAN: both sides L2-normalised, then the chunked
    1-nearest-neighbour scan of :func:`bank_knn_distances`.
    """
    flat = torch.nn.functional.normalize(query.reshape(-1, query.shape[-1]).float(), dim=-1)
    mem = torch.nn.functional.normalize(memory.float(), dim=-1)
    return bank_knn_distances(flat, mem, k=1, max_elements=max_elements).view(query.shape[:-1])
