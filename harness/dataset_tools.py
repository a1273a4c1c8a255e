"""``adbench datasets check`` and ``export-meta``: validate a dataset folder, write an AnomalyCLIP/AdaCLIP meta.json.

A dataset plugin may offer two optional methods that make the check more precise:
``inspect_category(name) -> (Category | None, list[Issue])`` (every problem found, not only the first)
and ``raw_counts() -> dict[str, int]`` (counts of the raw files, for published counts such as
KolektorSDD's 399 images that are not test/train counts). Without them, the check falls back to
:meth:`Dataset.load_category` and reports its error.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .data import Category, Dataset
from .errors import AdbenchError
from .image_io import HIGH_DEPTH_MODES, PIL_ERRORS, bit_depth, high_depth_to_float
from .store import atomic_write_bytes

#: Issue kinds, so the check can count them: a layout problem, an anomalous image without its mask,
#: a mask without its image, an unreadable file, an empty category, a size mismatch, anything else.
ISSUE_KINDS = ("layout", "missing_mask", "extra_mask", "unreadable", "empty", "size", "other")


@dataclass(frozen=True)
class Issue:
    """One problem found in a dataset folder: ``level`` is "error" or "warning"; ``message`` is one line."""

    level: str
    kind: str
    message: str


@dataclass
class CategoryCounts:
    """What the check found in one category."""

    name: str
    train: int = 0
    test_normal: int = 0
    test_anomalous: int = 0
    masks: int = 0
    missing_masks: int = 0
    extra_masks: int = 0
    unreadable: int = 0


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`; the CLI prints :meth:`format` and exits 1 when ``errors``."""

    dataset: str
    root: str
    variant: str
    rows: list[CategoryCounts] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)
    #: Files per sample type found by the decode pass ("8-bit": 120, "16-bit": 3).
    bit_depths: dict[str, int] = field(default_factory=dict)

    def add(self, issue: Issue) -> None:
        (self.errors if issue.level == "error" else self.warnings).append(issue.message)

    def format(self) -> str:
        """A human-readable table of counts, then the comparison with published counts, warnings, errors."""
        lines = [f"dataset {self.dataset} (variant {self.variant}) at {self.root}"]
        if self.rows:
            head = (
                "category",
                "train",
                "test normal",
                "test anomalous",
                "masks",
                "no mask",
                "no image",
                "unreadable",
            )
            table = [head] + [
                (
                    r.name,
                    *map(
                        str,
                        (
                            r.train,
                            r.test_normal,
                            r.test_anomalous,
                            r.masks,
                            r.missing_masks,
                            r.extra_masks,
                            r.unreadable,
                        ),
                    ),
                )
                for r in self.rows
            ]
            widths = [max(len(row[i]) for row in table) for i in range(len(head))]
            for row in table:
                lines.append(
                    "  "
                    + "  ".join(
                        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
                    )
                )
        if self.totals:
            lines.append(
                "totals: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in self.totals.items())
            )
        if self.published:
            lines.append(
                "published: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in self.published.items())
            )
        if self.bit_depths:
            lines.append(
                "bit depth: " + ", ".join(f"{k} {v:,} files" for k, v in sorted(self.bit_depths.items()))
            )
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"error: {e}" for e in self.errors]
        lines.append(f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join(lines)


def _probe(path: Path) -> tuple[tuple[int, int] | None, str | None, str | None]:
    """Fully decode one file (a truncated PNG only fails on decode): (size, None, bit depth) or (None, error, None).

    Oversized files (decompression bombs) are errors too; a 16/32-bit image that would load blank is an
    error with the same message ``run`` gives (:func:`adbench.image_io.high_depth_to_float`).
    """
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in HIGH_DEPTH_MODES:
                high_depth_to_float(img, path)
            return img.size, None, bit_depth(img)
    except PIL_ERRORS as exc:
        return None, f"{exc.__class__.__name__}: {exc}", None
    except AdbenchError as exc:
        return None, str(exc).removeprefix(f"image {path} "), None


def _inspect(dataset: Dataset, name: str) -> tuple[Category | None, list[Issue]]:
    try:
        return dataset.inspect_category(name)
    except AdbenchError as exc:
        return None, [Issue("error", "other", str(exc))]


def check_dataset(dataset: Dataset, read_files: bool = True, workers: int | None = None) -> CheckReport:
    """Validate a dataset folder: per-category counts, mask pairing, unreadable files, published counts.

    ``read_files`` decodes every image and mask (slow on big sets, but the only way to find corrupt files).
    """
    report = CheckReport(dataset.name, str(dataset.root), dataset.variant)
    try:
        names = dataset.categories()
    except AdbenchError as exc:
        report.errors.append(str(exc))
        return report
    categories: list[Category] = []
    for name in names:
        category, issues = _inspect(dataset, name)
        row = CategoryCounts(name)
        for issue in issues:
            report.add(issue)
            row.missing_masks += issue.kind == "missing_mask"
            row.extra_masks += issue.kind == "extra_mask"
        if category is not None:
            categories.append(category)
            row.train = len(category.train)
            row.test_anomalous = category.num_anomalous
            row.test_normal = len(category.test) - row.test_anomalous
            row.masks = sum(s.mask_path is not None for s in category.test)
            if not category.test:
                report.add(Issue("error", "empty", f"category '{name}' has no test images"))
        report.rows.append(row)
    if read_files:
        _check_files(categories, report, workers, dataset.allow_mask_resize)
    _compare_counts(dataset, report)
    return report


def _check_files(
    categories: list[Category], report: CheckReport, workers: int | None, allow_mask_resize: bool = False
) -> None:
    files = [
        (c.name, p)
        for c in categories
        for s in [*c.train, *c.test]
        for p in (s.image_path, s.mask_path)
        if p is not None
    ]
    rows = {r.name: r for r in report.rows}
    sizes: dict[Path, tuple[int, int] | None] = {}
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        for (cat, path), (size, err, depth) in zip(files, pool.map(lambda item: _probe(item[1]), files)):
            sizes[path] = size
            if depth is not None:
                report.bit_depths[depth] = report.bit_depths.get(depth, 0) + 1
            if err is not None:
                rows[cat].unreadable += 1
                report.add(Issue("error", "unreadable", f"cannot read {path}: {err}"))
    for c in categories:
        for s in c.test:
            im, mk = sizes[s.image_path], sizes.get(s.mask_path) if s.mask_path is not None else None
            if im is not None and mk is not None and im != mk:  # unreadable files are already reported
                report.add(  # `run` refuses such a mask unless the dataset declares allow_mask_resize
                    Issue(
                        "warning" if allow_mask_resize else "error",
                        "size",
                        f"mask {s.mask_path} is {mk[0]}x{mk[1]} but image {s.image_path} is {im[0]}x{im[1]}",
                    )
                )


def _compare_counts(dataset: Dataset, report: CheckReport) -> None:
    rows = report.rows
    totals = {
        "categories": len(rows),
        "train_images": sum(r.train for r in rows),
        "test_images": sum(r.test_normal + r.test_anomalous for r in rows),
        "test_normal": sum(r.test_normal for r in rows),
        "test_anomalous": sum(r.test_anomalous for r in rows),
    }
    try:
        totals.update(dataset.raw_counts())
    except AdbenchError as exc:
        report.errors.append(str(exc))
    report.totals = totals
    report.published = dict(dataset.published_counts)
    for key, expected in report.published.items():
        found = totals.get(key)
        if found is not None and found != expected:
            report.warnings.append(
                f"{key.replace('_', ' ')}: found {found:,}, published {expected:,} (partial or modified copy?)"
            )


def meta_entry(dataset: Dataset, category: str, sample, base: Path) -> dict:
    """One meta.json entry (AnomalyCLIP/AdaCLIP field names), paths relative to ``base``."""

    def rel(path: Path) -> str:
        try:
            return Path(path).resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            raise AdbenchError(
                f"cannot export {dataset.name}: {path} is outside {base}; write meta.json into a folder "
                "that holds the images (--out)"
            ) from None

    return {
        "img_path": rel(sample.image_path),
        "mask_path": rel(sample.mask_path) if sample.mask_path is not None else "",
        "cls_name": category,
        "specie_name": sample.defect_type,
        "anomaly": int(sample.label),
    }


def export_meta(dataset: Dataset, out_path: Path | None = None) -> Path:
    """Write ``meta.json`` for AnomalyCLIP/AdaCLIP: ``{"train": {cls: [...]}, "test": {cls: [...]}}``.

    Default location: ``<data_dir>/meta.json``, where ``data_dir`` is the folder holding the images
    (the root, or the prepared folder of KSDD). Paths are relative to the file's folder. Written atomically.
    """
    base_dir = Path(dataset.data_dir or ".")
    out = Path(out_path) if out_path is not None else base_dir / "meta.json"
    base = out.parent
    info: dict[str, dict[str, list[dict]]] = {"train": {}, "test": {}}
    for name in dataset.categories():
        category = dataset.load_category(name)
        info["train"][name] = [meta_entry(dataset, name, s, base) for s in category.train]
        info["test"][name] = [meta_entry(dataset, name, s, base) for s in category.test]
    try:
        atomic_write_bytes(out, (json.dumps(info, indent=4) + "\n").encode("utf-8"))
    except OSError as exc:
        raise AdbenchError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
