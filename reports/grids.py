"""Grids: values per column × row × metric, behind one protocol (``Grid``) the table builders read.

``ReproducedGrid`` aggregates store records (the dataset score is the mean over categories, NaN
categories left out; with several seeds mean ± std over seeds of those means); ``PublishedGrid``
holds one paper's printed numbers. Builders never ask which kind they hold.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol

import pandas as pd

from adbench.errors import AdbenchError
from adbench.metrics import mean_over_categories

from . import published as pub
from .catalog import DatasetCatalog, metric_columns, sort_metrics
from .columns import (
    COVERAGES,
    Coverage,
    column_key,
    identity_fields,
    nan_reason,
    norm,
    present,
    setting_columns,
    short_list,
)
from .headers import ColumnHeaders
from .model import RowKey, Stat


class Grid(Protocol):
    """What a table builder reads from a grid of values."""

    catalog: DatasetCatalog
    datasets: list[str]
    metrics: list[str]
    columns: list[str]
    headers: list[tuple[str, list[str]]]
    legend: list[str]
    info_header: str

    def stat(self, col: int, row: RowKey, metric: str) -> Stat: ...
    def row_keys(self, group: str | None = None) -> list[RowKey]: ...
    def row_label(self, row: RowKey, rows: Sequence[RowKey]) -> str: ...
    def row_info(self, row: RowKey) -> str: ...
    def rank_group(self, col: int) -> Hashable: ...
    def remarks(self, cols: Sequence[int] | None = None, legend: bool = True) -> list[str]: ...


def _row_label(catalog: DatasetCatalog, row: RowKey, rows: Sequence[RowKey]) -> str:
    """The dataset's title; an Average row names its group only when the table has several."""
    if row.is_average and sum(r.is_average for r in rows) == 1:
        return "Average"
    return catalog.row_title(row)


