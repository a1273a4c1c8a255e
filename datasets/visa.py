"""VisA (Visual Anomaly): 12 objects; images, masks and the official 1-class split listed in ``split_csv/1cls.csv``.

Layout: ``<object>/Data/Images/{Normal,Anomaly}/*.JPG``, ``<object>/Data/Masks/Anomaly/*.png`` and
``split_csv/1cls.csv`` with columns ``object,split,label,image,mask`` (label ``normal``/``anomaly``,
paths relative to the root). The CSV pairs each anomalous image with its mask; adbench checks that
the two share a stem and exist. A copy already converted to the MVTec layout (``<object>/train/good``,
``test/<defect>``, ``ground_truth/<defect>``, as made by the VisA repo's ``prepare_data.py``) is read too.
"""

from __future__ import annotations

import csv
from pathlib import Path

from adbench import hookimpl
from adbench.data import Category, Sample
from adbench.dataset_tools import Issue
from adbench.errors import AdbenchError
from adbench.sources import CC_BY_NC_SA_4, Source

from ._base import NativeDataset
from ._scan import list_images, looks_mvtec_style, mvtec_style_categories, scan_mvtec_category

SPLIT_CSV = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")


class VisA(NativeDataset):
    """VisA with its official 1-class split (train normals; test normals and all anomalies)."""

    name = "visa"
    group = "industrial"
    order = 20
    title = "VisA"
    description = "VisA: 12 objects (PCBs, capsules, fryum, ...), official 1cls split, pixel masks"
    source = "https://github.com/amazon-science/spot-diff (VisA_20220922.tar)"
    # URL and SHA-256: anomalib's DOWNLOAD_INFO (openvinotoolkit/anomalib@161bb36,
    # src/anomalib/data/datamodules/image/visa.py); licence as anomalib states it for VisA.
    sources = (
        Source(
            url="https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar",
            filename="VisA_20220922.tar",
            licence=CC_BY_NC_SA_4,
            non_commercial=True,
            sha256="2eb8690c803ab37de0324772964100169ec8ba1fa3f7e94291c9ca673f40f362",
        ),
    )
    layout = (
        "split_csv/1cls.csv, <object>/Data/Images/{Normal,Anomaly}/*.JPG, <object>/Data/Masks/Anomaly/*.png"
    )
    object_names = {
        "candle": "candle",
        "capsules": "capsules",
        "cashew": "cashew",
        "chewinggum": "chewing gum",
        "fryum": "fryum",
        "macaroni1": "macaroni",
        "macaroni2": "macaroni",
        "pcb1": "printed circuit board",
        "pcb2": "printed circuit board",
        "pcb3": "printed circuit board",
        "pcb4": "printed circuit board",
        "pipe_fryum": "pipe fryum",
    }
    published_counts = {
        "categories": 12,
        "train_images": 8659,
        "test_images": 2162,
        "test_normal": 962,
        "test_anomalous": 1200,
    }

    def __init__(self, root: str | Path | None = None) -> None:
        super().__init__(root)
        self._rows: dict[str, list[dict[str, str]]] | None = None

    def _converted(self) -> bool:
        root = self.require_root()
        return not (root / SPLIT_CSV).is_file() and looks_mvtec_style(root)

    def _read_csv(self) -> dict[str, list[dict[str, str]]]:
        if self._rows is None:
            path = self.require_root() / SPLIT_CSV
            if not path.is_file():
                raise self.wrong_root(self.layout)
            try:
                with path.open(newline="", encoding="utf-8") as fh:
                    reader = csv.DictReader(fh)
                    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
                    if missing:
                        raise AdbenchError(
                            f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}"
                        )
                    rows: dict[str, list[dict[str, str]]] = {}
                    for row in reader:
                        rows.setdefault(row["object"].strip(), []).append(
                            {k: (row[k] or "").strip() for k in COLUMNS}
                        )
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise AdbenchError(f"cannot read {path}: {exc}") from None
            self._rows = rows
        return self._rows

    def discover(self) -> list[str]:
        if self._converted():
            return mvtec_style_categories(self.root)
        names = sorted(self._read_csv())
        if not names:
            raise AdbenchError(f"dataset 'visa': {self.root / SPLIT_CSV} lists no images")
        return names

    def scan(self, name: str) -> tuple[Category, list[Issue]]:
        root = self.require_root()
        if self._converted():
            return scan_mvtec_category(root / name, name)
        issues: list[Issue] = []
        train, test = [], []
        referenced: set[Path] = set()
        for row in self._read_csv()[name]:
            image = root / row["image"]
            anomalous = row["label"] == "anomaly"
            if row["label"] not in ("normal", "anomaly"):
                issues.append(
                    Issue(
                        "error",
                        "other",
                        f"{SPLIT_CSV}: label {row['label']!r} for {image} is not normal/anomaly",
                    )
                )
                continue
            if not image.is_file():
                issues.append(Issue("error", "other", f"image {image} is listed in {SPLIT_CSV} but missing"))
                continue
            mask = root / row["mask"] if anomalous and row["mask"] else None
            if anomalous:
                if mask is None or not mask.is_file():
                    where = mask or f"{root / name / 'Data/Masks/Anomaly' / image.stem}.png"
                    issues.append(
                        Issue(
                            "error", "missing_mask", f"anomalous image {image} has no mask (expected {where})"
                        )
                    )
                    mask = None
                elif mask.stem != image.stem:
                    issues.append(
                        Issue("error", "other", f"mask {mask} does not match image {image} (names differ)")
                    )
                    mask = None
                else:
                    referenced.add(mask.resolve())
            sample = Sample(row["image"], image, int(anomalous), "anomaly" if anomalous else "good", mask)
            if row["split"] == "train" and not anomalous:
                train.append(sample)
            elif row["split"] == "test":
                test.append(sample)
            else:
                issues.append(Issue("warning", "other", f"{SPLIT_CSV}: anomalous train row ignored: {image}"))
        for m in list_images(root / name / "Data" / "Masks" / "Anomaly"):
            if m.resolve() not in referenced:
                issues.append(
                    Issue(
                        "error",
                        "extra_mask",
                        f"mask {m} has no image in {SPLIT_CSV} (expected a row for "
                        f"{root / name / 'Data/Images/Anomaly' / m.stem}.JPG)",
                    )
                )
        if not test:
            issues.append(Issue("error", "empty", f"category '{name}' has no test rows in {SPLIT_CSV}"))
        return Category(name, train, test, has_masks=True), issues


@hookimpl
def adbench_datasets() -> list[type]:
    return [VisA]
