"""Which records form a column, what each column's settings are, and how much of a dataset it covers.

Derived from the records (never a fixed list of columns): a column is every record sharing the
values of the settings that differ between records of the same dataset.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from adbench.record import DATA, role


def nan_reason(rows: pd.DataFrame, metric: str) -> str:
    """Why a metric is NaN for these records (image/pixel metric undefined, or the record's note)."""
    level = metric.split("_", 1)[0]
    n_test = pd.to_numeric(rows.get("n_test"), errors="coerce") if "n_test" in rows else None
    n_anom = pd.to_numeric(rows.get("n_anomalous"), errors="coerce") if "n_anomalous" in rows else None
    if level == "image" and n_test is not None and n_anom is not None:
        if ((n_anom == n_test) & n_test.notna()).all():
            return "image metrics undefined: all test images anomalous"
        if (n_anom == 0).all():
            return "image metrics undefined: no anomalous test images"
    if level == "pixel":
        if "dataset_task" in rows and (rows["dataset_task"] == "image").all():
            return "pixel metrics undefined: image-level dataset (no masks)"
        if n_anom is not None and (n_anom == 0).all():
            return "pixel metrics undefined: no anomalous test images"
    if "notes" in rows:
        for notes in rows["notes"]:
            for note in notes if isinstance(notes, tuple | list) else ():
                if metric in note or f"{level} metric" in note:
                    return str(note)
    return f"{metric} undefined (NaN in the record)"


#: Setting fields shown as flags or in the protocol line of a header rather than as ``field=value``.
HEADER_SKIP = ("method", "protocol", "shots", "random_weights", "weights.", "backbones.")
#: Coverage modes: "all" = each column over its own categories (the default, nothing silently
#: restricted); "shared" = add tables comparing every column over the categories all of them ran.
COVERAGES = ("all", "shared")


def short_field(name: str) -> str:
    """``config.variant`` -> ``variant``; other setting names unchanged."""
    return name[len("config.") :] if name.startswith("config.") else name


def setting_columns(frame: pd.DataFrame) -> list[str]:
    """The setting columns of a store frame (``frame.attrs['settings']``, from the record schema)."""
    names = frame.attrs.get("settings") or []
    return [c for c in names if c in frame.columns]


def norm(value: object) -> object:
    """A missing value (None, NaN) as None, so records that lack a field group together."""
    return None if not present(value) else value


def identity_fields(frame: pd.DataFrame) -> list[str]:
    """Settings whose value differs between records of the same dataset: they tell columns apart.

    Derived from the records (never a fixed list of columns).
    """
    fields = []
    for name in setting_columns(frame):
        values = frame[name].map(norm)
        per_dataset = values.groupby(frame["dataset"]).agg(lambda s: len(set(s)))
        if (per_dataset > 1).any() or name == "method":
            fields.append(name)
    return fields


def column_key(row: pd.Series, fields: Sequence[str], varying: dict[str, set[str]]) -> tuple:
    """A record's column: ``(field, value)`` of every identity field. A data-identity field (dataset
    fingerprint, version) differs between datasets by nature: it counts only in the datasets where
    it differs between records."""
    return tuple((f, norm(row[f])) for f in fields if role(f) != DATA or row["dataset"] in varying.get(f, ()))


@dataclass
class Coverage:
    """Which categories of one dataset a column has (ok and failed) and how many there are."""

    ok: frozenset[str]
    failed: dict[str, str]  # category -> its own job's error (first line)
    expected: int

    @property
    def complete(self) -> bool:
        return not self.failed and len(self.ok) >= self.expected

    @property
    def text(self) -> str:
        return f"{len(self.ok)}/{self.expected}"


def letters(i: int) -> str:
    """Column letters a, b, ..., z, aa, ab, ..."""
    return letters(i // 26 - 1) + chr(97 + i % 26) if i >= 26 else chr(97 + i)


def short_list(items: Sequence[str], limit: int = 6) -> str:
    return ", ".join(items[:limit]) + (f", … (+{len(items) - limit})" if len(items) > limit else "")


def show(value: object) -> str:
    """A setting value as printed: tuples comma-joined, integral floats as integers (a pandas
    column with a missing value holds ``2`` as ``2.0``)."""
    if isinstance(value, tuple):
        return ",".join(map(show, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def variant_parts(variant: str) -> list[str]:
    """A variant string split at the commas between ``field=value`` settings (one header line each)."""
    return [p.strip() for p in re.split(r",(?=\s*[\w.-]+=)", variant) if p.strip()] if variant else []


def present(value: object) -> bool:
    """Whether a frame value is there (not None, not NaN)."""
    return not (value is None or (isinstance(value, float) and math.isnan(value)))