class ReproducedGrid:
    """Store rows aggregated per column × dataset × metric.

    A column is every record sharing the values of the settings that differ between records
    (method, protocol, shots, config fields, weights, train_on, eval size, precision, ...).
    ``coverage="all"`` (default) shows each cell over its own categories, a partial cell marked
    "(k/n)" and never ranked; ``"shared"`` computes every cell of a row over the categories all
    columns ran and says so in the row label (the explicit shared-subset table).
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        failed: pd.DataFrame | None = None,
        coverage: str = "all",
        registry: Any = None,
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
            f: {d for d, s in both.groupby("dataset")[f] if len(set(s.map(norm))) > 1} for f in self.identity
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
        self.catalog = DatasetCatalog.from_frame(both, registry)
        self.datasets = self.catalog.sort(list(set(both["dataset"])))
        self._by_dataset = {k: g for k, g in self.frame.groupby(["_col", "dataset"], sort=False)}
        self._failed_by_dataset = {k: g for k, g in self.failed.groupby(["_col", "dataset"], sort=False)}
        self._expected = self._expected_categories(both)
        self._memo: dict[tuple, Any] = {}
        self.info_header = "|C|"
        self.names = ColumnHeaders(self)

    # --- columns --------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        return self.names.columns

    @property
    def headers(self) -> list[tuple[str, list[str]]]:
        return self.names.headers

    @property
    def legend(self) -> list[str]:
        return self.names.legend

    @property
    def descriptions(self) -> list[list[str]]:
        return self.names.descriptions

    def relabel(self, labels: dict[str, str]) -> None:
        """User column labels (``--label``), keyed by the default column text."""
        self.names.relabel(labels)

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

    def rows_of(self, col: int) -> pd.DataFrame:
        """The successful records of one column."""
        return self.frame[self.frame["_col"] == self.keys[col]]

    def method(self, col: int) -> str:
        return str(dict(self.keys[col])["method"])

    def protocol(self, col: int) -> tuple[str, int]:
        rows = self._rows(col)
        return str(rows["protocol"].iloc[0]), int(rows["shots"].iloc[0])

    def eval_size(self, col: int) -> str:
        rows = self._rows(col)
        sizes = rows["eval_size"].dropna() if "eval_size" in rows else pd.Series(dtype=object)
        return str(sizes.iloc[0]) if not sizes.empty else ""

    def rank_group(self, col: int) -> Hashable:
        """Columns are ranked only against columns of the same protocol, k and eval size."""
        return (*self.protocol(col), self.eval_size(col))

    def _first(self, col: int, field: str) -> str | None:
        rows = self._rows(col)
        values = rows[field].dropna() if field in rows else pd.Series(dtype=str)
        values = values[values != ""]
        return str(values.iloc[0]) if not values.empty else None

    def title(self, col: int) -> str:
        """The paper's display name of the column's method (from the method plugin, via records)."""
        return self._first(col, "method_title") or self.method(col)

    def published_name(self, col: int) -> str | None:
        """The method's name in the published tables for this column's config (None: unknown)."""
        return self._first(col, "published_name")

    def is_random(self, col: int | tuple) -> bool:
        """Whether any record of this column ran on randomly initialised weights."""
        col = self._index[col] if isinstance(col, tuple) else col
        return bool(self._rows(col)["random_weights"].astype(bool).any())

    def trained_on(self, col: int, dataset: str) -> str | None:
        """The auxiliary datasets a column's fits for ``dataset`` were trained on (None: no fit)."""
        rows = self._by_dataset.get((self.keys[col], dataset))
        if rows is None or "train_on" not in rows:
            return None
        names = sorted({n for v in rows["train_on"].dropna() for n in str(v).split(",") if n})
        return ", ".join(self.catalog.title(n) for n in names) or None

    def config(self, col: int) -> dict:
        """The method-config values of a column (from its first record)."""
        row = self._rows(col).iloc[0]
        return {c[len("config.") :]: row[c] for c in row.index if c.startswith("config.") and present(row[c])}

    def settings_text(self, col: int) -> str:
        """Every identifying setting of a column as ``field=value`` (for the CSV)."""
        return self.names.settings_text(col)

    def columns_in(self, datasets: Sequence[str], cols: Sequence[int]) -> list[int]:
        """The columns (of ``cols``) with a record, ok or failed, in any of ``datasets``."""
        return [c for c in cols if any(self.coverage(c, d) is not None for d in datasets)]

    def n_seeds(self, col: int) -> int:
        return int(self._rows(col)["seed"].nunique())

    # --- rows -----------------------------------------------------------------------------
    def row_keys(self, group: str | None = None) -> list[RowKey]:
        """The dataset rows of one table and its Average row (per dataset group when grouped)."""
        return [RowKey(d) for d in self.catalog.in_group(self.datasets, group)] + [RowKey.average(group)]

    def row_label(self, row: RowKey, rows: Sequence[RowKey]) -> str:
        label = _row_label(self.catalog, row, rows)
        if self.coverage_mode == "shared" and row.dataset is not None:
            shared = self.shared_categories(row.dataset) or frozenset()
            label += f" (shared: {short_list(sorted(shared), 4) or 'none'})"
        return label

    def row_info(self, row: RowKey) -> str:
        """|C|: the dataset's category count (shared mode: "shared/all"), the paper's when it differs."""
        if row.dataset is None:
            return ""
        n = self.n_categories(row.dataset)
        text = str(n)
        if self.coverage_mode == "shared":
            text = f"{len(self.shared_categories(row.dataset) or ())}/{n}"
        paper = self.catalog.info(row.dataset).published_categories
        if paper is not None and paper != n:
            text += f" (paper {paper})"
        return text

    # --- coverage -------------------------------------------------------------------------
    @staticmethod
    def _expected_categories(both: pd.DataFrame) -> dict[str, int]:
        """Per dataset: its category count as recorded, at least the categories seen in records."""
        out = {}
        for d, rows in both.groupby("dataset"):
            seen = rows["category"].nunique()
            recorded = pd.to_numeric(rows.get("dataset_n_categories"), errors="coerce").max()
            out[d] = int(max(seen, recorded if present(recorded) else 0))
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

    def categories_used(self, col: int, dataset: str) -> frozenset[str] | None:
        """The categories a cell's value is computed over (None: all the column ran)."""
        if self.coverage_mode != "shared":
            return None
        return self.shared_categories(dataset) or None

    def jobs(self, col: int, dataset: str) -> list[tuple[str, int, str]]:
        """(category, seed, job key) of the records one cell averages (for paired tests)."""
        rows = self._by_dataset.get((self.keys[col], dataset))
        if rows is None:
            return []
        cats = self.categories_used(col, dataset)
        if cats is not None:
            rows = rows[rows["category"].isin(cats)]
        return [(str(r.category), int(r.seed), str(r.key)) for r in rows.itertuples()]

    def n_categories(self, dataset: str) -> int:
        """The dataset's category count (as recorded by the runner, at least those seen)."""
        return self._expected[dataset]

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

    def stat(self, col: int, row: RowKey | str, metric: str) -> Stat:
        """The value of one cell (a dataset or an Average row)."""
        row = RowKey(row) if isinstance(row, str) else row
        if row.is_average:
            return self.average(col, metric, self.catalog.in_group(self.datasets, row.group))
        memo = (col, row.dataset, metric)
        if memo not in self._memo:
            self._memo[memo] = self._stat(col, row.dataset, metric)
        return self._memo[memo]

    def _stat(self, col: int, dataset: str, metric: str) -> Stat:
        cov = self.coverage(col, dataset)
        if cov is None:
            return Stat(notes=("not run",), rankable=False)
        title = self.catalog.title(dataset)
        notes = [f"{title}/{cat}: job failed: {err}" for cat, err in sorted(cov.failed.items())]
        shared = self.shared_categories(dataset)
        cats = self.categories_used(col, dataset)
        if not cov.ok:
            return Stat(notes=tuple(notes) or ("no successful job",), rankable=False)
        per_seed, nan_notes = self._seed_scores(col, dataset, metric, cats)
        notes += nan_notes
        if metric not in self._by_dataset[(self.keys[col], dataset)]:
            notes.append(f"{metric} not computed by this method")
        per_seed = per_seed.dropna()
        if self.coverage_mode == "shared":
            partial, rankable = False, bool(shared)
            if not shared:
                notes.append(f"{title}: no category is shared by all columns; not ranked")
        else:
            partial = not cov.complete
            rankable = not partial
            if partial:
                notes.append(
                    f"{title}: mean over the {len(cov.ok)} of {cov.expected} categories this column ran "
                    f"({short_list(sorted(cov.ok), 4)}); not ranked"
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
        """Mean over datasets (per seed, then mean ± std over seeds) of this column's datasets with
        a value; it says "(k/n)" and is not ranked when it lacks a dataset another column has, or
        "(partial)" when one of its datasets is partial."""
        names = list(datasets or self.datasets)
        per_dataset = {}
        for d in names:
            if self.stat(col, d, metric).ok:
                per_dataset[d], _ = self._seed_scores(col, d, metric, self.categories_used(col, d))
        with_value = [d for d in names if any(self.stat(c, d, metric).ok for c in range(len(self.keys)))]
        if self.coverage_mode == "shared":  # the subset table: the datasets every column has
            with_value = [
                d for d in with_value if all(self.stat(c, d, metric).ok for c in range(len(self.keys)))
            ]
            per_dataset = {d: v for d, v in per_dataset.items() if d in with_value}
        if not per_dataset:
            return Stat(notes=("no dataset has a value",), rankable=False)
        per_seed = pd.DataFrame(per_dataset).mean(axis=1, skipna=True).dropna()
        used = list(per_dataset)
        notes: list[str] = []
        rankable = all(self.stat(col, d, metric).rankable for d in used)
        coverage = ""
        if len(used) < len(with_value):
            missing = [self.catalog.title(d) for d in with_value if d not in per_dataset]
            coverage = f"{len(used)}/{len(with_value)}"
            notes.append(
                f"Average over {len(used)} of {len(with_value)} datasets; without {', '.join(missing)}; not ranked"
            )
            rankable = False
        partial = [d for d in used if self.stat(col, d, metric).coverage]
        if partial and not coverage:
            coverage = "partial"
            notes.append(
                "Average includes datasets with missing categories: "
                + ", ".join(map(self.catalog.title, partial))
                + "; not ranked"
            )
            rankable = False
        std = float(per_seed.std()) if len(per_seed) > 1 else None
        return Stat(float(per_seed.mean()), std, tuple(notes), coverage, True, rankable, len(per_seed))

    def datasets_with_value(self, col: int, metric: str, row: RowKey) -> set[str]:
        """The datasets behind one Average row (all, or one group's) where this column has a value."""
        return {d for d in self.catalog.in_group(self.datasets, row.group) if self.stat(col, d, metric).ok}

    # --- remarks --------------------------------------------------------------------------
    def remarks(self, cols: Sequence[int] | None = None, legend: bool = True) -> list[str]:
        """What a reader needs under a table of these columns: legend, training, seeds, coverage."""
        cols = list(range(len(self.keys))) if cols is None else list(cols)
        out = (self.names.legend_of(cols) if legend else []) + self.names.trained_notes(cols)
        counts = {c: self.n_seeds(c) for c in cols}
        if max(counts.values(), default=1) > 1:
            per = "; ".join(f"{self.columns[c]}: {n} seed{'s' if n > 1 else ''}" for c, n in counts.items())
            out.append(f"Mean ± sample std over seeds ({per}).")
        ranked_groups = len({self.rank_group(c) for c in cols})
        if self.coverage_mode == "shared":
            out.append(
                "Shared-subset comparison: every cell of a row is the mean over the categories all "
                "columns ran (listed in the row label; |C| = shared/all); the Average over those means."
            )
        else:
            out.append(
                "Each cell is the mean over the categories its column ran; (k/n) = k of n categories "
                "(or datasets); partial cells are never ranked."
            )
        if ranked_groups > 1:
            out.append("Best/second are marked only among columns with the same protocol, k and eval size.")
        return out


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
        self.legend: list[str] = []
        self.info_header = ""
        names = list(dict.fromkeys(rows["dataset"]))
        self.datasets = self.catalog.sort([n for n in names if not pub.is_average_name(n)])
        self.averages = [n for n in names if pub.is_average_name(n)]
        self.metrics = sort_metrics(
            [
                m
                for m, lm in pub.METRIC_KEYS.items()
                if ((rows["level"] == lm[0]) & (rows["metric"] == lm[1])).any()
            ]
        )

    def row_keys(self, group: str | None = None) -> list[RowKey]:
        """The paper's dataset rows, then its own average rows (as printed)."""
        rows = [RowKey(d) for d in self.catalog.in_group(self.datasets, group)]
        return rows + [RowKey(None, pub.average_group(n), name=n) for n in self.averages]

    def row_label(self, row: RowKey, rows: Sequence[RowKey]) -> str:
        return _row_label(self.catalog, row, rows)

    def row_info(self, row: RowKey) -> str:
        return ""

    def rank_group(self, col: int) -> Hashable:
        return 0

    def remarks(self, cols: Sequence[int] | None = None, legend: bool = True) -> list[str]:
        return []

    def stat(self, col: int, row: RowKey | str, metric: str) -> Stat:
        row = RowKey(row) if isinstance(row, str) else row
        method, setting = self.keys[col]
        sel = self.rows[(self.rows["method"] == method) & (self.rows["setting"] == setting)]
        value = pub.value_of(sel, row.lookup, metric)
        return Stat(value, None, () if value is not None else ("not reported in the paper",))
