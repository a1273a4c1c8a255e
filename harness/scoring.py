"""From a method's raw output to a record's numbers: the sizes maps are scored at, map
post-processing (resize, smoothing, the store's rounding) and the record's metrics block, one path
for ``run_job`` and ``adbench rescore`` alike (post-processing and metrics as separate pieces
composed in one place, as anomalib's engine callbacks)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import metrics
from .errors import AdbenchError
from .evaluation import Evaluation
from .image_io import image_size
from .predictions import Pixels, round_as_stored
from .store import ResultsStore


def eval_sizes(ev: Evaluation, samples: Sequence[Any], masks: Pixels | None) -> list[tuple[int, int]]:
    """(h, w) each map is scored at: the square evaluation size, or under ``original`` each mask's
    size (each image's, read from its header, for datasets without masks)."""
    if ev.size != "original":
        return [(int(ev.size), int(ev.size))] * len(samples)
    if masks is not None:
        return [tuple(m.shape) for m in masks]
    return [image_size(s.image_path)[::-1] for s in samples]


def postprocess_maps(maps: Any, sizes: Sequence[tuple[int, int]], sigma: float) -> Pixels | None:
    """Resize anomaly maps to the evaluation sizes (bilinear; one (h, w) per image) and Gaussian-smooth
    them (sigma px at that size). One stacked array when all sizes agree, else a list per image."""
    if maps is None:
        return None
    import torch.nn.functional as F
    from scipy import ndimage

    maps = maps.detach().float().cpu()
    out: list[np.ndarray] = []
    for i, size in enumerate(sizes):
        m = maps[i : i + 1]
        if tuple(m.shape[-2:]) != tuple(size):
            m = F.interpolate(m[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
        arr = m[0].numpy()
        if sigma > 0:
            arr = ndimage.gaussian_filter(arr, sigma=sigma)
        out.append(arr)
    # Maps are stored as float16 when their range allows; score the same rounded values so that
    # `adbench rescore` reproduces every record exactly.
    return round_as_stored(out)


def metrics_block(
    labels: np.ndarray,
    scores: np.ndarray,
    masks: Pixels | None,
    maps: Pixels | None,
    anomaly_types: np.ndarray | None,
) -> tuple[dict[str, Any], list[str]]:
    """The record fields the metrics make (values, their definitions, per-anomaly-type AUROC) and
    the metrics' notes. Pixel metrics need both masks and maps."""
    values, notes = metrics.compute_metrics(labels, scores, masks, maps if masks is not None else None)
    block: dict[str, Any] = {
        "metrics": values,
        "metric_definitions": {k: metrics.METRIC_DEFINITIONS[k] for k in values},
    }
    if anomaly_types is not None:
        block["image_auroc_by_anomaly_type"] = metrics.image_auroc_by_group(labels, scores, anomaly_types)
    return block, notes


def rescore(store: ResultsStore) -> tuple[int, list[str]]:
    """Recompute every record's metrics from its stored predictions (no model runs).

    Every predictions file is read before any record is written, so a bad file never leaves the
    store half rescored; each bad file is returned as one line (its job is recomputed by the next run).
    """
    loaded, problems = [], []
    for rec in store.iter_records():
        if rec.get("status") != "ok":
            continue
        try:
            loaded.append((rec, store.load_predictions(rec["key"])))
        except AdbenchError as exc:
            problems.append(f"{exc}; `adbench run` recomputes this job")
    for rec, pred in loaded:
        block, notes = metrics_block(pred.labels, pred.scores, pred.masks, pred.maps, pred.anomaly_types)
        rec.update(block)
        rec["notes"] = sorted(set(rec.get("notes", [])) | set(notes))
        rec["rescored"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        store.write_record(rec)
    return len(loaded), problems
