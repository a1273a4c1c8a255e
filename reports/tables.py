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

import pandas as pd

from adbench.errors import AdbenchError
from adbench.metrics import mean_over_categories

from . import published as pub

DASH = "—"
AVERAGE = "__average__"

#: Paper order: the seven industrial sets, then the eight medical ones (the CSV's average groups).
DATASET_ORDER = [name for group in pub.AVERAGE_GROUPS.values() for name in group]
DATASET_NAMES = {
    "mvtec": "MVTec AD",
    "visa": "VisA",
    "mpdd": "MPDD",
    "btad": "BTAD",
    "ksdd": "KSDD",
    "dagm": "DAGM",
    "dtd_synthetic": "DTD-Synthetic",
    "headct": "HeadCT",
    "brainmri": "BrainMRI",
    "br35h": "Br35H",
    "isic": "ISIC",
    "cvc_colondb": "CVC-ColonDB",
    "cvc_clinicdb": "CVC-ClinicDB",
    "endo": "Endo",
    "kvasir": "Kvasir",
    "average_industrial": "Average (industrial)",
    "average_medical": "Average (medical)",
    AVERAGE: "Average",
}
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
COLUMN_KEYS = ["method", "variant", "protocol", "shots"]
PROTOCOL_NAMES = {"zero_shot": "zero-shot", "batch_zero_shot": "batch zero-shot", "few_shot": "few-shot"}
CFLOW_NOTE = (
    "Published AUPRO of AnomalyCLIP-lineage papers follows the aupro_cflow definition; "
    "it is compared with pixel_aupro_cflow, not with the official pixel_aupro."
)


def dataset_name(name: str) -> str:
    return DATASET_NAMES.get(name, name)


def metric_name(name: str) -> str:
    return METRIC_NAMES.get(name, name)


def sort_datasets(names: Sequence[str]) -> list[str]:
    """Paper order for known datasets, then the others alphabetically."""
    known = [d for d in DATASET_ORDER if d in names]
    return known + sorted(set(names) - set(known))


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
    if std is not None and not math.isnan(std):
        text += f" ± {std:.1f}"
    return text


