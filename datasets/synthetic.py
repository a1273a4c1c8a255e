"""The built-in ``synthetic`` dataset: textures, drawn objects and LOCO-style scenes with exactly masked defects.

It needs no download (texture photographs ship inside scikit-image), so it is the default dataset
of ``adbench run`` and the fixture of the test-suite. It is generated on first use into
``$ADBENCH_HOME/datasets/synthetic-v2`` in MVTec layout (``<cat>/train/good/000.png``,
``<cat>/test/<defect>/000.png``, ``<cat>/ground_truth/<defect>/000_mask.png``), from one seed.

Version 2 is built to tell methods apart: besides clearly visible (structural) defects it has subtle
low-contrast ones, small ones (a few pixels at a 224-px evaluation size), logical anomalies (a part
missing or extra, colours that do not belong together, a wrong fill level, as in MVTec LOCO), pose
and lighting variation of normal objects, a procedural texture with natural variation, and object
categories whose test split is mostly anomalous (as MVTec AD's). Each category declares a
difficulty and each defect an anomaly type (:data:`ANOMALY_TYPES`), recorded in the dataset's
metadata file and on every sample, so results can be broken down by type.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from adbench import hookimpl
from adbench.data import Category, Dataset, Sample
from adbench.demo import DemoConfig
from adbench.errors import AdbenchError
from adbench.paths import adbench_home

from . import synthetic_draw as draw
from . import synthetic_logical as logical

#: Bump when the generator's output changes: it names the cache folder and is the dataset's version in
#: every job key, so records of an older version stay valid for that version and are never mixed in.
GENERATOR_VERSION = "2"
IMAGE_SIZE = 256
N_TRAIN = 12
MARKER = ".synthetic-complete.json"

#: What kind of anomaly each defect is: MVTec LOCO's structural/logical split, with the structural
#: defects that are hard to see (low contrast, a few pixels) as their own types.
ANOMALY_TYPES: dict[str, str] = {
    "cut_paste": "structural",
    "blotch": "structural",
    "scratch": "structural",
    "perlin": "structural",
    "missing": "structural",
    "faint_stain": "subtle",
    "small_spot": "small",
    **dict.fromkeys(logical.LOGICAL_DEFECTS, "logical"),
}


@dataclass(frozen=True)
class CategorySpec:
    """How a category is drawn, how hard it is meant to be, its defects and its test split."""

    kind: str  # "texture", "object" (structural defects) or "scene" (logical anomalies)
    difficulty: str  # "easy", "medium" or "hard", by design
    defects: tuple[str, ...]
    n_test_good: int
    n_test_anomalous: int


SPECS: dict[str, CategorySpec] = {
    "brick": CategorySpec("texture", "easy", ("cut_paste", "blotch", "scratch"), 16, 32),
    "wood": CategorySpec("texture", "medium", ("scratch", "faint_stain", "small_spot"), 16, 32),
    "grass": CategorySpec("texture", "hard", ("perlin", "faint_stain", "small_spot"), 16, 32),
    "gravel": CategorySpec("texture", "hard", ("faint_stain", "small_spot", "cut_paste"), 16, 32),
    # object test splits are mostly anomalous, as MVTec AD's
    "pill": CategorySpec("object", "easy", ("blotch", "scratch", "missing"), 12, 36),
    "bottle_cap": CategorySpec("object", "medium", ("perlin", "faint_stain", "small_spot"), 12, 36),
    "screw": CategorySpec("object", "hard", ("scratch", "small_spot", "missing"), 12, 36),
    "pushpins": CategorySpec("scene", "hard", ("missing_pin", "extra_pin"), 24, 24),
    "juice_bottle": CategorySpec("scene", "hard", ("wrong_label", "wrong_fill"), 24, 24),
    "cable": CategorySpec("scene", "hard", ("cable_swap", "wrong_order"), 24, 24),
}
CATEGORIES: tuple[str, ...] = tuple(SPECS)


def defect_types(category: str) -> tuple[str, ...]:
    """The defect kinds (test folder names) of a category."""
    return SPECS[category].defects


def metadata() -> dict:
    """Per category: kind, difficulty, test counts and each defect's anomaly type (written beside the data)."""
    return {
        name: {**asdict(spec), "defects": {d: ANOMALY_TYPES[d] for d in spec.defects}}
        for name, spec in SPECS.items()
    }


