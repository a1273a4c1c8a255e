"""``adbench leaderboard STORE... --out site/``: one static, self-contained site from several stores.

Records are merged by key (a key is the job's full identity: method config, weights, data
fingerprint, protocol, seed). The same key with the same metrics from two stores is one job; the
same key with different numbers is a *conflict*: listed on its own page, never averaged, and left
out of every table. Pages: an overview per protocol and dataset group (sortable), one page per
column (settings, provenance, per-category numbers, score histograms where predictions exist) and
one per dataset. No server and no external URL: CSS, JS, data and images are inlined.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from adbench.errors import AdbenchError
from adbench.metric_catalog import METRICS, table_order
from adbench.protocol_catalog import PROTOCOLS
from adbench.record_rows import SETTINGS_KEY, record_row
from adbench.safe_names import safe_name
from adbench.store import ResultsStore, atomic_write_bytes

from .ranking import column_label

#: Metrics on the overview pages (the papers' headline pair); method pages show every metric.
OVERVIEW_METRICS = ("image_auroc", "pixel_auroc")


@dataclass
class Merged:
    """Records of several stores merged by key, with where each came from and the conflicts."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)
    conflicts: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    stores: dict[str, ResultsStore] = field(default_factory=dict)


def _same_numbers(a: dict[str, Any], b: dict[str, Any]) -> bool:
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    if set(ma) != set(mb):
        return False
    for k in ma:
        x, y = ma[k], mb[k]
        if x is None or y is None:
            if x is not y:
                return False
        elif not math.isclose(float(x), float(y), rel_tol=0, abs_tol=1e-9):
            return False
    return True


def merge_stores(paths: Sequence[Path]) -> Merged:
    """Every ok record of every store once; identical keys deduplicated, differing ones conflicts."""
    merged = Merged()
    for path in paths:
        if not (Path(path) / "records").is_dir():
            raise AdbenchError(
                f"leaderboard: {path or repr(path)} is not a results store folder (no records/)"
            )
        store = ResultsStore(path)
        name = str(path)
        merged.stores[name] = store
        for rec in store.iter_records():
            if rec.get("status") != "ok":
                continue
            key = rec["key"]
            if key in merged.conflicts:
                merged.conflicts[key].append((name, rec))
            elif key not in merged.records:
                merged.records[key] = rec
                merged.sources[key] = [name]
            elif _same_numbers(merged.records[key], rec):
                merged.sources[key].append(name)
            else:
                first = merged.records.pop(key)
                merged.conflicts[key] = [(s, first) for s in merged.sources.pop(key)] + [(name, rec)]
    return merged


#: Settings that never tell columns apart (the dataset's own identity differs between datasets).
_NOT_IDENTITY = {"method", "protocol", "shots", "dataset_version", "dataset_variant"}


def merged_frame(merged: Merged) -> pd.DataFrame:
    """One row per merged job; ``_col`` is the column a job belongs to: the method's display name,
    its variant and k, plus every other setting that differs between that method's jobs (eval size,
    precision, weights...), so jobs run under different settings in different stores never share
    a column or an average."""
    rows = [record_row(rec) for rec in merged.records.values()]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    settings = sorted({s for r in rows for s in r[SETTINGS_KEY]} - _NOT_IDENTITY)
    labels = frame.apply(column_label, axis=1)
    for _method, sub in frame.groupby("method"):
        varying = [s for s in settings if s in sub and sub[s].astype(str).nunique() > 1]
        if varying:
            extra = (
                sub[varying].astype(str).apply(lambda r: ", ".join(f"{k}={v}" for k, v in r.items()), axis=1)
            )
            labels[sub.index] = labels[sub.index] + " (" + extra + ")"
    labels[frame["random_weights"].astype(bool)] += " · RANDOM WEIGHTS"
    frame["_col"] = labels
    frame["_slug"] = frame["_col"].map(safe_name)
    return frame


def _num(value: float | None) -> float | None:
    return None if value is None or value != value else round(100 * float(value), 1)


