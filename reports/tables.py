"""Format-neutral report tables: aggregation of store rows into paper-style tables.

Aggregation (as the papers): per column (method + variant + protocol + shots) and dataset, the
dataset score is the mean over categories (NaN categories left out, with a footnote); with
several seeds, mean ± std over seeds of those dataset means. The Average row is the mean over
the datasets that have a value. Missing or NaN cells show "—" with a footnote, never 0.
Values are shown ×100 with one decimal; best in a row is bold (rank 1), second underlined (rank 2).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from adbench.errors import AdbenchError
from adbench.metrics import mean_over_categories
from adbench.record import DATA, role

from . import published as pub

DASH = "—"
AVERAGE = "__average__"
AVERAGE_PREFIX = "average_"  # + a dataset group: the Average row of one group's table

#: Table order of the DMA-SAP paper (Tables 1-6), then the other metrics adbench computes.
#: The same keys as ``adbench.metrics.METRICS`` but not its order (which lists pixel_ap second,
#: while the papers put AUPRO second and AP last), so it is kept here as the papers' own list.
METRIC_ORDER = [
    "image_auroc",
    "image_ap",
    "image_f1max",
    "pixel_auroc",
    "pixel_aupro",
    "pixel_f1max",
    "pixel_ap",
    "pixel_aupro_cflow",
]
METRIC_NAMES = {
    "image_auroc": "Image-AUROC",
    "image_ap": "Image-AP",
    "image_f1max": "Image-F1-max",
    "pixel_auroc": "Pixel-AUROC",
    "pixel_aupro": "Pixel-AUPRO",
    "pixel_f1max": "Pixel-F1-max",
    "pixel_ap": "Pixel-AP",
    "pixel_aupro_cflow": "Pixel-AUPRO (cflow definition)",
}
#: The ViP2-CLIP tuple layout: one tuple per level.
TUPLES = {
    "image": ("Image-level (AUROC, AP, F1)", ("image_auroc", "image_ap", "image_f1max")),
    "pixel": ("Pixel-level (AUROC, PRO, F1)", ("pixel_auroc", "pixel_aupro", "pixel_f1max")),
}
PROTOCOL_NAMES = {"zero_shot": "zero-shot", "batch_zero_shot": "batch zero-shot", "few_shot": "few-shot"}
CFLOW_NOTE = (
    "Published AUPRO of AnomalyCLIP-lineage papers follows the aupro_cflow definition; "
    "it is compared with pixel_aupro_cflow, not with the official pixel_aupro."
)


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset plugin says about itself for reports: title, group and row order."""

    title: str
    group: str = "other"
    order: int = 1000


class DatasetCatalog:
    """Titles, groups and row order of datasets, read from the records (or the dataset plugins).

    A dataset nothing describes (records written before these fields, a published dataset without
    a plugin) keeps its raw name, the ``other`` group and comes after the described ones, by name.
    """

    def __init__(self, infos: dict[str, DatasetInfo] | None = None) -> None:
        self.infos = dict(infos or {})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> DatasetCatalog:
        """From the store frame's ``dataset_title``/``dataset_group``/``dataset_order`` columns (the
        first non-empty value per dataset, so old records beside new ones take the new description)."""
        infos = {}
        for name, rows in frame.groupby("dataset"):
            title, group, order = str(name), "other", 1000
            if "dataset_title" in rows:
                titles = rows["dataset_title"].dropna().astype(str)
                title = next((t for t in titles if t), title)
            if "dataset_group" in rows:
                groups = rows["dataset_group"].dropna().astype(str)
                group = next((g for g in groups if g and g != "other"), group)
            if "dataset_order" in rows:
                orders = pd.to_numeric(rows["dataset_order"], errors="coerce").dropna()
                order = int(orders.min()) if not orders.empty else order
            infos[str(name)] = DatasetInfo(title, group, order)
        return cls(infos)

    @classmethod
    def from_registry(cls, registry: Any, names: Sequence[str]) -> DatasetCatalog:
        """From the registered dataset plugins (a published-only report has no records)."""
        known = set(registry.names("dataset")) if registry is not None else set()
        infos = {}
        for name in names:
            if name in known:
                plugin = registry.dataset(name)
                infos[name] = DatasetInfo(plugin.title or name, plugin.group, plugin.order)
        return cls(infos)

    def info(self, name: str) -> DatasetInfo:
        return self.infos.get(name) or DatasetInfo(name)

    def title(self, name: str) -> str:
        if name == AVERAGE:
            return "Average"
        if name.startswith(AVERAGE_PREFIX):
            return f"Average ({name[len(AVERAGE_PREFIX) :]})"
        return self.info(name).title

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

    def in_group(self, names: Sequence[str], group: str) -> list[str]:
        return [d for d in self.sort(names) if self.group(d) == group]


def metric_name(name: str) -> str:
    return METRIC_NAMES.get(name, name)


def sort_metrics(names: Sequence[str]) -> list[str]:
    known = [m for m in METRIC_ORDER if m in names]
    return known + sorted(set(names) - set(known))


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The metric columns of a store frame (``image_*`` / ``pixel_*``)."""
    return sort_metrics([c for c in frame.columns if c.startswith(("image_", "pixel_"))])


def fmt(value: float | None, std: float | None = None) -> str:
    """A percent value with one decimal (and ± std), or the dash for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    text = f"{value:.1f}"
    text = "0.0" if text == "-0.0" else text  # a tiny negative value (a Δ, a rounding) is no sign
    if std is not None and not math.isnan(std):
        text += f" ± {std:.1f}"
    return text


