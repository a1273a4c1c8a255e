"""Evaluation protocols: mask resizing, evaluation at original (non-square, mixed) sizes, records, rescore."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage

from adbench import metrics
from adbench.cli import cli, main
from adbench.data import load_mask
from adbench.errors import AdbenchError
from adbench.evaluation import EVAL_PROTOCOLS, parse_eval_size, resolve_evaluation
from adbench.jobs import RunSpec
from adbench.runner import Runner
from adbench.scoring import rescore
from adbench.store import ResultsStore

from .helpers import tiny_registry

EIGHT = np.ones((3, 3), bool)


def _regions(mask: np.ndarray) -> int:
    return ndimage.label(mask, structure=EIGHT)[1]


def test_thin_line_region_counts_nearest_vs_bilinear(tmp_path):
    # a 2-px thick staircase line (one step every 7 columns) in a 700 px mask, evaluated at 336 px
    src, dst = 700, 336
    m = np.zeros((src, src), np.uint8)
    for x in range(src):
        m[10 + x // 7 : 12 + x // 7, x] = 255
    path = tmp_path / "line.png"
    Image.fromarray(m).save(path)
    nearest = load_mask(path, dst, "nearest").numpy().astype(bool)
    bilinear = load_mask(path, dst, "bilinear").numpy().astype(bool)
    # independent references: PIL's nearest samples pixel floor((i + 0.5) * src / dst); torchvision's
    # Resize (the AnomalyCLIP lineage) is PIL's antialiased bilinear, which torch's antialias=True matches
    idx = np.floor((np.arange(dst) + 0.5) * src / dst).astype(int)
    ref_nearest = m[idx][:, idx] > 0
    soft = F.interpolate(
        torch.from_numpy(m / 255.0)[None, None].float(), size=(dst, dst), mode="bilinear", antialias=True
    )
    ref_bilinear = (soft[0, 0] > 0.5).numpy()
    assert np.array_equal(nearest, ref_nearest) and np.array_equal(bilinear, ref_bilinear)
    assert (_regions(m > 0), _regions(nearest), _regions(bilinear)) == (1, 5, 17)


def test_protocols_resolve_to_their_settings():
    clip = resolve_evaluation("anomalyclip", input_size=336, method_sigma=0.0)
    assert (clip.size, clip.mask_resize, clip.smoothing_sigma) == (518, "bilinear", 4.0)
    default = resolve_evaluation("default", input_size=336, method_sigma=2.0)
    assert (default.size, default.mask_resize, default.smoothing_sigma) == (336, "nearest", 2.0)
    assert resolve_evaluation("original", 336, 4.0).size == "original"
    over = resolve_evaluation("anomalyclip", 336, 4.0, eval_size="original", mask_resize="nearest")
    assert (over.size, over.mask_resize) == ("original", "nearest")
    assert parse_eval_size("input") == "input" and parse_eval_size("256") == 256
    for bad in ("0", "big", "-3"):
        with pytest.raises(AdbenchError, match="--eval-size"):
            parse_eval_size(bad)
    with pytest.raises(AdbenchError, match="--eval-protocol 'nope': unknown; choose one of default"):
        resolve_evaluation("nope", 336, 4.0)


def test_list_eval_protocols_and_bad_option_are_one_line(monkeypatch, capsys):
    out = CliRunner().invoke(cli, ["list", "eval-protocols"])
    assert out.exit_code == 0
    for name in EVAL_PROTOCOLS:
        assert name in out.output
    assert "bilinear" in out.output and "518" in out.output
    for args in (["--eval-size", "square"], ["--eval-protocol", "paper"]):
        monkeypatch.setattr(sys, "argv", ["adbench", "run", "--methods", "patchead", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and args[1] in err


def _write_mixed_sizes(root, shapes=((40, 24), (40, 24), (30, 50), (30, 50))):
    """One category whose test images are non-square and of two sizes; anomalies carry a bright block."""
    rng = np.random.default_rng(0)
    cat = root / "alpha"
    for i, (h, w) in enumerate(shapes):
        for split in ("train/good", "test/good", "test/block"):
            (cat / split).mkdir(parents=True, exist_ok=True)
            img = (128 + rng.normal(0, 8, (h, w, 3))).clip(0, 255).astype(np.uint8)
            if split == "test/block":
                img[5:15, 6:14] = 255
                mask = np.zeros((h, w), np.uint8)
                mask[5:15, 6:14] = 255
                (cat / "ground_truth/block").mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(cat / "ground_truth/block" / f"{i:03d}_mask.png")
            Image.fromarray(img).save(cat / split / f"{i:03d}.png")


def test_eval_size_original_keeps_each_mask_shape_and_rescore_reproduces(tmp_path):
    _write_mixed_sizes(tmp_path / "data")
    store = ResultsStore(tmp_path / "results")
    spec = RunSpec(
        methods=["median_dev"],
        datasets=["tiny"],
        roots={"tiny": str(tmp_path / "data")},
        eval_protocol="original",
        progress=False,
    )
    summary = Runner(spec, store, tiny_registry()).run()
    assert summary.failed == [] and summary.done == 1
    (rec,) = list(store.iter_records())
    assert (rec["eval_protocol"], rec["eval_size"], rec["mask_resize"]) == ("original", "original", "nearest")
    assert rec["smoothing_sigma"] == 4.0 and rec["precision"] == "fp32"
    pred = store.read_predictions(rec["key"])
    assert pred["shapes"].tolist() == [[40, 24], [40, 24], [30, 50], [30, 50]] * 2  # good then block
    assert pred["masks"].size == pred["maps"].size == 2 * (2 * 40 * 24 + 2 * 30 * 50)
    assert pred["maps"].dtype.kind == "f"  # plain numeric arrays: no pickled objects
    assert rec["metrics"]["pixel_auroc"] > 0.9
    before = rec["metrics"]
    assert rescore(store) == (1, [])
    assert list(store.iter_records())[0]["metrics"] == before


def test_square_eval_size_and_bilinear_masks_are_recorded(tmp_path):
    _write_mixed_sizes(tmp_path / "data")
    store = ResultsStore(tmp_path / "results")
    spec = RunSpec(
        methods=["median_dev"],
        datasets=["tiny"],
        roots={"tiny": str(tmp_path / "data")},
        eval_protocol="anomalyclip",
        eval_size=64,
        progress=False,
    )
    Runner(spec, store, tiny_registry()).run()
    (rec,) = list(store.iter_records())
    assert (rec["eval_protocol"], rec["eval_size"], rec["mask_resize"], rec["smoothing_sigma"]) == (
        "anomalyclip",
        64,
        "bilinear",
        4.0,
    )
    assert store.read_predictions(rec["key"])["masks"].shape == (8, 64, 64)


def test_metrics_pool_images_of_different_sizes_like_one_stack():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    masks = [rng.random((6, 9)) > 0.7, rng.random((8, 5)) > 0.7]
    maps = [rng.random((6, 9)), rng.random((8, 5))]
    got, _ = metrics.compute_metrics([1, 1], [0.5, 0.6], masks, maps)
    flat_m = np.concatenate([m.ravel() for m in masks])
    flat_a = np.concatenate([a.ravel() for a in maps])
    assert got["pixel_auroc"] == pytest.approx(roc_auc_score(flat_m, flat_a))
    # a list of same-size images scores exactly like their stack (regions numbered per image)
    same_m = [rng.random((7, 7)) > 0.6 for _ in range(3)]
    same_a = [rng.random((7, 7)).astype(np.float32) for _ in range(3)]
    listed, _ = metrics.compute_metrics([0, 1, 1], [0.1, 0.5, 0.6], same_m, same_a)
    stacked, _ = metrics.compute_metrics([0, 1, 1], [0.1, 0.5, 0.6], np.stack(same_m), np.stack(same_a))
    assert listed == stacked


def test_cflow_nan_on_a_perfect_two_level_map_gets_a_note():
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[1, 2:5, 2:5] = 1
    values, notes = metrics.compute_metrics([0, 1], [0.1, 0.9], masks, masks.astype(np.float32))
    assert np.isnan(values["pixel_aupro_cflow"]) and values["pixel_aupro"] == pytest.approx(1.0)
    assert any(n.startswith("pixel_aupro_cflow undefined") for n in notes)
    assert "float32" in metrics.METRIC_DEFINITIONS["pixel_aupro_cflow"]


def test_report_footnotes_name_the_evaluation_protocol(tmp_path):
    from adbench.reports.render import build_report

    _write_mixed_sizes(tmp_path / "data")
    store = ResultsStore(tmp_path / "results")
    base = dict(
        methods=["median_dev"], datasets=["tiny"], roots={"tiny": str(tmp_path / "data")}, progress=False
    )
    Runner(RunSpec(**base, eval_protocol="original"), store, tiny_registry()).run()
    report = build_report(store, tmp_path / "report", plots=False)
    assert any(
        "Evaluation protocol original: pixel metrics at original px, masks resized nearest, Gaussian sigma 4.0"
        in note
        for note in report.notes
    )


def test_precision_is_recorded_and_keys_the_job(tmp_path):
    from adbench.jobs import job_precision

    assert job_precision("bf16", torch.device("cuda")) == "bf16-autocast"
    assert job_precision("fp32", torch.device("cuda")) == "fp32"
    assert job_precision("bf16", torch.device("cpu")) == "fp32"
    _write_mixed_sizes(tmp_path / "data")
    base = dict(
        methods=["median_dev"], datasets=["tiny"], roots={"tiny": str(tmp_path / "data")}, progress=False
    )
    store = ResultsStore(tmp_path / "results")
    bf16 = Runner(RunSpec(**base), store, tiny_registry()).plan()
    fp32 = Runner(RunSpec(**base, precision="fp32"), store, tiny_registry()).plan()
    # on the CPU both run in fp32: same precision, same job (a CUDA run keys bf16 and fp32 apart)
    assert {j.precision for j in bf16 + fp32} == {"fp32"}
    assert [j.key for j in bf16] == [j.key for j in fp32]
