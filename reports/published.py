"""Published numbers from the papers (package data), and how adbench names map onto them.

``data/published_results.csv`` holds one value per (source, method, setting, dataset, level,
metric) in percent. Several papers report the same baseline with different numbers, so a
comparison always names the one source it used.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from typing import Any

import pandas as pd

from adbench.errors import AdbenchError

#: adbench metric key -> (level, metric) as spelled in the CSV.
METRIC_KEYS: dict[str, tuple[str, str]] = {
    "image_auroc": ("image", "auroc"),
    "image_ap": ("image", "ap"),
    "image_f1max": ("image", "f1max"),
    "pixel_auroc": ("pixel", "auroc"),
    "pixel_ap": ("pixel", "ap"),
    "pixel_f1max": ("pixel", "f1max"),
    "pixel_aupro": ("pixel", "aupro"),
}

#: Papers whose AUPRO follows AnomalyCLIP's evaluation code (the ``aupro_cflow`` definition).
CFLOW_AUPRO_PAPERS = ("dma_sap__clip_dinov2_fusion.txt", "vip2clip.txt", "kanoclip.txt")

#: Which paper to prefer when several report the same method: its own paper first, then these.
SOURCE_PRIORITY = ("dma_sap__clip_dinov2_fusion.txt", "vip2clip.txt", "kanoclip.txt", "patchead.txt")
OWN_PAPER = {
    "DMA-SAP": "dma_sap__clip_dinov2_fusion.txt",
    "ViP2-CLIP": "vip2clip.txt",
    "KAnoCLIP": "kanoclip.txt",
    "PatchEAD": "patchead.txt",
    "PatchEAD+ (DINOv2)": "patchead.txt",
}

#: adbench method name -> the CSV's method name (PatchEAD is resolved from its config).
METHOD_NAMES = {
    "dma_sap": "DMA-SAP",
    "vip2clip": "ViP2-CLIP",
    "kanoclip": "KAnoCLIP",
    "winclip": "WinCLIP",
    "anomalyclip": "AnomalyCLIP",
    "adaclip": "AdaCLIP",
    "april_gan": "APRIL-GAN",
    "aprilgan": "APRIL-GAN",
    "clip": "CLIP",
    "crane": "Crane",
    "anovl": "AnoVL",
    "mvfa_ad": "MVFA-AD",
}

#: PatchEADConfig fields that, when true, turn PatchEAD into PatchEAD+ (alignment and/or foreground mask).
_PATCHEAD_PLUS_FIELDS = ("align", "foreground_mask")

#: Dataset groups behind the CSV's average rows.
AVERAGE_GROUPS = {
    "average_industrial": ("mvtec", "visa", "mpdd", "btad", "ksdd", "dagm", "dtd_synthetic"),
    "average_medical": (
        "headct",
        "brainmri",
        "br35h",
        "isic",
        "cvc_colondb",
        "cvc_clinicdb",
        "endo",
        "kvasir",
    ),
}

#: adbench protocol -> prefix of the CSV's ``setting`` values it can be compared with.
_SETTING_PREFIX = {"zero_shot": "zero-shot (", "batch_zero_shot": "batch zero-shot", "few_shot": "few-shot"}


def paper_of(source: str) -> str:
    """The paper file a CSV ``source`` cell names (``'vip2clip.txt (Tables 1-2)'`` -> ``'vip2clip.txt'``)."""
    return source.split(" ", 1)[0]


def uses_cflow_aupro(source: str) -> bool:
    """True when the paper's AUPRO is the AnomalyCLIP (``aupro_cflow``) definition."""
    return paper_of(source) in CFLOW_AUPRO_PAPERS


@functools.cache
def load_published() -> pd.DataFrame:
    """The published results table shipped with the package (values in percent)."""
    path = resources.files("adbench.reports").joinpath("data/published_results.csv")
    with resources.as_file(path) as p:
        frame = pd.read_csv(p)
    expected = {"source", "method", "setting", "dataset", "level", "metric", "value"}
    if not expected <= set(frame.columns):
        raise AdbenchError(f"{path}: expected columns {sorted(expected)}")
    frame["paper"] = frame["source"].map(paper_of)
    return frame


@functools.cache
def load_efficiency() -> pd.DataFrame:
    """Published speed and memory figures shipped with the package."""
    path = resources.files("adbench.reports").joinpath("data/published_efficiency.csv")
    with resources.as_file(path) as p:
        return pd.read_csv(p)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in {"", "0", "false", "no", "off", "none"}
    return bool(value) and not (isinstance(value, float) and value != value)


