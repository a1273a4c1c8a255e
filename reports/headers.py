"""Column headers of a reproduced grid: a short name, a letter tag whose legend spells out only the
settings that differ between columns of the same method (in words), the protocol and flags."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adbench.errors import AdbenchError

from .catalog import protocol_title
from .columns import HEADER_SKIP, letters, short_field, show

if TYPE_CHECKING:
    from .grids import ReproducedGrid


def in_words(field: str, value: object) -> str:
    """``config.image_size``, 224 -> ``image size 224`` (a legend reads as text, not as config)."""
    return f"{short_field(field).replace('_', ' ').replace('.', ' ')} {show(value)}"


class ColumnHeaders:
    """Headers, legend lines and chart descriptions of a grid's columns, and user relabelling."""

    def __init__(self, grid: ReproducedGrid) -> None:
        self.grid = grid
        self.labels: dict[str, str] = {}
        self._build()

    def _build(self) -> None:
        """Two-line headers: the display name, then a legend tag, the protocol and flags; the
        settings behind each tag go in ``legend`` (one line per tag) instead of the header."""
        self.headers: list[tuple[str, list[str]]] = []
        self.legend: list[str] = []
        #: Per column, the settings and tags spelled out (chart legends have room for them).
        self.descriptions: list[list[str]] = []
        self.tags: list[str] = []  # per column, its legend tag ("" for none)
        tag_of: dict[tuple[str, ...], str] = {}  # columns with the same settings share a tag
        for key in self.grid.keys:
            title, details, tags = self._header(key)
            self.descriptions.append(details + tags)
            if details:
                if tuple(details) not in tag_of:
                    tag_of[tuple(details)] = f"({letters(len(self.legend))})"
                    self.legend.append(f"{tag_of[tuple(details)]} {', '.join(details)}")
                tags = [tag_of[tuple(details)], *tags]
            self.tags.append(tag_of.get(tuple(details), ""))
            self.headers.append((title, [" · ".join(tags)]))
        self.columns = [" ".join([name, *lines]) for name, lines in self.headers]
        if self.labels:
            self.headers = [
                (self.labels.get(c, name), lines) for c, (name, lines) in zip(self.columns, self.headers)
            ]

    def relabel(self, labels: dict[str, str]) -> None:
        """User column labels (``--label``), keyed by the default column text, e.g. ``DMA-SAP (a) · zero-shot``."""
        unknown = [k for k in labels if k not in self.columns]
        if unknown:
            raise AdbenchError(f"--label {unknown[0]!r}: no such column (columns: {'; '.join(self.columns)})")
        self.labels = dict(labels)
        self._build()

    def _header(self, key: tuple) -> tuple[str, list[str], list[str]]:
        grid = self.grid
        col = grid.keys.index(key)
        protocol, shots = grid.protocol(col)
        same_method = [k for k in grid.keys if dict(k)["method"] == dict(key)["method"]]
        details = []
        for f, v in key:
            if f.startswith(HEADER_SKIP) or f in HEADER_SKIP or v is None:
                continue
            if len({dict(k).get(f) for k in same_method}) > 1:
                details.append(in_words(f, v))
        tags = [protocol_title(protocol, shots)]
        if grid.is_random(col):
            tags.append("random weights")
        return grid.title(col), details, tags

    def settings_text(self, col: int) -> str:
        """Every identifying setting of a column as ``field=value`` (for the CSV)."""
        return ", ".join(f"{short_field(f)}={show(v)}" for f, v in self.grid.keys[col] if v is not None)

    def legend_of(self, cols: list[int]) -> list[str]:
        """The legend lines of the tags these columns use."""
        used = {self.tags[c] for c in cols}
        return [line for line in self.legend if line.split(" ", 1)[0] in used]

    def trained_notes(self, cols: list[int]) -> list[str]:
        """Notes "<column>: trained on <auxiliary datasets>, tested on <target>" of trained columns."""
        out = []
        for c in cols:
            name = self.columns[c]
            pairs: dict[str, list[str]] = {}
            for d in self.grid.datasets:
                aux = self.grid.trained_on(c, d)
                if aux:
                    pairs.setdefault(aux, []).append(self.grid.catalog.title(d))
            for aux, targets in pairs.items():
                out.append(f"{name}: trained on {aux}, tested on {', '.join(targets)}.")
        return out
