"""Build a format-neutral Report from the results store, then hand it to the format plugins.

Reports read only the store (and the published numbers shipped as package data); they never
run a model. Formats are plugins (hook ``adbench_report_formats``), resolved through the registry.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import adbench
from adbench.errors import AdbenchError
from adbench.protocol_catalog import PROTOCOLS, family
from adbench.store import ResultsStore

from . import breakdown
from . import published as pub
from .ablation import ablation_tables
from .builders import metric_table, tuple_table
from .catalog import metric_name, protocol_title
from .categories import category_tables
from .compare import paper_only_columns, published_side
from .efficiency import efficiency_tables
from .grids import ReproducedGrid
from .long_frame import long_frame
from .model import Table
from .options import MODES, ImageLoader, ReportOptions
from .published_report import published_report
from .selection import select

__all__ = ["MODES", "ImageLoader", "Report", "ReportFormat", "ReportOptions", "build_report", "render_report"]

SECTION_TITLES = {
    "main": "Results per metric (DMA-SAP Tables 1-6 layout)",
    "tuples": "All metrics (ViP2-CLIP tuple layout)",
    "ablation": "Ablation (DMA-SAP Table 7 layout)",
    "published": "Published numbers",
    "shared": "Shared-subset comparison (every column over the categories all columns ran)",
    "categories": "Per-category results",
    breakdown.SECTION: breakdown.TITLE,
    "efficiency": "Efficiency",
    "ci": "Confidence intervals",
}


@dataclass
class Report:
    """Everything a format needs: tables in order, banner, plot files, a long-form frame for CSV."""

    title: str
    source: str
    tables: list[Table]
    long: pd.DataFrame
    banner: str | None = None
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)  # qualitative figures (PNG; a PDF beside each)
    #: Statistical figures: critical-difference diagrams, shot curves (PNG; a PDF beside each).
    analysis: list[Path] = field(default_factory=list)
    legend: list[str] = field(default_factory=list)  # what each column tag (a), (b), ... stands for
    latex_columns: int = 2  # the LaTeX target: a one- or two-column article
    #: Per qualitative figure: its caption (columns present, how images were chosen, normalisation).
    figure_captions: dict[str, str] = field(default_factory=dict)
    version: str = adbench.__version__

    def sections(self) -> list[tuple[str, list[Table]]]:
        """Tables grouped by section, in first-appearance order."""
        order = list(dict.fromkeys(t.section for t in self.tables))
        return [(SECTION_TITLES.get(s, s), [t for t in self.tables if t.section == s]) for s in order]


@dataclass(frozen=True)
class ReportFormat:
    """A report output format provided by a plugin: ``render(report, out_dir)`` returns files written."""

    name: str
    suffix: str
    render: Callable[[Report, Path], list[Path]]
    description: str = ""


def evaluation_notes(frame: pd.DataFrame) -> list[str]:
    """One footnote per evaluation setting found in the records: protocol, map size, mask resize,
    Gaussian sigma and precision, with the methods scored under it (numbers under different settings
    are not comparable)."""
    cols = ["eval_protocol", "eval_size", "mask_resize", "smoothing_sigma", "precision"]
    if frame.empty or "eval_protocol" not in frame or frame["eval_protocol"].isna().all():
        return []
    keyed = frame.assign(**{c: frame[c].astype(str) for c in cols if c in frame})
    out = []
    for values, rows in keyed.groupby([c for c in cols if c in keyed], sort=True):
        setting = dict(zip([c for c in cols if c in keyed], values, strict=True))
        methods = ", ".join(sorted(method_titles(rows).unique()))
        out.append(
            f"Evaluation protocol {setting.get('eval_protocol')}: pixel metrics at "
            f"{setting.get('eval_size')} px, masks resized {setting.get('mask_resize')}, "
            f"Gaussian sigma {setting.get('smoothing_sigma')}, {setting.get('precision')} ({methods})."
        )
    return out


def method_titles(frame: pd.DataFrame) -> pd.Series:
    """Each record's method display name (``method_title``), its adbench name for older records."""
    if "method_title" not in frame:
        return frame["method"].astype(str)
    titles = frame["method_title"].fillna("").astype(str)
    return titles.where(titles != "", frame["method"].astype(str))


