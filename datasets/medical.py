"""Medical sets used by the ZSAD papers: classification sets (image-level) and segmentation sets (pixel-level).

Classification (no masks, image metrics only; pixel metrics are undefined and reported as "—"):
``headct`` (``head_ct/*.png`` + ``labels.csv`` with columns ``id, hemorrhage``), ``brainmri``
(``brain_tumor_dataset/{no,yes}``) and ``br35h`` (``{no,yes}``).
Segmentation (every image is anomalous, so image AUROC is undefined; pixel metrics only):
``isic`` (``ISBI2016_ISIC_Part1_Test_Data/*.jpg`` + ``ISBI2016_ISIC_Part1_Test_GroundTruth/*_Segmentation.png``)
and ``cvc_colondb``, ``cvc_clinicdb``, ``kvasir``, ``endo`` (``images/`` + ``masks/``, same file stem).

AdaCLIP's scripts expect copies converted to the MVTec layout (``<class>/test/<type>``,
``<class>/ground_truth/<type>``); such a copy is read too. Category names follow AnomalyCLIP
("brain", "skin", "colon"), which is also the object word a text prompt uses.
"""

from __future__ import annotations

import csv
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from adbench import hookimpl
from adbench.data import Category, Sample
from adbench.dataset_tools import Issue
from adbench.errors import AdbenchError
from adbench.sources import Source

from ._base import NativeDataset, declare
from ._scan import (
    list_images,
    looks_mvtec_style,
    mvtec_style_categories,
    pair_masks,
    scan_mvtec_category,
)

PIXEL_NOTE = "segmentation set, every test image anomalous: pixel metrics only"
IMAGE_NOTE = "classification set, no masks: image metrics only"


def kaggle(name: str, page: str, holds: str) -> tuple[Source, ...]:
    """A Kaggle dataset: signed-in download of ``archive.zip``, no published checksum."""
    return (
        Source(
            url=page,
            filename="archive.zip",
            licence="as stated on the Kaggle page",
            manual=(
                f"sign in at {page}, click Download and save archive.zip ({holds}); then run "
                f"'adbench datasets download {name} --from archive.zip --to DIR'"
            ),
        ),
    )


# AnomalyCLIP's polyp archive (figshare) bundles several sets: it is unpacked by hand.
POLYP_MANUAL = (
    "open https://figshare.com/articles/figure/Polyp_DataSet_zip/21221579, click Download, unpack the zip "
    "and pass the folder of this set (images/ and masks/) as --root; no checksum is published"
)


class MedicalDataset(NativeDataset):
    """A single-category test-only medical set, native layout or an MVTec-style conversion."""

    category: ClassVar[str] = "brain"
    object_names: ClassVar[dict[str, str]] = {"brain": "brain"}

    def _converted(self) -> bool:
        return looks_mvtec_style(self.require_root()) and not self._native_present()

    @abstractmethod
    def _native_present(self) -> bool:
        """Whether the root holds this set's native layout."""

    def discover(self) -> list[str]:
        if self._converted():
            return mvtec_style_categories(self.root)
        if not self._native_present():
            raise self.wrong_root(self.layout)
        return [self.category]

    def scan(self, name: str) -> tuple[Category, list[Issue]]:
        if self._converted():
            masks = "none" if self.task == "image" else "optional"
            category, issues = scan_mvtec_category(
                self.root / name, name, mask_suffixes=("", "_mask", "_Segmentation"), masks=masks, train=False
            )
            category.notes.append(IMAGE_NOTE if self.task == "image" else PIXEL_NOTE)
            return category, issues
        return self.scan_native()

    @abstractmethod
    def scan_native(self) -> tuple[Category, list[Issue]]:
        """The category read from the native layout, with any problems found."""


class SegmentationSet(MedicalDataset):
    """Images and masks in two folders, paired by stem (+ ``mask_suffix``); every image is anomalous."""

    task = "pixel"
    category = "colon"
    object_names = {"colon": "colon"}
    defect: ClassVar[str] = "polyp"
    image_dirs: ClassVar[tuple[str, ...]] = ("images", "Original")
    mask_dirs: ClassVar[tuple[str, ...]] = ("masks", "Ground Truth")
    mask_suffix: ClassVar[str] = ""
    layout = "images/ and masks/ (same file stem)"

    def _dirs(self) -> tuple[Path, Path] | None:
        root = self.require_root()
        images = next((root / d for d in self.image_dirs if (root / d).is_dir()), None)
        masks = next((root / d for d in self.mask_dirs if (root / d).is_dir()), None)
        return (images, masks) if images and masks else None

    def _native_present(self) -> bool:
        return self._dirs() is not None

    def scan_native(self) -> tuple[Category, list[Issue]]:
        image_dir, mask_dir = self._dirs()
        images = list_images(image_dir)
        pairs, issues = pair_masks(images, list_images(mask_dir), (self.mask_suffix,), mask_dir)
        test = [Sample(p.stem, p, 1, self.defect, pairs.get(p)) for p in images]
        if not test:
            issues.append(Issue("error", "empty", f"category '{self.category}' has no images in {image_dir}"))
        return Category(self.category, [], test, has_masks=True, notes=[PIXEL_NOTE]), issues


