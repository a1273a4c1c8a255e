"""Build a format-neutral Report from the results store, then hand it to the format plugins.

Reports read only the store (and the published numbers shipped as package data); they never
run a model. Formats are plugins (hook ``adbench_report_formats``), resolved through the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import adbench
from adbench.errors import AdbenchError
from adbench.protocol_catalog import takes_references
from adbench.store import ResultsStore

from . import breakdown
from . import published as pub
from .tables import (
    AVERAGE,
    AVERAGE_PREFIX,
    CFLOW_NOTE,
    DASH,
    Cell,
    DatasetCatalog,
    Part,
    PublishedGrid,
    ReproducedGrid,
    Row,
    Stat,
    Table,
    ablation_tables,
    category_table,
    metric_name,
    metric_table,
    published_ablation_table,
    row_names,
    tuple_table,
)

#: Loads test images for qualitative figures: (dataset, category, sample ids, size) -> {id: HxWx3 uint8}.
ImageLoader = Callable[[str, str, Sequence[str], int], dict[str, "object"]]

MODES = ("reproduced", "published")
SECTION_TITLES = {
    "main": "Results per metric (DMA-SAP Tables 1-6 layout)",
    "tuples": "All metrics (ViP2-CLIP tuple layout)",
    "ablation": "Ablation (DMA-SAP Table 7 layout)",
    "published": "Published numbers",
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
    legend: list[str] = field(default_factory=list)  # what each column tag (a), (b), ... stands for
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


def published_side(
    grid: ReproducedGrid, paper: str | None = None
) -> Callable[[int, str, str], tuple[Stat, list[str]]]:
    """Lookup of the published value beside each reproduced cell (same method, dataset, metric);
    ``paper`` restricts the comparison to one paper's numbers."""

    def lookup(col: int, dataset: str, metric: str) -> tuple[Stat, list[str]]:
        protocol, shots = grid.protocol(col)
        name = grid.published_name(col)
        if name is None:
            return Stat(notes=(f"{grid.columns[col]}: no paper reports this configuration",)), []
        source, rows = pub.lookup(name, protocol, paper)
        if source is None:
            where = f" in {paper}" if paper else ""
            return Stat(notes=(f"no published {name} number under protocol {protocol}{where}",)), []
        setting = rows["setting"].iloc[0]
        remarks = [f"{grid.columns[col]}: paper = {name}, {source}, setting '{setting}'."]
        if takes_references(protocol) and pub.published_shots(setting) != shots:
            # e.g. PatchEAD's "best few-shot result": the same number for every k, so no Δ
            remarks.append(
                f"{name}: the paper's few-shot number does not state k (or states another k); "
                f"shown for reference, no difference computed for k={shots}."
            )
            diffable = False
        else:
            diffable = True
        wanted = metric
        if metric == "pixel_aupro_cflow":
            wanted = "pixel_aupro"
            if pub.uses_cflow_aupro(source):
                remarks.append(CFLOW_NOTE)
            elif (rows["metric"] == "aupro").any():
                return Stat(notes=("the paper's AUPRO is not the aupro_cflow definition",)), remarks
        elif metric == "pixel_aupro" and pub.uses_cflow_aupro(source):
            return Stat(notes=(CFLOW_NOTE,)), remarks
        if dataset == AVERAGE or dataset.startswith(AVERAGE_PREFIX):
            avg = pub.average_row_for(rows, wanted, grid.datasets_with_value(col, metric, dataset))
            if avg is None:
                if not rows["dataset"].str.startswith("average").any():
                    return Stat(
                        notes=(f"{name}: no average reported in {pub.source_label(source)}",)
                    ), remarks
                return Stat(notes=("the paper's average covers a different set of datasets",)), remarks
            dataset = avg
        value = pub.value_of(rows, dataset, wanted)
        if value is None:
            return Stat(notes=(f"{name}: not reported in {pub.source_label(source)}",)), remarks
        return Stat(value, diffable=diffable), remarks

    return lookup


