"""The built-in ``synthetic`` dataset: real textures and drawn objects with pasted, exactly masked defects.

It needs no download (texture photographs ship inside scikit-image), so it is the default dataset
of ``adbench run`` and the fixture of the test-suite. It is generated on first use into
``$ADBENCH_HOME/datasets/synthetic-v1`` in MVTec layout (``<cat>/train/good/000.png``,
``<cat>/test/<defect>/000.png``, ``<cat>/ground_truth/<defect>/000_mask.png``), from one seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from adbench import hookimpl
from adbench.data import Category, Dataset, Sample
from adbench.errors import AdbenchError
from adbench.paths import adbench_home

from . import synthetic_draw as draw

#: Bump when the generator's output changes: it names the cache folder, so old caches are not reused.
GENERATOR_VERSION = "1"
IMAGE_SIZE = 256
N_TRAIN = 12
N_TEST_GOOD = 16
N_TEST_ANOMALOUS = 16
TEXTURE_DEFECTS = ("cut_paste", "scratch", "blotch", "perlin")
OBJECT_DEFECTS = ("cut_paste", "scratch", "blotch", "perlin", "missing")
CATEGORIES: tuple[str, ...] = (*draw.TEXTURES, *draw.OBJECTS)
MARKER = ".synthetic-complete.json"


def defect_types(category: str) -> tuple[str, ...]:
    """The defect kinds of a category (objects also get "missing")."""
    return OBJECT_DEFECTS if category in draw.OBJECTS else TEXTURE_DEFECTS


def _rng(seed: int, category: str, row: int) -> np.random.Generator:
    # One independent stream per image (keyed by name, not position): images do not depend on
    # generation order, and adding a category later leaves the others' pixels unchanged.
    return np.random.default_rng([seed, zlib.crc32(category.encode()), row])


def render_normal(category: str, rng: np.random.Generator) -> tuple[np.ndarray, draw.ObjectLayers | None]:
    """One defect-free image of ``category`` (and its layers, for objects)."""
    if category in draw.TEXTURES:
        return draw.texture_crop(category, rng, IMAGE_SIZE), None
    layers = draw.OBJECTS[category](rng, IMAGE_SIZE)
    return layers.compose(), layers


def render_anomalous(category: str, defect: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(a normal image with a ``defect``, bool mask of exactly the pixels the defect changed)."""
    img, layers = render_normal(category, rng)
    donors = [t for t in draw.TEXTURES if t != category]
    obj = None if layers is None else layers.alpha
    out, region = draw.DEFECTS[defect](rng, img, obj, donors=donors, layers=layers)
    return out, region & (out != img).any(axis=-1)


def _samples(category: str) -> list[tuple[str, str, int]]:
    """(split, defect, index within its folder) of every image of a category, in generation order."""
    rows = [("train", "good", i) for i in range(N_TRAIN)] + [("test", "good", i) for i in range(N_TEST_GOOD)]
    kinds = defect_types(category)
    counts = dict.fromkeys(kinds, 0)
    for i in range(N_TEST_ANOMALOUS):
        kind = kinds[i % len(kinds)]
        rows.append(("test", kind, counts[kind]))
        counts[kind] += 1
    return rows


def _paths(base: Path, split: str, defect: str, index: int) -> tuple[Path, Path | None]:
    """Image and mask (None when normal) of one sample, under its category folder ``base``."""
    stem = f"{index:03d}"
    mask = None if defect == "good" else base / "ground_truth" / defect / f"{stem}_mask.png"
    return base / split / defect / f"{stem}.png", mask


def _write_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=1)


def _generate_category(root: Path, category: str, seed: int, digest: hashlib._Hash) -> None:
    for n, (split, defect, index) in enumerate(_samples(category)):
        rng = _rng(seed, category, n)
        image_path, mask_path = _paths(root / category, split, defect, index)
        if mask_path is None:
            img, _ = render_normal(category, rng)
        else:
            img, mask = render_anomalous(category, defect, rng)
        _write_png(img, image_path)
        digest.update(img.tobytes())
        if mask_path is not None:
            mask_u8 = mask.astype(np.uint8) * 255
            _write_png(mask_u8, mask_path)
            digest.update(mask_u8.tobytes())


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None


