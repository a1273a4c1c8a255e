"""Where a dataset's files come from, declared once on its plugin (``Dataset.sources``) as data.

A :class:`Source` is one archive: its URL, expected size, published SHA-256 (None where the
maintainers publish none), licence and, for files behind a form, Kaggle or Google Drive, the
paragraph telling the user what to click. ``adbench datasets download`` and
``adbench datasets list --sources`` read these; nothing else keeps a copy of them.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Licence strings used by several plugins.
CC_BY_NC_SA_4 = "CC BY-NC-SA 4.0"
CC_BY_4 = "CC BY 4.0"


@dataclass(frozen=True)
class Source:
    """One downloadable (or hand-fetched) archive of a dataset."""

    #: Direct download URL; for a ``manual`` source, the page the user opens.
    url: str
    #: The archive's file name (what the user gets when fetching it by hand).
    filename: str
    licence: str
    #: Whether the licence forbids commercial use (``download`` then asks for confirmation).
    non_commercial: bool = False
    #: Published SHA-256 of the archive; None where no maintainer publishes one.
    sha256: str | None = None
    #: Approximate size, as the provider states it (shown by ``list --sources``), e.g. "4.9 GB".
    size: str = ""
    #: Folder inside the archive that is the dataset root ("" = the archive's top level).
    folder: str = ""
    #: Where to click and what to expect, for a file that cannot be fetched by a script; "" = direct.
    manual: str = ""

    @property
    def direct(self) -> bool:
        """Whether ``download`` can fetch it without the user."""
        return not self.manual


def describe_sources(datasets: list[type]) -> str:
    """``adbench datasets list --sources``: one block per dataset, one line per archive, licence first."""
    lines = []
    for cls in datasets:
        sources = getattr(cls, "sources", ())
        if not sources:
            lines.append(f"{cls.name}: no declared source (generated or your own folder)")
            continue
        lines.append(f"{cls.name} ({cls.title or cls.name}):")
        for s in sources:
            how = "manual (--from FILE)" if s.manual else "download"
            nc = ", non-commercial" if s.non_commercial else ""
            lines.append(f"  {s.filename}  [{s.licence}{nc}]  {s.size or 'size unknown'}  {how}")
            lines.append(f"    url     {s.url}")
            lines.append(
                f"    sha256  {s.sha256 or 'none published (download prints the computed one to pin)'}"
            )
    return "\n".join(lines)
