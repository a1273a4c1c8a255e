"""Results store: one JSON record and one predictions file per job, written atomically.

Layout under the results directory (``--results``, default ``./adbench-results``)::

    records/<key>.json        metrics, resolved config, dataset/backbone identity, timings
    predictions/<key>.npz     image scores and labels, anomaly maps (float16) and masks, sample ids
    training/<key>.json       training logs of fitted methods (written by the training engine)

One file per job (no shared database to lock); a killed run never leaves a half file because every
write goes to a temporary file in the same directory and is renamed into place. Records hold raw
predictions' key, so ``adbench rescore`` recomputes metrics without running any model.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import AdbenchError
from .record import JobRecord, flat_settings, train_on_datasets

DEFAULT_RESULTS_DIR = "adbench-results"
#: Columns printed first by ``adbench results`` and the order rows are sorted in.
ID_COLUMNS = ("method", "variant", "dataset", "category", "protocol", "shots", "seed")
#: Sort order of job rows (``adbench run``/``results``, per-category CSV rows).
SORT_COLUMNS = ("method", "dataset", "category", "shots", "seed")


def _json_safe(obj: Any) -> Any:
    """Replace NaN/inf by None (JSON has no NaN) and numpy scalars by Python ones."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, Path):  # e.g. FitResult.path in a record's "fit"
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as pretty JSON (NaN written as null)."""
    atomic_write_bytes(path, json.dumps(_json_safe(obj), indent=2, sort_keys=True).encode())


class ResultsStore:
    """A directory of job records; the only thing reports read."""

    def __init__(self, root: str | Path = DEFAULT_RESULTS_DIR) -> None:
        self.root = Path(root)

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    @property
    def training_dir(self) -> Path:
        return self.root / "training"

    def record_path(self, key: str) -> Path:
        return self.records_dir / f"{key}.json"

    def has(self, key: str) -> bool:
        """True when a finished (status ok) record with this key exists."""
        path = self.record_path(key)
        if not path.exists():
            return False
        try:
            return json.loads(path.read_text()).get("status") == "ok"
        except json.JSONDecodeError:
            return False

    def write_record(self, record: JobRecord | dict[str, Any]) -> Path:
        data = record.to_dict() if isinstance(record, JobRecord) else JobRecord.from_dict(record).to_dict()
        path = self.record_path(data["key"])
        atomic_write_json(path, data)
        return path

    def read_record(self, key: str) -> dict[str, Any]:
        return json.loads(self.record_path(key).read_text())

    def write_predictions(self, key: str, **arrays: np.ndarray) -> Path:
        """Save raw predictions (the runner passes maps as float16 to keep the store small)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path = self.predictions_dir / f"{key}.npz"
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def read_predictions(self, key: str) -> dict[str, np.ndarray]:
        path = self.predictions_dir / f"{key}.npz"
        if not path.exists():
            raise AdbenchError(f"no stored predictions for job {key} in {self.predictions_dir}")
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def write_training_log(self, key: str, log: dict[str, Any]) -> Path:
        path = self.training_dir / f"{key}.json"
        atomic_write_json(path, log)
        return path

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """Every readable record, in file-name order; unreadable files are skipped with a warning."""
        if not self.records_dir.exists():
            return
        for path in sorted(self.records_dir.glob("*.json")):
            try:
                yield json.loads(path.read_text())
            except json.JSONDecodeError:
                import warnings

                warnings.warn(f"skipping unreadable record {path}", stacklevel=2)

    def records(self) -> Iterator[JobRecord]:
        """Every readable record as the typed schema (any schema version)."""
        for data in self.iter_records():
            yield JobRecord.from_dict(data)

    def frame(self, include_failed: bool = False) -> pd.DataFrame:
        """One row per job, sorted by method, dataset, category, shots, seed.

        Columns: every setting of the record flattened (``config.<field>``, ``weights.<name>``,
        unknown fields under their own name; ``frame.attrs["settings"]`` lists them), one column
        per metric, timing and parameter counts, and ``key``, ``status``, ``error``, ``created``,
        ``variant``, ``method_title``, ``dataset_title``, ``dataset_task``, ``n_test``,
        ``n_anomalous``, ``backbone_names``, ``notes``, ``published_name``, ``dataset_group``,
        ``dataset_order``, ``difficulty`` and ``anomaly_type_image_auroc`` (a dict, for per-type
        breakdowns).
        """
        rows = []
        settings: dict[str, None] = {}
        for rec in self.records():
            if not rec.ok and not include_failed:
                continue
            flat = flat_settings(rec)
            settings.update(dict.fromkeys(flat))
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
                "notes": tuple(rec.notes),
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
            rows.append(row)
        frame = pd.DataFrame(rows)
        if not frame.empty:
            frame = frame.sort_values(list(SORT_COLUMNS), kind="stable", ignore_index=True)
        frame.attrs["settings"] = list(settings)
        return frame
