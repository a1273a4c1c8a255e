"""The medical sets of KAnoCLIP's Table 2 that BMAD and MVFA-AD distribute: Liver CT, RESC, COVID-19.

``liverct`` and ``resc`` (BMAD, Bao et al. 2024; the copies MVFA-AD links as ``Liver_AD`` and
``Retina_RESC_AD``): ``test/good/img/*.png`` (normal), ``test/Ungood/img/*.png`` (anomalous) and the
anomalous images' masks in ``test/Ungood/anomaly_mask/`` (MVFA-AD's copy) or ``test/Ungood/label/``
(BMAD's release), same file name; BMAD's ``train/good/`` (normal only) is the train split when present.
The root may be that folder or its parent holding ``Liver_AD`` / ``Liver`` (``Retina_RESC_AD`` / ``RESC``).

``covid19`` (COVID-19 Radiography Database, Rahman et al. 2021, the set KAnoCLIP cites): one folder
per class, ``Normal/`` and ``COVID/`` (images directly inside or in ``images/``); image-level only.
**Choice**: normal = ``Normal``, anomalous = ``COVID``; ``Lung_Opacity`` and ``Viral Pneumonia`` are
not read (KAnoCLIP does not say which classes it used) and the lung ``masks/`` are not anomaly masks.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from adbench import hookimpl
from adbench.data import Category, Sample
from adbench.dataset_tools import Issue
from adbench.errors import AdbenchError

from ._base import NativeDataset
from ._scan import list_images, pair_masks
from .medical import IMAGE_NOTE

MVFA_SOURCE = "BMAD (https://github.com/DorisBao/BMAD) or MVFA-AD's preprocessed copy (its README)"


class BMADSet(NativeDataset):
    """A BMAD segmentation set: ``test/{good,Ungood}/img`` + ``test/Ungood/{anomaly_mask,label}``."""

    task = "both"
    group = "medical"
    category: ClassVar[str] = "liver"
    object_names: ClassVar[dict[str, str]] = {"liver": "liver"}
    defect: ClassVar[str] = "tumor"
    #: Folder names a parent root may hold the set under (MVFA-AD's, then BMAD's).
    folders: ClassVar[tuple[str, ...]] = ()
    mask_dirs: ClassVar[tuple[str, ...]] = ("anomaly_mask", "label")
    layout = "test/good/img/, test/Ungood/img/ and test/Ungood/anomaly_mask/ (or label/), same file names"
    source = MVFA_SOURCE

    def _base(self) -> Path:
        root = self.require_root()
        return next((root / f for f in self.folders if (root / f / "test").is_dir()), root)

    def discover(self) -> list[str]:
        if not (self._base() / "test").is_dir():
            raise self.wrong_root(self.layout)
        return [self.category]

    def _folders(self) -> tuple[Path, Path, Path]:
        """The normal, anomalous and mask folders; a one-line error naming the first one missing."""
        test = self._base() / "test"
        normal, anomalous = test / "good" / "img", test / "Ungood" / "img"
        masks = next((test / "Ungood" / d for d in self.mask_dirs if (test / "Ungood" / d).is_dir()), None)
        for folder, what in ((normal, "normal images"), (anomalous, "anomalous images")):
            if not folder.is_dir():
                raise AdbenchError(f"dataset '{self.name}': missing folder {folder} ({what})")
        if masks is None:
            raise AdbenchError(
                f"dataset '{self.name}': missing folder {test / 'Ungood' / self.mask_dirs[0]} "
                f"(or {self.mask_dirs[1]}/): the anomalous images' masks"
            )
        return normal, anomalous, masks

    def scan(self, name: str) -> tuple[Category, list[Issue]]:
        normal_dir, anomalous_dir, mask_dir = self._folders()
        anomalous = list_images(anomalous_dir)
        pairs, issues = pair_masks(anomalous, list_images(mask_dir), ("",), mask_dir)
        train = [
            Sample(f"train/{p.stem}", p, 0, "good") for p in list_images(self._base() / "train" / "good")
        ]
        test = [Sample(f"good/{p.stem}", p, 0, "good") for p in list_images(normal_dir)]
        test += [Sample(f"Ungood/{p.stem}", p, 1, self.defect, pairs.get(p)) for p in anomalous]
        issues += [
            Issue("error", "empty", f"{d} has no images")
            for d in (normal_dir, anomalous_dir)
            if not list_images(d)
        ]
        return Category(self.category, train, test, has_masks=True), issues


class LiverCT(BMADSet):
    name = "liverct"
    order = 122
    title = "LiverCT"
    category = "liver"
    object_names = {"liver": "liver"}
    defect = "tumor"
    folders = ("Liver_AD", "Liver")
    description = "Liver CT (BMAD, from LiTS): liver tumours, normal and anomalous slices with masks"
    #: BMAD's Liver CT test split (MVFA-AD Appendix A): 833 normal + 660 abnormal slices.
    published_counts = {"categories": 1, "test_images": 1493, "test_normal": 833, "test_anomalous": 660}


class RESC(BMADSet):
    name = "resc"
    order = 124
    title = "RESC"
    category = "retina"
    object_names = {"retina": "retina"}
    defect = "edema"
    folders = ("Retina_RESC_AD", "RESC")
    description = "RESC (BMAD, retinal OCT edema segmentation): normal and anomalous scans with masks"
    #: BMAD's RESC test split (MVFA-AD Appendix A): 1,041 normal + 764 abnormal scans.
    published_counts = {"categories": 1, "test_images": 1805, "test_normal": 1041, "test_anomalous": 764}


class COVID19(NativeDataset):
    """COVID-19 Radiography Database: ``Normal/`` vs ``COVID/`` chest X-rays, image metrics only."""

    name = "covid19"
    group = "medical"
    order = 135
    title = "COVID-19"
    task = "image"
    category: ClassVar[str] = "chest"
    object_names: ClassVar[dict[str, str]] = {"chest": "chest"}
    description = "COVID-19 Radiography Database: Normal vs COVID chest X-rays, image metrics only"
    source = "https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database"
    layout = "Normal/ and COVID/ (images directly inside or in images/), or COVID-19_Radiography_Dataset/ holding them"
    classes: ClassVar[dict[str, int]] = {"Normal": 0, "COVID": 1}
    #: The current (v4) release: 10,192 Normal and 3,616 COVID images.
    published_counts = {"categories": 1, "test_images": 13808, "test_normal": 10192, "test_anomalous": 3616}

    def _base(self) -> Path | None:
        root = self.require_root()
        for base in (root, root / "COVID-19_Radiography_Dataset"):
            if any((base / c).is_dir() for c in self.classes):
                return base
        return None

    def discover(self) -> list[str]:
        if self._base() is None:
            raise self.wrong_root(self.layout)
        return [self.category]

    def scan(self, name: str) -> tuple[Category, list[Issue]]:
        base = self._base()
        test: list[Sample] = []
        for cls, label in self.classes.items():
            folder = base / cls
            if not folder.is_dir():
                raise AdbenchError(f"dataset '{self.name}': missing folder {folder} ({cls} images)")
            folder = folder / "images" if (folder / "images").is_dir() else folder
            test += [
                Sample(f"{cls}/{p.stem}", p, label, cls.lower() if label else "good")
                for p in list_images(folder)
            ]
        issues = [
            Issue("error", "empty", f"{base / c} has no images")
            for c in self.classes
            if not any(s.id.startswith(f"{c}/") for s in test)
        ]
        return Category(self.category, [], test, has_masks=False, notes=[IMAGE_NOTE]), issues


@hookimpl
def adbench_datasets() -> list[type]:
    return [LiverCT, RESC, COVID19]
