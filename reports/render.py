"""Build a format-neutral Report from the results store, then hand it to the format plugins.

Reports read only the store (and the published numbers shipped as package data); they never
run a model. Formats are plugins (hook ``adbench_report_formats``), resolved through the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import adbench
from adbench.errors import AdbenchError
from adbench.store import ResultsStore

from . import published as pub
from .tables import (
    AVERAGE,
    CFLOW_NOTE,
    COLUMN_KEYS,
    DASH,
    Cell,
    Part,
    PublishedGrid,
    ReproducedGrid,
    Row,
    Stat,
    Table,
    ablation_tables,
    category_table,
    dataset_name,
    metric_name,
    metric_table,
    tuple_table,
)

MODES = ("reproduced", "published")
SECTION_TITLES = {
    "main": "Results per metric (DMA-SAP Tables 1-6 layout)",
    "tuples": "All metrics (ViP2-CLIP tuple layout)",
    "ablation": "Ablation (DMA-SAP Table 7 layout)",
    "published": "Published numbers",
    "categories": "Per-category results",
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
        methods = ", ".join(sorted(rows["method"].unique()))
        out.append(
            f"Evaluation protocol {setting.get('eval_protocol')}: pixel metrics at "
            f"{setting.get('eval_size')} px, masks resized {setting.get('mask_resize')}, "
            f"Gaussian sigma {setting.get('smoothing_sigma')}, {setting.get('precision')} ({methods})."
        )
    return out


def random_banner(frame: pd.DataFrame) -> str | None:
    """The warning every output shows when any record ran on randomly initialised weights."""
    rand = frame[frame["random_weights"].astype(bool)]
    if rand.empty:
        return None
    names: set[str] = set()
    for value in rand.get("backbone_names", pd.Series(dtype=str)).dropna():
        names |= {n for n in str(value).split(",") if n}
    what = ", ".join(sorted(names)) or "methods: " + ", ".join(sorted(rand["method"].unique()))
    return (
        f"Numbers computed with randomly initialised backbone weights ({what}): "
        "not comparable to published results."
    )


def published_side(grid: ReproducedGrid) -> Callable[[int, str, str], tuple[Stat, list[str]]]:
    """Lookup of the published value beside each reproduced cell (same method, dataset, metric)."""

    def lookup(col: int, dataset: str, metric: str) -> tuple[Stat, list[str]]:
        key = grid.keys[col]
        name = pub.published_name(key[0], grid.config(key))
        if name is None:
            return Stat(notes=(f"no published number for '{key[0]}' with this config",)), []
        source, rows = pub.lookup(name, key[2])
        if source is None:
            return Stat(notes=(f"no published {name} number under protocol {key[2]}",)), []
        setting = rows["setting"].iloc[0]
        remarks = [f"{grid.columns[col]}: paper = {name}, {source}, setting '{setting}'."]
        wanted = metric
        if metric == "pixel_aupro_cflow":
            wanted = "pixel_aupro"
            if pub.uses_cflow_aupro(source):
                remarks.append(CFLOW_NOTE)
            elif (rows["metric"] == "aupro").any():
                return Stat(notes=("the paper's AUPRO is not the aupro_cflow definition",)), remarks
        elif metric == "pixel_aupro" and pub.uses_cflow_aupro(source):
            return Stat(notes=(CFLOW_NOTE,)), remarks
        if dataset == AVERAGE:
            avg = pub.average_row_for(rows, wanted, grid.datasets_with_value(col, metric))
            if avg is None:
                if not rows["dataset"].str.startswith("average").any():
                    return Stat(notes=(f"{name}: no average reported in {pub.paper_of(source)}",)), remarks
                return Stat(notes=("the paper's average covers a different set of datasets",)), remarks
            dataset = avg
        value = pub.value_of(rows, dataset, wanted)
        if value is None:
            return Stat(notes=(f"{name}: not reported in {pub.paper_of(source)}",)), remarks
        return Stat(value), remarks

    return lookup


def _long_frame(grid: ReproducedGrid, banner: str | None, with_published: bool) -> pd.DataFrame:
    """One CSV row per column × dataset (and Average) × metric, with notes and published values."""
    side = published_side(grid) if with_published else None
    out = []
    for c, key in enumerate(grid.keys):
        random = grid.is_random(key)
        for d in grid.datasets + [AVERAGE]:
            for m in grid.metrics:
                s = grid.stat(c, d, m)
                row = dict(zip(COLUMN_KEYS, key))
                row.update(
                    dataset="average" if d == AVERAGE else d,
                    metric=m,
                    value=round(s.mean, 4) if s.ok else None,
                    std=None if s.std is None else round(s.std, 4),
                    note="; ".join(s.notes),
                    random_weights=random,
                    warning=banner or "",
                )
                if side is not None:
                    theirs, remarks = side(c, d, m)
                    row["published"] = theirs.mean
                    row["published_note"] = "; ".join(list(theirs.notes) + remarks)
                    row["difference"] = (
                        round(round(s.mean, 1) - theirs.mean, 1) if s.ok and theirs.ok else None
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
) -> Report:
    """Aggregate the store into tables (and plot files under ``out_dir``)."""
    if mode not in MODES:
        raise AdbenchError(f"report mode {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "published":
        return _published_report(paper)
    records = store.frame(include_failed=True)  # one pass over the record files for both parts
    ok = records["status"].eq("ok") if not records.empty else pd.Series(dtype=bool)
    if not ok.any():
        raise AdbenchError(
            f"no finished records in {store.records_dir}; run jobs first or use the published mode"
        )
    frame, failed = records[ok], records[~ok]
    grid = ReproducedGrid(frame, failed)
    banner = random_banner(frame)
    side = published_side(grid) if published else None
    tables = [metric_table(grid, m, published=side, title=metric_name(m)) for m in grid.metrics]
    tables.append(tuple_table(grid))
    if ablation:
        tables += ablation_tables(grid, ablation)
    if categories:
        tables += [category_table(grid, m) for m in grid.metrics]
    notes = [
        "Dataset score = mean over categories (NaN categories left out, see footnotes); "
        "with several seeds, mean ± std (sample std) over seeds. Average = mean over the datasets "
        "with a value. Values ×100; best per row in bold, second underlined (with three or more columns); — = no value."
    ]
    if grid.n_duplicates:
        notes.append(f"{grid.n_duplicates} older record(s) of re-run jobs were superseded by newer ones.")
    notes += evaluation_notes(frame)
    plot_files: list[Path] = []
    if plots:
        from .plots import bar_charts  # matplotlib is imported only when plotting

        plot_files = bar_charts(grid, out_dir)
    return Report(
        title="adbench results",
        source=str(store.root),
        tables=tables,
        long=_long_frame(grid, banner, published),
        banner=banner,
        plots=plot_files,
        notes=notes,
    )


def _published_report(paper: str | None) -> Report:
    """The papers' own tables rebuilt from the shipped CSV (no store needed)."""
    data = pub.load_published()
    sources = list(dict.fromkeys(data["source"]))
    if paper:
        sources = [s for s in sources if paper.lower() in s.lower()]
        if not sources:
            papers = ", ".join(sorted(set(data["paper"])))
            raise AdbenchError(f"--paper {paper!r}: no published source matches (papers: {papers})")
    tables: list[Table] = []
    for source in sources:
        grid = PublishedGrid(data[data["source"] == source])
        rows = grid.datasets + grid.averages
        for m in grid.metrics:
            t = metric_table(
                grid, m, rows=rows, table_id=f"pub-{source}-{m}", title=f"{metric_name(m)} — {source}"
            )
            t.section = "published"
            t.rows = [r for r in t.rows if any(c.parts[0].value is not None for c in r.cells)]
            tables.append(t)
    tables.append(_efficiency_table())
    long = data.drop(columns=["paper"]).assign(dataset_name=lambda f: f["dataset"].map(dataset_name))
    return Report(
        title="Published results (from the papers)",
        source="adbench.reports/data/published_results.csv",
        tables=tables,
        long=long,
        notes=[
            "Values in percent, as printed in each paper; several papers report the same baseline differently."
        ],
    )


def _efficiency_table() -> Table:
    """Published speed/memory figures (as printed; GPUs differ between papers)."""
    eff = pub.load_efficiency()
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
    published: bool = False,
    ablation: str | None = None,
    registry=None,
    mode: str = "reproduced",
    paper: str | None = None,
    categories: bool = True,
) -> list[Path]:
    """Render the store as the given formats into ``out_dir``; return the files written.

    ``published`` puts the papers' numbers beside reproduced ones with the difference;
    ``ablation="method.field"`` adds the Table 7 layout; ``mode="published"`` renders only the
    papers' tables (``paper`` filters the source), which needs no records.
    """
    from adbench.registry import get_registry

    registry = registry or get_registry()
    renderers = [registry.get("report_format", name) for name in _format_names(formats)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(
        store,
        out_dir,
        published=published,
        ablation=ablation,
        mode=mode,
        paper=paper,
        categories=categories,
    )
    paths = list(report.plots)
    for fmt in renderers:
        paths += fmt.render(report, out_dir)
    return paths
