"""The format-neutral table model: parts, cells, rows, tables, footnotes, ranks and row keys.

Formats (HTML, LaTeX, Markdown) render these objects; builders fill them from a grid. Values are
percent with one decimal; rank 1 is bold, rank 2 underlined.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

DASH = "—"


def fmt(value: float | None, std: float | None = None) -> str:
    """A percent value with one decimal (and ± std), or the dash for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    text = f"{value:.1f}"
    text = "0.0" if text == "-0.0" else text  # a tiny negative value (a Δ, a rounding) is no sign
    if std is not None and not math.isnan(std):
        text += f" ± {std:.1f}"
    return text


def fmt_diff(ours: float | None, theirs: float | None) -> str:
    """Ours minus theirs at display precision, with a true minus sign."""
    if ours is None or theirs is None or math.isnan(ours) or math.isnan(theirs):
        return DASH
    text = f"{round(ours, 1) - round(theirs, 1):+.1f}"
    return ("+0.0" if text == "-0.0" else text).replace("-", "−")


@dataclass(frozen=True)
class RowKey:
    """What a table row stands for: one dataset, or an Average over datasets (all, or one group's).

    ``name`` is set for a row the published CSV spells itself (e.g. ``average_industrial``).
    """

    dataset: str | None = None
    group: str | None = None  # the group an Average row averages (None: every dataset)
    name: str | None = None  # a published average row's own name in the CSV

    @classmethod
    def average(cls, group: str | None = None) -> RowKey:
        return cls(None, group)

    @property
    def is_average(self) -> bool:
        return self.dataset is None

    @property
    def lookup(self) -> str:
        """The name published numbers are looked up under."""
        return self.name or self.dataset or "average"


# --------------------------------------------------------------------------- cells and tables


@dataclass
class Part:
    """One number inside a cell (a tuple cell has several); rank 1 = best, 2 = second."""

    text: str
    value: float | None = None
    rank: int | None = None
    rankable: bool = True


@dataclass
class Cell:
    parts: list[Part]
    is_tuple: bool = False
    marks: list[int] = field(default_factory=list)
    kind: str = "value"  # value | published | diff | paper-only
    suffix: str = ""  # shown after the value(s), e.g. the coverage "(2/6)"
    #: Not significantly worse than the row's best (paired test, Holm-corrected): a dagger.
    tied: bool = False


@dataclass
class Row:
    label: str
    cells: list[Cell]
    group: str | None = None
    group_start: bool = False
    rule_before: bool = False
    info: str = ""  # the value of the table's info column (e.g. |C|, the category count)


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
    #: Header of an unranked column after the row labels (ViP2-CLIP's |C|), empty for none.
    info_header: str = ""
    #: The file name stem of the table (LaTeX); its id when empty.
    file: str = ""

    @property
    def n_data_columns(self) -> int:
        return len(self.columns) * max(1, len(self.subcolumns))

    def details(self, col: int) -> list[str]:
        """The small header lines of one column (empty when the name says everything)."""
        return self.column_details[col] if col < len(self.column_details) else []

    @property
    def wide(self) -> bool:
        """Too wide for one text column at its natural size (LaTeX then spans both or scales)."""
        # Detail lines are set in a smaller font: count them at about 70% of their length.
        widths = [
            max([len(c)] + [int(0.7 * len(line)) for line in self.details(i)])
            for i, c in enumerate(self.columns)
        ]
        return self.n_data_columns > 4 or sum(widths) + len(self.row_header) > 60


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

    Second-best is the next value after every value tied for best, and only when the best is not
    shared by all but one value and three or more values compete (with two it would just mark
    the worse; after a three-way tie among four, "second" would be the last).
    """
    valued = [p for p in parts if p.rankable and p.value is not None and not math.isnan(p.value)]
    if len(valued) < 2:
        return
    rounded = [round(p.value, 1) for p in valued]
    best = max(rounded)
    n_best = rounded.count(best)
    second = max((v for v in rounded if v != best), default=None)
    mark_second = len(valued) > 2 and n_best == 1
    for p, v in zip(valued, rounded):
        p.rank = 1 if v == best else 2 if mark_second and v == second else None


def rank_in_groups(parts: Sequence[Part], groups: Sequence[Hashable]) -> None:
    """Rank each comparable group of parts on its own (same protocol, k and eval size)."""
    for g in dict.fromkeys(groups):
        rank_parts([p for p, h in zip(parts, groups) if h == g])


# --------------------------------------------------------------------------- statistics


@dataclass
class Stat:
    """An aggregated value in percent, its std over seeds, and footnote texts."""

    mean: float | None = None
    std: float | None = None
    notes: tuple[str, ...] = ()
    coverage: str = ""  # e.g. "2/6" when the value covers fewer categories (or datasets) than exist
    diffable: bool = True  # a published value that may be subtracted from ours (same setting)
    rankable: bool = True  # False: shown, but never marked best/second
    n_seeds: int = 1
    diff_note: str = ""  # why no difference is computed against this (published) value

    @property
    def ok(self) -> bool:
        return self.mean is not None and not math.isnan(self.mean)


def value_cell(stat: Stat, notes: Notes, kind: str = "value") -> Cell:
    """One value (± std) with its footnote marks and coverage suffix."""
    return Cell(
        [Part(fmt(stat.mean, stat.std), stat.mean if stat.ok else None, rankable=stat.rankable)],
        marks=notes.marks(stat.notes),
        kind=kind,
        suffix=f"({stat.coverage})" if stat.coverage else "",
    )


def tuple_cell(stats: Sequence[Stat], names: Sequence[str], notes: Notes, kind: str = "value") -> Cell:
    """Several values in one "(a, b, c)" cell, notes merged, the first coverage as suffix."""
    parts = [Part(fmt(s.mean), s.mean if s.ok else None, rankable=s.rankable) for s in stats]
    cov = next((s.coverage for s in stats if s.coverage), "")
    return Cell(
        parts,
        is_tuple=True,
        marks=notes.marks(merged_notes(names, stats)),
        kind=kind,
        suffix=f"({cov})" if cov else "",
    )


def merged_notes(names: Sequence[str], stats: Sequence[Stat]) -> list[str]:
    """Footnotes of a tuple cell: a note shared by every element once, others prefixed by metric."""
    texts = list(dict.fromkeys(t for s in stats for t in s.notes))
    out = []
    for text in texts:
        having = [n for n, s in zip(names, stats) if text in s.notes]
        out.append(text if len(having) == len(names) else f"{', '.join(having)}: {text}")
    return out
