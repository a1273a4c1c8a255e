"""``adbench compare A B``: paired differences between two methods, per category and per dataset.

Reads only the store (records to pair jobs, predictions to test them); the statistics are the pure
functions of ``adbench.significance``. A side is a method name, optionally narrowed by settings
(``patchead:align=true``), so two configs of one method compare too.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from adbench import rank_tests, significance
from adbench.errors import AdbenchError
from adbench.significance import Paired, Predictions
from adbench.store import ResultsStore

DEFAULT_METRICS = ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "pixel_aupro")
#: What identifies one test set: both sides must have run it.
CELL = ("dataset", "category", "protocol", "shots")


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a method and the settings that narrow it."""

    method: str
    settings: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Side:
        """``NAME`` or ``NAME:FIELD=VALUE[:FIELD=VALUE...]`` (FIELD as in ``adbench results`` columns
        without the ``config.`` prefix)."""
        name, *pairs = text.split(":")
        settings = []
        for pair in pairs:
            field, sep, value = pair.partition("=")
            if not sep or not field:
                raise AdbenchError(f"compare side {text!r}: expected NAME or NAME:FIELD=VALUE")
            settings.append((field, value))
        if not name:
            raise AdbenchError(f"compare side {text!r}: no method name")
        return cls(name, tuple(settings))

    @property
    def label(self) -> str:
        return ":".join([self.method, *(f"{k}={v}" for k, v in self.settings)])

    def rows(self, frame: pd.DataFrame) -> pd.DataFrame:
        sub = frame[frame["method"] == self.method]
        for field, value in self.settings:
            col = field if field in sub.columns else f"config.{field}"
            if col not in sub.columns:
                raise AdbenchError(f"compare side {self.label!r}: no setting {field!r} in the store")
            sub = sub[sub[col].map(lambda v, want=value: _same(v, want))]
        if sub.empty:
            raise AdbenchError(f"compare: no successful jobs of {self.label!r} in the store")
        return sub


def _same(value: object, want: str) -> bool:
    if isinstance(value, bool):
        return str(value).lower() == want.lower()
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return math.isclose(float(value), float(want))
        except ValueError:
            return False
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) == want
    return str(value) == want


@dataclass(frozen=True)
class ComparisonRow:
    """One line of the comparison: a category (or a dataset's mean) and a metric."""

    dataset: str
    category: str | None  #: None: the dataset's mean over the categories both sides ran
    protocol: str
    shots: int
    metric: str
    a: float
    b: float
    diff: float
    low: float
    high: float
    p: float
    p_holm: float
    test: str
    n_images: int
    seeds: int
    #: Either side ran on random (untrained, undownloaded) backbone weights: not a real comparison.
    random_weights: bool = False


def job_predictions(store: ResultsStore, key: str) -> Predictions:
    """One job's stored predictions (the store's format), maps and masks as one array per image."""
    pred = store.load_predictions(key)
    pixels = pred.maps is not None and pred.masks is not None and len(pred.maps) > 0
    return Predictions(
        pred.labels,
        pred.scores.astype(np.float64),
        list(pred.maps) if pixels else None,
        list(pred.masks) if pixels else None,
        ids=pred.ids,
    )


def _unique_per_seed(rows: pd.DataFrame, side: Side) -> pd.DataFrame:
    dup = rows.duplicated(subset=[*CELL, "seed"], keep=False)
    if dup.any():
        variants = sorted({str(v) for v in rows.loc[dup, "variant"]})
        raise AdbenchError(
            f"compare: {side.label!r} matches several configs per job ({', '.join(variants)}); "
            "narrow it with NAME:FIELD=VALUE"
        )
    return rows


def compare(
    store: ResultsStore,
    a: Side,
    b: Side,
    metrics: Sequence[str] = DEFAULT_METRICS,
    datasets: Sequence[str] | None = None,
    n_resamples: int = significance.N_RESAMPLES,
    any_protocol: bool = False,
) -> list[ComparisonRow]:
    """Paired tests of A - B on every test set both ran (seeds paired), Holm-corrected per metric
    within the category rows and within the dataset rows. Test sets pair under the same protocol
    unless ``any_protocol`` (e.g. batch zero-shot PatchEAD against zero-shot CLIP on the same images:
    the row then names both protocols)."""
    unknown = [m for m in metrics if m not in significance.BOOTSTRAP_METRICS]
    if unknown:
        raise AdbenchError(
            f"--metrics {','.join(unknown)}: no paired test; choose from {', '.join(significance.BOOTSTRAP_METRICS)}"
        )
    frame = store.frame()
    if frame.empty:
        raise AdbenchError(f"compare: no results in {store.root}")
    if datasets:
        frame = frame[frame["dataset"].isin(datasets)]
    rows_a = _unique_per_seed(a.rows(frame), a)
    rows_b = _unique_per_seed(b.rows(frame), b)
    on = [c for c in (*CELL, "seed") if not (any_protocol and c == "protocol")]
    merged = rows_a.merge(rows_b, on=on, suffixes=("_a", "_b"))
    if merged.empty:
        ran = sorted(set(rows_a["protocol"]) | set(rows_b["protocol"]))
        hint = (
            ""
            if any_protocol
            else f" under one protocol (they ran {', '.join(ran)}; --any-protocol pairs them)"
        )
        raise AdbenchError(f"compare: {a.label!r} and {b.label!r} share no test set{hint} in {store.root}")
    if any_protocol:
        merged["protocol"] = merged["protocol_a"] + " vs " + merged["protocol_b"]
    random = bool(merged["random_weights_a"].any() or merged["random_weights_b"].any())
    out: list[ComparisonRow] = []
    for (dataset, protocol, shots), per_dataset in merged.groupby(
        ["dataset", "protocol", "shots"], sort=True
    ):
        out.extend(
            _dataset_rows(store, per_dataset, str(dataset), str(protocol), int(shots), metrics, n_resamples)
        )
    return [dataclasses.replace(r, random_weights=random) for r in _holm(out)]