def random_banner(frame: pd.DataFrame) -> str | None:
    """The warning every output shows when any record ran on randomly initialised weights."""
    rand = frame[frame["random_weights"].astype(bool)]
    if rand.empty:
        return None
    names: set[str] = set()
    for value in rand.get("backbone_names", pd.Series(dtype=str)).dropna():
        names |= {n for n in str(value).split(",") if n}
    what = ", ".join(sorted(names)) or "methods: " + ", ".join(sorted(method_titles(rand).unique()))
    return (
        f"Numbers computed with randomly initialised backbone weights ({what}): "
        "not comparable to published results."
    )


def _family(protocol: str) -> str:
    """The table a protocol's columns go to: ``few_shot`` when it takes reference shots."""
    return family(protocol)


def _column_sets(grid: ReproducedGrid) -> list[tuple[str, list[int]]]:
    """Columns per protocol family: zero-shot and few-shot are separate tables, as in the papers
    (batch zero-shot stays beside zero-shot, ranked apart)."""
    sets: dict[str, list[int]] = {}
    for c in range(len(grid.columns)):
        sets.setdefault(_family(grid.protocol(c)[0]), []).append(c)
    return sorted(sets.items(), key=lambda kv: list(PROTOCOLS).index(kv[0]))


def main_tables(
    grid: ReproducedGrid,
    options: ReportOptions,
    *,
    prefix: str = "",
    section: str = "main",
    marks: dict | None = None,
    cache: Any = None,
) -> list[Table]:
    """Per metric, dataset group and protocol: one metric table (with significance ``marks``,
    see ``table_stats.grid_marks``); then the tuple tables."""
    side = published_side(grid, options.paper) if options.published else None
    if side is not None and cache is not None:
        from .table_stats import with_intervals  # scipy.stats: only when asked for

        side = with_intervals(side, grid, cache)
    groups = grid.catalog.groups(grid.datasets)
    sets = _column_sets(grid)
    tables: list[Table] = []
    for protocol, cols in sets:
        extra = paper_only_columns(grid, cols, options.paper) if side is not None else []
        for g in groups:
            suffix = (f"-{g}" if len(groups) > 1 else "") + (f"-{protocol}" if len(sets) > 1 else "")
            words = (f", {g} datasets" if len(groups) > 1 else "") + (
                f", {protocol_title(protocol)}" if len(sets) > 1 else ""
            )
            rows = grid.row_keys(g if len(groups) > 1 else None)
            ran = grid.columns_in(grid.catalog.in_group(grid.datasets, g if len(groups) > 1 else None), cols)
            if not ran:
                continue
            for m in grid.metrics:
                t = metric_table(
                    grid,
                    m,
                    rows=rows,
                    cols=ran,
                    published=side,
                    paper_only=extra,
                    table_id=f"{prefix}metric-{m}{suffix}",
                    title=metric_name(m) + words + (" (shared categories)" if prefix else ""),
                )
                t.section = section
                if marks:
                    from .table_stats import apply_marks  # scipy.stats: only when tests ran

                    apply_marks(t, rows, ran, m, marks)
                tables.append(t)
            t = tuple_table(
                grid,
                cols=ran,
                group=g if len(groups) > 1 else None,
                table_id=f"{prefix}tuples{suffix}",
                title="All metrics" + (words or ", tuple layout"),
            )
            t.section = section if prefix else "tuples"
            tables.append(t)
    return tables


