"""Which records a report shows: ``--methods``, ``--datasets`` and ``--where field=value`` filters
(``protocol=few_shot``, ``config.backbone=dinov2-vitb14-reg``), so one report (or an ablation)
can be cut from a mixed store. A name or value not in the store is a one-line error."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from adbench.errors import AdbenchError

from .columns import show
from .options import ReportOptions


def _where(records: pd.DataFrame, items: Sequence[str]) -> pd.DataFrame:
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise AdbenchError(f"--where {item!r}: expected FIELD=VALUE, e.g. protocol=few_shot")
        if name not in records:
            fields = sorted(records.attrs.get("settings") or records.columns)
            raise AdbenchError(
                f"--where {item!r}: no field '{name}' in the store (fields: {', '.join(fields)})"
            )
        shown = records[name].map(lambda v: "" if v is None or v != v else show(v))
        if not (shown == value).any():
            known = sorted(set(shown) - {""})
            raise AdbenchError(f"--where {item!r}: no record has {name}={value} (values: {', '.join(known)})")
        records = records[shown == value]
    return records


def select(records: pd.DataFrame, options: ReportOptions) -> pd.DataFrame:
    """Only the chosen methods, datasets and settings."""
    for option, names, column in (
        ("--methods", options.methods, "method"),
        ("--datasets", options.datasets, "dataset"),
    ):
        if not names or records.empty:
            continue
        known = sorted(set(records[column]))
        unknown = [n for n in names if n not in known]
        if unknown:
            raise AdbenchError(f"{option} {unknown[0]!r}: not in the store (has: {', '.join(known)})")
        records = records[records[column].isin(names)]
    if options.where and not records.empty:
        attrs = dict(records.attrs)
        records = _where(records, options.where)
        records.attrs.update(attrs)
    return records
