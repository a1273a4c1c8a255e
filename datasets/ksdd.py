"""KolektorSDD ("SDD" in the ZSAD papers), read from its raw layout and cut into vertical thirds.

Raw layout: ``kos01 ... kos50/Part0.jpg`` with ``Part0_label.bmp`` beside each image (399 images,
52 with a defect). The papers' numbers rely on this preprocessing (AdaCLIP's ``sdd-pre.py``), done
here as a deterministic, cached step named ``ksdd-thirds-75-25-seed42``:

1. each image and its label are cut into three horizontal bands of rows ``[0, h//3)``,
   ``[h//3, 2h//3)``, ``[2h//3, h)`` (the "vertical thirds" of these tall images);
2. a band is anomalous when its label band has any pixel ``> 0``;
3. normal bands, in sorted ``kos../Part..`` order, are split 75/25 into train/test with
   ``sklearn.model_selection.train_test_split(test_size=0.25, random_state=42)``; all anomalous
   bands are test images. (AdaCLIP iterates in ``os.listdir`` order, so its split depends on the
   file system; sorting makes ours reproducible.)

The bands are written as PNG (lossless) into ``$ADBENCH_HOME/prepared/ksdd/<variant>-<raw fingerprint>``
in MVTec layout, category ``electrical_commutators`` (AnomalyCLIP's class name). A copy that is
already converted to the MVTec layout (``<category>/train/good``, ``test/defect``, ``ground_truth/defect``)
is read as it is, as variant ``ksdd-thirds-preconverted``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from adbench import hookimpl
from adbench.data import Category
from adbench.dataset_tools import Issue
from adbench.errors import AdbenchError
from adbench.sources import CC_BY_NC_SA_4, Source

from ._base import NativeDataset
from ._prepared import prepared_dir, raw_fingerprint, read_marker
from ._scan import (
    list_images,
    looks_mvtec_style,
    mvtec_style_categories,
    pair_masks,
    scan_mvtec_category,
    subfolders,
)

CATEGORY = "electrical_commutators"
VARIANT = "ksdd-thirds-75-25-seed42"
FOLDER = re.compile(r"kos\d+$")


def _read_label(path: Path) -> np.ndarray:
    """The label at full size as bool (``adbench.data.load_mask`` resizes to a square, which a cut must not)."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L")) > 0
    except (OSError, ValueError) as exc:
        raise AdbenchError(f"cannot read mask {path}: {exc.__class__.__name__}: {exc}") from None