def published_name(method: str, config: Mapping[str, Any] | None = None) -> str | None:
    """The CSV's name for an adbench method with this config, or None when no paper reports it."""
    config = config or {}
    if method == "patchead":
        plus = any(_truthy(config.get(f)) for f in _PATCHEAD_PLUS_FIELDS)
        if not plus:
            return "PatchEAD"
        # Only the DINOv2 flavour of PatchEAD+ has a published number.
        return "PatchEAD+ (DINOv2)" if "dinov2" in str(config.get("backbone", "")).lower() else None
    return METHOD_NAMES.get(method)


def setting_matches(protocol: str, setting: str) -> bool:
    """Whether a CSV ``setting`` describes the same protocol as an adbench ``protocol``."""
    prefix = _SETTING_PREFIX.get(protocol)
    return prefix is not None and setting.startswith(prefix)


def matches_paper(source: str, paper: str | None) -> bool:
    """Whether a CSV source belongs to the paper named by ``--paper`` (a substring, any case)."""
    return paper is None or paper.lower() in source.lower()


@functools.cache
def lookup(name: str, protocol: str, paper: str | None = None) -> tuple[str | None, pd.DataFrame]:
    """The one source used for a method under a protocol, and its rows (empty when none).

    The method's own paper wins; otherwise the first paper of ``SOURCE_PRIORITY`` reporting it;
    ``paper`` restricts the sources to one paper. Cached: treat the returned frame as read-only.
    """
    table = load_published()
    table = table[table["source"].map(lambda s: matches_paper(s, paper))]
    rows = table[(table["method"] == name) & table["setting"].map(lambda s: setting_matches(protocol, s))]
    if rows.empty:
        return None, rows
    order = [OWN_PAPER.get(name)] + list(SOURCE_PRIORITY)
    papers = set(rows["paper"])
    paper = next((p for p in order if p in papers), sorted(papers)[0])
    rows = rows[rows["paper"] == paper]
    source = rows["source"].iloc[0]
    return source, rows[rows["source"] == source]


def value_of(rows: pd.DataFrame, dataset: str, metric_key: str) -> float | None:
    """The published value (percent) for one dataset and adbench metric key, or None."""
    if metric_key not in METRIC_KEYS or rows.empty:
        return None
    level, metric = METRIC_KEYS[metric_key]
    hit = rows[(rows["dataset"] == dataset) & (rows["level"] == level) & (rows["metric"] == metric)]
    return None if hit.empty else float(hit["value"].iloc[0])


def average_row_for(rows: pd.DataFrame, metric_key: str, datasets: set[str]) -> str | None:
    """The CSV average row comparable with an average over ``datasets``, if the sets agree exactly."""
    if metric_key not in METRIC_KEYS:
        return None
    level, metric = METRIC_KEYS[metric_key]
    sel = rows[(rows["level"] == level) & (rows["metric"] == metric)]
    for avg, group in AVERAGE_GROUPS.items():
        covered = set(sel["dataset"]) & set(group)
        if avg in set(sel["dataset"]) and covered and covered == datasets:
            return avg
    return None


def published_shots(setting: str) -> int | None:
    """The k of a few-shot setting (``few-shot (k=4)``, ``4-shot``), or None when the paper does not say."""
    match = re.search(r"\bk\s*=\s*(\d+)|(\d+)-shot", setting)
    return int(match.group(1) or match.group(2)) if match else None


def ablation_value(method: str, value: str, dataset: str, metric_key: str) -> float | None:
    """A published ablation number: rows named ``<method> ablation <value>. ...`` in an ablation source."""
    table = load_published()
    rows = table[
        table["source"].str.contains("ablation")
        & table["method"].str.startswith(f"{method} ablation {value}.")
    ]
    if dataset.startswith("__average__"):
        # "__average__:mvtec,btad": the paper's Average, only when it covers exactly these datasets
        ours = set(dataset.partition(":")[2].split(","))
        if rows.empty or set(rows["dataset"]) != ours:
            return None
        vals = [value_of(rows, d, metric_key) for d in sorted(ours)]
        return mean_as_printed(vals) if all(v is not None for v in vals) else None
    return value_of(rows, dataset, metric_key)


def mean_as_printed(values: list[float]) -> float:
    """The mean of one-decimal numbers rounded half up to one decimal, as papers print averages
    (95.85 -> 95.9; binary floats would give 95.8)."""
    total = sum(Decimal(str(v)) for v in values) / len(values)
    return float(total.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
