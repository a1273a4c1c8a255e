"""Format-neutral report tables, one import for the pieces they are built from.

The table model (``model``), what reports print about datasets/metrics/protocols (``catalog``),
columns and coverage (``columns``, ``headers``), grids behind one protocol (``grids``), the
builders (``builders``, ``categories``, ``ablation``). Aggregation, as the papers: per column and
dataset, the mean over the categories the column ran (a partial cell says "(k/n)" and is never
ranked); with several seeds, mean ± std over seeds; the Average row is the mean over datasets.
"""

from __future__ import annotations

from adbench.metric_catalog import METRICS, table_order

from .ablation import ablation_frame, ablation_tables, published_ablation_table
from .builders import PaperOnly, metric_table, tuple_table
from .catalog import (
    CFLOW_NOTE,
    TUPLES,
    DatasetCatalog,
    DatasetInfo,
    metric_columns,
    metric_name,
    sort_metrics,
)
from .categories import category_table, category_tables
from .columns import COVERAGES, Coverage, identity_fields, variant_parts
from .grids import Grid, PublishedGrid, ReproducedGrid
from .model import DASH, Cell, Notes, Part, Row, RowKey, Stat, Table, fmt, fmt_diff, rank_parts

#: The papers' table order and display names (views of the metric catalog, for older callers).
METRIC_ORDER = table_order()
METRIC_NAMES = {key: spec.title for key, spec in METRICS.items()}

__all__ = [
    "CFLOW_NOTE",
    "COVERAGES",
    "DASH",
    "METRIC_NAMES",
    "METRIC_ORDER",
    "TUPLES",
    "Cell",
    "Coverage",
    "DatasetCatalog",
    "DatasetInfo",
    "Grid",
    "Notes",
    "PaperOnly",
    "Part",
    "PublishedGrid",
    "ReproducedGrid",
    "Row",
    "RowKey",
    "Stat",
    "Table",
    "ablation_frame",
    "ablation_tables",
    "category_table",
    "category_tables",
    "fmt",
    "fmt_diff",
    "identity_fields",
    "metric_columns",
    "metric_name",
    "metric_table",
    "published_ablation_table",
    "rank_parts",
    "sort_metrics",
    "tuple_table",
    "variant_parts",
]
