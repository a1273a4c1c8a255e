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
from .store_index import INDEX_NAME, RecordIndex

DEFAULT_RESULTS_DIR = "adbench-results"
#: Columns that identify a job in tables (everything else is a metric or metadata).
ID_COLUMNS = ("method", "variant", "dataset", "category", "protocol", "shots", "seed")


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

    def write_record(self, record: dict[str, Any]) -> Path:
        path = self.record_path(record["key"])
        atomic_write_json(path, record)
        self.index.update(path, record)
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

    @property
    def index(self) -> RecordIndex:
        """The SQLite cache of table rows (``index.sqlite``), reconciled with the records on each read."""
        return RecordIndex(self.records_dir, self.root / INDEX_NAME, record_row)

    def frame(self, include_failed: bool = False) -> pd.DataFrame:
        """One row per job (see :func:`record_row`), read through the row index."""
        rows = [row for row in self.index.rows() if include_failed or row.get("status") == "ok"]
        frame = pd.DataFrame(rows)
        for column in frame.select_dtypes(include="object").columns:  # JSON lists back to hashable tuples
            values = frame[column]
            if values.map(type).eq(list).any():
                frame[column] = values.map(lambda v: tuple(v) if isinstance(v, list) else v)
        return frame


def record_row(rec: dict[str, Any]) -> dict[str, Any]:
    """The table row of one record: identity columns, one column per metric, weights flag, timings.

    Also ``error``, ``created``, ``dataset_task``, ``n_test``, ``n_anomalous``, ``train_on``,
    ``backbone_names``, ``notes`` and one ``config.<field>`` column per method-config field.
    """
    row = {
        "key": rec["key"],
        "method": rec["method"],
        "variant": rec.get("variant", ""),
        "dataset": rec["dataset"],
        "category": rec["category"],
        "protocol": rec["protocol"],
        "shots": rec.get("shots", 0),
        "seed": rec.get("seed", 0),
        "random_weights": bool(rec.get("random_weights", False)),
        "status": rec.get("status", "ok"),
    }
    for name, value in (rec.get("metrics") or {}).items():
        row[name] = float("nan") if value is None else float(value)
    timing = rec.get("timing") or {}
    row["images_per_s"] = timing.get("images_per_s")
    row["wall_s"] = timing.get("wall_s")
    # Additive columns the reports need (footnotes, banners, ablations over config fields).
    row["error"] = rec.get("error")
    row["created"] = rec.get("created")
    row["dataset_task"] = rec.get("dataset_task")
    row["n_test"] = rec.get("n_test")
    row["n_anomalous"] = rec.get("n_anomalous")
    row["train_on"] = None if rec.get("train_on") is None else str(rec.get("train_on"))
    row["backbone_names"] = ",".join(sorted({str(v) for v in (rec.get("backbones") or {}).values()}))
    row["notes"] = list(rec.get("notes") or ())
    for name, value in (rec.get("method_config") or {}).items():
        row[f"config.{name}"] = value
    return row
