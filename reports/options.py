"""The one options object of a report (``build_report(store, out_dir, options)``), each field with
its meaning; the CLI, ``adbench.report`` and tests fill it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from adbench.errors import AdbenchError

#: Loads test images for qualitative figures: (dataset, category, sample ids, size) -> {id: HxWx3 uint8}.
ImageLoader = Callable[[str, str, Sequence[str], int], dict[str, "object"]]

MODES = ("reproduced", "published")
LATEX_COLUMNS = (1, 2)


@dataclass
class ReportOptions:
    """What a report shows and how."""

    #: Put the papers' numbers beside reproduced ones (ours | paper | Δ), with paper-only columns.
    published: bool = False
    #: ``method.field``: add the DMA-SAP Table 7 layout over one config field.
    ablation: str | None = None
    #: ``reproduced`` (from the store) or ``published`` (the papers' own tables, no store needed).
    mode: str = "reproduced"
    #: Only this paper's published numbers (a substring of the source).
    paper: str | None = None
    #: Per-category tables.
    categories: bool = True
    #: Per-category cells as "(AUROC, AP)" pairs instead of one table per metric.
    paired_cells: bool = False
    #: Bar charts of the averages.
    plots: bool = True
    #: ``all``: each column over its own categories (default); ``shared``: also the explicit
    #: shared-subset tables (every column over the categories all columns ran).
    coverage: str = "all"
    methods: Sequence[str] | None = None
    datasets: Sequence[str] | None = None
    metrics: Sequence[str] | None = None
    #: ``field=value`` filters on record settings (``protocol=few_shot``, ``config.backbone=...``).
    where: Sequence[str] = ()
    #: Column renames, keyed by the default column text.
    labels: dict[str, str] = field(default_factory=dict)
    #: Bootstrap intervals of Image-AUROC from stored predictions.
    ci: bool = False
    #: Paired significance tests in the tables (dagger marks), mean ranks with a critical-difference
    #: diagram and shot curves; ``--no-stats`` turns them off.
    stats: bool = True
    #: Bootstrap resamples of the paired tests.
    resamples: int = 1000
    #: Images per qualitative figure (0: no figures).
    figures: int = 0
    figure_categories: Sequence[str] | None = None
    images: ImageLoader | None = None
    #: LaTeX target: 1 = one-column article, 2 = two-column (wide tables become ``table*``).
    latex_columns: int = 2
    #: Describes datasets (titles, groups, order, published category counts).
    registry: Any = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise AdbenchError(f"report mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.latex_columns not in LATEX_COLUMNS:
            raise AdbenchError(f"--latex-columns {self.latex_columns!r}: expected 1 or 2")

    @classmethod
    def of(cls, **options: Any) -> ReportOptions:
        """From keyword options; an unknown name is a one-line error naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise AdbenchError(f"report option {unknown[0]!r}: expected one of {', '.join(sorted(known))}")
        return cls(**options)