def fmt_diff(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or math.isnan(ours) or math.isnan(theirs):
        return DASH
    return f"{round(ours, 1) - round(theirs, 1):+.1f}".replace("-", "−")


# --------------------------------------------------------------------------- table model


@dataclass
class Part:
    """One number inside a cell (a tuple cell has several); rank 1 = best, 2 = second."""

    text: str
    value: float | None = None
    rank: int | None = None


@dataclass
class Cell:
    parts: list[Part]
    is_tuple: bool = False
    marks: list[int] = field(default_factory=list)
    kind: str = "value"  # value | published | diff


@dataclass
class Row:
    label: str
    cells: list[Cell]
    group: str | None = None
    group_start: bool = False
    rule_before: bool = False


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
    valued = [p for p in parts if p.value is not None and not math.isnan(p.value)]
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


class ReproducedGrid:
    """Store rows aggregated per column (method, variant, protocol, shots) × dataset × metric."""

    def __init__(self, frame: pd.DataFrame, failed: pd.DataFrame | None = None) -> None:
        if frame.empty:
            raise AdbenchError("the results store has no finished records; run `adbench run` first")
        frame = frame.copy()
        frame["variant"] = frame["variant"].fillna("").astype(str)
        if "created" in frame:  # a re-run replaces the older record of the same job
            frame = frame.sort_values("created", na_position="first")
        ids = ["method", "variant", "dataset", "category", "protocol", "shots", "seed"]
        self.n_duplicates = int(frame.duplicated(ids, keep="last").sum())
        self.frame = frame.drop_duplicates(ids, keep="last")
        self.failed = failed if failed is not None else pd.DataFrame()
        self.metrics = metric_columns(self.frame)
        keys = self.frame[COLUMN_KEYS].drop_duplicates().sort_values(COLUMN_KEYS)
        self.keys: list[tuple] = [tuple(k) for k in keys.itertuples(index=False)]
        failed_sets = set(self.failed["dataset"]) if "dataset" in self.failed else set()
        self.datasets = sort_datasets(list(set(self.frame["dataset"]) | failed_sets))
        self._groups = {k: g for k, g in self.frame.groupby(COLUMN_KEYS, sort=False)}
        self._by_dataset = {k: g for k, g in self.frame.groupby([*COLUMN_KEYS, "dataset"], sort=False)}
        self._memo: dict[tuple, tuple[pd.Series, list[str]]] = {}
        multi_protocol = len({(k[2], k[3]) for k in self.keys}) > 1
        self.columns = [self._label(k, multi_protocol) for k in self.keys]
        #: Short table headers: (method, small lines with the variant settings, protocol and flags).
        self.headers = [self._header(k) for k in self.keys]

    def _label(self, key: tuple, with_protocol: bool) -> str:
        method, variant, protocol, shots = key
        label = method + (f" ({variant})" if variant else "")
        if with_protocol:
            label += f" [{PROTOCOL_NAMES.get(protocol, protocol)}"
            label += f", k={shots}]" if protocol == "few_shot" else "]"
        if self.is_random(key):
            label += " [random weights]"
        return label

    def _header(self, key: tuple) -> tuple[str, list[str]]:
        method, variant, protocol, shots = key
        tags = [PROTOCOL_NAMES.get(protocol, protocol) + (f", k={shots}" if protocol == "few_shot" else "")]
        if self.is_random(key):
            tags.append("random weights")
        return method, variant_parts(variant) + [" · ".join(tags)]

    def is_random(self, key: tuple) -> bool:
        """Whether any record of this column ran on randomly initialised weights."""
        return bool(self.rows(key)["random_weights"].any())

    def rows(self, key: tuple) -> pd.DataFrame:
        return self._groups[key]

    def config(self, key: tuple) -> dict:
        """The method-config values of a column (from its first record)."""
        row = self.rows(key).iloc[0]
        return {
            c[len("config.") :]: row[c] for c in row.index if c.startswith("config.") and _present(row[c])
        }

    def _seed_scores(self, key: tuple, dataset: str, metric: str) -> tuple[pd.Series, list[str]]:
        """Dataset score per seed (mean over categories) and the notes about left-out categories."""
        memo = (key, dataset, metric)
        if memo not in self._memo:
            self._memo[memo] = self._compute_seed_scores(key, dataset, metric)
        return self._memo[memo]

    def _compute_seed_scores(self, key: tuple, dataset: str, metric: str) -> tuple[pd.Series, list[str]]:
        rows = self._by_dataset.get((*key, dataset))
        if rows is None:
            return pd.Series(dtype=float), ["not run"]
        if metric not in rows:
            return pd.Series(dtype=float), [f"{metric} not computed by this method"]
        notes = []
        nan_rows = rows[rows[metric].isna()]
        if not nan_rows.empty:
            cats = sorted(nan_rows["category"].unique())
            total = rows["category"].nunique()
            reason = nan_reason(nan_rows, metric)
            if len(cats) < total:
                notes.append(
                    f"{dataset_name(dataset)}: mean over {total - len(cats)} of {total} categories; "
                    f"left out {', '.join(cats)} ({reason})"
                )
            else:
                notes.append(reason)
        # the dataset score is defined once, in adbench.metrics (NaN categories left out)
        return rows.groupby("seed")[metric].agg(mean_over_categories) * 100.0, notes

    def stat(self, col: int, dataset: str, metric: str) -> Stat:
        key = self.keys[col]
        if dataset == AVERAGE:
            return self.average(col, metric)
        if (*key, dataset) not in self._by_dataset:
            return Stat(notes=(self._missing_reason(key, dataset),))
        per_seed, notes = self._seed_scores(key, dataset, metric)
        per_seed = per_seed.dropna()
        if per_seed.empty:
            return Stat(notes=tuple(notes))
        std = float(per_seed.std()) if len(per_seed) > 1 else None
        return Stat(float(per_seed.mean()), std, tuple(notes))

    def _missing_reason(self, key: tuple, dataset: str) -> str:
        if not self.failed.empty:
            sel = self.failed
            for name, value in zip(COLUMN_KEYS, key):
                sel = (
                    sel[sel[name].fillna("").astype(str) == str(value)]
                    if name == "variant"
                    else sel[sel[name] == value]
                )
            sel = sel[sel["dataset"] == dataset]
            if not sel.empty:
                err = str(sel["error"].dropna().iloc[0]).splitlines()[0] if sel["error"].notna().any() else ""
                return f"job failed{': ' + err if err else ''}"
        return "not run"

    def average(self, col: int, metric: str, datasets: Sequence[str] | None = None) -> Stat:
        """Mean over the datasets with a value (per seed, then mean ± std over seeds)."""
        key = self.keys[col]
        per_dataset = {}
        for d in datasets or self.datasets:
            if (*key, d) in self._by_dataset:
                s, _ = self._seed_scores(key, d, metric)
                if not s.dropna().empty:
                    per_dataset[d] = s
        if not per_dataset:
            return Stat(notes=("no dataset has a value",))
        per_seed = pd.DataFrame(per_dataset).mean(axis=1, skipna=True).dropna()
        notes = []
        missing = [d for d in (datasets or self.datasets) if d not in per_dataset]
        if missing:
            notes.append(
                f"Average over {len(per_dataset)} datasets; without {', '.join(dataset_name(d) for d in missing)}"
            )
        std = float(per_seed.std()) if len(per_seed) > 1 else None
        return Stat(float(per_seed.mean()), std, tuple(notes))

    def datasets_with_value(self, col: int, metric: str) -> set[str]:
        return {d for d in self.datasets if self.stat(col, d, metric).ok}


def variant_parts(variant: str) -> list[str]:
    """A variant string split at the commas between ``field=value`` settings (one header line each)."""
    return [p.strip() for p in re.split(r",(?=\s*[\w.-]+=)", variant) if p.strip()] if variant else []


def _present(value: object) -> bool:
    return not (value is None or (isinstance(value, float) and math.isnan(value)))


class PublishedGrid:
    """Published numbers of one paper as the same grid (columns = methods in the paper's order)."""

    def __init__(self, rows: pd.DataFrame) -> None:
        self.rows = rows
        self.source = rows["source"].iloc[0]
        pairs = rows[["method", "setting"]].drop_duplicates()
        multi = pairs["method"].duplicated(keep=False)
        self.keys = [tuple(p) for p in pairs.itertuples(index=False)]
        self.columns = [m + (f" ({s})" if dup else "") for (m, s), dup in zip(self.keys, multi)]
        self.headers = [(m, [s] if dup else []) for (m, s), dup in zip(self.keys, multi)]
        names = list(dict.fromkeys(rows["dataset"]))
        self.datasets = [d for d in sort_datasets([n for n in names if not n.startswith("average")])]
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
        [Part(fmt(stat.mean, stat.std), stat.mean if stat.ok else None)],
        marks=notes.marks(stat.notes),
        kind=kind,
    )


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
    row_names = list(rows) if rows is not None else list(grid.datasets) + [AVERAGE]
    for d in row_names:
        cells = []
        for c in range(len(grid.columns)):
            stat = grid.stat(c, d, metric)
            cells.append(_value_cell(stat, notes))
            if published is not None:
                theirs, extra = published(c, d, metric)
                cells.append(_value_cell(theirs, notes, kind="published"))
                remarks += [r for r in extra if r not in remarks]
                cells.append(Cell([Part(fmt_diff(stat.mean, theirs.mean))], kind="diff"))
        rank_parts([cell.parts[0] for cell in cells if cell.kind == "value"])
        is_avg = d == AVERAGE or d.startswith("average")
        out_rows.append(Row(dataset_name(d), cells, rule_before=is_avg and d == row_names[-1]))
    return Table(
        id=table_id or f"metric-{metric}",
        title=title or metric_name(metric),
        row_header="Dataset",
        rows=out_rows,
        subcolumns=["ours", "paper", "Δ"] if published is not None else [],
        footnotes=notes.texts,
        remarks=remarks,
        **_header_fields(grid),
    )


