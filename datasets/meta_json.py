"""``meta``: any folder described by an AnomalyCLIP/AdaCLIP ``meta.json``.

Format: ``{"train": {cls: [entry, ...]}, "test": {cls: [...]}}`` (AnomalyCLIP's DAGM script writes
``Train``/``Test``; both spellings are read), each entry with ``img_path`` (relative to the folder
holding meta.json), ``mask_path`` ("" for normal images), ``cls_name``, ``specie_name`` and
``anomaly`` (0/1). A path that leads outside the root (``..``, or an absolute path elsewhere) is
refused. The reference scripts pair masks with images by listing order; a mask whose name does not
start with its image's stem is reported, since that usually means a shifted pairing.
"""

from __future__ import annotations

import json
from pathlib import Path

from adbench import hookimpl
from adbench.data import Category, Sample
from adbench.dataset_tools import Issue
from adbench.errors import AdbenchError

from ._base import NativeDataset

META = "meta.json"


class MetaJson(NativeDataset):
    """Reads the categories, labels and mask pairs of a ``meta.json`` (written by any ZSAD repo or by adbench)."""

    name = "meta"
    title = "a meta.json folder"
    description = (
        "Any folder described by an AnomalyCLIP/AdaCLIP meta.json (adbench datasets export-meta writes one)"
    )
    source = "your own: a folder with meta.json"
    layout = "meta.json with train/test entries whose paths are relative to its folder"

    def __init__(self, root: str | Path | None = None) -> None:
        super().__init__(root)
        self._meta: dict[str, dict[str, list]] | None = None

    def _read(self) -> dict[str, dict[str, list]]:
        if self._meta is None:
            path = self.require_root() / META
            if not path.is_file():
                raise self.wrong_root(f"a {META} file")
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise AdbenchError(f"cannot read {path}: {exc}") from None
            if not isinstance(data, dict):
                raise AdbenchError(
                    f"{path}: expected an object with 'train' and 'test', got {type(data).__name__}"
                )
            splits = {k.lower(): v for k, v in data.items() if k.lower() in ("train", "test")}
            if not isinstance(splits.get("test"), dict):
                raise AdbenchError(f"{path}: no 'test' object mapping class names to entry lists")
            self._meta = {"train": splits.get("train") or {}, "test": splits["test"]}
        return self._meta

    def discover(self) -> list[str]:
        names = [c for c, entries in self._read()["test"].items() if isinstance(entries, list)]
        if not names:
            raise AdbenchError(f"{self.root / META}: the 'test' object lists no class")
        return names

    def _path(self, value: str, where: str, issues: list[Issue]) -> Path | None:
        """The file a meta.json path names, or None (with an issue) when it escapes the root or is missing."""
        root = self.root.resolve()
        full = (root / value).resolve()  # an absolute value replaces root in the join
        if not full.is_relative_to(root):
            issues.append(
                Issue("error", "layout", f"{META}: path {value!r} ({where}) escapes the root {root}; refused")
            )
            return None
        if not full.is_file():
            issues.append(Issue("error", "other", f"{META}: {where} {full} does not exist"))
            return None
        return full

    def scan(self, name: str) -> tuple[Category, list[Issue]]:
        meta = self._read()
        issues: list[Issue] = []
        splits: dict[str, list[Sample]] = {"train": [], "test": []}
        for split in ("train", "test"):
            for n, entry in enumerate(meta[split].get(name) or []):
                if not isinstance(entry, dict) or "img_path" not in entry:
                    issues.append(
                        Issue("error", "other", f"{META}: {split}/{name} entry {n} has no img_path")
                    )
                    continue
                image = self._path(str(entry["img_path"]), "image", issues)
                if image is None:
                    continue
                label = int(entry.get("anomaly", 0))
                mask = None
                if label and entry.get("mask_path"):
                    mask = self._path(str(entry["mask_path"]), f"mask of {image}", issues)
                    if mask is not None and not mask.stem.startswith(image.stem):
                        issues.append(
                            Issue(
                                "warning",
                                "other",
                                f"mask {mask} does not match image {image} by name "
                                "(paired by listing order?)",
                            )
                        )
                if split == "train" and label:
                    issues.append(Issue("warning", "other", f"{META}: anomalous train entry {image} ignored"))
                    continue
                defect = str(entry.get("specie_name") or ("defect" if label else "good"))
                rel = image.relative_to(self.root.resolve()).with_suffix("").as_posix()
                splits[split].append(Sample(rel, image, label, defect, mask))
        test = splits["test"]
        has_masks = any(s.mask_path is not None for s in test)
        if has_masks:
            issues += [
                Issue("error", "missing_mask", f"anomalous image {s.image_path} has no mask_path in {META}")
                for s in test
                if s.label and s.mask_path is None
            ]
        if not test:
            issues.append(Issue("error", "empty", f"category '{name}' has no test entries in {META}"))
        notes = [] if has_masks else ["no masks in meta.json: image-level metrics only"]
        return Category(name, splits["train"], test, has_masks=has_masks, notes=notes), issues


@hookimpl
def adbench_datasets() -> list[type]:
    return [MetaJson]