def build_report(
    store: ResultsStore, out_dir: Path, options: ReportOptions | None = None, **fields: Any
) -> Report:
    """Aggregate the store into tables (and plot files under ``out_dir``), as ``options`` say
    (or ``ReportOptions`` fields given as keywords)."""
    options = options or ReportOptions.of(**fields)
    if options.paper:
        _check_paper(options.paper)
    if options.mode == "published":
        tables, long, _ = published_report(options.paper, options.registry or _registry())
        return Report(
            title="Published results (from the papers)",
            source="adbench.reports/data/published_results.csv",
            tables=tables,
            long=long,
            notes=[
                "Values in percent, as printed in each paper; several papers report the same baseline differently."
            ],
            latex_columns=options.latex_columns,
        )
    records = select(store.frame(include_failed=True), options)
    ok = records["status"].eq("ok") if not records.empty else pd.Series(dtype=bool)
    if not ok.any():
        raise AdbenchError(
            f"no finished records in {store.records_dir}; run jobs first or use the published mode"
        )
    frame, failed = records[ok], records[~ok]
    grid = _grid(frame, failed, options, "all")
    marks, cache = _significance(grid, store, options)
    tables = main_tables(grid, options, marks=marks, cache=cache)
    if options.coverage == "shared":
        tables += main_tables(
            _grid(frame, failed, options, "shared"), options, prefix="shared-", section="shared"
        )
    tables += _more_tables(grid, store, options)
    banner = random_banner(frame)
    report = Report(
        title="adbench results",
        source=str(store.root),
        tables=tables,
        long=long_frame(grid, banner, published_side(grid, options.paper) if options.published else None),
        banner=banner,
        legend=list(grid.legend),
        notes=_notes(grid, frame),
        latex_columns=options.latex_columns,
    )
    if cache is not None and (cache.problems or cache.missing):  # no mark must not read as "worse"
        report.notes.append(
            f"No significance test (no dagger either way) for cells with jobs whose predictions are not "
            f"stored ({len(cache.missing)}) or cannot be read ({len(cache.problems)})."
        )
    if cache is not None and cache.problems:
        warnings.warn(
            f"{len(cache.problems)} predictions file(s) unreadable: {cache.problems[0]}", stacklevel=2
        )
    _pictures(report, grid, store, out_dir, options)
    return report


def _significance(grid: ReproducedGrid, store: ResultsStore, options: ReportOptions) -> tuple[dict, Any]:
    """Paired-test marks of the main tables and the per-job bootstrap cache they were computed
    from (reused for the published-value intervals); nothing with ``--no-stats``."""
    if not options.stats:
        return {}, None
    from .table_stats import JobCache, grid_marks  # scipy.stats loads torch's array-API probe: not at import

    cache = JobCache(store, grid.metrics, options.resamples)
    families = {c: _family(grid.protocol(c)[0]) for c in range(len(grid.columns))}
    return grid_marks(grid, cache, families), cache


def _registry() -> Any:
    from adbench.registry import get_registry

    return get_registry()


def _grid(frame: pd.DataFrame, failed: pd.DataFrame, options: ReportOptions, coverage: str) -> ReproducedGrid:
    """The grid of the selected records, its metrics chosen and its columns relabelled."""
    grid = ReproducedGrid(frame, failed, coverage=coverage, registry=options.registry)
    if options.metrics:
        unknown = [m for m in options.metrics if m not in grid.metrics]
        if unknown:
            raise AdbenchError(
                f"--metrics {unknown[0]!r}: not in the store (metrics: {', '.join(grid.metrics)})"
            )
        grid.metrics = [m for m in grid.metrics if m in options.metrics]
    if options.labels:
        grid.relabel(options.labels)
    return grid