def fmt_diff(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or math.isnan(ours) or math.isnan(theirs):
        return DASH
    text = f"{round(ours, 1) - round(theirs, 1):+.1f}"
    return ("+0.0" if text == "-0.0" else text).replace("-", "−")


# --------------------------------------------------------------------------- table model


@dataclass
class Part:
    """One number inside a cell (a tuple cell has several); rank 1 = best, 2 = second."""

    text: str
    value: float | None = None
    rank: int | None = None
    rankable: bool = True


@dataclass
class Cell:
    parts: list[Part]
    is_tuple: bool = False
    marks: list[int] = field(default_factory=list)
    kind: str = "value"  # value | published | diff
    suffix: str = ""  # shown after the value(s), e.g. the coverage "(2/6)"


@dataclass
class Row:
    label: str
    cells: list[Cell]
    group: str | None = None
    group_start: bool = False
    rule_before: bool = False
    info: str = ""  # the value of the table's info column (e.g. |C|, the category count)


@dataclass
class Table:
    """A rendered-format-neutral table; ``subcolumns`` splits every column into a group."""

    id: str
    title: str
    row_header: str
    columns: list[str]
    rows: list[Row]
    subcolumns: list[str] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)
    section: str = "main"
    remarks: list[str] = field(default_factory=list)  # unnumbered notes under the table
    #: Per column, the smaller header lines under the short name (variant settings, protocol, flags).
    column_details: list[list[str]] = field(default_factory=list)
    #: Header of an unranked column after the row labels (ViP2-CLIP's |C|), empty for none.
    info_header: str = ""

    @property
    def n_data_columns(self) -> int:
        return len(self.columns) * max(1, len(self.subcolumns))

    def details(self, col: int) -> list[str]:
        """The small header lines of one column (empty when the name says everything)."""
        return self.column_details[col] if col < len(self.column_details) else []

    @property
    def wide(self) -> bool:
        """Too wide for a page at its natural size (LaTeX then scales it to the line width)."""
        # Detail lines are set in a smaller font: count them at about 70% of their length.
        widths = [
            max([len(c)] + [int(0.7 * len(line)) for line in self.details(i)])
            for i, c in enumerate(self.columns)
        ]
        return self.n_data_columns > 6 or sum(widths) + len(self.row_header) > 130