def _dataset_rows(
    store: ResultsStore,
    rows: pd.DataFrame,
    dataset: str,
    protocol: str,
    shots: int,
    metrics: Sequence[str],
    n_resamples: int,
) -> list[ComparisonRow]:
    loaded = {}
    for category, per_cat in rows.groupby("category", sort=True):
        per_cat = per_cat.sort_values("seed")
        loaded[str(category)] = (
            [job_predictions(store, k) for k in per_cat["key_a"]],
            [job_predictions(store, k) for k in per_cat["key_b"]],
        )
    out = []
    for metric in metrics:
        parts: list[tuple[Paired, np.ndarray | None, int, str]] = []
        for category, (pa, pb) in loaded.items():
            result = _one(metric, pa, pb, n_resamples)
            if result is not None:
                parts.append((*result, len(pa), category))
        for paired, _, seeds, category in parts:
            out.append(_row(dataset, category, protocol, shots, paired, seeds))
        if parts:
            out.append(_row(dataset, None, protocol, shots, _mean(parts), parts[0][2]))
    return out


def _one(
    metric: str, pa: list[Predictions], pb: list[Predictions], n_resamples: int
) -> tuple[Paired, np.ndarray | None] | None:
    """DeLong for a single-seed image AUROC, the paired bootstrap otherwise; None if undefined."""
    try:
        significance.same_images([*pa, *pb])
    except ValueError as exc:  # e.g. A ran on another copy of the dataset than B
        raise AdbenchError(f"compare: {exc} (check both ran on the same dataset copy)") from None
    labels = pa[0].labels
    if len(np.unique(labels)) < 2:
        return None
    if metric.startswith("pixel_") and (pa[0].maps is None or pb[0].maps is None):
        return None
    if metric == "image_auroc" and len(pa) == 1:
        return significance.delong_paired(labels, pa[0].scores, pb[0].scores), None
    try:
        return significance.bootstrap_paired(metric, pa, pb, n_resamples=n_resamples)
    except ValueError as exc:
        raise AdbenchError(f"compare: {exc}") from None


def _mean(parts: list[tuple[Paired, np.ndarray | None, int, str]]) -> Paired:
    if all(boot is None for _, boot, _, _ in parts):
        return significance.delong_mean([p for p, _, _, _ in parts])
    return significance.bootstrap_mean([(p, boot) for p, boot, _, _ in parts if boot is not None])


def _row(
    dataset: str, category: str | None, protocol: str, shots: int, p: Paired, seeds: int
) -> ComparisonRow:
    return ComparisonRow(
        dataset,
        category,
        protocol,
        shots,
        p.metric,
        p.a,
        p.b,
        p.diff,
        p.low,
        p.high,
        p.p,
        p.p,
        p.test,
        p.n,
        seeds,
    )


def _holm(rows: list[ComparisonRow]) -> list[ComparisonRow]:
    """Holm within each family: one metric's category rows, and one metric's dataset rows."""
    families: dict[tuple[str, bool], list[int]] = {}
    for i, r in enumerate(rows):
        families.setdefault((r.metric, r.category is None), []).append(i)
    adjusted = list(rows)
    for idx in families.values():
        for i, p in zip(idx, rank_tests.holm([rows[i].p for i in idx])):
            adjusted[i] = ComparisonRow(**{**asdict(rows[i]), "p_holm": p})
    return adjusted


# ----------------------------------------------------------------------------- rendering


def _pct(x: float) -> str:
    return "—" if x != x else f"{100 * x:.1f}"


def to_frame(rows: Sequence[ComparisonRow]) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in rows])


def render(rows: Sequence[ComparisonRow], a: Side, b: Side, fmt: str) -> str:
    """The comparison as markdown (values in %), csv or json (fractions, full precision)."""
    if fmt == "json":
        return json.dumps({"a": a.label, "b": b.label, "rows": [asdict(r) for r in rows]}, indent=2)
    if fmt == "csv":
        return to_frame(rows).to_csv(index=False)
    header = (
        f"| Dataset | Category | Metric | {a.label} | {b.label} | Δ (A − B) | 95 % CI | p | p (Holm) | Test |"
    )
    banner = (
        ["**RANDOM WEIGHTS**: a side ran on random backbone weights; these numbers compare nothing real.", ""]
        if any(r.random_weights for r in rows)
        else []
    )
    lines = [*banner, header, "|" + "---|" * 10]
    for r in rows:
        category = "**mean**" if r.category is None else r.category
        shots = f", k={r.shots}" if r.shots else ""
        lines.append(
            f"| {r.dataset} ({r.protocol}{shots}) | {category} | {r.metric} | {_pct(r.a)} | {_pct(r.b)} | "
            f"{100 * r.diff:+.1f} | [{100 * r.low:+.1f}, {100 * r.high:+.1f}] | {r.p:.3g} | {r.p_holm:.3g} | "
            f"{r.test}{' (seeds × images)' if r.seeds > 1 else ''} |"
        )
    lines.append("")
    lines.append(
        "Values in %. Image AUROC: DeLong's test (single seed; dataset means combine independent categories); "
        "other metrics: paired bootstrap over test images (stratified by label, each image's pixels together, "
        f"{significance.N_RESAMPLES} resamples; seeds resampled too for few-shot). Holm correction per metric, "
        "separately over category rows and dataset rows."
    )
    return "\n".join(lines)