def _more_tables(grid: ReproducedGrid, store: ResultsStore, options: ReportOptions) -> list[Table]:
    """Ablation, breakdowns, confidence intervals, efficiency and per-category tables."""
    tables: list[Table] = []
    if options.ablation:
        tables += ablation_tables(grid, options.ablation, published=_ablation_lookup(grid, options.paper))
    tables += breakdown.breakdown_tables(grid)
    if options.ci:
        from .stats import ci_table  # scikit-learn is imported only when asked for

        tables.append(ci_table(grid, store))
    tables += efficiency_tables(grid, options.paper)
    if options.categories:
        sets = [cols for _, cols in _column_sets(grid)]
        tables += category_tables(grid, paired=options.paired_cells, col_sets=sets)
    return tables


def _notes(grid: ReproducedGrid, frame: pd.DataFrame) -> list[str]:
    notes = [
        "Dataset score = mean over the categories the column ran (NaN categories left out, see "
        "footnotes); with several seeds, mean ± std (sample std) over seeds. Average = mean over "
        "datasets. Values ×100; best per row in bold, second underlined (with three or more "
        "comparable columns); — = no value; (k/n) = a partial cell, never ranked."
    ]
    if grid.n_duplicates:
        notes.append(f"{grid.n_duplicates} older record(s) of re-run jobs were superseded by newer ones.")
    return notes + evaluation_notes(frame)


def _pictures(
    report: Report, grid: ReproducedGrid, store: ResultsStore, out_dir: Path, options: ReportOptions
) -> None:
    """Bar charts and qualitative figures (matplotlib is imported only when drawing)."""
    if options.plots:
        from .plots import bar_charts

        report.plots = bar_charts(grid, out_dir, options)
    if options.stats:
        from .analysis_figures import analysis_figures

        report.analysis, captions = analysis_figures(grid, out_dir)
        report.figure_captions.update(captions)
    if options.figures:
        from .figures import qualitative_figures

        report.figures, report.figure_captions = qualitative_figures(
            grid, store, out_dir, options.figures, options.figure_categories, options.images
        )


def _check_paper(paper: str) -> None:
    data = pub.load_published()
    if not any(pub.matches_paper(s, paper) for s in set(data["source"])):
        papers = ", ".join(sorted(set(data["paper"])))
        raise AdbenchError(f"--paper {paper!r}: no published source matches (papers: {papers})")


def _ablation_lookup(grid: ReproducedGrid, paper: str | None) -> Callable:
    """Published ablation values by adbench method name, config value, dataset and metric."""

    def lookup(
        method: str, value: str, dataset: str | None, metric: str, datasets: frozenset[str]
    ) -> float | None:
        names = grid.frame.loc[grid.frame["method"] == method, "published_name"].dropna()
        name = str(names.iloc[0]) if not names.empty else None
        if name is None or (paper and not pub.matches_paper(pub.own_paper(name) or "", paper)):
            return None
        return pub.ablation_value(name, value, dataset, metric, datasets)

    return lookup


def _format_names(formats: Sequence[str] | str) -> list[str]:
    items = [formats] if isinstance(formats, str) else list(formats)
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    if not names:
        raise AdbenchError("--format: give at least one report format, e.g. html,latex")
    return list(dict.fromkeys(names))


def render_report(
    store: ResultsStore,
    out_dir: Path,
    formats: list[str],
    *,
    registry=None,
    **options: Any,
) -> list[Path]:
    """Render the store as the given formats into ``out_dir``; return the files written.

    ``options`` are :func:`build_report`'s: ``published`` puts the papers' numbers beside
    reproduced ones with the difference; ``ablation="method.field"`` adds the Table 7 layout;
    ``mode="published"`` renders only the papers' tables, which needs no records; ``paper``
    restricts every published number (tables, CSV, efficiency) to one paper.
    """
    from adbench.registry import get_registry

    registry = registry or get_registry()
    renderers = [registry.get("report_format", name) for name in _format_names(formats)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(store, out_dir, ReportOptions.of(registry=registry, **options))
    paths = list(report.plots) + list(report.figures) + [p.with_suffix(".pdf") for p in report.figures]
    for fmt in renderers:
        paths += fmt.render(report, out_dir)
    return paths
