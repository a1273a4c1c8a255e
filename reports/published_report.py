"""The papers' own tables rebuilt from the shipped CSV (no store needed): captions, labels and
file names name the paper's short title and table numbers; rows and columns with no printed value
are left out before the table is built (so every footnote mark has its note and back)."""

from __future__ import annotations

import re
from typing import Any

from . import published as pub
from .ablation import published_ablation_table
from .builders import metric_table
from .catalog import DatasetCatalog, metric_name
from .efficiency import published_efficiency_table
from .grids import PublishedGrid
from .model import Table


def slug(text: str) -> str:
    """A file name and LaTeX label: lower-case letters, digits, ``_`` and ``-`` only."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9_]+", "-", text.lower())).strip("-")


def _metric_tables(grid: PublishedGrid, source: str) -> list[Table]:
    title = pub.source_title(source)
    out = []
    for m in grid.metrics:
        rows = [r for r in grid.row_keys() if any(grid.stat(c, r, m).ok for c in range(len(grid.columns)))]
        cols = [c for c in range(len(grid.columns)) if any(grid.stat(c, r, m).ok for r in rows)]
        if not rows or not cols:
            continue
        t = metric_table(
            grid,
            m,
            rows=rows,
            cols=cols,
            table_id=slug(f"pub-{title}-{m}"),
            title=f"{title}: {metric_name(m)}",
        )
        t.section = "published"
        if m == "pixel_aupro" and pub.uses_cflow_aupro(source):
            t.remarks.append("The paper's AUPRO follows AnomalyCLIP's evaluation code (aupro_cflow).")
        t.remarks.append(f"Source: {pub.paper_info(pub.paper_of(source)).title}, {pub.source_where(source)}.")
        out.append(t)
    return out


def published_report(paper: str | None, registry: Any) -> tuple[list[Table], Any, list[str]]:
    """The published tables (of one paper, or all), the long frame and the sources used."""
    data = pub.load_published()
    sources = [s for s in dict.fromkeys(data["source"]) if pub.matches_paper(s, paper)]
    catalog = DatasetCatalog.from_registry(registry, sorted(set(data["dataset"])))
    tables: list[Table] = []
    for source in sources:
        grid = PublishedGrid(data[data["source"] == source], catalog)
        if "ablation" in source:  # the paper's orientation: configurations as rows
            title = pub.source_title(source)
            t = published_ablation_table(grid, table_id=slug(f"pub-{title}"), title=title)
            t.remarks.append(
                f"Source: {pub.paper_info(pub.paper_of(source)).title}, {pub.source_where(source)}."
            )
            tables.append(t)
            continue
        tables += _metric_tables(grid, source)
    tables.append(published_efficiency_table(paper))
    data = data[data["source"].isin(sources)]
    long = data.drop(columns=["paper"]).assign(dataset_name=lambda f: f["dataset"].map(catalog.title))
    return tables, long, sources