class ISIC(SegmentationSet):
    name = "isic"
    group = "medical"
    order = 140
    title = "ISIC 2016"
    category = "skin"
    object_names = {"skin": "skin"}
    defect = "lesion"
    description = "ISIC 2016 (ISBI Part 1 test): skin lesions, all anomalous, pixel metrics only"
    source = (
        "https://isic-challenge-data.s3.amazonaws.com/2016/ISBI2016_ISIC_Part1_Test_Data.zip and "
        "ISBI2016_ISIC_Part1_Test_GroundTruth.zip"
    )
    # ISIC's challenge bucket; no checksum is published. Licence: ISIC states CC BY-NC for its challenge
    # data (ImageMarkup/isic-challenge-landing, site/data.md); each zip holds its own top folder.
    sources = tuple(
        Source(
            url=f"https://isic-challenge-data.s3.amazonaws.com/2016/{part}.zip",
            filename=f"{part}.zip",
            licence="CC BY-NC 4.0 (ISIC challenge data)",
            non_commercial=True,
        )
        for part in ("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth")
    )
    image_dirs = ("ISBI2016_ISIC_Part1_Test_Data",)
    mask_dirs = ("ISBI2016_ISIC_Part1_Test_GroundTruth",)
    mask_suffix = "_Segmentation"
    layout = "ISBI2016_ISIC_Part1_Test_Data/ISIC_*.jpg, ISBI2016_ISIC_Part1_Test_GroundTruth/ISIC_*_Segmentation.png"
    published_counts = {"categories": 1, "test_images": 379}


POLYP_SOURCE = (
    "https://figshare.com/articles/figure/Polyp_DataSet_zip/21221579 (linked from the AnomalyCLIP README)"
)
POLYP_SOURCES = (
    Source(
        url="https://figshare.com/articles/figure/Polyp_DataSet_zip/21221579",
        filename="Polyp_DataSet.zip",
        licence="unstated on figshare",
        manual=POLYP_MANUAL,
    ),
)


def _medical(base: type[MedicalDataset], cls_name: str, **constants: Any) -> type[MedicalDataset]:
    """A medical set that differs from ``base`` only in constants (one row of data)."""
    return declare(base, cls_name, constants["description"], group="medical", **constants)


ColonDB = _medical(
    SegmentationSet, "ColonDB", name="cvc_colondb", order=150, title="CVC-ColonDB",
    description="CVC-ColonDB: colonoscopy polyps, all anomalous, pixel metrics only",
    source=POLYP_SOURCE, sources=POLYP_SOURCES, published_counts={"categories": 1, "test_images": 380},
)  # fmt: skip
ClinicDB = _medical(
    SegmentationSet, "ClinicDB", name="cvc_clinicdb", order=160, title="CVC-ClinicDB",
    description="CVC-ClinicDB: colonoscopy polyps, all anomalous, pixel metrics only",
    source=POLYP_SOURCE + "; full release: 612 images (Original/ + Ground Truth/)", sources=POLYP_SOURCES,
    published_counts={"categories": 1},
)  # fmt: skip
# Kvasir: the full release from Simula (kvasir-seg.zip holds Kvasir-SEG/images and Kvasir-SEG/masks); no
# checksum is published; Simula allows research and education use, commercial use needs permission.
Kvasir = _medical(
    SegmentationSet, "Kvasir", name="kvasir", order=180, title="Kvasir-SEG",
    description="Kvasir-SEG: gastrointestinal polyps, all anomalous, pixel metrics only",
    source=POLYP_SOURCE + "; full release: https://datasets.simula.no/kvasir-seg/ (1,000 images)",
    sources=(
        Source(
            url="https://datasets.simula.no/downloads/kvasir-seg.zip",
            filename="kvasir-seg.zip",
            licence="research and educational use (Simula; commercial use needs written permission)",
            non_commercial=True,
            folder="Kvasir-SEG",
        ),
    ),
    published_counts={"categories": 1},
)  # fmt: skip
ENDO_URL = "https://drive.google.com/file/d/1LNpLkv5ZlEUzr_RPN5rdOHaqk0SkZa3m/view"
Endo = _medical(
    SegmentationSet, "Endo", name="endo", order=170, title="EndoTect 2020",
    description="Endo (EndoTect 2020 segmentation test): endoscopy, all anomalous, pixel metrics only",
    source=ENDO_URL + " (linked from the AnomalyCLIP README)",
    sources=(
        Source(
            url=ENDO_URL,
            filename="Endo archive (.zip)",
            licence="unstated (EndoTect 2020 challenge data)",
            manual=(
                f"open {ENDO_URL} (linked from the AnomalyCLIP README), click Download and save the zip "
                "(images/ and masks/); then run 'adbench datasets download endo --from FILE.zip --to DIR'"
            ),
        ),
    ),
    published_counts={"categories": 1, "test_images": 200},
)  # fmt: skip


