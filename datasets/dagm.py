"""DAGM 2007, read from its raw layout and re-split as the ZSAD papers do (variant ``dagm-merged-balanced``).

Raw layout (the Kaggle/HCI release): ``Class1 ... Class10/{Train,Test}/NNNN.PNG`` with defect masks
``{Train,Test}/Label/NNNN_label.PNG`` and ``Label/Labels.txt`` (a count line, then one row per image:
``index  defective(0/1)  NNNN.PNG  0  NNNN_label.PNG|0``). Preprocessing (AdaCLIP's ``dagm-pre.py``),
deterministic and recomputed from the sorted file names on every load (nothing is cached):

1. Train and Test are merged into one category per class (sample ids keep ``Train/``/``Test/``, as the
   two folders reuse file numbers);
2. anomalous = images with a ``_label`` mask; all of them are test images;
3. within each of Train and Test, the first ``n`` normal images in sorted name order go to the
   test split, ``n`` = that folder's number of anomalies (balanced); the other normals are train images.
   (AdaCLIP takes the first ``n`` in ``os.listdir`` order; sorting makes ours reproducible.)

``Labels.txt`` is cross-checked against the masks. A copy already converted to the MVTec layout
(``ClassN/train/good``, ``test/{good,defect}``, ``ground_truth/defect``) is read as it is.
"""

from __future__ import annotations

import re
from pathlib import Path

from adbench import hookimpl
from adbench.data import Category, Sample
from adbench.dataset_tools import Issue
from adbench.sources import Source

from ._base import NativeDataset
from ._scan import (
    list_images,
    looks_mvtec_style,
    mvtec_style_categories,
    pair_masks,
    scan_mvtec_category,
    subfolders,
)

VARIANT = "dagm-merged-balanced"
CLASS = re.compile(r"Class\d+$")
STATES = ("Train", "Test")


def read_labels_txt(path: Path) -> dict[str, bool]:
    """{image file name: defective} from a DAGM ``Labels.txt``; {} when absent. Rows that do not parse are skipped."""
    if not path.is_file():
        return {}
    flags = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in ("0", "1"):
            flags[parts[2]] = parts[1] == "1"
    return flags


def _sample_id(path: Path) -> str:
    """``.../Class1/Train/0576.PNG`` -> ``Train/0576`` (Train and Test reuse numbers, so the state stays in the id)."""
    return f"{path.parent.name}/{path.stem}"


class DAGM(NativeDataset):
    """DAGM 2007: 10 synthetic texture classes; Train+Test merged, as many test normals as anomalies."""

    name = "dagm"
    group = "industrial"
    order = 60
    title = "DAGM 2007"
    description = "DAGM 2007: 10 textures, Train+Test merged, balanced test normals, pixel masks"
    source = "https://www.kaggle.com/datasets/mhskjelvareid/dagm-2007-competition-dataset-optical-inspection"
    # Kaggle needs a signed-in user; no checksum is published.
    sources = (
        Source(
            url=source,
            filename="archive.zip",
            licence="DAGM 2007 competition terms (research use; see the Kaggle page)",
            non_commercial=True,
            manual=(
                f"sign in at {source}, click Download and save archive.zip (Class1/ ... Class10/, each with "
                "Train/ and Test/); then run 'adbench datasets download dagm --from archive.zip --to DIR'"
            ),
        ),
    )
    layout = (
        "Class1 ... Class10/{Train,Test}/NNNN.PNG with {Train,Test}/Label/NNNN_label.PNG and Label/Labels.txt"
    )
    variant = VARIANT
    #: Ten synthetic textured surfaces, numbered in the release.
    object_names = {f"Class{i}": "textured surface" for i in range(1, 11)}
    published_counts = {"categories": 10, "test_anomalous": 2100, "test_images": 4200}

    def __init__(self, root: str | Path | None = None) -> None:
        super().__init__(root)
        self._raw: tuple[dict[str, dict], dict[str, list[Issue]]] | None = None
        #: Decided once, so the recorded variant and the layout read always agree.
        self.preconverted = self.root is not None and self.root.is_dir() and self._looks_preconverted()
        if self.preconverted:
            self.variant = f"{VARIANT}-preconverted"

    def _looks_preconverted(self) -> bool:
        return not any(
            (self.root / d / s).is_dir() for d in subfolders(self.root) for s in STATES
        ) and looks_mvtec_style(self.root)

    def raw_split(self) -> tuple[dict[str, dict], dict[str, list[Issue]]]:
        """Per class: {"train": [image], "test": [(image, mask or None)]} from the raw folders, and its problems."""
        if self._raw is None:
            root = self.require_root()
            classes = [
                d for d in subfolders(root) if CLASS.match(d) and any((root / d / s).is_dir() for s in STATES)
            ]
            if not classes:
                raise self.wrong_root(self.layout)
            split: dict[str, dict] = {}
            all_issues: dict[str, list[Issue]] = {}
            for cls in sorted(classes, key=lambda c: int(c[5:])):
                issues = all_issues.setdefault(cls, [])
                train: list[Path] = []
                test: list[tuple[Path, Path | None]] = []
                for state in STATES:
                    folder = root / cls / state
                    images = list_images(folder)
                    masks = list_images(folder / "Label")
                    pairs, problems = pair_masks(images, masks, ("_label",), folder / "Label")
                    # pair_masks treats every image as anomalous; here an image without a mask is a normal one
                    issues += [p for p in problems if p.kind != "missing_mask"]
                    for name, defective in read_labels_txt(folder / "Label" / "Labels.txt").items():
                        image = folder / name
                        if defective and image.is_file() and image not in pairs:
                            issues.append(
                                Issue(
                                    "error",
                                    "missing_mask",
                                    f"{folder / 'Label/Labels.txt'} marks {image} "
                                    f"defective but it has no mask (expected {folder / 'Label' / image.stem}_label.PNG)",
                                )
                            )
                        elif not defective and image in pairs:
                            issues.append(
                                Issue(
                                    "warning",
                                    "other",
                                    f"{folder / 'Label/Labels.txt'} marks {image} "
                                    f"non-defective but it has a mask {pairs[image]}",
                                )
                            )
                    anomalous = [p for p in images if p in pairs]
                    normal = [p for p in images if p not in pairs]
                    test += [(p, None) for p in normal[: len(anomalous)]] + [(p, pairs[p]) for p in anomalous]
                    train += normal[len(anomalous) :]
                split[cls] = {"train": train, "test": test}
            self._raw = (split, all_issues)
        return self._raw

    def discover(self) -> list[str]:
        if self.preconverted:
            return mvtec_style_categories(self.root)
        return list(self.raw_split()[0])

    def scan(self, name: str) -> tuple[Category, list[Issue]]:
        if self.preconverted:
            return scan_mvtec_category(self.root / name, name, mask_suffixes=("_label", "_mask", ""))
        split, all_issues = self.raw_split()
        issues = list(all_issues[name])
        train = [Sample(_sample_id(p), p, 0, "good") for p in split[name]["train"]]
        test = [
            Sample(_sample_id(i), i, int(m is not None), "defect" if m else "good", m)
            for i, m in split[name]["test"]
        ]
        if not test:
            issues.append(Issue("error", "empty", f"category '{name}' has no labelled (defective) images"))
        notes = [f"variant {VARIANT}: Train+Test merged, test normals = anomalies per folder (sorted order)"]
        return Category(name, train, test, has_masks=True, notes=notes), issues


@hookimpl
def adbench_datasets() -> list[type]:
    return [DAGM]
