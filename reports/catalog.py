"""What reports print about datasets, metrics and protocols, read from the records, the dataset
plugins and the harness catalogs (never a list of names kept here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from adbench.metric_catalog import METRICS, table_order
from adbench.protocol_catalog import PROTOCOLS

from .model import RowKey

#: The ViP2-CLIP tuple layout: one tuple per level (the papers' own choice of three metrics).
TUPLES = {
    "image": ("Image-level (AUROC, AP, F1)", ("image_auroc", "image_ap", "image_f1max")),
    "pixel": ("Pixel-level (AUROC, PRO, F1)", ("pixel_auroc", "pixel_aupro", "pixel_f1max")),
}
CFLOW_NOTE = (
    "Published AUPRO of AnomalyCLIP-lineage papers follows the aupro_cflow definition; "
    "it is compared with pixel_aupro_cflow, not with the official pixel_aupro."
)


def metric_name(name: str) -> str:
    """The display name of a metric key (the metric catalog's title)."""
    spec = METRICS.get(name)
    return spec.title if spec else name


def sort_metrics(names: Sequence[str]) -> list[str]:
    """Metric keys in the papers' table order, unknown keys last by name."""
    known = table_order([m for m in names if m in METRICS])
    return known + sorted(set(names) - set(known))


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The metric columns of a store frame (``image_*`` / ``pixel_*``)."""
    return sort_metrics([c for c in frame.columns if c.startswith(("image_", "pixel_"))])


def takes_shots(protocol: str) -> bool:
    """Whether a protocol sees k reference images (its catalog grid of k is not just 0)."""
    spec = PROTOCOLS.get(protocol)
    return spec is not None and spec.shots != (0,)


def protocol_title(name: str, shots: int = 0) -> str:
    """``few-shot, k=2``; a protocol name the catalog does not know is printed as is."""
    spec = PROTOCOLS.get(name)
    title = spec.title if spec else name
    return title + (f", k={shots}" if shots else "")


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset plugin says about itself for reports: title, group, row order and the
    category count the papers evaluate (its ``published_counts["categories"]``, when declared)."""

    title: str
    group: str = "other"
    order: int = 1000
    published_categories: int | None = None
    #: The categories in the dataset's own (the paper's) order: the plugin's ``object_names``.
    category_order: tuple[str, ...] = ()


class DatasetCatalog:
    """Titles, groups and row order of datasets, read from the records (or the dataset plugins).

    A dataset nothing describes (records written before these fields, a published dataset without
    a plugin) keeps its raw name, the ``other`` group and comes after the described ones, by name.
    """

    def __init__(self, infos: dict[str, DatasetInfo] | None = None) -> None:
        self.infos = dict(infos or {})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, registry: Any = None) -> DatasetCatalog:
        """From the store frame's ``dataset_title``/``dataset_group``/``dataset_order`` columns (the
        first non-empty value per dataset); the published category count from the plugin."""
        names = set(frame["dataset"])
        if "train_on" in frame:  # auxiliary datasets are named in "trained on ..." notes
            names |= {n for v in frame["train_on"].dropna() for n in str(v).split(",") if n}
        plugins = cls.from_registry(registry, sorted(names)) if registry else cls()
        infos = dict(plugins.infos)
        for name, rows in frame.groupby("dataset"):
            title, group, order = str(name), "other", 1000
            if "dataset_title" in rows:
                title = next((t for t in rows["dataset_title"].dropna().astype(str) if t), title)
            if "dataset_group" in rows:
                groups = rows["dataset_group"].dropna().astype(str)
                group = next((g for g in groups if g and g != "other"), group)
            if "dataset_order" in rows:
                orders = pd.to_numeric(rows["dataset_order"], errors="coerce").dropna()
                order = int(orders.min()) if not orders.empty else order
            plugin = plugins.info(str(name))
            infos[str(name)] = DatasetInfo(
                title, group, order, plugin.published_categories, plugin.category_order
            )
        return cls(infos)

    @classmethod
    def from_registry(cls, registry: Any, names: Sequence[str]) -> DatasetCatalog:
        """From the registered dataset plugins (a published-only report has no records)."""
        known = set(registry.names("dataset")) if registry is not None else set()
        infos = {}
        for name in names:
            if name in known:
                plugin = registry.dataset(name)
                infos[name] = DatasetInfo(
                    plugin.title or name,
                    plugin.group,
                    plugin.order,
                    plugin.published_counts.get("categories"),
                    tuple(plugin.object_names),
                )
        return cls(infos)

    def info(self, name: str) -> DatasetInfo:
        return self.infos.get(name) or DatasetInfo(name)

    def title(self, name: str) -> str:
        return self.info(name).title

    def row_title(self, key: RowKey) -> str:
        """A row's title: the dataset's, or "Average" / "Average (group)"."""
        if key.dataset is not None:
            return self.title(key.dataset)
        return f"Average ({key.group})" if key.group else "Average"

    def sort_categories(self, dataset: str, names: Sequence[str]) -> list[str]:
        """Categories in the dataset's own order, the ones it does not list after them by name."""
        order = {c: i for i, c in enumerate(self.info(dataset).category_order)}
        return sorted(set(names), key=lambda c: (order.get(c, len(order)), c))

    def group(self, name: str) -> str:
        return self.info(name).group

    def sort(self, names: Sequence[str]) -> list[str]:
        """The papers' row order (the plugins' ``order``), undescribed datasets last by name."""
        return sorted(set(names), key=lambda d: (self.info(d).order, d))

    def groups(self, names: Sequence[str]) -> list[str]:
        """The groups present, ordered by their first dataset (the plugins' order puts industrial
        before medical; ``other`` holds undescribed datasets and comes last)."""
        first: dict[str, tuple[int, str]] = {}
        for d in self.sort(names):
            first.setdefault(self.group(d), (self.info(d).order, d))
        return sorted(first, key=lambda g: (g == "other", first[g]))

    def in_group(self, names: Sequence[str], group: str | None) -> list[str]:
        return [d for d in self.sort(names) if group is None or self.group(d) == group]