def _long_frame(
    grid: ReproducedGrid, banner: str | None, with_published: bool, paper: str | None = None
) -> pd.DataFrame:
    """One CSV row per column × (category, dataset, Average) × metric, with notes and published values.

    ``level`` says which: ``category`` rows (mean over seeds) are there for plotting.
    """
    side = published_side(grid, paper) if with_published else None
    out = []
    for c in range(len(grid.keys)):
        random = grid.is_random(c)
        protocol, shots = grid.protocol(c)
        base = {
            "column": grid.columns[c],
            "method": grid.method(c),
            "method_title": grid.title(c),
            "protocol": protocol,
            "shots": shots,
            "settings": grid.settings_text(c),
            "n_seeds": grid.n_seeds(c),
            "random_weights": random,
            "warning": banner or "",
        }
        rows = grid.frame[grid.frame["_col"] == grid.keys[c]]
        for m in grid.metrics:
            per_cat = rows.groupby(["dataset", "category"])[m].agg(["mean", "std", "count"]).reset_index()
            for r in per_cat.itertuples(index=False):
                out.append(
                    {
                        **base,
                        "level": "category",
                        "dataset": r.dataset,
                        "category": r.category,
                        "metric": m,
                        "value": round(100 * r.mean, 4) if r.count else None,
                        "std": round(100 * r.std, 4) if r.count > 1 else None,
                        "coverage": "",
                        "note": "" if r.count else "undefined (NaN)",
                    }
                )
        for d in grid.datasets + [AVERAGE]:
            for m in grid.metrics:
                s = grid.stat(c, d, m)
                row = {
                    **base,
                    "level": "average" if d == AVERAGE else "dataset",
                    "dataset": "average" if d == AVERAGE else d,
                    "category": "",
                    "metric": m,
                    "value": round(s.mean, 4) if s.ok else None,
                    "std": None if s.std is None else round(s.std, 4),
                    "coverage": s.coverage,
                    "note": "; ".join(s.notes),
                }
                if side is not None:
                    theirs, remarks = side(c, d, m)
                    row["published"] = theirs.mean
                    row["published_note"] = "; ".join(list(theirs.notes) + remarks)
                    row["difference"] = (
                        round(round(s.mean, 1) - theirs.mean, 1)
                        if s.ok and theirs.ok and theirs.diffable
                        else None
                    )
                out.append(row)
    return pd.DataFrame(out)


def build_report(
    store: ResultsStore,
    out_dir: Path,
    *,
    published: bool = False,
    ablation: str | None = None,
    mode: str = "reproduced",
    paper: str | None = None,
    categories: bool = True,
    plots: bool = True,
    coverage: str = "shared",
    methods: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    labels: dict[str, str] | None = None,
    ci: bool = False,
    figures: int = 0,
    figure_categories: Sequence[str] | None = None,
    images: ImageLoader | None = None,
    registry: Any = None,
) -> Report:
    """Aggregate the store into tables (and plot files under ``out_dir``).

    ``methods``/``datasets``/``metrics`` select what the tables show, ``labels`` renames columns,
    ``coverage`` is ``shared`` (compare over shared categories) or ``all``; ``ci`` adds bootstrap
    intervals of Image-AUROC; ``figures`` > 0 writes qualitative figures with that many images;
    ``registry`` describes the datasets of a published-only report (titles, groups, order).
    """
    if mode not in MODES:
        raise AdbenchError(f"report mode {mode!r}: expected one of {', '.join(MODES)}")
    if paper:
        _check_paper(paper)
    if mode == "published":
        return _published_report(paper, registry)
    records = store.frame(include_failed=True)  # one pass over the record files for both parts
    records = _select(records, methods, datasets)
    ok = records["status"].eq("ok") if not records.empty else pd.Series(dtype=bool)
    if not ok.any():
        raise AdbenchError(
            f"no finished records in {store.records_dir}; run jobs first or use the published mode"
        )
    frame, failed = records[ok], records[~ok]
    grid = ReproducedGrid(frame, failed, coverage=coverage)
    if metrics:
        unknown = [m for m in metrics if m not in grid.metrics]
        if unknown:
            raise AdbenchError(
                f"--metrics {unknown[0]!r}: not in the store (metrics: {', '.join(grid.metrics)})"
            )
        grid.metrics = [m for m in grid.metrics if m in metrics]
    if labels:
        grid.relabel(labels)
    banner = random_banner(frame)
    side = published_side(grid, paper) if published else None
    groups = grid.catalog.groups(grid.datasets)
    tables: list[Table] = []
    for m in grid.metrics:
        if len(groups) == 1:
            tables.append(metric_table(grid, m, published=side, title=metric_name(m)))
            continue
        for g in groups:
            tables.append(
                metric_table(
                    grid,
                    m,
                    rows=row_names(grid, g),
                    published=side,
                    table_id=f"metric-{m}-{g}",
                    title=f"{metric_name(m)}, {g} datasets",
                )
            )
    if len(groups) == 1:
        tables.append(tuple_table(grid))
    else:
        tables += [
            tuple_table(grid, group=g, table_id=f"tuples-{g}", title=f"All metrics, {g} datasets")
            for g in groups
        ]
    if ablation:
        tables += ablation_tables(grid, ablation, published=_ablation_lookup(grid, paper))
    tables += breakdown.breakdown_tables(grid)
    if ci:
        from .stats import ci_table  # scikit-learn is imported only when asked for

        tables.append(ci_table(grid, store))
    tables += efficiency_tables(grid, paper)
    if categories:
        tables += [category_table(grid, m) for m in grid.metrics]
    notes = [
        "Dataset score = mean over categories (NaN categories left out, see footnotes); "
        "with several seeds, mean ± std (sample std) over seeds. Average = mean over datasets. "
        "Values ×100; best per row in bold, second underlined (with three or more columns); — = no value."
    ]
    if grid.n_duplicates:
        notes.append(f"{grid.n_duplicates} older record(s) of re-run jobs were superseded by newer ones.")
    notes += evaluation_notes(frame)
    plot_files: list[Path] = []
    if plots:
        from .plots import bar_charts  # matplotlib is imported only when plotting

        plot_files = bar_charts(grid, out_dir)
    figure_files: list[Path] = []
    if figures:
        from .figures import qualitative_figures

        figure_files = qualitative_figures(grid, store, out_dir, figures, figure_categories, images)
    return Report(
        title="adbench results",
        source=str(store.root),
        tables=tables,
        long=_long_frame(grid, banner, published, paper),
        banner=banner,
        plots=plot_files,
        figures=figure_files,
        legend=list(grid.legend),
        notes=notes,
    )


