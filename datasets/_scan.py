"""Folder scanning shared by the dataset plugins: list images, pair masks by file name, read MVTec-style trees.

Masks are paired with images by name (image stem + a known suffix), never by listing order as the
reference meta.json scripts do, so a missing or extra mask is reported with both paths instead of
silently shifting every later pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from adbench.data import Category, Sample
from adbench.dataset_tools import Issue

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    """An image file by extension (any case), not hidden."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; [] when the folder does not exist."""
    return sorted(p for p in folder.iterdir() if is_image_file(p)) if folder.is_dir() else []


def subfolders(folder: Path) -> list[str]:
    """Names of the visible sub-folders of ``folder``, sorted; [] when it does not exist."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def describe_found(folder: Path, limit: int = 10) -> str:
    """'a, b, c' (the first few entries of a folder) for wrong-root messages."""
    if not folder.is_dir():
        return "nothing (not a folder)"
    names = sorted(
        p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not p.name.startswith(".")
    )
    if not names:
        return "nothing (empty folder)"
    more = f", … ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _unique_stems(paths: Sequence[Path], what: str) -> tuple[dict[str, Path], list[Issue]]:
    by_stem: dict[str, Path] = {}
    issues = []
    for p in paths:
        if p.stem in by_stem:
            issues.append(
                Issue(
                    "error", "other", f"two {what} files share the name {p.stem!r}: {by_stem[p.stem]} and {p}"
                )
            )
        else:
            by_stem[p.stem] = p
    return by_stem, issues


def _strip(stem: str, suffix: str) -> str:
    return stem[: len(stem) - len(suffix)] if suffix else stem


def pair_masks(
    images: Sequence[Path], masks: Sequence[Path], suffixes: Sequence[str], mask_dir: Path
) -> tuple[dict[Path, Path], list[Issue]]:
    """Pair each image with the mask named ``<image stem><suffix>.<any image extension>``.

    Returns {image: mask} and one issue per image without a mask and per mask without an image
    (naming both the file found and the file expected).
    """
    by_stem, issues = _unique_stems(images, "image")
    pairs: dict[Path, Path] = {}
    for mask in masks:
        candidates = [_strip(mask.stem, s) for s in suffixes if mask.stem.endswith(s)]
        stem = next((c for c in candidates if c in by_stem), None)
        if stem is None:
            guess = candidates[0] if candidates else mask.stem
            image_dir = images[0].parent if images else "<image folder>"
            issues.append(
                Issue("error", "extra_mask", f"mask {mask} has no image (expected {image_dir}/{guess}.*)")
            )
            continue
        image = by_stem[stem]
        if image in pairs:
            issues.append(Issue("error", "other", f"image {image} has two masks: {pairs[image]} and {mask}"))
            continue
        pairs[image] = mask
    for image in images:
        if image not in pairs:
            issues.append(
                Issue(
                    "error",
                    "missing_mask",
                    f"anomalous image {image} has no mask (expected {mask_dir}/{image.stem}{suffixes[0]}.*)",
                )
            )
    return pairs, issues


def scan_mvtec_category(
    cat_dir: Path,
    name: str,
    normal: Sequence[str] = ("good",),
    mask_suffixes: Sequence[str] = ("_mask",),
    masks: str = "required",
    train: bool = True,
) -> tuple[Category, list[Issue]]:
    """Read ``<cat>/train/<normal>``, ``<cat>/test/<type>`` and ``<cat>/ground_truth/<type>`` (MVTec AD layout).

    ``masks``: "required" (every anomalous image needs a mask), "optional" (a category without any
    ``ground_truth`` folder is image-level only) or "none" (masks are ignored).
    """
    issues: list[Issue] = []
    train_samples = []
    for folder in normal:
        for p in list_images(cat_dir / "train" / folder):
            train_samples.append(Sample(f"train/{folder}/{p.stem}", p, 0, "good"))
    if train and not train_samples:
        issues.append(
            Issue("warning", "empty", f"category '{name}' has no train images in {cat_dir / 'train'}")
        )
    gt_dir = cat_dir / "ground_truth"
    use_masks = masks == "required" or (masks == "optional" and gt_dir.is_dir())
    test: list[Sample] = []
    test_types = subfolders(cat_dir / "test")
    for kind in test_types:
        images = list_images(cat_dir / "test" / kind)
        if kind in normal:
            test += [Sample(f"test/{kind}/{p.stem}", p, 0, "good") for p in images]
            continue
        pairs: dict[Path, Path] = {}
        if use_masks:
            pairs, found = pair_masks(images, list_images(gt_dir / kind), mask_suffixes, gt_dir / kind)
            issues += found
        test += [Sample(f"test/{kind}/{p.stem}", p, 1, kind, pairs.get(p)) for p in images]
    if use_masks:
        for kind in subfolders(gt_dir):
            if kind not in test_types:
                for m in list_images(gt_dir / kind):
                    issues.append(
                        Issue(
                            "error",
                            "extra_mask",
                            f"mask {m} has no image (no folder {cat_dir / 'test' / kind})",
                        )
                    )
    if not test:
        issues.append(Issue("error", "empty", f"category '{name}' has no test images in {cat_dir / 'test'}"))
    notes = [] if use_masks else ["no ground_truth masks: image-level metrics only"]
    return Category(name, train_samples, test, has_masks=use_masks, notes=notes), issues


def mvtec_style_categories(folder: Path) -> list[str]:
    """The sub-folders of ``folder`` that have a ``test`` folder: the categories of an MVTec-style copy."""
    return [d for d in subfolders(folder) if (folder / d / "test").is_dir()]


def looks_mvtec_style(folder: Path) -> bool:
    """True if some sub-folder of ``folder`` has a ``test`` folder (a converted, MVTec-style copy)."""
    return bool(mvtec_style_categories(folder))
