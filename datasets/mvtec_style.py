"""Datasets published in the MVTec AD layout: MVTec AD, MPDD and DTD-Synthetic.

Layout: ``<category>/train/good/*.png``, ``<category>/test/<defect>/*.png`` and
``<category>/ground_truth/<defect>/<stem>_mask.png``; ``good`` is the normal class.
"""

from __future__ import annotations

from typing import ClassVar

from adbench import hookimpl
from adbench.data import Category
from adbench.dataset_tools import Issue
from adbench.sources import CC_BY_NC_SA_4, Source

from ._base import NativeDataset, declare
from ._scan import mvtec_style_categories, scan_mvtec_category


class MVTecStyleDataset(NativeDataset):
    """Base for datasets in MVTec AD's folder layout; subclasses set names, normal folder and mask suffix."""

    normal: ClassVar[tuple[str, ...]] = ("good",)
    mask_suffixes: ClassVar[tuple[str, ...]] = ("_mask",)
    layout = (
        "<category>/train/good/, <category>/test/<defect>/, <category>/ground_truth/<defect>/<id>_mask.png"
    )

    def discover(self) -> list[str]:
        """Every sub-folder of the root that has a ``test`` folder."""
        root = self.require_root()
        names = mvtec_style_categories(root)
        if not names:
            one = (root / "test").is_dir()
            raise self.wrong_root(
                self.layout, " (this looks like one category: pass its parent folder)" if one else ""
            )
        return names

    def scan(self, name: str) -> tuple[Category, list[Issue]]:
        return scan_mvtec_category(self.require_root() / name, name, self.normal, self.mask_suffixes)


class MVTecAD(MVTecStyleDataset):
    """MVTec AD: 15 categories (5 textures, 10 objects) of industrial images with pixel masks."""

    name = "mvtec"
    auxiliary = ("visa",)  # the papers fit on VisA when MVTec AD itself is the target
    group = "industrial"
    order = 10
    title = "MVTec AD"
    description = "MVTec AD: 15 industrial categories (5 textures, 10 objects), pixel masks"
    source = "https://www.mvtec.com/company/research/datasets/mvtec-ad (mvtec_anomaly_detection.tar.xz)"
    # URL and SHA-256: anomalib's DOWNLOAD_INFO (openvinotoolkit/anomalib@161bb36,
    # src/anomalib/data/datamodules/image/mvtecad.py; anomalib checks it with sha256). Licence: MVTec's page.
    sources = (
        Source(
            url="https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download/"
            "420938113-1629952094/mvtec_anomaly_detection.tar.xz",
            filename="mvtec_anomaly_detection.tar.xz",
            licence=CC_BY_NC_SA_4,
            non_commercial=True,
            sha256="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
            size="4.9 GB",
        ),
    )
    object_names = {
        c: c.replace("_", " ")
        for c in "bottle cable capsule carpet grid hazelnut leather metal_nut pill screw tile toothbrush "
        "transistor wood zipper".split()
    }
    published_counts = {
        "categories": 15,
        "train_images": 3629,
        "test_images": 1725,
        "test_normal": 467,
        "test_anomalous": 1258,
    }


MPDD = declare(
    MVTecStyleDataset,
    "MPDD",
    "MPDD (Metal Parts Defect Detection): 6 categories, MVTec layout.",
    name="mpdd",
    group="industrial",
    order=30,
    title="MPDD",
    description="MPDD: 6 categories of painted metal parts, MVTec layout, pixel masks",
    source="https://github.com/stepanje/MPDD",
    # No checksum or licence published: the MPDD README (stepanje/MPDD@07425ed) links a SharePoint folder.
    sources=(
        Source(
            url="https://github.com/stepanje/MPDD",
            filename="MPDD archive (.zip)",
            licence="unstated in the MPDD README",
            manual=(
                "open https://github.com/stepanje/MPDD, follow the README's 'Download link' (a SharePoint "
                "folder), click Download and save the zip; it holds bracket_black/ ... tubes/ in the MVTec "
                "layout; then run 'adbench datasets download mpdd --from FILE.zip --to DIR'"
            ),
        ),
    ),
    object_names={
        "bracket_black": "black bracket",
        "bracket_brown": "brown bracket",
        "bracket_white": "white bracket",
        "connector": "connector",
        "metal_plate": "metal plate",
        "tubes": "tubes",
    },
    published_counts={
        "categories": 6,
        "train_images": 888,
        "test_images": 458,
        "test_normal": 176,
        "test_anomalous": 282,
    },
)

DTD_TEXTURES = (
    "Woven_001 Woven_127 Woven_104 Stratified_154 Blotchy_099 Woven_068 Woven_125 Marbled_078 "
    "Perforated_037 Mesh_114 Fibrous_183 Matted_069"
).split()

DTDSynthetic = declare(
    MVTecStyleDataset,
    "DTDSynthetic",
    "DTD-Synthetic: 12 DTD textures with synthetic defects (Woven_001 ... Matted_069), MVTec layout.",
    name="dtd_synthetic",
    group="industrial",
    order=70,
    title="DTD-Synthetic",
    description="DTD-Synthetic: 12 textures with synthetic defects, MVTec layout, pixel masks",
    source="https://drive.google.com/drive/folders/10OyPzvI3H6llCZBxKxFlKWt1Pw1tkMK1 (linked from the AnomalyCLIP README)",
    # No checksum or licence published with the Drive folder (DTD's own images: research use only).
    sources=(
        Source(
            url="https://drive.google.com/drive/folders/10OyPzvI3H6llCZBxKxFlKWt1Pw1tkMK1",
            filename="DTD-Synthetic archive (.zip)",
            licence="unstated (DTD images: research use only)",
            non_commercial=True,
            manual=(
                "open https://drive.google.com/drive/folders/10OyPzvI3H6llCZBxKxFlKWt1Pw1tkMK1 (linked from "
                "the AnomalyCLIP README), click Download (Google zips the folder) and save the zip; it holds "
                "Woven_001/ ... Matted_069/ in the MVTec layout; then run "
                "'adbench datasets download dtd_synthetic --from FILE.zip --to DIR'"
            ),
        ),
    ),
    object_names={c: f"{c.split('_')[0].lower()} texture" for c in DTD_TEXTURES},
    published_counts={"categories": 12},
)


@hookimpl
def adbench_datasets() -> list[type]:
    return [MVTecAD, MPDD, DTDSynthetic]