class Notes:
    """Numbered footnotes of one table, identical texts sharing a number."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1

    def marks(self, texts: Sequence[str]) -> list[int]:
        return [self.add(t) for t in texts]


def rank_parts(parts: Sequence[Part]) -> None:
    """Mark the best (1) and second-best (2) values; ties at display precision share a rank.

    Second-best is marked only among three or more values: with two, it would just mark the worse.
    """
    valued = [p for p in parts if p.rankable and p.value is not None and not math.isnan(p.value)]
    if len(valued) < 2:
        return
    top = sorted({round(p.value, 1) for p in valued}, reverse=True)[: 2 if len(valued) > 2 else 1]
    ranks = {v: i + 1 for i, v in enumerate(top)}
    for p in valued:
        p.rank = ranks.get(round(p.value, 1))


# --------------------------------------------------------------------------- statistics


@dataclass
class Stat:
    """An aggregated value in percent, its std over seeds, and footnote texts."""

    mean: float | None = None
    std: float | None = None
    notes: tuple[str, ...] = ()
    coverage: str = ""  # e.g. "2/6" when the value covers fewer categories (or datasets) than exist
    diffable: bool = True  # a published value that may be subtracted from ours (same setting)
    rankable: bool = True  # False: shown, but never marked best/second
    n_seeds: int = 1

    @property
    def ok(self) -> bool:
        return self.mean is not None and not math.isnan(self.mean)


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
_HEADER_SKIP = ("method", "protocol", "shots", "random_weights", "weights.", "backbones.")
COVERAGES = ("shared", "all")


def short_field(name: str) -> str:
    """``config.variant`` -> ``variant``; other setting names unchanged."""
    return name[len("config.") :] if name.startswith("config.") else name


def setting_columns(frame: pd.DataFrame) -> list[str]:
    """The setting columns of a store frame (``frame.attrs['settings']``, from the record schema)."""
    names = frame.attrs.get("settings") or []
    return [c for c in names if c in frame.columns]


def _norm(value: object) -> object:
    return None if not _present(value) else value


def identity_fields(frame: pd.DataFrame) -> list[str]:
    """Settings whose value differs between records of the same dataset: they tell columns apart.

    Derived from the records (never a fixed list of columns).
    """
    fields = []
    for name in setting_columns(frame):
        values = frame[name].map(_norm)
        per_dataset = values.groupby(frame["dataset"]).agg(lambda s: len(set(s)))
        if (per_dataset > 1).any() or name == "method":
            fields.append(name)
    return fields


def column_key(row: pd.Series, fields: Sequence[str], varying: dict[str, set[str]]) -> tuple:
    """A record's column: ``(field, value)`` of every identity field. A data-identity field (dataset
    fingerprint, version) differs between datasets by nature: it counts only in the datasets where
    it differs between records."""
    return tuple(
        (f, _norm(row[f])) for f in fields if role(f) != DATA or row["dataset"] in varying.get(f, ())
    )


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


class ReproducedGrid:
    """Store rows aggregated per column × dataset × metric.

    A column is every record sharing the values of the settings that differ between records
    (method, protocol, shots, config fields, weights, train_on, eval size, precision, ...).
    ``coverage="shared"`` (default) compares cells of a row over the categories every column ran
    and the Average row over the datasets every column has; ``"all"`` shows each cell over its own
    categories with its coverage in the cell. Cells with failed or missing categories never take
    part in best/second marking.
    """

    def __init__(
        self, frame: pd.DataFrame, failed: pd.DataFrame | None = None, coverage: str = "shared"
    ) -> None:
        if frame.empty:
            raise AdbenchError("the results store has no finished records; run `adbench run` first")
        if coverage not in COVERAGES:
            raise AdbenchError(f"--coverage {coverage!r}: expected one of {', '.join(COVERAGES)}")
        self.coverage_mode = coverage
        failed = failed if failed is not None and not failed.empty else frame.iloc[:0]
        both = pd.concat([frame, failed], ignore_index=True)
        both.attrs["settings"] = list(dict.fromkeys(setting_columns(frame) + setting_columns(failed)))
        if "variant" in both:
            both["variant"] = both["variant"].fillna("").astype(str)
        self.settings = setting_columns(both)
        self.identity = identity_fields(both)
        varying = {
            f: {d for d, s in both.groupby("dataset")[f] if len(set(s.map(_norm))) > 1} for f in self.identity
        }
        both["_col"] = [column_key(r, self.identity, varying) for _, r in both.iterrows()]
        both = both.sort_values("created", na_position="first") if "created" in both else both
        ok = both[both["status"] == "ok"]
        cell_ids = ["_col", "dataset", "category", "seed"]
        # Only records equal in every setting can supersede each other (a re-run of the same job).
        self.n_duplicates = int(ok.duplicated(cell_ids, keep="last").sum())
        self.frame = ok.drop_duplicates(cell_ids, keep="last")
        self.failed = both[both["status"] != "ok"]
        self.metrics = metric_columns(self.frame)
        cols = list(dict.fromkeys(both["_col"]))
        self.keys: list[tuple] = sorted(cols, key=lambda k: [(f, str(v)) for f, v in k])
        self._index = {k: i for i, k in enumerate(self.keys)}
        self.catalog = DatasetCatalog.from_frame(both)
        self.datasets = self.catalog.sort(list(set(both["dataset"])))
        self._by_dataset = {k: g for k, g in self.frame.groupby(["_col", "dataset"], sort=False)}
        self._failed_by_dataset = {k: g for k, g in self.failed.groupby(["_col", "dataset"], sort=False)}
        self._expected = self._expected_categories(both)
        self._memo: dict[tuple, Any] = {}
        self.labels: dict[str, str] = {}
        self._set_headers()

    def _set_headers(self) -> None:
        """Two-line headers: the display name, then a legend tag, the protocol and flags; the
        settings behind each tag go in ``legend`` (one line per tag) instead of the header."""
        self.headers = []
        self.legend = []
        #: Per column, the settings and tags spelled out (chart legends have room for them).
        self.descriptions: list[list[str]] = []
        for key in self.keys:
            title, details, tags = self._header(key)
            self.descriptions.append(details + tags)
            if details:
                tag = f"({_letters(len(self.legend))})"
                self.legend.append(f"{tag} {', '.join(details)}")
                tags = [tag, *tags]
            self.headers.append((title, [" · ".join(tags)]))
        self.columns = [" ".join([name, *lines]) for name, lines in self.headers]
        if self.labels:
            self.headers = [
                (self.labels.get(c, name), lines) for c, (name, lines) in zip(self.columns, self.headers)
            ]

    def relabel(self, labels: dict[str, str]) -> None:
        """User column labels (``--label``), keyed by the default column text, e.g. ``DMA-SAP (a) · zero-shot``."""
        unknown = [k for k in labels if k not in self.columns]
        if unknown:
            raise AdbenchError(f"--label {unknown[0]!r}: no such column (columns: {'; '.join(self.columns)})")
        self.labels = dict(labels)
        self._set_headers()

    # --- columns --------------------------------------------------------------------------
    def setting(self, col: int, name: str, default: object = None) -> object:
        value = dict(self.keys[col]).get(name, default)
        if value is None and name not in dict(self.keys[col]):
            rows = self._rows(col)
            if name in rows and rows[name].notna().any():
                return rows[name].dropna().iloc[0]
        return default if value is None else value

    def _rows(self, col: int) -> pd.DataFrame:
        key = self.keys[col]
        frame = self.frame if (self.frame["_col"] == key).any() else self.failed
        return frame[frame["_col"] == key]

    def method(self, col: int) -> str:
        return str(dict(self.keys[col])["method"])

    def protocol(self, col: int) -> tuple[str, int]:
        rows = self._rows(col)
        return str(rows["protocol"].iloc[0]), int(rows["shots"].iloc[0])

    def title(self, col: int) -> str:
        """The paper's display name of the column's method (from the method plugin, via records)."""
        rows = self._rows(col)
        titles = rows["method_title"].dropna() if "method_title" in rows else pd.Series(dtype=str)
        titles = titles[titles != ""]
        return str(titles.iloc[0]) if not titles.empty else self.method(col)

    def published_name(self, col: int) -> str | None:
        """The method's name in the published tables for this column's config (the record's
        ``published_name``, from the method plugin); None when no paper reports it or the records
        predate the field."""
        rows = self._rows(col)
        names = rows["published_name"].dropna() if "published_name" in rows else pd.Series(dtype=str)
        names = names[names != ""]
        return str(names.iloc[0]) if not names.empty else None

    def _header(self, key: tuple) -> tuple[str, list[str], list[str]]:
        col = self._index[key]
        protocol, shots = self.protocol(col)
        same_method = [k for k in self.keys if dict(k)["method"] == dict(key)["method"]]
        details = []
        for f, v in key:
            if f.startswith(_HEADER_SKIP) or f in _HEADER_SKIP or v is None:
                continue
            if len({dict(k).get(f) for k in same_method}) > 1:
                details.append(f"{short_field(f)}={_show(v)}")
        tags = [PROTOCOL_NAMES.get(protocol, protocol) + (f", k={shots}" if protocol == "few_shot" else "")]
        if self.is_random(col):
            tags.append("random weights")
        return self.title(col), details, tags

    def is_random(self, col: int | tuple) -> bool:
        """Whether any record of this column ran on randomly initialised weights."""
        col = self._index[col] if isinstance(col, tuple) else col
        return bool(self._rows(col)["random_weights"].astype(bool).any())

    def config(self, col: int) -> dict:
        """The method-config values of a column (from its first record)."""
        row = self._rows(col).iloc[0]
        return {
            c[len("config.") :]: row[c] for c in row.index if c.startswith("config.") and _present(row[c])
        }

    def settings_text(self, col: int) -> str:
        """Every identifying setting of a column as ``field=value`` (for the CSV)."""
        return ", ".join(f"{short_field(f)}={_show(v)}" for f, v in self.keys[col] if v is not None)

    def n_seeds(self, col: int) -> int:
        return int(self._rows(col)["seed"].nunique())

    # --- coverage -------------------------------------------------------------------------
    @staticmethod
    def _expected_categories(both: pd.DataFrame) -> dict[str, int]:
        """Per dataset: its category count as recorded, at least the categories seen in records."""
        out = {}
        for d, rows in both.groupby("dataset"):
            seen = rows["category"].nunique()
            recorded = pd.to_numeric(rows.get("dataset_n_categories"), errors="coerce").max()
            out[d] = int(max(seen, recorded if _present(recorded) else 0))
        return out

    def coverage(self, col: int, dataset: str) -> Coverage | None:
        memo = ("coverage", col, dataset)
        if memo not in self._memo:
            self._memo[memo] = self._coverage(col, dataset)
        return self._memo[memo]

    def _coverage(self, col: int, dataset: str) -> Coverage | None:
        key = self.keys[col]
        ok = self._by_dataset.get((key, dataset))
        bad = self._failed_by_dataset.get((key, dataset))
        if ok is None and bad is None:
            return None
        ok_cats = frozenset(ok["category"]) if ok is not None else frozenset()
        failed: dict[str, str] = {}
        if bad is not None:
            for cat, rows in bad.groupby("category"):
                if cat in ok_cats:
                    continue  # a later successful re-run of the same job
                err = rows["error"].dropna()
                failed[cat] = str(err.iloc[-1]).splitlines()[0] if not err.empty else "no error recorded"
        return Coverage(ok_cats, failed, self._expected[dataset])

    def shared_categories(self, dataset: str) -> frozenset[str] | None:
        """The categories every column present in this dataset ran successfully (None: no column)."""
        covs = [c for c in (self.coverage(i, dataset) for i in range(len(self.keys))) if c is not None]
        if not covs:
            return None
        return frozenset.intersection(*[c.ok for c in covs])

    def _row_union(self, dataset: str) -> frozenset[str]:
        covs = [c for c in (self.coverage(i, dataset) for i in range(len(self.keys))) if c is not None]
        return frozenset().union(*[c.ok | set(c.failed) for c in covs]) if covs else frozenset()

    # --- values ---------------------------------------------------------------------------
    def _seed_scores(
        self, col: int, dataset: str, metric: str, cats: frozenset[str] | None
    ) -> tuple[pd.Series, list[str]]:
        """Dataset score per seed (mean over ``cats``, or all its categories) and notes on NaN categories."""
        rows = self._by_dataset.get((self.keys[col], dataset))
        if rows is None or metric not in rows:
            return pd.Series(dtype=float), []
        if cats is not None:
            rows = rows[rows["category"].isin(cats)]
        notes = []
        nan_rows = rows[rows[metric].isna()]
        if not nan_rows.empty:
            left = sorted(nan_rows["category"].unique())
            total = rows["category"].nunique()
            reason = nan_reason(nan_rows, metric)
            if len(left) < total:
                notes.append(
                    f"{self.catalog.title(dataset)}: mean over {total - len(left)} of {total} categories; "
                    f"left out {', '.join(left)} ({reason})"
                )
            else:
                notes.append(reason)
        # the dataset score is defined once, in adbench.metrics (NaN categories left out)
        return rows.groupby("seed")[metric].agg(mean_over_categories) * 100.0, notes

    def stat(self, col: int, dataset: str, metric: str) -> Stat:
        if dataset == AVERAGE:
            return self.average(col, metric)
        if dataset.startswith(AVERAGE_PREFIX):
            return self.average(
                col, metric, self.catalog.in_group(self.datasets, dataset[len(AVERAGE_PREFIX) :])
            )
        memo = (col, dataset, metric)
        if memo not in self._memo:
            self._memo[memo] = self._stat(col, dataset, metric)
        return self._memo[memo]

    def _stat(self, col: int, dataset: str, metric: str) -> Stat:
        cov = self.coverage(col, dataset)
        if cov is None:
            return Stat(notes=("not run",), rankable=False)
        notes = [
            f"{self.catalog.title(dataset)}/{cat}: job failed: {err}"
            for cat, err in sorted(cov.failed.items())
        ]
        cats = None
        shared = self.shared_categories(dataset)
        if self.coverage_mode == "shared" and shared and shared != cov.ok:
            cats = shared
            notes.append(
                f"{self.catalog.title(dataset)}: columns compared over the {len(shared)} categories all of them "
                f"ran ({_short_list(sorted(shared))})"
            )
        if not cov.ok:
            return Stat(notes=tuple(notes) or ("no successful job",), rankable=False)
        per_seed, nan_notes = self._seed_scores(col, dataset, metric, cats)
        notes += nan_notes
        rows = self._by_dataset[(self.keys[col], dataset)]
        if metric not in rows:
            notes.append(f"{metric} not computed by this method")
        per_seed = per_seed.dropna()
        partial = not cov.complete
        covered = cov.ok | set(cov.failed)
        rankable = not cov.failed and covered >= self._row_union(dataset)
        if self.coverage_mode == "shared" and not shared:
            rankable = False
            notes.append(f"{self.catalog.title(dataset)}: no category is shared by all columns; not ranked")
        if partial:
            notes.append(
                f"{self.catalog.title(dataset)}: {cov.text} categories ran successfully"
                + ("" if rankable else "; not ranked")
            )
        if per_seed.empty:
            return Stat(notes=tuple(notes), coverage=cov.text if partial else "", rankable=False)
        std = float(per_seed.std()) if len(per_seed) > 1 else None
        return Stat(
            float(per_seed.mean()),
            std,
            tuple(notes),
            coverage=cov.text if partial else "",
            rankable=rankable,
            n_seeds=len(per_seed),
        )

    def average(self, col: int, metric: str, datasets: Sequence[str] | None = None) -> Stat:
        """Mean over datasets (per seed, then mean ± std over seeds): in shared mode over the
        datasets every column has a value for, else over this column's datasets with a value."""
        names = list(datasets or self.datasets)
        per_dataset = {}
        for d in names:
            s = self.stat(col, d, metric)
            if s.ok:
                per_seed, _ = self._seed_scores(col, d, metric, self.categories_used(col, d))
                per_dataset[d] = per_seed
        notes: list[str] = []
        with_value = [d for d in names if any(self.stat(c, d, metric).ok for c in range(len(self.keys)))]
        shared = [d for d in with_value if all(self.stat(c, d, metric).ok for c in range(len(self.keys)))]
        if self.coverage_mode == "shared" and shared:
            if len(shared) < len(with_value):
                notes.append(
                    "Average over the datasets every column has: "
                    + ", ".join(self.catalog.title(d) for d in shared)
                )
            per_dataset = {d: per_dataset[d] for d in shared}
        if not per_dataset:
            return Stat(notes=("no dataset has a value",), rankable=False)
        per_seed = pd.DataFrame(per_dataset).mean(axis=1, skipna=True).dropna()
        used = list(per_dataset)
        rankable = all(self.stat(col, d, metric).rankable for d in used) and (
            set(used) >= set(shared if self.coverage_mode == "shared" and shared else with_value)
        )
        coverage = (
            f"{len(used)}/{len(with_value)}"
            if len(used) < len(with_value) and not (self.coverage_mode == "shared" and shared)
            else ""
        )
        if coverage:
            missing = [d for d in with_value if d not in per_dataset]
            notes.append(
                f"Average over {len(used)} of {len(with_value)} datasets; without "
                f"{', '.join(self.catalog.title(d) for d in missing)}; not ranked"
            )
            rankable = False
        partial = [d for d in used if self.stat(col, d, metric).coverage]
        if partial and not coverage:
            coverage = "partial"
            notes.append(
                f"Average includes datasets with missing categories: {', '.join(map(self.catalog.title, partial))}"
            )
        std = float(per_seed.std()) if len(per_seed) > 1 else None
        return Stat(
            float(per_seed.mean()),
            std,
            tuple(notes),
            coverage=coverage,
            rankable=rankable,
            n_seeds=len(per_seed),
        )

    def categories_used(self, col: int, dataset: str) -> frozenset[str] | None:
        """The categories a cell's value is computed over (None: all the column ran)."""
        if self.coverage_mode != "shared":
            return None
        shared = self.shared_categories(dataset)
        return shared or None

    def datasets_with_value(self, col: int, metric: str, average: str = AVERAGE) -> set[str]:
        """The datasets behind one Average row (all, or one group's) where this column has a value."""
        names = self.datasets
        if average.startswith(AVERAGE_PREFIX):
            names = self.catalog.in_group(names, average[len(AVERAGE_PREFIX) :])
        return {d for d in names if self.stat(col, d, metric).ok}

    def n_categories(self, dataset: str) -> int:
        """The dataset's category count (as recorded by the runner, at least those seen)."""
        return self._expected[dataset]