def generate(root: Path, seed: int = 0, categories: Sequence[str] | None = None) -> None:
    """Write the synthetic dataset into ``root`` (MVTec layout), atomically; no-op if already there.

    Generation happens in a sibling temp folder renamed onto ``root`` when complete, so an
    interrupted run leaves nothing behind and two concurrent runs cannot mix their files.
    """
    root = Path(root)
    cats = list(categories or CATEGORIES)
    unknown = [c for c in cats if c not in CATEGORIES]
    if unknown:
        raise AdbenchError(
            f"synthetic dataset has no category '{unknown[0]}'; categories: {', '.join(CATEGORIES)}"
        )
    wanted = {"seed": seed, "categories": cats, "generator_version": GENERATOR_VERSION}
    if _check_existing(root, wanted):
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the renamed dataset should read like any cache folder
    try:
        digest = hashlib.sha256()
        for cat in cats:
            _generate_category(tmp, cat, seed, digest)
        marker = {**wanted, "image_size": IMAGE_SIZE, "pixel_sha256": digest.hexdigest()}
        (tmp / MARKER).write_text(json.dumps(marker, indent=1))
        try:
            os.rename(tmp, root)  # atomic; replaces an empty folder, fails on a non-empty one
        except OSError:
            if not _check_existing(root, wanted):  # lost the race to a concurrent generation: keep theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_existing(root: Path, wanted: dict) -> bool:
    """True if ``root`` holds a complete generation with ``wanted`` settings; error if it holds other files."""
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return False
    marker = _read_marker(root)
    if marker is None:
        raise AdbenchError(
            f"{root} exists but is not a complete synthetic dataset (no {MARKER}); remove it or pick another root"
        )
    got = {k: marker.get(k) for k in wanted}
    if got != wanted:
        raise AdbenchError(
            f"{root} holds a synthetic dataset generated with {got}, not {wanted}; remove it or pick another root"
        )
    return True


def pixel_fingerprint(root: Path) -> str:
    """SHA-256 of the decoded pixels of every image and mask, in generation order (PNG-encoder independent)."""
    root = Path(root)
    marker = _read_marker(root)
    if marker is None:
        raise AdbenchError(f"{root} is not a generated synthetic dataset (no {MARKER})")
    digest = hashlib.sha256()
    for cat in marker["categories"]:
        for split, defect, index in _samples(cat):
            for path in _paths(root / cat, split, defect, index):
                if path is not None:
                    with Image.open(path) as img:
                        digest.update(np.asarray(img).tobytes())
    return digest.hexdigest()


class SyntheticDataset(Dataset):
    """Built-in dataset generated on first use (no download); the default of ``adbench run``."""

    name = "synthetic"
    description = (
        "Built-in: 3 real textures (scikit-image photos) + 3 drawn objects, pasted defects with exact masks."
    )
    task = "both"
    version = GENERATOR_VERSION
    object_names = {c: c.replace("_", " ") for c in CATEGORIES}

    @classmethod
    def default_root(cls) -> Path:
        """``$ADBENCH_HOME/datasets/synthetic-v1`` (created on first use, not on construction)."""
        return adbench_home() / "datasets" / f"synthetic-v{GENERATOR_VERSION}"

    def _ensure(self) -> dict:
        marker = _read_marker(self.root)
        if marker is None:
            generate(self.root)
            marker = _read_marker(self.root)
        return marker

    def categories(self) -> list[str]:
        """The generated categories (all of :data:`CATEGORIES` for the default root)."""
        return list(self._ensure()["categories"])

    def load_category(self, name: str) -> Category:
        """Train normals and the test split of one category, with mask paths for anomalous images."""
        self.check_category_name(name)
        base = self.root / name
        train, test = [], []
        for split, defect, index in _samples(name):
            image, mask = _paths(base, split, defect, index)
            sample = Sample(f"{split}/{defect}/{image.stem}", image, int(mask is not None), defect, mask)
            (train if split == "train" else test).append(sample)
        return Category(name, train, test, has_masks=True)


@hookimpl
def adbench_datasets() -> list[type]:
    return [SyntheticDataset]
