"""BTAD (beanTech Anomaly Detection): three products in an MVTec-like layout with ``ok``/``ko`` folders.

Layout: ``{01,02,03}/train/ok``, ``test/{ok,ko}``, ``ground_truth/ko``. Image and mask share a stem;
the extensions differ between products and copies (``.bmp`` or ``.png`` images, ``.png`` or
``.bmp`` masks), so masks are paired by stem whatever their extension.
"""

from __future__ import annotations

from adbench import hookimpl
from adbench.sources import CC_BY_NC_SA_4, Source

from .mvtec_style import MVTecStyleDataset


class BTAD(MVTecStyleDataset):
    """BTAD: 3 industrial products; normal folder ``ok``, anomalous ``ko``; masks share the image's stem."""

    name = "btad"
    group = "industrial"
    order = 40
    title = "BTAD"
    description = "BTAD: 3 industrial products (01, 02, 03), ok/ko folders, pixel masks"
    source = "http://avires.dimi.uniud.it/papers/btad/btad.zip"
    # URL, SHA-256 and the archive's top folder: anomalib (openvinotoolkit/anomalib@161bb36,
    # src/anomalib/data/datamodules/image/btech.py, which moves BTech_Dataset_transformed/ into place).
    sources = (
        Source(
            url="https://avires.dimi.uniud.it/papers/btad/btad.zip",
            filename="btad.zip",
            licence=CC_BY_NC_SA_4,
            non_commercial=True,
            sha256="461c9387e515bfed41ecaae07c50cf6b10def647b36c9e31d239ab2736b10d2a",
            folder="BTech_Dataset_transformed",
        ),
    )
    layout = "{01,02,03}/train/ok/, {01,02,03}/test/{ok,ko}/, {01,02,03}/ground_truth/ko/<same stem>.png|.bmp"
    normal = ("ok",)
    mask_suffixes = ("",)
    #: The three products are unnamed in the release (numbered folders); one neutral object name.
    object_names = {c: "industrial product" for c in ("01", "02", "03")}
    published_counts = {
        "categories": 3,
        "train_images": 1799,
        "test_images": 741,
        "test_normal": 451,
        "test_anomalous": 290,
    }


@hookimpl
def adbench_datasets() -> list[type]:
    return [BTAD]