def _select(
    records: pd.DataFrame, methods: Sequence[str] | None, datasets: Sequence[str] | None
) -> pd.DataFrame:
    """Only the chosen methods and datasets (a name not in the store is a one-line error)."""
    for option, names, column in (("--methods", methods, "method"), ("--datasets", datasets, "dataset")):
        if not names or records.empty:
            continue
        known = sorted(set(records[column]))
        unknown = [n for n in names if n not in known]
        if unknown:
            raise AdbenchError(f"{option} {unknown[0]!r}: not in the store (has: {', '.join(known)})")
        records = records[records[column].isin(names)]
    return records


def _check_paper(paper: str) -> None:
    data = pub.load_published()
    if not any(pub.matches_paper(s, paper) for s in set(data["source"])):
        papers = ", ".join(sorted(set(data["paper"])))
        raise AdbenchError(f"--paper {paper!r}: no published source matches (papers: {papers})")


def _ablation_lookup(grid: ReproducedGrid, paper: str | None) -> Callable[[str, str, str, str], float | None]:
    """Published ablation values by adbench method name, config value, dataset and metric."""

    def lookup(method: str, value: str, dataset: str, metric: str) -> float | None:
        names = grid.frame.loc[grid.frame["method"] == method, "published_name"].dropna()
        name = str(names.iloc[0]) if not names.empty else None
        if name is None or (paper and not pub.matches_paper(pub.own_paper(name) or "", paper)):
            return None
        return pub.ablation_value(name, value, dataset, metric)

    return lookup


def _published_report(paper: str | None, registry: Any = None) -> Report:
    """The papers' own tables rebuilt from the shipped CSV (no store needed); dataset titles and
    row order come from the registered dataset plugins."""
    from adbench.registry import get_registry

    data = pub.load_published()
    sources = [s for s in dict.fromkeys(data["source"]) if pub.matches_paper(s, paper)]
    catalog = DatasetCatalog.from_registry(registry or get_registry(), sorted(set(data["dataset"])))
    tables: list[Table] = []
    for source in sources:
        grid = PublishedGrid(data[data["source"] == source], catalog)
        label = pub.source_label(source)
        cite = f"Source: {pub.paper_info(pub.paper_of(source)).title} ({source})."
        if "ablation" in source:  # the paper's orientation: configurations as rows
            t = published_ablation_table(grid, table_id=f"pub-{source}", title=label)
            t.remarks.append(cite)
            tables.append(t)
            continue
        rows = grid.datasets + grid.averages
        for m in grid.metrics:
            t = metric_table(
                grid, m, rows=rows, table_id=f"pub-{source}-{m}", title=f"{metric_name(m)} — {label}"
            )
            t.section = "published"
            if m == "pixel_aupro" and pub.uses_cflow_aupro(source):
                t.remarks.append("The paper's AUPRO follows AnomalyCLIP's evaluation code (aupro_cflow).")
            t.remarks.append(cite)
            t.rows = [r for r in t.rows if any(c.parts[0].value is not None for c in r.cells)]
            tables.append(t)
    tables.append(_efficiency_table(paper))
    data = data[data["source"].isin(sources)]
    long = data.drop(columns=["paper"]).assign(dataset_name=lambda f: f["dataset"].map(catalog.title))
    return Report(
        title="Published results (from the papers)",
        source="adbench.reports/data/published_results.csv",
        tables=tables,
        long=long,
        notes=[
            "Values in percent, as printed in each paper; several papers report the same baseline differently."
        ],
    )


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or pd.isna(value):
        return DASH
    return f"{value:.{digits}f}" if abs(value) >= 10**-digits or value == 0 else f"{value:.2g}"


