"""Ablation tables (DMA-SAP Table 7 layout): rows = values of one config field, labelled
``field = value``, every other setting held fixed (listed in the note); published ablations in the
paper's own orientation."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from adbench.errors import AdbenchError

from . import published as pub
from .catalog import metric_name, protocol_title
from .columns import identity_fields, norm, short_field, show
from .grids import PublishedGrid, ReproducedGrid
from .headers import in_words
from .model import Notes, Row, RowKey, Stat, Table, rank_parts, tuple_cell, value_cell

#: (method, value, dataset or None for the Average, metric, datasets averaged) -> published value.
AblationLookup = Callable[[str, str, str | None, str, frozenset[str]], float | None]
PAIR = ("image_auroc", "image_ap")


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
            f"{short_field(f)} ({', '.join(sorted({show(v) for v in both[f].map(norm)}))})" for f in others
        )
        raise AdbenchError(
            f"--ablation {spec!r}: the {method} records also differ in {what}; an ablation holds every "
            "other setting fixed (re-run the variants with the same settings, or use separate stores)"
        )
    return both, method, fld


def held_fixed(both: pd.DataFrame, varied: str) -> str:
    """The method-config settings, protocol and eval size every record of the ablation shares."""
    fixed = []
    for name in sorted(c for c in both.columns if c.startswith("config.") and c != varied):
        values = {show(v) for v in both[name].map(norm) if v is not None}
        if len(values) == 1:
            fixed.append(in_words(name, values.pop()))
    protocols = set(zip(both["protocol"], both["shots"]))
    if len(protocols) == 1:
        fixed.append(protocol_title(*protocols.pop()))
    sizes = {show(v) for v in both.get("eval_size", pd.Series(dtype=object)).map(norm) if v is not None}
    if len(sizes) == 1:
        fixed.append(in_words("eval_size", sizes.pop()))
    return "Held fixed: " + ", ".join(fixed) + "." if fixed else ""


def ablation_tables(grid: ReproducedGrid, spec: str, published: AblationLookup | None = None) -> list[Table]:
    """DMA-SAP Table 7: rows = values of one config field (``method.field``).

    The first table averages every metric over datasets; the second is the paper's own layout,
    (Image-AUROC, Image-AP) per dataset and Average, with the published row beside each reproduced
    one when ``published`` knows it (same orientation). Each cell over its own categories.
    """
    both, method, fld = ablation_frame(grid, spec)
    col = f"config.{fld}"
    frame = both[both["status"] == "ok"].copy()
    failed = both[both["status"] != "ok"].copy()
    for f in (frame, failed):
        f.attrs["settings"] = ["method", col]
    sub = ReproducedGrid(frame, failed, coverage=grid.coverage_mode)
    sub.catalog = grid.catalog
    values = [show(sub.setting(c, col)) for c in range(len(sub.keys))]
    labels = [
        f"{fld} = {v}" + (" [random weights]" if sub.is_random(c) else "") for c, v in enumerate(values)
    ]
    notes = Notes()
    rows = [
        Row(labels[c], [value_cell(sub.average(c, m), notes) for m in sub.metrics])
        for c in range(len(values))
    ]
    for i in range(len(sub.metrics)):
        rank_parts([r.cells[i].parts[0] for r in rows])
    fixed = held_fixed(both, col)
    remarks = [fixed] if fixed else []
    first = Table(
        f"ablation-{spec}",
        f"Ablation over {spec}: metrics averaged over datasets",
        "Setting",
        [metric_name(m) for m in sub.metrics],
        rows,
        footnotes=notes.texts,
        section="ablation",
        remarks=remarks + sub.remarks(legend=False),
    )
    pair = [m for m in PAIR if m in sub.metrics]
    if not pair:
        return [first]
    return [first, _dataset_table(sub, spec, method, values, labels, pair, published, remarks)]


def _dataset_table(
    sub: ReproducedGrid,
    spec: str,
    method: str,
    values: list[str],
    labels: list[str],
    pair: list[str],
    published: AblationLookup | None,
    remarks: list[str],
) -> Table:
    """The paper's layout: (Image-AUROC, Image-AP) per dataset and Average, paper rows beside ours."""
    notes = Notes()
    names = [metric_name(m) for m in pair]
    keys = [RowKey(d) for d in sub.datasets] + [RowKey.average()]
    datasets = frozenset(sub.datasets)
    has_published = published is not None and any(
        published(method, v, d, pair[0], datasets) is not None for v in values for d in sub.datasets
    )
    rows = []
    for c, value in enumerate(values):
        cells = []
        for r in keys:
            cells.append(tuple_cell([sub.stat(c, r, m) for m in pair], names, notes))
            if has_published:
                theirs = [published(method, value, r.dataset, m, datasets) for m in pair]
                missing = () if any(v is not None for v in theirs) else ("not in the paper",)
                cells.append(tuple_cell([Stat(v, notes=missing) for v in theirs], names, notes, "published"))
        rows.append(Row(labels[c], cells))
    step = 2 if has_published else 1
    for j in range(len(keys)):
        for i in range(len(pair)):
            rank_parts([r.cells[j * step].parts[i] for r in rows])
            if has_published:
                rank_parts([r.cells[j * step + 1].parts[i] for r in rows])
    return Table(
        f"ablation-{spec}-datasets",
        f"Ablation over {spec} ({', '.join(names)}) per dataset"
        + (", reproduced beside the paper" if has_published else ""),
        "Setting",
        [sub.catalog.row_title(r) for r in keys],
        rows,
        subcolumns=["ours", "paper"] if has_published else [],
        footnotes=notes.texts,
        section="ablation",
        remarks=remarks + sub.remarks(legend=False),
    )


def published_ablation_table(grid: PublishedGrid, *, table_id: str, title: str) -> Table:
    """A published ablation (DMA-SAP Table 7) in the paper's orientation, as the reproduced one:
    rows = model configurations, columns = datasets then Average, (Image-AUROC, Image-AP) cells."""
    pair = [m for m in PAIR if m in grid.metrics]
    names = [metric_name(m) for m in pair]
    notes = Notes()
    rows = []
    for c, (method, _setting) in enumerate(grid.keys):
        cells = []
        for d in grid.datasets:
            cells.append(tuple_cell([grid.stat(c, d, m) for m in pair], names, notes))
        average = []
        for m in pair:
            vals = [grid.stat(c, d, m).mean for d in grid.datasets]
            complete = all(x is not None for x in vals)
            average.append(Stat(pub.mean_as_printed(vals)) if complete else Stat(notes=("incomplete",)))
        cells.append(tuple_cell(average, names, notes))
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
        remarks=[f"Cells: ({', '.join(names)}); Average = mean of the datasets, as the paper prints it."],
    )