class NoYesSet(MedicalDataset):
    """Normal images in ``no/``, anomalous in ``yes/`` (optionally inside ``subdir``); image-level only."""

    task = "image"
    subdirs: ClassVar[tuple[str, ...]] = ("",)
    layout = "no/ and yes/"

    def _base(self) -> Path | None:
        root = self.require_root()
        return next(
            (root / s for s in self.subdirs if (root / s / "no").is_dir() and (root / s / "yes").is_dir()),
            None,
        )

    def _native_present(self) -> bool:
        return self._base() is not None

    def scan_native(self) -> tuple[Category, list[Issue]]:
        base = self._base()
        test = [
            Sample(f"{d}/{p.stem}", p, int(d == "yes"), "tumor" if d == "yes" else "good")
            for d in ("no", "yes")
            for p in list_images(base / d)
        ]
        issues = [
            Issue("error", "empty", f"{base / d} has no images")
            for d in ("no", "yes")
            if not list_images(base / d)
        ]
        return Category(self.category, [], test, has_masks=False, notes=[IMAGE_NOTE]), issues


BRAINMRI_URL = "https://www.kaggle.com/datasets/navoneel/brain-mri-images-for-brain-tumor-detection"
BR35H_URL = "https://www.kaggle.com/datasets/ahmedhamada0/brain-tumor-detection"
BrainMRI = _medical(
    NoYesSet, "BrainMRI", name="brainmri", order=120, title="Brain MRI",
    description="Brain MRI (brain tumour detection): no/yes folders, image metrics only",
    source=BRAINMRI_URL, sources=kaggle("brainmri", BRAINMRI_URL, "brain_tumor_dataset/no/ and yes/"),
    subdirs=("brain_tumor_dataset", ""), layout="brain_tumor_dataset/no/ and brain_tumor_dataset/yes/",
    published_counts={"categories": 1, "test_images": 253, "test_normal": 98, "test_anomalous": 155},
)  # fmt: skip
Br35H = _medical(
    NoYesSet, "Br35H", name="br35h", order=130, title="Br35H",
    description="Br35H (brain tumour detection 2020): no/yes folders, image metrics only",
    source=BR35H_URL, sources=kaggle("br35h", BR35H_URL, "no/, yes/ and pred/"),
    published_counts={"categories": 1, "test_images": 3000, "test_normal": 1500, "test_anomalous": 1500},
)  # fmt: skip


class HeadCT(MedicalDataset):
    """HeadCT: ``head_ct/NNN.png`` labelled by ``labels.csv`` (``id, hemorrhage``); image metrics only."""

    name = "headct"
    group = "medical"
    order = 110
    title = "HeadCT"
    task = "image"
    description = "HeadCT (head CT hemorrhage): labels.csv, image metrics only"
    source = "https://www.kaggle.com/datasets/felipekitamura/head-ct-hemorrhage"
    sources = kaggle("headct", source, "labels.csv and head_ct/")
    layout = "labels.csv (columns id, hemorrhage) and head_ct/NNN.png (or head_ct/head_ct/NNN.png)"
    published_counts = {"categories": 1, "test_images": 200, "test_normal": 100, "test_anomalous": 100}

    def _image_dir(self) -> Path | None:
        root = self.require_root()
        return next((d for d in (root / "head_ct" / "head_ct", root / "head_ct") if list_images(d)), None)

    def _native_present(self) -> bool:
        return (self.require_root() / "labels.csv").is_file() and self._image_dir() is not None

    def _labels(self) -> dict[str, int]:
        path = self.root / "labels.csv"
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.reader(fh)
                header = [h.strip().lower() for h in next(reader, [])]
                if "id" not in header or "hemorrhage" not in header:
                    raise AdbenchError(
                        f"{path}: expected columns id, hemorrhage; found {', '.join(header) or 'none'}"
                    )
                i, j = header.index("id"), header.index("hemorrhage")
                return {f"{int(row[i]):03d}": int(row[j]) for row in reader if row and row[i].strip()}
        except (OSError, ValueError, IndexError, csv.Error) as exc:
            raise AdbenchError(f"cannot read {path}: {exc}") from None

    def scan_native(self) -> tuple[Category, list[Issue]]:
        image_dir = self._image_dir()
        labels = self._labels()
        images = {p.stem: p for p in list_images(image_dir)}
        issues = [
            Issue("error", "other", f"image {image_dir / stem}.png is listed in labels.csv but missing")
            for stem in labels
            if stem not in images
        ]
        issues += [
            Issue("error", "other", f"image {p} has no row in {self.root / 'labels.csv'}")
            for stem, p in images.items()
            if stem not in labels
        ]
        test = [
            Sample(stem, images[stem], labels[stem], "hemorrhage" if labels[stem] else "good")
            for stem in sorted(labels)
            if stem in images
        ]
        return Category(self.category, [], test, has_masks=False, notes=[IMAGE_NOTE]), issues


@hookimpl
def adbench_datasets() -> list[type]:
    return [HeadCT, BrainMRI, Br35H, ISIC, ColonDB, ClinicDB, Kvasir, Endo]
