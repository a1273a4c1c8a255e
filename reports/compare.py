"""Reproduced numbers beside published ones: which paper value belongs to a cell, whether a
difference may be computed (same protocol and k, same categories as the paper), and paper-only
columns for methods of the paper's table that were not run here."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from . import published as pub
from .builders import PaperOnly, PublishedFn
from .catalog import CFLOW_NOTE, takes_shots
from .grids import ReproducedGrid
from .model import RowKey, Stat


def category_mismatch(grid: ReproducedGrid, col: int, dataset: str) -> str:
    """Why ours and the paper's value of one dataset average different categories ("" if they do not):
    a partial column, a subset comparison, or a root holding fewer categories than the paper's."""
    cov = grid.coverage(col, dataset)
    if cov is None or not cov.ok:
        return ""
    title = grid.catalog.title(dataset)
    used = grid.categories_used(col, dataset) or cov.ok
    paper = grid.catalog.info(dataset).published_categories
    expected = paper if paper is not None else cov.expected
    if len(used) != expected or not cov.complete:
        return f"{title}: ours over {len(used)} categories, the paper over {expected}; no Δ"
    return ""


def _average_mismatch(grid: ReproducedGrid, col: int, metric: str, row: RowKey) -> str:
    for d in sorted(grid.datasets_with_value(col, metric, row)):
        why = category_mismatch(grid, col, d)
        if why:
            return f"Average: {why}"
    return ""


def published_side(grid: ReproducedGrid, paper: str | None = None) -> PublishedFn:
    """Lookup of the published value beside each reproduced cell (same method, dataset, metric);
    ``paper`` restricts the comparison to one paper's numbers."""

    def lookup(col: int, row: RowKey, metric: str) -> tuple[Stat, list[str]]:
        protocol, shots = grid.protocol(col)
        name = grid.published_name(col)
        if name is None:
            return Stat(notes=(f"{grid.columns[col]}: no paper reports this configuration",)), []
        source, rows = pub.lookup(name, protocol, paper)
        if source is None:
            where = f" in {paper}" if paper else ""
            return Stat(notes=(f"no published {name} number under protocol {protocol}{where}",)), []
        setting = rows["setting"].iloc[0]
        remarks = [f"{grid.columns[col]}: paper = {name}, {pub.source_title(source)}, setting '{setting}'."]
        why = ""
        if takes_shots(protocol) and pub.published_shots(setting) != shots:
            # e.g. PatchEAD's "best few-shot result": the same number for every k, so no Δ
            remarks.append(
                f"{name}: the paper's few-shot number does not state k (or states another k); "
                f"shown for reference, no difference computed for k={shots}."
            )
            why = "the paper does not state this k; no Δ"
        wanted = metric
        if metric == "pixel_aupro_cflow":
            wanted = "pixel_aupro"
            if pub.uses_cflow_aupro(source):
                remarks.append(CFLOW_NOTE)
            elif (rows["metric"] == "aupro").any():
                return Stat(notes=("the paper's AUPRO is not the aupro_cflow definition",)), remarks
        elif metric == "pixel_aupro" and pub.uses_cflow_aupro(source):
            return Stat(notes=(CFLOW_NOTE,)), remarks
        label = pub.source_label(source)
        if row.is_average:
            avg = pub.average_row_for(rows, wanted, grid.datasets_with_value(col, metric, row))
            if avg is None:
                if not rows["dataset"].map(pub.is_average_name).any():
                    return Stat(notes=(f"{name}: no average reported in {label}",)), remarks
                return Stat(notes=("the paper's average covers a different set of datasets",)), remarks
            value = pub.value_of(rows, avg, wanted)
            why = why or _average_mismatch(grid, col, metric, row)
        else:
            value = pub.value_of(rows, row.dataset, wanted)
            why = why or category_mismatch(grid, col, row.dataset)
        if value is None:
            return Stat(notes=(f"{name}: not reported in {label}",)), remarks
        return Stat(value, diffable=not why, diff_note=why), remarks

    return lookup


def paper_only_columns(grid: ReproducedGrid, cols: Sequence[int], paper: str | None) -> list[PaperOnly]:
    """Methods of the paper table behind these columns that were not run here (same protocol);
    none when the columns are compared with several papers (whose tables would be merged)."""
    ran = {grid.published_name(c) for c in cols}
    sources = {pub.lookup(n, grid.protocol(c)[0], paper)[0] for c in cols if (n := grid.published_name(c))}
    if len({pub.paper_of(s) for s in sources if s}) != 1:
        return []
    out: list[PaperOnly] = []
    seen: set[str] = set()
    for c in cols:
        name = grid.published_name(c)
        if name is None:
            continue
        protocol, _ = grid.protocol(c)
        source, _rows = pub.lookup(name, protocol, paper)
        if source is None:
            continue
        table = pub.load_published()
        table = table[
            (table["source"] == source)
            & table["setting"].map(lambda s, p=protocol: pub.setting_matches(p, s))
        ]
        for method in dict.fromkeys(table["method"]):
            if method in ran or method in seen:
                continue
            seen.add(method)
            out.append(PaperOnly(method, _paper_value(grid, table[table["method"] == method])))
    return out


def _paper_value(grid: ReproducedGrid, rows: pd.DataFrame) -> Callable[[RowKey, str], Stat]:
    """The paper's value of one method for a row (its average row covering the table's datasets)."""

    def value(row: RowKey, metric: str) -> Stat:
        name = row.dataset
        if row.is_average:
            names = set(grid.catalog.in_group(grid.datasets, row.group))
            name = pub.average_row_for(rows, metric, names)
        found = pub.value_of(rows, name, metric) if name else None
        return Stat(found, notes=() if found is not None else ("not reported in the paper",), rankable=False)

    return value