def reproduced_efficiency(grid: ReproducedGrid) -> Table:
    """Speed, memory and size per column from what the records store (DMA-SAP Sec 4.1.3, ViP2-CLIP Table 3).

    ms/image and images/s pool every job (total predict time / total test images); peak memory is the
    largest per-job peak (each job measured on its own: models of earlier jobs are freed first).
    """
    fields = [
        "device",
        "ms / image",
        "images / s",
        "peak mem (GB)",
        "trainable params (M)",
        "total params (M)",
        "training (h)",
    ]
    rows = []
    kinds = set()
    for c in range(len(grid.keys)):
        recs = grid.frame[grid.frame["_col"] == grid.keys[c]]
        predict = pd.to_numeric(recs.get("timing.predict_s"), errors="coerce")
        n = pd.to_numeric(recs.get("n_test"), errors="coerce")
        ok = predict.notna() & n.notna()
        total_s, total_n = float(predict[ok].sum()), float(n[ok].sum())
        mem = pd.to_numeric(recs.get("timing.peak_mem_mb"), errors="coerce")
        kind = recs.get("timing.peak_mem_kind", pd.Series(dtype=object)).dropna()
        kinds |= set(kind)
        train = pd.to_numeric(recs.get("timing.train_s"), errors="coerce").dropna().unique()
        devices = ", ".join(sorted({str(d) for d in recs.get("device", pd.Series(dtype=object)).dropna()}))
        values = [
            devices or DASH,
            _num(1000 * total_s / total_n if total_n and total_s else None),
            _num(total_n / total_s if total_s else None),
            _num(mem.max() / 1024 if mem.notna().any() else None, 2),
            _num(pd.to_numeric(recs.get("params_trainable"), errors="coerce").max() / 1e6, 2),
            _num(pd.to_numeric(recs.get("params_total"), errors="coerce").max() / 1e6, 2),
            _num(float(train.mean()) / 3600 if len(train) else None, 3),
        ]
        rows.append(Row(grid.columns[c], [Cell([Part(v)]) for v in values]))
    memory = {
        "cuda_max_allocated": "GPU: peak CUDA allocation of the job",
        "job_max_rss": "CPU: peak resident set size of the process during the job (reset per job)",
        "process_max_rss": "CPU: peak resident set size of the whole process (includes earlier jobs)",
    }
    remarks = [memory.get(k, k) for k in sorted(kinds)] + [
        "Training time = mean over the column's fits (a reused cached fit reports its original time)."
    ]
    return Table(
        "efficiency",
        "Reproduced efficiency (from the records)",
        "Column",
        fields,
        rows,
        remarks=list(grid.legend) + remarks,
        section="efficiency",
    )


def efficiency_tables(grid: ReproducedGrid, paper: str | None = None) -> list[Table]:
    """The reproduced efficiency table beside the published one (``paper`` filters the latter)."""
    published = _efficiency_table(paper)
    published.section = "efficiency"
    return [reproduced_efficiency(grid)] + ([published] if published.rows else [])


def _efficiency_table(paper: str | None = None) -> Table:
    """Published speed/memory figures (as printed; GPUs differ between papers)."""
    eff = pub.load_efficiency()
    eff = eff[eff["source"].map(lambda s: pub.matches_paper(s, paper))]
    fields = [
        ("gpu", "GPU"),
        ("input_px", "input px"),
        ("infer_ms_per_image", "ms / image"),
        ("gpu_mem_gb", "GPU mem (GB)"),
        ("trainable_params_m", "trainable params (M)"),
        ("total_params_m", "total params (M)"),
        ("train_hours", "training (h)"),
    ]
    rows = []
    for rec in eff.to_dict("records"):
        cells = [Cell([Part(DASH if pd.isna(rec[f]) else str(rec[f]))]) for f, _ in fields]
        rows.append(Row(f"{rec['method']} ({rec['source']})", cells))
    remarks = [f"{r['method']}: {r['note']}" for r in eff.to_dict("records") if isinstance(r["note"], str)]
    return Table(
        "pub-efficiency",
        "Published efficiency",
        "Method (source)",
        [label for _, label in fields],
        rows,
        remarks=remarks,
        section="published",
    )


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
    report = build_report(store, out_dir, registry=registry, **options)
    paths = list(report.plots) + list(report.figures) + [p.with_suffix(".pdf") for p in report.figures]
    for fmt in renderers:
        paths += fmt.render(report, out_dir)
    return paths
