"""``folder``: a user's own data, in one of two layouts (per category, or the root itself as one category).

1. MVTec-style: ``<category>/train/good``, ``<category>/test/<defect>`` (``good`` = normal) and,
   optionally, ``<category>/ground_truth/<defect>/<stem>[_mask].png`` (without it: image-level only);
2. ``<category>/normal`` and ``<category>/abnormal`` (images, or sub-folders per defect type), no masks:
   all are test images, image-level metrics only.
"""

from __future__ import annotations

from pathlib import Path

from adbench import hookimpl
from adbench.data import Category, Sample
from adbench.dataset_tools import Issue

from ._base import NativeDataset
from ._scan import list_images, scan_mvtec_category, subfolders

MASK_SUFFIXES = ("_mask", "", "_gt", "_label", "_Segmentation")


def _kind(folder: Path) -> str | None:
    if (folder / "test").is_dir():
        return "mvtec"
    if (folder / "normal").is_dir() and (folder / "abnormal").is_dir():
        return "normal_abnormal"
    return None


class Folder(NativeDataset):
    """Your own images: MVTec-style folders (masks optional) or normal/abnormal folders."""

    name = "folder"
    title = "a folder dataset"
    description = "Your own data: <category>/{train/good,test/<defect>,ground_truth/<defect>} or <category>/{normal,abnormal}"
    source = "your own"
    layout = (
        "<category>/train/good/ + <category>/test/<defect>/ [+ <category>/ground_truth/<defect>/], "
        "or <category>/normal/ + <category>/abnormal/"
    )

    def _single(self) -> bool:
        return _kind(self.require_root()) is not None

    def _dir(self, name: str) -> Path:
        return self.root if self._single() else self.root / name

    def discover(self) -> list[str]:
        root = self.require_root()
        if self._single():
            return [root.name]
        names = [d for d in subfolders(root) if _kind(root / d)]
        if not names:
            raise self.wrong_root(self.layout)
        return names

    def scan(self, name: str) -> tuple[Category, list[Issue]]:
        folder = self._dir(name)
        if _kind(folder) == "mvtec":
            return scan_mvtec_category(
                folder, name, mask_suffixes=MASK_SUFFIXES, masks="optional", train=False
            )
        test = [Sample(f"normal/{p.stem}", p, 0, "good") for p in list_images(folder / "normal")]
        abnormal = folder / "abnormal"
        test += [Sample(f"abnormal/{p.stem}", p, 1, "abnormal") for p in list_images(abnormal)]
        for kind in subfolders(abnormal):
            test += [Sample(f"abnormal/{kind}/{p.stem}", p, 1, kind) for p in list_images(abnormal / kind)]
        issues = [] if test else [Issue("error", "empty", f"category '{name}' has no images in {folder}")]
        return Category(
            name, [], test, has_masks=False, notes=["normal/abnormal folders: image-level metrics only"]
        ), issues


@hookimpl
def adbench_datasets() -> list[type]:
    return [Folder]