def thirds(height: int) -> list[tuple[int, int]]:
    """Row ranges of the three bands of an image of ``height`` rows (AdaCLIP's integer cut points)."""
    return [(0, height // 3), (height // 3, 2 * height // 3), (2 * height // 3, height)]


def _open(path: Path) -> Image.Image:
    """The image in its own mode (KSDD is greyscale; the loader converts to RGB later)."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (OSError, ValueError) as exc:
        raise AdbenchError(f"cannot read image {path}: {exc.__class__.__name__}: {exc}") from None


def build_thirds(pairs: list[tuple[str, Path, Path]], out: Path) -> dict:
    """Write the thirds of every (name, image, label) into ``out/<category>/...``; return the counts."""
    cat = out / CATEGORY
    staging = cat / ".normal"  # normal bands wait here until the split is known (keeps memory flat)
    for folder in ("train/good", "test/good", "test/defect", "ground_truth/defect", ".normal"):
        (cat / folder).mkdir(parents=True, exist_ok=True)
    normals: list[str] = []
    n_anomalous_images = 0
    n_defect = 0
    for name, image_path, label_path in pairs:
        image = _open(image_path)
        label = _read_label(label_path)
        if label.shape != (image.height, image.width):
            raise AdbenchError(
                f"image {image_path} is {image.width}x{image.height} but its mask {label_path} "
                f"is {label.shape[1]}x{label.shape[0]}"
            )
        n_anomalous_images += bool(label.any())
        for i, (top, bottom) in enumerate(thirds(image.height)):
            band = image.crop((0, top, image.width, bottom))
            band_label = label[top:bottom]
            stem = f"{name}_{i}"
            if band_label.any():
                band.save(cat / "test/defect" / f"{stem}.png")
                Image.fromarray(band_label.astype(np.uint8) * 255).save(
                    cat / "ground_truth/defect" / f"{stem}_mask.png"
                )
                n_defect += 1
            else:
                band.save(staging / f"{stem}.png")
                normals.append(stem)
    if len(normals) < 2:
        raise AdbenchError(f"KolektorSDD: only {len(normals)} normal band(s); cannot split 75/25")
    from sklearn.model_selection import train_test_split  # only when preparing: listing stays light

    train, test = train_test_split(normals, test_size=0.25, random_state=42)
    for split, stems in (("train/good", train), ("test/good", test)):
        for stem in stems:
            os.rename(staging / f"{stem}.png", cat / split / f"{stem}.png")
    staging.rmdir()
    return {
        "raw_images": len(pairs),
        "raw_anomalous_images": n_anomalous_images,
        "train": len(train),
        "test_normal": len(test),
        "test_anomalous": n_defect,
    }


class KolektorSDD(NativeDataset):
    """KolektorSDD cut into thirds with a 75/25 seed-42 split of the normal thirds (the papers' "SDD")."""

    name = "ksdd"
    group = "industrial"
    order = 50
    title = "KolektorSDD"
    description = "KolektorSDD ('SDD'): commutator surfaces cut into thirds, 75/25 normal split (seed 42)"
    source = "https://www.vicos.si/resources/kolektorsdd/ (KolektorSDD.zip)"
    # URL, file name and SHA-256: anomalib's DOWNLOAD_INFO (openvinotoolkit/anomalib@161bb36,
    # src/anomalib/data/datamodules/image/kolektor.py); kos01 ... kos50 lie at the archive's top level.
    sources = (
        Source(
            url="https://go.vicos.si/kolektorsdd",
            filename="KolektorSDD.zip",
            licence=CC_BY_NC_SA_4,
            non_commercial=True,
            sha256="65dc621693418585de9c4467d1340ea7958a6181816f0dc2883a1e8b61f9d4dc",
        ),
    )
    layout = "kos01 ... kos50/Part<N>.jpg with Part<N>_label.bmp"
    variant = VARIANT
    object_names = {CATEGORY: "electrical commutator"}
    published_counts = {"categories": 1, "raw_images": 399, "raw_anomalous_images": 52}

    def __init__(self, root: str | Path | None = None) -> None:
        super().__init__(root)
        self._raw: tuple[list[tuple[str, Path, Path]], list[Issue]] | None = None
        self._prepared: Path | None = None
        #: Decided once, so the recorded variant and the layout read always agree.
        self.preconverted = self.root is not None and self.root.is_dir() and self._looks_preconverted()
        if self.preconverted:
            self.variant = "ksdd-thirds-preconverted"

    def _looks_preconverted(self) -> bool:
        return not any(FOLDER.match(d) for d in subfolders(self.root)) and looks_mvtec_style(self.root)

    def raw_pairs(self) -> tuple[list[tuple[str, Path, Path]], list[Issue]]:
        """(name, image, label) of every raw image, paired by name, and the pairing problems."""
        if self._raw is None:
            root = self.require_root()
            folders = [d for d in subfolders(root) if FOLDER.match(d)]
            if not folders:
                raise self.wrong_root(self.layout)
            pairs, issues = [], []
            for d in folders:
                files = list_images(root / d)
                images = [p for p in files if not p.stem.endswith("_label")]
                labels = [p for p in files if p.stem.endswith("_label")]
                found, problems = pair_masks(images, labels, ("_label",), root / d)
                issues += problems
                pairs += [(f"{d}_{img.stem}", img, found[img]) for img in images if img in found]
            self._raw = (pairs, issues)
        return self._raw

    @property
    def data_dir(self) -> Path:
        """The prepared folder (MVTec layout) that the samples point into."""
        if self.preconverted:
            return self.require_root()
        if self._prepared is None:
            pairs, _ = self.raw_pairs()
            files = [p for _, img, lab in pairs for p in (img, lab)]
            key = raw_fingerprint(self.root, files)
            self._prepared = prepared_dir("ksdd", VARIANT, key, lambda tmp: build_thirds(pairs, tmp))
        return self._prepared

    def discover(self) -> list[str]:
        if self.preconverted:
            return mvtec_style_categories(self.root)
        self.raw_pairs()
        return [CATEGORY]

    def scan(self, name: str) -> tuple[Category, list[Issue]]:
        if self.preconverted:
            return scan_mvtec_category(self.root / name, name)
        _, raw_issues = self.raw_pairs()
        category, issues = scan_mvtec_category(self.data_dir / name, name)
        category.notes.append(f"variant {VARIANT}: thirds of the raw images, normals split 75/25 (seed 42)")
        return category, raw_issues + issues

    def raw_counts(self) -> dict[str, int]:
        """Counts of the raw images (399 and 52 in the published set), from the prepared folder's record."""
        if self.preconverted:
            return {}
        marker = read_marker(self.data_dir)
        return {k: marker[k] for k in ("raw_images", "raw_anomalous_images")}


@hookimpl
def adbench_datasets() -> list[type]:
    return [KolektorSDD]
