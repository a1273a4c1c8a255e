"""The store owns the predictions format: ragged maps (``--eval-size original``) pack and unpack in
one place, and every reader (rescore, report figures) gets one map per image whichever layout."""

from __future__ import annotations

import numpy as np

from adbench.datasets import mvtec_style
from adbench.predictions import pack, unpack
from adbench.registry import Registry
from adbench.reports import formats, render_report

from .fixtures.records import job_record, write_store

SHAPES = [(40, 24), (40, 24), (30, 50), (30, 50)]


def _ragged(rng: np.random.Generator, defect: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    masks = [np.zeros(s, np.uint8) for s in SHAPES]
    maps = [rng.random(s).astype(np.float32) for s in SHAPES]
    for i in (2, 3):  # anomalous images: a defect the map sees
        masks[i][5:15, 10:20] = 1
        maps[i][5:15, 10:20] += defect
    return maps, masks


def test_pack_and_unpack_ragged_and_stacked_maps():
    rng = np.random.default_rng(0)
    maps, masks = _ragged(rng, 2.0)
    base = dict(scores=np.arange(4.0), labels=np.array([0, 0, 1, 1]), ids=np.array(list("abcd")))
    arrays = pack(**base, anomaly_types=np.array(["", "", "x", "x"]), maps=maps, masks=masks)
    assert arrays["maps"].dtype == np.float16 and arrays["shapes"].tolist() == [list(s) for s in SHAPES]
    back = unpack(arrays)
    assert [m.shape for m in back.maps] == SHAPES and [m.shape for m in back.masks] == SHAPES
    assert all(np.allclose(a, b, atol=1e-2) for a, b in zip(back.maps, maps, strict=True))
    stacked = unpack(pack(**base, anomaly_types=np.array([""] * 4), maps=np.stack(maps[:2] * 2), masks=None))
    assert stacked.maps.shape == (4, 40, 24) and stacked.masks is None


def test_report_figures_draw_ragged_maps(tmp_path):
    """Figures used to skip maps stored per image size; read through the store they are drawn."""
    rng = np.random.default_rng(1)
    store = write_store(tmp_path / "s", [])
    for method, defect in (("patchead", 2.0), ("winclip", 0.0)):
        rec = job_record(method, "mvtec", "c0", metrics={"image_auroc": 0.9})
        maps, masks = _ragged(rng, defect)
        store.save_predictions(
            rec.key,
            scores=np.array([0.1, 0.2, 0.8, 0.9]),
            labels=np.array([0, 0, 1, 1]),
            ids=np.array([f"img{i}" for i in range(4)]),
            anomaly_types=np.array(["", "", "x", "x"]),
            maps=maps,
            masks=masks,
        )
        store.write_record(rec)
    registry = Registry(autoload=False, plugins=[formats, mvtec_style])
    paths = render_report(store, tmp_path / "o", ["html"], registry=registry, figures=2)
    png = tmp_path / "o" / "figures" / "qualitative_mvtec_c0.png"
    assert png in paths and png.stat().st_size > 0
