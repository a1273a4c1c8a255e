"""The one catalog of metrics: key, level, definition, display name, table order, published-CSV key.

In the spirit of lm-evaluation-harness's ``MetricSpec``: ``metrics.py`` computes, tables and the
published-number matcher read names, order and direction from here (torch-free, so ``adbench list``
and the reports import it cheaply).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricSpec:
    """One metric as every part of adbench names it."""

    key: str  #: record / frame column, e.g. ``image_auroc``
    level: Literal["image", "pixel"]
    title: str  #: display name in tables, e.g. ``Image-AUROC``
    definition: str  #: one line stored with every result, so each number names its definition
    order: int  #: position in paper tables (the DMA-SAP papers' order: AUROC, AUPRO, F1, AP)
    published: tuple[str, str] | None = None  #: (level, metric) as spelled in published_results.csv
    higher_is_better: bool = True


_SPECS = (
    MetricSpec(
        "image_auroc",
        "image",
        "Image-AUROC",
        "image AUROC: sklearn roc_auc_score over the category's test images",
        0,
        ("image", "auroc"),
    ),
    MetricSpec(
        "image_ap",
        "image",
        "Image-AP",
        "image AP: sklearn average_precision_score over the category's test images",
        1,
        ("image", "ap"),
    ),
    MetricSpec(
        "image_f1max",
        "image",
        "Image-F1-max",
        "image F1-max: max of 2PR/(P+R) over sklearn's precision-recall curve (finite values)",
        2,
        ("image", "f1max"),
    ),
    MetricSpec(
        "pixel_auroc",
        "pixel",
        "Pixel-AUROC",
        "pixel AUROC: ROC area over all pixels of the category's test images pooled (= sklearn roc_auc_score)",
        3,
        ("pixel", "auroc"),
    ),
    MetricSpec(
        "pixel_ap",
        "pixel",
        "Pixel-AP",
        "pixel AP: average precision over all pixels pooled (= sklearn average_precision_score)",
        6,
        ("pixel", "ap"),
    ),
    MetricSpec(
        "pixel_f1max",
        "pixel",
        "Pixel-F1-max",
        "pixel F1-max: max of 2PR/(P+R) over every threshold of the pooled pixels",
        5,
        ("pixel", "f1max"),
    ),
    MetricSpec(
        "pixel_aupro",
        "pixel",
        "Pixel-AUPRO",
        "aupro: official MVTec AD definition, exact curve over every distinct score, PRO averaged over "
        "all 8-connected gt regions, global FPR on normal pixels, FPR <= 0.3 interpolated, /0.3",
        4,
        ("pixel", "aupro"),
    ),
    MetricSpec(
        "pixel_aupro_cflow",
        "pixel",
        "Pixel-AUPRO (cflow definition)",
        "aupro_cflow: CFLOW-AD/AnomalyCLIP/MuSc cal_pro_score, np.arange(min, max, (max-min)/200) "
        "thresholds built in the maps' dtype (float32, as AnomalyCLIP: rounding can give 201 instead of "
        "200), points with FPR < 0.3, FPRs min-max rescaled to [0, 1], sklearn auc; NaN (dropped from "
        "dataset means, with a note) for a constant map or fewer than two distinct FPRs below 0.3",
        7,
    ),
)

#: key -> spec, in computation order (image metrics first, as records store them).
METRICS: dict[str, MetricSpec] = {s.key: s for s in _SPECS}


def metric_spec(key: str) -> MetricSpec:
    """The spec of one metric key (KeyError names the known keys)."""
    try:
        return METRICS[key]
    except KeyError:
        raise KeyError(f"unknown metric {key!r}; known: {', '.join(METRICS)}") from None


def metric_keys(level: str | None = None) -> tuple[str, ...]:
    """Metric keys in computation order, optionally of one level."""
    return tuple(k for k, s in METRICS.items() if level is None or s.level == level)


def table_order(keys: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """Keys (default: all) sorted as paper tables print them."""
    return sorted(keys if keys is not None else METRICS, key=lambda k: METRICS[k].order)