def _letters(i: int) -> str:
    """Legend tags a, b, ..., z, aa, ab, ..."""
    return _letters(i // 26 - 1) + chr(97 + i % 26) if i >= 26 else chr(97 + i)


def _short_list(items: Sequence[str], limit: int = 6) -> str:
    return ", ".join(items[:limit]) + (f", … (+{len(items) - limit})" if len(items) > limit else "")


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def variant_parts(variant: str) -> list[str]:
    """A variant string split at the commas between ``field=value`` settings (one header line each)."""
    return [p.strip() for p in re.split(r",(?=\s*[\w.-]+=)", variant) if p.strip()] if variant else []


def _present(value: object) -> bool:
    return not (value is None or (isinstance(value, float) and math.isnan(value)))


class PublishedGrid:
    """Published numbers of one paper as the same grid (columns = methods in the paper's order)."""

    def __init__(self, rows: pd.DataFrame, catalog: DatasetCatalog | None = None) -> None:
        self.rows = rows
        self.catalog = catalog or DatasetCatalog()
        self.source = rows["source"].iloc[0]
        pairs = rows[["method", "setting"]].drop_duplicates()
        multi = pairs["method"].duplicated(keep=False)
        self.keys = [tuple(p) for p in pairs.itertuples(index=False)]
        self.columns = [m + (f" ({s})" if dup else "") for (m, s), dup in zip(self.keys, multi)]
        self.headers = [(m, [s] if dup else []) for (m, s), dup in zip(self.keys, multi)]
        names = list(dict.fromkeys(rows["dataset"]))
        self.datasets = self.catalog.sort([n for n in names if not n.startswith("average")])
        self.averages = [n for n in names if n.startswith("average")]
        self.metrics = sort_metrics(
            [
                m
                for m, lm in pub.METRIC_KEYS.items()
                if ((rows["level"] == lm[0]) & (rows["metric"] == lm[1])).any()
            ]
        )

    def stat(self, col: int, dataset: str, metric: str) -> Stat:
        method, setting = self.keys[col]
        sel = self.rows[(self.rows["method"] == method) & (self.rows["setting"] == setting)]
        value = pub.value_of(sel, dataset, metric)
        return Stat(value, None, () if value is not None else ("not reported in the paper",))


# --------------------------------------------------------------------------- builders


def _header_fields(grid: ReproducedGrid | PublishedGrid) -> dict:
    """Table keyword arguments for short column headers with their small detail lines."""
    return {
        "columns": [name for name, _ in grid.headers],
        "column_details": [list(lines) for _, lines in grid.headers],
    }


StatFn = Callable[[int, str, str], Stat]


def _value_cell(stat: Stat, notes: Notes, kind: str = "value") -> Cell:
    return Cell(
        [Part(fmt(stat.mean, stat.std), stat.mean if stat.ok else None, rankable=stat.rankable)],
        marks=notes.marks(stat.notes),
        kind=kind,
        suffix=f"({stat.coverage})" if stat.coverage else "",
    )


def _seed_note(grid: ReproducedGrid | PublishedGrid) -> list[str]:
    """A remark giving the number of seeds per column when any column has more than one."""
    if not isinstance(grid, ReproducedGrid):
        return []
    counts = [grid.n_seeds(c) for c in range(len(grid.keys))]
    if max(counts, default=1) <= 1:
        return []
    per = ", ".join(f"{name} {n}" for name, n in zip(grid.columns, counts))
    return [f"Mean ± sample std over seeds; seeds per column: {per}."]


def _coverage_remark(grid: ReproducedGrid | PublishedGrid, rows: Sequence[Row] = ()) -> list[str]:
    """How cells with different coverage are compared, when a row of the table has such a cell."""
    if not isinstance(grid, ReproducedGrid):
        return []
    if rows and not any(
        c.suffix or any(not p.rankable and p.value is not None for p in c.parts)
        for r in rows
        for c in r.cells
    ):
        return []
    if grid.coverage_mode == "shared":
        return [
            "Cells of a row are compared over the categories all columns ran, the Average over the "
            "datasets all columns have (footnotes say where that differs); (k/n) = a cell with k of n "
            "categories; cells with failed or missing categories are not ranked."
        ]
    return [
        "Each cell over its own categories; (k/n) = k of n categories (or datasets); partial cells are not ranked."
    ]


def row_names(grid: ReproducedGrid | PublishedGrid, group: str | None = None) -> list[str]:
    """The dataset rows of one table and its Average row (per dataset group when grouped)."""
    if group is None:
        return list(grid.datasets) + [AVERAGE]
    return grid.catalog.in_group(grid.datasets, group) + [AVERAGE_PREFIX + group]


def _is_average(name: str) -> bool:
    return name == AVERAGE or name.startswith(AVERAGE_PREFIX)


def _row_label(grid: ReproducedGrid | PublishedGrid, name: str, rows: Sequence[str]) -> str:
    """A row's label: the dataset's title; an Average row names its group only when the table has
    several Average rows (a paper printing industrial and medical averages in one table)."""
    if _is_average(name) and sum(map(_is_average, rows)) == 1:
        return "Average"
    return grid.catalog.title(name)


def _n_categories(grid: ReproducedGrid | PublishedGrid, name: str) -> str:
    if not isinstance(grid, ReproducedGrid) or _is_average(name):
        return ""
    return str(grid.n_categories(name))


def metric_table(
    grid: ReproducedGrid | PublishedGrid,
    metric: str,
    *,
    rows: Sequence[str] | None = None,
    published: Callable[[int, str, str], tuple[Stat, list[str]]] | None = None,
    table_id: str = "",
    title: str = "",
) -> Table:
    """DMA-SAP Tables 1-6: rows = datasets then Average, columns = methods, one metric.

    With ``published``, every column is split into ours / paper / Δ.
    """
    notes = Notes()
    remarks: list[str] = []
    out_rows = []
    row_list = list(rows) if rows is not None else row_names(grid)
    for d in row_list:
        cells = []
        for c in range(len(grid.columns)):
            stat = grid.stat(c, d, metric)
            cells.append(_value_cell(stat, notes))
            if published is not None:
                theirs, extra = published(c, d, metric)
                cells.append(_value_cell(theirs, notes, kind="published"))
                remarks += [r for r in extra if r not in remarks]
                diff = fmt_diff(stat.mean, theirs.mean) if theirs.diffable else DASH
                cells.append(Cell([Part(diff)], kind="diff"))
        rank_parts([cell.parts[0] for cell in cells if cell.kind == "value"])
        first_avg = _is_average(d) and not any(map(_is_average, row_list[: row_list.index(d)]))
        out_rows.append(
            Row(_row_label(grid, d, row_list), cells, rule_before=first_avg, info=_n_categories(grid, d))
        )
    return Table(
        id=table_id or f"metric-{metric}",
        title=title or metric_name(metric),
        row_header="Dataset",
        rows=out_rows,
        subcolumns=["ours", "paper", "Δ"] if published is not None else [],
        footnotes=notes.texts,
        remarks=list(getattr(grid, "legend", []))
        + remarks
        + _coverage_remark(grid, out_rows)
        + _seed_note(grid),
        info_header="|C|" if isinstance(grid, ReproducedGrid) else "",
        **_header_fields(grid),
    )


def tuple_table(
    grid: ReproducedGrid | PublishedGrid,
    *,
    table_id: str = "tuples",
    title: str = "",
    group: str | None = None,
) -> Table:
    """ViP2-CLIP Tables 1-2: one "(AUROC, AP, F1)" tuple per cell, image then pixel level."""
    notes = Notes()
    out_rows = []
    for level, metrics in TUPLES.values():
        if not any(m in grid.metrics for m in metrics):
            continue
        first = True
        names = row_names(grid, group)
        for d in names:
            cells = []
            for c in range(len(grid.columns)):
                stats = [grid.stat(c, d, m) for m in metrics]
                parts = [Part(fmt(s.mean), s.mean if s.ok else None, rankable=s.rankable) for s in stats]
                texts = merged_notes([metric_name(m) for m in metrics], stats)
                cov = next((s.coverage for s in stats if s.coverage), "")
                cells.append(
                    Cell(parts, is_tuple=True, marks=notes.marks(texts), suffix=f"({cov})" if cov else "")
                )
            for i in range(len(metrics)):
                rank_parts([cell.parts[i] for cell in cells])
            rule = d == AVERAGE or d.startswith(AVERAGE_PREFIX) or (first and bool(out_rows))
            out_rows.append(
                Row(
                    _row_label(grid, d, names),
                    cells,
                    group=level,
                    group_start=first,
                    rule_before=rule,
                    info=_n_categories(grid, d),
                )
            )
            first = False
    remark = "PRO = the official MVTec AD AUPRO (pixel_aupro); F1 = F1-max; ± std over seeds is in the per-metric tables."
    return Table(
        table_id,
        title or "All metrics, tuple layout",
        "Dataset",
        rows=out_rows,
        footnotes=notes.texts,
        section="tuples",
        remarks=list(getattr(grid, "legend", [])) + [remark] + _coverage_remark(grid, out_rows),
        info_header="|C|" if isinstance(grid, ReproducedGrid) else "",
        **_header_fields(grid),
    )


def merged_notes(names: Sequence[str], stats: Sequence[Stat]) -> list[str]:
    """Footnotes of a tuple cell: a note shared by every element once, others prefixed by metric."""
    texts = list(dict.fromkeys(t for s in stats for t in s.notes))
    out = []
    for text in texts:
        having = [n for n, s in zip(names, stats) if text in s.notes]
        out.append(text if len(having) == len(names) else f"{', '.join(having)}: {text}")
    return out


def category_table(grid: ReproducedGrid, metric: str) -> Table:
    """Per-category values of one metric: rows grouped by dataset, columns = methods.

    A failed job's cell quotes that job's own error; a category missing in a column is "not run".
    """
    notes = Notes()
    out_rows = []
    frame = grid.frame
    # One groupby for the whole table (per-cell filtering is slow on large stores).
    agg = frame.groupby(["_col", "dataset", "category"], sort=False)[metric].agg(["mean", "std", "count"])
    agg = agg.to_dict("index")
    for d in grid.datasets:
        covs = [grid.coverage(c, d) for c in range(len(grid.keys))]
        cats = sorted(set().union(*[(c.ok | set(c.failed)) for c in covs if c is not None]))
        for i, cat in enumerate(cats):
            cells = []
            for c, key in enumerate(grid.keys):
                hit = agg.get((key, d, cat))
                cov = covs[c]
                if hit is None:
                    err = cov.failed.get(cat) if cov is not None else None
                    stat = Stat(notes=(f"job failed: {err}" if err else "not run",))
                elif hit["count"] == 0:
                    rows = frame[
                        (frame["_col"] == key) & (frame["dataset"] == d) & (frame["category"] == cat)
                    ]
                    stat = Stat(notes=(nan_reason(rows, metric),))
                else:
                    std = hit["std"] * 100.0 if hit["count"] > 1 else None
                    stat = Stat(hit["mean"] * 100.0, std)
                cells.append(_value_cell(stat, notes))
            rank_parts([cell.parts[0] for cell in cells])
            out_rows.append(Row(cat, cells, group=grid.catalog.title(d), group_start=i == 0))
    return Table(
        f"category-{metric}",
        f"{metric_name(metric)} per category",
        "Category",
        rows=out_rows,
        footnotes=notes.texts,
        section="categories",
        remarks=list(grid.legend),
        **_header_fields(grid),
    )


def ablation_frame(grid: ReproducedGrid, spec: str) -> tuple[pd.DataFrame, str, str]:
    """The records of one ablation (``method.field``): refused when anything else differs."""
    if "." not in spec:
        raise AdbenchError(f"--ablation {spec!r}: expected method.field, e.g. dma_sap.variant")
    method, fld = spec.split(".", 1)
    both = pd.concat([grid.frame, grid.failed], ignore_index=True)
    both = both[both["method"] == method]
    if both.empty:
        raise AdbenchError(f"--ablation {spec!r}: the store has no records of method '{method}'")
    col = f"config.{fld}"
    if col not in both or both[col].isna().all():
        fields = sorted(c[7:] for c in both.columns if c.startswith("config.") and both[c].notna().any())
        raise AdbenchError(
            f"--ablation {spec!r}: no config field '{fld}' in {method} records (fields: {', '.join(fields)})"
        )
    both.attrs["settings"] = [c for c in grid.settings if c in both]
    others = [f for f in identity_fields(both) if f not in ("method", col)]
    if others:
        what = "; ".join(
            f"{short_field(f)} ({', '.join(sorted({_show(v) for v in both[f].map(_norm)}))})" for f in others
        )
        raise AdbenchError(
            f"--ablation {spec!r}: the {method} records also differ in {what}; an ablation holds every "
            "other setting fixed (re-run the variants with the same settings, or use separate stores)"
        )
    return both, method, fld


def ablation_tables(
    grid: ReproducedGrid, spec: str, published: Callable[[str, str, str], float | None] | None = None
) -> list[Table]:
    """DMA-SAP Table 7: rows = values of one config field (``method.field``).

    The first table averages every metric over datasets; the second is the paper's own layout,
    (Image-AUROC, Image-AP) per dataset and Average, with the published row beside each reproduced
    one when ``published(method, value, dataset|AVERAGE, metric)`` knows it (same orientation).
    Columns are compared over the categories and datasets all variants share.
    """
    both, method, fld = ablation_frame(grid, spec)
    col = f"config.{fld}"
    frame = both[both["status"] == "ok"].copy()
    failed = both[both["status"] != "ok"].copy()
    for f in (frame, failed):
        f.attrs["settings"] = ["method", col]
    sub = ReproducedGrid(frame, failed, coverage=grid.coverage_mode)
    values = [_show(sub.setting(c, col)) for c in range(len(sub.keys))]
    notes = Notes()
    rows = []
    for c, value in enumerate(values):
        label = value + (" [random weights]" if sub.is_random(c) else "")
        rows.append(Row(label, [_value_cell(sub.average(c, m), notes) for m in sub.metrics]))
    for i in range(len(sub.metrics)):
        rank_parts([r.cells[i].parts[0] for r in rows])
    first = Table(
        f"ablation-{spec}",
        f"Ablation over {spec}: metrics averaged over datasets",
        fld,
        [metric_name(m) for m in sub.metrics],
        rows,
        footnotes=notes.texts,
        section="ablation",
        remarks=_coverage_remark(sub, rows),
    )
    pair = [m for m in ("image_auroc", "image_ap") if m in sub.metrics]
    if not pair:
        return [first]
    notes2 = Notes()
    rows2 = []
    has_published = published is not None and any(
        published(method, v, d, pair[0]) is not None for v in values for d in sub.datasets
    )
    for c, value in enumerate(values):
        cells = []
        for d in sub.datasets + [AVERAGE]:
            stats = [sub.stat(c, d, m) for m in pair]
            cov = next((s.coverage for s in stats if s.coverage), "")
            cells.append(
                Cell(
                    [Part(fmt(s.mean), s.mean if s.ok else None, rankable=s.rankable) for s in stats],
                    is_tuple=True,
                    marks=notes2.marks(merged_notes([metric_name(m) for m in pair], stats)),
                    suffix=f"({cov})" if cov else "",
                )
            )
            if has_published:
                where = d if d != AVERAGE else f"{AVERAGE}:{','.join(sub.datasets)}"
                theirs = [published(method, value, where, m) for m in pair]
                cells.append(
                    Cell(
                        [Part(fmt(v), v) for v in theirs],
                        is_tuple=True,
                        kind="published",
                        marks=[]
                        if any(v is not None for v in theirs)
                        else notes2.marks(["not in the paper"]),
                    )
                )
        rows2.append(Row(rows[c].label, cells))
    step = 2 if has_published else 1
    for j in range(len(sub.datasets) + 1):
        for i in range(len(pair)):
            rank_parts([r.cells[j * step].parts[i] for r in rows2])
            if has_published:
                rank_parts([r.cells[j * step + 1].parts[i] for r in rows2])
    names = ", ".join(metric_name(m) for m in pair)
    second = Table(
        f"ablation-{spec}-datasets",
        f"Ablation over {spec} ({names}) per dataset"
        + (", reproduced beside the paper" if has_published else ""),
        fld,
        [sub.catalog.title(d) for d in sub.datasets + [AVERAGE]],
        rows2,
        subcolumns=["ours", "paper"] if has_published else [],
        footnotes=notes2.texts,
        section="ablation",
        remarks=_coverage_remark(sub, rows2),
    )
    return [first, second]


def published_ablation_table(grid: PublishedGrid, *, table_id: str, title: str) -> Table:
    """A published ablation (DMA-SAP Table 7) in the paper's orientation, as the reproduced one:
    rows = model configurations, columns = datasets then Average, (Image-AUROC, Image-AP) cells."""
    pair = [m for m in ("image_auroc", "image_ap") if m in grid.metrics]
    notes = Notes()
    rows = []
    for c, (method, _setting) in enumerate(grid.keys):
        cells = []
        for d in grid.datasets + [AVERAGE]:
            if d == AVERAGE:
                vals = [[grid.stat(c, dd, m).mean for dd in grid.datasets] for m in pair]
                stats = [
                    Stat(pub.mean_as_printed(v))
                    if all(x is not None for x in v)
                    else Stat(notes=("incomplete",))
                    for v in vals
                ]
            else:
                stats = [grid.stat(c, d, m) for m in pair]
            cells.append(
                Cell(
                    [Part(fmt(s.mean), s.mean if s.ok else None) for s in stats],
                    is_tuple=True,
                    marks=notes.marks(merged_notes([metric_name(m) for m in pair], stats)),
                )
            )
        label = method.split(" ablation ", 1)[1] if " ablation " in method else method
        rows.append(Row(label, cells))
    for j in range(len(grid.datasets) + 1):
        for i in range(len(pair)):
            rank_parts([r.cells[j].parts[i] for r in rows])
    return Table(
        table_id,
        title,
        "Model configuration",
        [grid.catalog.title(d) for d in grid.datasets] + ["Average"],
        rows,
        footnotes=notes.texts,
        section="published",
        remarks=[
            f"Cells: ({', '.join(metric_name(m) for m in pair)}); Average = mean of the datasets, as the paper prints it."
        ],
    )