def _rng(seed: int, category: str, row: int) -> np.random.Generator:
    # One independent stream per image (keyed by name, not position): images do not depend on
    # generation order, and adding a category later leaves the others' pixels unchanged.
    return np.random.default_rng([seed, zlib.crc32(category.encode()), row])


def render_normal(category: str, rng: np.random.Generator) -> tuple[np.ndarray, object | None]:
    """One defect-free image of ``category`` and what it was drawn from (object layers or a scene)."""
    kind = SPECS[category].kind
    if kind == "texture":
        return draw.texture_image(category, rng, IMAGE_SIZE), None
    layers = (draw.OBJECTS if kind == "object" else logical.SCENES)[category](rng, IMAGE_SIZE)
    return layers.compose(), layers


def render_anomalous(category: str, defect: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(a normal image with a ``defect``, bool mask of exactly the pixels the defect changed)."""
    img, layers = render_normal(category, rng)
    if defect in logical.LOGICAL_DEFECTS:
        out = logical.LOGICAL_DEFECTS[defect](rng, layers).compose()
        return out, (out != img).any(axis=-1)
    donors = [t for t in draw.TEXTURES if t != category]
    obj = None if layers is None else layers.alpha
    out, region = draw.DEFECTS[defect](rng, img, obj, donors=donors, layers=layers)
    return out, region & (out != img).any(axis=-1)


def _samples(category: str) -> list[tuple[str, str, int]]:
    """(split, defect, index within its folder) of every image of a category, in generation order."""
    spec = SPECS[category]
    rows = [("train", "good", i) for i in range(N_TRAIN)] + [
        ("test", "good", i) for i in range(spec.n_test_good)
    ]
    counts = dict.fromkeys(spec.defects, 0)
    for i in range(spec.n_test_anomalous):
        kind = spec.defects[i % len(spec.defects)]
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
        marker = {
            **wanted,
            "image_size": IMAGE_SIZE,
            "pixel_sha256": digest.hexdigest(),
            "categories_info": {c: info for c, info in metadata().items() if c in cats},
        }
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
    auxiliary = ("synthetic",)  # trains on its own other fold: a run works with nothing downloaded
    title = "Synthetic"
    description = (
        "Built-in: 4 textures, 3 drawn objects, 3 LOCO-style scenes; structural, subtle, small and "
        "logical anomalies with exact masks"
    )
    task = "both"
    version = GENERATOR_VERSION
    object_names = {c: c.replace("_", " ") for c in CATEGORIES}
    #: ``adbench run --demo``: three configurations that should differ. 224 px (not the paper's 448)
    #: keeps the demo within a few minutes on two CPU cores; the tiny random backbone is the floor.
    demo = (
        DemoConfig("patchead", {"backbone": "efficientnet-lite0", "image_size": "224"}, "real ImageNet CNN"),
        DemoConfig(
            "patchead",
            {"backbone": "efficientnet-lite0", "image_size": "224", "align": "true"},
            "PatchEAD+ alignment of the batch (Sec. 4.2)",
        ),
        DemoConfig("patchead", {"backbone": "tiny-dinov2", "image_size": "224"}, "random weights: the floor"),
    )

    @classmethod
    def default_root(cls) -> Path:
        """``$ADBENCH_HOME/datasets/synthetic-v2`` (created on first use, not on construction)."""
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
        """Train normals and the test split of one category, with mask paths and anomaly types."""
        self.check_category_name(name)
        base = self.root / name
        train, test = [], []
        for split, defect, index in _samples(name):
            image, mask = _paths(base, split, defect, index)
            sample = Sample(
                f"{split}/{defect}/{image.stem}",
                image,
                int(mask is not None),
                defect,
                mask,
                anomaly_type=ANOMALY_TYPES.get(defect),
            )
            (train if split == "train" else test).append(sample)
        return Category(name, train, test, has_masks=True, difficulty=SPECS[name].difficulty)


@hookimpl
def adbench_datasets() -> list[type]:
    return [SyntheticDataset]