def overview(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One sortable table per (protocol, dataset group): a row per column, a cell per dataset and
    overview metric (mean over the categories it ran, with its coverage when partial)."""
    tables = []
    if frame.empty:
        return tables
    for protocol in [p for p in PROTOCOLS if p in set(frame["protocol"])]:
        sub = frame[frame["protocol"] == protocol]
        for group, gsub in sub.groupby("dataset_group", sort=True):
            datasets = gsub.sort_values("dataset_order").drop_duplicates("dataset")
            headers = [
                {"dataset": d.dataset, "title": d.dataset_title or d.dataset, "n": d.dataset_n_categories}
                for d in datasets.itertuples()
            ]
            rows = []
            for (col, slug), csub in gsub.groupby(["_col", "_slug"], sort=True):
                cells = []
                for h in headers:
                    dsub = csub[csub["dataset"] == h["dataset"]]
                    per_cat = (
                        dsub.groupby("category")[list(OVERVIEW_METRICS)].mean() if not dsub.empty else None
                    )
                    for metric in OVERVIEW_METRICS:
                        value = None if per_cat is None else _num(per_cat[metric].mean())
                        ran = 0 if per_cat is None else int(per_cat[metric].notna().sum())
                        partial = h["n"] is not None and 0 < ran < h["n"]
                        cells.append({"value": value, "coverage": f"{ran}/{h['n']}" if partial else ""})
                rows.append({"column": col, "slug": slug, "cells": cells})
            tables.append(
                {
                    "protocol": PROTOCOLS[protocol].title,
                    "group": group,
                    "headers": headers,
                    "metrics": [METRICS[m].title for m in OVERVIEW_METRICS],
                    "rows": rows,
                }
            )
    return tables


def _score_histograms(merged: Merged, keys: Sequence[str]) -> dict[str, str]:
    """category -> base64 PNG of normal vs anomalous image scores, for jobs with stored predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for key in keys:
        rec = merged.records[key]
        pred = _first_predictions(merged, key)
        if pred is None:
            continue
        fig, ax = plt.subplots(figsize=(3.2, 1.8))
        labels, scores = pred["labels"], pred["scores"]
        finite = np.isfinite(scores)
        if not finite.any():  # a method that produced no finite score: no histogram to draw
            continue
        labels, scores = labels[finite], scores[finite]
        ax.hist([scores[labels == 0], scores[labels == 1]], bins=20, label=["normal", "anomalous"])
        ax.set_title(f"{rec['category']} (seed {rec.get('seed', 0)})", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
        out[f"{rec['dataset']}/{rec['category']}/{rec.get('seed', 0)}"] = base64.b64encode(
            buf.getvalue()
        ).decode()
    return out


def _first_predictions(merged: Merged, key: str) -> dict[str, Any] | None:
    """The job's predictions from the first store that has them (a copy may hold records only)."""
    for source in merged.sources[key]:
        try:
            return merged.stores[source].read_predictions(key)
        except AdbenchError:
            continue
    return None


def column_pages(frame: pd.DataFrame, merged: Merged) -> list[dict[str, Any]]:
    pages = []
    metrics = table_order([m for m in METRICS if m in frame.columns])
    for (col, slug), sub in frame.groupby(["_col", "_slug"], sort=True):
        first = merged.records[sub["key"].iloc[0]]
        sub = sub.sort_values(["dataset_order", "dataset", "category", "shots", "seed"])
        rows = [
            {
                "dataset": r["dataset_title"] or r["dataset"],
                "category": r["category"],
                "protocol": PROTOCOLS[r["protocol"]].title if r["protocol"] in PROTOCOLS else r["protocol"],
                "shots": int(r["shots"]),
                "seed": int(r["seed"]),
                "cells": [_num(r[m]) for m in metrics],
                "sources": ", ".join(merged.sources[r["key"]]),
            }
            for _, r in sub.iterrows()
        ]
        pages.append(
            {
                "column": col,
                "slug": slug,
                "method": first.get("method"),
                "config": json.dumps(first.get("method_config", {}), indent=1, sort_keys=True, default=str),
                "provenance": {
                    "adbench version": first.get("adbench_version"),
                    "device": first.get("device"),
                    "weights": json.dumps(first.get("weights", {}), default=str),
                    "random weights": first.get("random_weights"),
                    "precision": first.get("precision"),
                },
                "metrics": [METRICS[m].title for m in metrics],
                "rows": rows,
                "figures": _score_histograms(merged, list(sub["key"])[:12]),
            }
        )
    return pages


def dataset_pages(frame: pd.DataFrame) -> list[dict[str, Any]]:
    pages = []
    for dataset, sub in frame.groupby("dataset", sort=True):
        columns = sorted(sub["_col"].unique())
        cats = sorted(sub["category"].unique())
        rows = []
        for cat in cats:
            csub = sub[sub["category"] == cat].groupby("_col")["image_auroc"].mean()
            rows.append({"category": cat, "cells": [_num(csub.get(c)) for c in columns]})
        pages.append(
            {
                "dataset": dataset,
                "title": sub["dataset_title"].iloc[0] or dataset,
                "slug": safe_name(dataset),
                "columns": columns,
                "rows": rows,
                "metric": METRICS["image_auroc"].title,
            }
        )
    return pages


def build_site(store_paths: Sequence[Path], out: Path) -> dict[str, Any]:
    """Write the site under ``out``; returns a summary (jobs, duplicates merged, conflicts, pages)."""
    merged = merge_stores(store_paths)
    frame = merged_frame(merged)
    env = Environment(
        loader=PackageLoader("adbench.reports", "templates/leaderboard"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    conflicts = [
        {
            "key": key,
            "versions": [
                {"store": s, "metrics": {k: _num(v) for k, v in (r.get("metrics") or {}).items()}}
                for s, r in versions
            ],
            "label": f"{versions[0][1].get('method')} · {versions[0][1].get('dataset')}/{versions[0][1].get('category')}",
        }
        for key, versions in sorted(merged.conflicts.items())
    ]
    n_random = 0 if frame.empty else int(frame.loc[frame["random_weights"].astype(bool), "_col"].nunique())
    index = {"tables": overview(frame), "n_conflicts": len(conflicts), "n_random": n_random}
    pages = {"index.html": ("index.html.j2", index)}
    if not frame.empty:
        for page in column_pages(frame, merged):
            pages[f"method-{page['slug']}.html"] = ("method.html.j2", {"page": page})
        for page in dataset_pages(frame):
            pages[f"dataset-{page['slug']}.html"] = ("dataset.html.j2", {"page": page})
    pages["conflicts.html"] = ("conflicts.html.j2", {"conflicts": conflicts})
    nav = {
        "datasets": []
        if frame.empty
        else [{"slug": p["slug"], "title": p["title"]} for p in dataset_pages(frame)],
        "stores": [str(p) for p in store_paths],
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, (template, ctx) in pages.items():
            html = env.get_template(template).render(nav=nav, **ctx)
            atomic_write_bytes(out / name, html.encode("utf-8"))
    except OSError as exc:
        raise AdbenchError(f"leaderboard --out {out}: {exc.strerror or exc}") from None
    duplicates = sum(len(s) - 1 for s in merged.sources.values())
    return {
        "jobs": len(merged.records),
        "duplicates": duplicates,
        "conflicts": len(conflicts),
        "pages": len(pages),
    }
