"""One stored record as one table row: the frame ``ResultsStore.frame`` and the reports read."""

from __future__ import annotations

import dataclasses
from typing import Any

from .record import JobRecord, flat_settings, train_on_datasets

#: Key of a cached row that lists which of its columns are settings (popped by ``frame``).
SETTINGS_KEY = "__settings__"


def json_hashable(value: Any) -> Any:
    """JSON lists (at any depth) as tuples, so frame cells can be grouped and compared."""
    return tuple(json_hashable(v) for v in value) if isinstance(value, list) else value


def record_row(data: dict[str, Any]) -> dict[str, Any]:
    """The table row of one stored record (any schema version): every setting flattened
    (``config.<field>``, ``weights.<name>``, unknown fields under their own name), one column per
    metric, timing and parameter counts, and ``key``, ``status``, ``error``, ``created``, ``variant``,
    ``method_title``, ``published_name``, ``dataset_title``, ``dataset_group``, ``dataset_order``,
    ``dataset_task``, ``n_test``, ``n_anomalous``, ``backbone_names``, ``notes``, ``difficulty`` and
    ``anomaly_type_image_auroc`` (a dict, for per-type breakdowns)."""
    rec = JobRecord.from_dict(data)
    flat = flat_settings(rec)
    row = {
        **flat,
        "key": rec.key,
        "variant": rec.variant or "",
        "dataset": rec.dataset,
        "category": rec.category,
        "seed": rec.seed,
        "status": rec.status,
        "error": rec.error,
        "created": rec.created,
        "method_title": rec.method_title or "",
        "published_name": rec.published_name,
        "dataset_group": rec.dataset_group,
        "dataset_order": rec.dataset_order,
        "dataset_title": rec.dataset_title or "",
        "dataset_n_categories": rec.dataset_n_categories,
        "dataset_task": rec.dataset_task,
        "n_test": rec.n_test,
        "n_anomalous": rec.n_anomalous,
        "backbone_names": ",".join(sorted({str(v) for v in rec.backbones.values()})),
        "notes": list(rec.notes),
        "params_total": rec.params_total,
        "params_trainable": rec.params_trainable,
        "device": rec.device,
        **{f"timing.{k}": v for k, v in dataclasses.asdict(rec.timing).items()},
    }
    row["random_weights"] = bool(rec.random_weights)
    row["train_on"] = None if rec.train_on is None else ",".join(train_on_datasets(rec.train_on))
    for name, value in rec.metrics.items():
        row[name] = float("nan") if value is None else float(value)
    row["images_per_s"] = rec.timing.images_per_s
    row["wall_s"] = rec.timing.wall_s
    row["difficulty"] = rec.difficulty
    row["anomaly_type_image_auroc"] = rec.image_auroc_by_anomaly_type or {}
    row[SETTINGS_KEY] = list(flat)
    return row