def tuple_table(grid: ReproducedGrid | PublishedGrid, *, table_id: str = "tuples", title: str = "") -> Table:
    """ViP2-CLIP Tables 1-2: one "(AUROC, AP, F1)" tuple per cell, image then pixel level."""
    notes = Notes()
    out_rows = []
    for group, metrics in TUPLES.values():
        if not any(m in grid.metrics for m in metrics):
            continue
        first = True
        for d in list(grid.datasets) + [AVERAGE]:
            cells = []
            for c in range(len(grid.columns)):
                stats = [grid.stat(c, d, m) for m in metrics]
                parts = [Part(fmt(s.mean), s.mean if s.ok else None) for s in stats]
                texts = merged_notes([metric_name(m) for m in metrics], stats)
                cells.append(Cell(parts, is_tuple=True, marks=notes.marks(texts)))
            for i in range(len(metrics)):
                rank_parts([cell.parts[i] for cell in cells])
            rule = d == AVERAGE or (first and bool(out_rows))
            out_rows.append(Row(dataset_name(d), cells, group=group, group_start=first, rule_before=rule))
            first = False
    remark = "PRO = the official MVTec AD AUPRO (pixel_aupro); F1 = F1-max; ± std over seeds is in the per-metric tables."
    return Table(
        table_id,
        title or "All metrics, tuple layout",
        "Dataset",
        rows=out_rows,
        footnotes=notes.texts,
        section="tuples",
        remarks=[remark],
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
    """Per-category values of one metric: rows grouped by dataset, columns = methods."""
    notes = Notes()
    out_rows = []
    frame = grid.frame
    ids = [*COLUMN_KEYS, "dataset", "category"]
    # One groupby for the whole table (per-cell filtering is slow on large stores).
    agg = frame.groupby(ids, sort=False)[metric].agg(["mean", "std", "count"]).to_dict("index")
    for d in grid.datasets:
        cats = sorted(frame.loc[frame["dataset"] == d, "category"].unique())
        for i, cat in enumerate(cats):
            cells = []
            for key in grid.keys:
                hit = agg.get((*key, d, cat))
                if hit is None:
                    stat = Stat(notes=(grid._missing_reason(key, d),))
                elif hit["count"] == 0:
                    rows = frame[(frame["dataset"] == d) & (frame["category"] == cat)]
                    rows = rows[(rows[COLUMN_KEYS] == pd.Series(key, index=COLUMN_KEYS)).all(axis=1)]
                    stat = Stat(notes=(nan_reason(rows, metric),))
                else:
                    std = hit["std"] * 100.0 if hit["count"] > 1 else None
                    stat = Stat(hit["mean"] * 100.0, std)
                cells.append(_value_cell(stat, notes))
            rank_parts([cell.parts[0] for cell in cells])
            out_rows.append(Row(cat, cells, group=dataset_name(d), group_start=i == 0))
    return Table(
        f"category-{metric}",
        f"{metric_name(metric)} per category",
        "Category",
        rows=out_rows,
        footnotes=notes.texts,
        section="categories",
        **_header_fields(grid),
    )


def ablation_tables(grid: ReproducedGrid, spec: str) -> list[Table]:
    """DMA-SAP Table 7: rows = values of one config field (``method.field``), columns = metrics.

    A second table gives the paper's own layout: (Image-AUROC, Image-AP) per dataset and Average.
    """
    if "." not in spec:
        raise AdbenchError(f"--ablation {spec!r}: expected method.field, e.g. dma_sap.variant")
    method, fld = spec.split(".", 1)
    frame = grid.frame[grid.frame["method"] == method]
    if frame.empty:
        raise AdbenchError(f"--ablation {spec!r}: the store has no records of method '{method}'")
    col = f"config.{fld}"
    if col not in frame or frame[col].isna().all():
        fields = sorted(c[7:] for c in frame.columns if c.startswith("config.") and frame[c].notna().any())
        raise AdbenchError(
            f"--ablation {spec!r}: no config field '{fld}' in {method} records (fields: {', '.join(fields)})"
        )
    frame = frame.copy()
    frame["variant"] = frame[col].map(lambda v: f"{fld}={v}")
    sub = ReproducedGrid(frame, grid.failed)
    notes = Notes()
    rows = []
    for c, (label, key) in enumerate(zip(sub.columns, sub.keys)):
        cells = [_value_cell(sub.average(c, m), notes) for m in sub.metrics]
        value = key[1].split("=", 1)[1]
        rows.append(Row(value + label[len(f"{method} ({key[1]})") :], cells))
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
    )
    pair = [m for m in ("image_auroc", "image_ap") if m in sub.metrics]
    notes2 = Notes()
    rows2 = []
    for c in range(len(sub.columns)):
        cells = []
        for d in sub.datasets + [AVERAGE]:
            stats = [sub.stat(c, d, m) for m in pair]
            cells.append(
                Cell(
                    [Part(fmt(s.mean), s.mean if s.ok else None) for s in stats],
                    is_tuple=True,
                    marks=notes2.marks(merged_notes([metric_name(m) for m in pair], stats)),
                )
            )
        rows2.append(Row(rows[c].label, cells))
    for j in range(len(sub.datasets) + 1):
        for i in range(len(pair)):
            rank_parts([r.cells[j].parts[i] for r in rows2])
    names = ", ".join(metric_name(m) for m in pair)
    second = Table(
        f"ablation-{spec}-datasets",
        f"Ablation over {spec} ({names}) per dataset",
        fld,
        [dataset_name(d) for d in sub.datasets + [AVERAGE]],
        rows2,
        footnotes=notes2.texts,
        section="ablation",
    )
    return [first, second] if pair else [first]
