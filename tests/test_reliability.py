"""Issue 7: no silent wrong numbers, a store that repairs itself, one-line errors before any work.

Each test here failed before its fix. CLI cases run in-process through ``adbench.cli.main`` (what the
console script calls), so they see exactly what a user sees: output, exit status, no traceback.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adbench import hookimpl
from adbench.data import load_image, load_mask
from adbench.errors import AdbenchError
from adbench.jobs import RunSpec
from adbench.registry import Registry, set_registry
from adbench.runner import Runner
from adbench.scoring import rescore
from adbench.store import ResultsStore

from .helpers import TinyDataset, TinyPlugin, example_plugin_module, invoke_main, write_tiny_dataset


@pytest.fixture()
def registry() -> Registry:
    reg = Registry(autoload=True, plugins=[TinyPlugin(), example_plugin_module()])
    set_registry(reg)
    yield reg
    set_registry(None)


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    write_tiny_dataset(tmp_path / "data")
    return tmp_path / "data"


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run ``adbench ARGS`` in-process: (exit status, stdout + stderr)."""
    code, out, err = invoke_main(monkeypatch, capsys, *args)
    return code, out + err


def run_args(data: Path, results: Path, *extra: str, method: str = "median_dev") -> list[str]:
    return [
        "run",
        "--methods",
        method,
        "--datasets",
        "tiny",
        "--root",
        str(data),
        "--set",
        f"{method}.image_size=32",
        "--no-progress",
        "--results",
        str(results),
        *extra,
    ]


def spec(data: Path, **kw) -> RunSpec:
    base = dict(
        methods=["median_dev"],
        datasets=["tiny"],
        roots={"tiny": str(data)},
        overrides={"median_dev": {"image_size": ["32"]}},
        progress=False,
    )
    return RunSpec(**{**base, **kw})


def records(store: ResultsStore) -> dict[str, dict]:
    return {r["category"]: r for r in store.iter_records()}


# --- bit depths -----------------------------------------------------------------------------------
def _grey8(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def test_high_bit_depth_images_load_by_their_range(tmp_path: Path) -> None:
    yy, xx = np.mgrid[:64, :64]
    grey = (xx * 2 + yy + 20 * np.sin(yy / 5)).clip(0, 255).astype(np.uint8)  # smooth: no resize overshoot
    Image.fromarray(grey).save(tmp_path / "g8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # same image, 16 bit
    Image.fromarray(grey.astype(np.float32) * 3.5 - 7).save(tmp_path / "gf.tif")  # float: own range
    Image.fromarray(grey.astype(np.int32) * 16843009).save(tmp_path / "g32.tif")  # 255 -> 2^32 - 1
    ref = load_image(tmp_path / "g8.png", 32)
    assert torch.allclose(load_image(tmp_path / "g16.png", 32), ref, atol=1.5 / 255)
    lo, hi = float(grey.min()), float(grey.max())
    own_range = ((ref * 255 - lo) / (hi - lo)).clamp(0, 1)
    assert torch.allclose(load_image(tmp_path / "gf.tif", 32), own_range, atol=2 / 255)
    # signed int32 TIFF: scaled by the type's range (a shift of 0.5), never clipped to white/black
    i32 = load_image(tmp_path / "g32.tif", 32)
    assert i32.std() > 0.05 and i32.min() >= 0 and i32.max() <= 1


def test_blank_high_depth_image_is_refused_naming_the_file(tmp_path: Path) -> None:
    Image.fromarray(np.full((8, 8), 200, np.uint16)).save(tmp_path / "flat16.png")  # 8-bit values in 16 bit
    with pytest.raises(AdbenchError, match=r"flat16\.png \(16-bit\).*blank"):
        load_image(tmp_path / "flat16.png", 8)


def test_16_bit_copy_of_a_dataset_scores_like_the_8_bit_one(registry, tmp_path: Path, data: Path) -> None:
    """Before: a 16-bit PNG loaded all white, image AUROC 0.5 where the 8-bit copy scored."""
    eight, sixteen = tmp_path / "d8", tmp_path / "d16"
    for src in data.rglob("*.png"):
        for dst_root, to16 in ((eight, False), (sixteen, True)):
            dst = dst_root / src.relative_to(data)
            dst.parent.mkdir(parents=True, exist_ok=True)
            g = _grey8(src)
            is_mask = "ground_truth" in src.parts
            Image.fromarray(g.astype(np.uint16) * 257 if to16 and not is_mask else g).save(dst)
    got = {}
    for root in (eight, sixteen):
        store = ResultsStore(root.with_suffix(".results"))
        Runner(spec(root, categories=["alpha"]), store, registry).run()
        got[root.name] = records(store)["alpha"]["metrics"]
    assert got["d8"]["image_auroc"] > 0.9
    for name, value in got["d8"].items():
        assert got["d16"][name] == pytest.approx(value, abs=0.02), name


def test_datasets_check_reports_bit_depth_and_decompression_bombs(
    registry, tmp_path: Path, data: Path, monkeypatch, capsys
) -> None:
    Image.fromarray(np.full((32, 32), 9000, np.uint16) + np.eye(32, dtype=np.uint16) * 9000).save(
        data / "alpha/train/good/000.png"
    )
    code, out = cli(monkeypatch, capsys, "datasets", "check", "tiny", "--root", str(data))
    assert code == 0 and "bit depth: 16-bit 1 files, 8-bit" in out
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # 32x32 = 1024 > 2 x 200: a "bomb" here
    code, out = cli(monkeypatch, capsys, "datasets", "check", "tiny", "--root", str(data))
    assert code == 1 and "Traceback" not in out and "DecompressionBombError" in out
    assert f"cannot read {data / 'alpha/train/good/000.png'}" in out


# --- masks ----------------------------------------------------------------------------------------
def test_mask_of_another_size_fails_the_job_naming_both_files(registry, tmp_path: Path, data: Path) -> None:
    mask = data / "alpha/ground_truth/square/000_mask.png"
    Image.fromarray(np.asarray(Image.open(mask))[:16, :16]).save(mask)  # 16x16 mask for a 32x32 image
    store = ResultsStore(tmp_path / "results")
    summary = Runner(spec(data), store, registry).run()
    recs = records(store)
    assert recs["beta"]["status"] == "ok" and len(summary.failed) == 1
    err = recs["alpha"]["error"]
    assert f"mask {mask} is 16x16 but image {data / 'alpha/test/square/000.png'} is 32x32" in err
    monkeypatch_ok = TinyDataset.allow_mask_resize
    try:  # a dataset that declares a resize policy gets its masks resized
        TinyDataset.allow_mask_resize = True
        Runner(spec(data, force=True), ResultsStore(tmp_path / "r2"), registry).run()
        assert records(ResultsStore(tmp_path / "r2"))["alpha"]["status"] == "ok"
    finally:
        TinyDataset.allow_mask_resize = monkeypatch_ok
    assert load_mask(mask, 8).sum() > 0  # the loader itself still reads any bit depth


# --- fingerprints ---------------------------------------------------------------------------------
def test_mask_content_change_with_same_size_reruns(registry, tmp_path: Path, data: Path) -> None:
    """Before: shifting mask pixels kept file sizes, so the stale result was reused."""
    mask = data / "alpha/ground_truth/square/001_mask.png"
    arr = np.asarray(Image.open(mask))
    Image.fromarray(arr).save(mask, compress_level=0)  # uncompressed: the size depends on the shape only
    store = ResultsStore(tmp_path / "results")
    Runner(spec(data, categories=["alpha"]), store, registry).run()
    before_size = mask.stat().st_size
    Image.fromarray(np.roll(arr, 3, axis=1)).save(mask, compress_level=0)
    assert mask.stat().st_size == before_size
    summary = Runner(spec(data, categories=["alpha"]), store, registry).run()
    assert (summary.done, summary.skipped) == (1, 0)


def test_content_digests_are_cached_by_stat(registry, data: Path, monkeypatch) -> None:
    from adbench import content_hash

    calls = []
    real = content_hash.hash_file
    monkeypatch.setattr(content_hash, "hash_file", lambda p: calls.append(p) or real(p))
    first = TinyDataset(data).fingerprint()
    hashed = len(calls)
    assert hashed > 0 and TinyDataset(data).fingerprint() == first and len(calls) == hashed
    path = data / "alpha/test/good/000.png"
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 1  # same size; mtime restored: the stat key still sees the rewrite (ctime)
    st = path.stat()
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert TinyDataset(data).fingerprint() != first and len(calls) == hashed + 1


def test_weights_identity_hashes_the_whole_file(tmp_path: Path) -> None:
    from adbench.backbones.weights import file_identity

    path = tmp_path / "w.bin"
    data = bytearray(os.urandom(5 << 20))
    path.write_bytes(bytes(data))
    before = file_identity(path)
    data[len(data) // 2] ^= 0xFF  # a change in the middle, outside the first and last MiB
    path.write_bytes(bytes(data))
    assert file_identity(path) != before


# --- CLI: one line, exit 2, before any work -------------------------------------------------------
BAD_RUN_OPTIONS = [
    (["--eval-size", "0"], "--eval-size"),
    (["--seeds", "-1"], "--seeds"),
    (["--shots", "0", "--protocol", "few_shot"], "--shots"),
    (["--batch-size", "0"], "--batch-size"),
    (["--shots", "abc"], "--shots"),
    (["--seeds", "x"], "--seeds"),
    (["--device", "tpu"], "--device"),
    (["--set", "median_devv.blur=3"], "did you mean 'median_dev'"),
    (["--set", "patchead.image_size=128"], "'patchead' is not in --methods"),
    (["--set", "median_dev.image_size=0"], "median_dev.image_size=0: must be >= 14"),
    (["--set", "median_dev.blur=0"], "median_dev.blur=0: must be >= 1"),
    (["--set", "median_dev.blurr=3"], "did you mean 'blur'"),
]


@pytest.mark.parametrize(
    ("extra", "message"), BAD_RUN_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_bad_run_options_are_one_line_errors(registry, tmp_path, data, monkeypatch, capsys, extra, message):
    results = tmp_path / "results"
    code, out = cli(monkeypatch, capsys, *run_args(data, results, *extra))
    assert code == 2 and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1 and message in out, out
    assert not (results / "records").exists() or not any((results / "records").iterdir())  # no work done


def test_config_ranges_of_real_methods_through_the_cli(registry, tmp_path, monkeypatch, capsys):
    for setting_ in ("image_size=0", "reference_fraction=-1", "top_patch_fraction=7"):
        code, out = cli(
            monkeypatch, capsys, "run", "--demo", "--set", f"patchead.{setting_}", "--results", str(tmp_path)
        )
        assert code == 2 and len(out.strip().splitlines()) == 1 and f"patchead.{setting_}" in out, out


def test_torchscript_weights_need_trust(registry, tmp_path, monkeypatch, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "ts.pt"))
    code, out = cli(
        monkeypatch,
        capsys,
        "run",
        "--demo",
        "--set",
        f"patchead.weights={tmp_path / 'ts.pt'}",
        "--results",
        str(tmp_path / "r"),
    )
    assert code == 2 and "TorchScript archive" in out and "--trust-weights" in out
    assert len(out.strip().splitlines()) == 1


# --- the store repairs itself ---------------------------------------------------------------------
@pytest.mark.parametrize("junk", [os.urandom(64), b"[]", b'{"key": 1}'], ids=["random", "list", "partial"])
def test_unreadable_record_is_quarantined_and_recomputed(registry, tmp_path, data, monkeypatch, capsys, junk):
    results = tmp_path / "results"
    assert cli(monkeypatch, capsys, *run_args(data, results))[0] == 0
    victim = sorted((results / "records").glob("*.json"))[0]
    victim.write_bytes(junk)
    for args in (["results", "--results", str(results)], ["rescore", "--results", str(results)]):
        code, out = cli(monkeypatch, capsys, *args)
        assert code == 0 and "Traceback" not in out, out
    victim.write_bytes(junk)
    code, out = cli(
        monkeypatch,
        capsys,
        "report",
        "--format",
        "html",
        "--out",
        str(tmp_path / "rep"),
        "--results",
        str(results),
    )
    assert code == 0 and "Traceback" not in out, out
    victim.write_bytes(junk)
    with pytest.warns(UserWarning, match="unreadable record") as caught:
        code, out = cli(monkeypatch, capsys, *run_args(data, results))
    assert code == 0 and "1 jobs run, 1 already done" in out, out
    assert [str(w.message).count(str(victim)) for w in caught] == [1]  # warned once, naming the file
    assert any((results / "quarantine").iterdir())


@pytest.mark.parametrize("damage", ["missing", "corrupt", "no_keys"])
def test_job_without_valid_predictions_is_not_done(registry, tmp_path, data, damage):
    store = ResultsStore(tmp_path / "results")
    Runner(spec(data), store, registry).run()
    key = records(store)["alpha"]["key"]
    path = store.predictions_path(key)
    if damage == "missing":
        path.unlink()
    elif damage == "corrupt":
        path.write_bytes(path.read_bytes()[:50])
    else:
        np.savez(path.with_suffix(""), scores=np.zeros(3))
    assert not store.has(key)
    summary = Runner(spec(data), store, registry).run()
    assert (summary.done, summary.skipped) == (1, 1) and store.has(key)


def test_rescore_validates_every_file_before_writing(registry, tmp_path, data, monkeypatch, capsys):
    results = tmp_path / "results"
    store = ResultsStore(results)
    Runner(spec(data), store, registry).run()
    recs = records(store)
    store.predictions_path(recs["beta"]["key"]).write_bytes(b"garbage")
    code, out = cli(monkeypatch, capsys, "rescore", "--results", str(results))
    assert code == 1 and "Traceback" not in out
    bad = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(bad) == 1 and str(store.predictions_path(recs["beta"]["key"])) in bad[0]
    assert "rescored" in store.read_record(recs["alpha"]["key"])  # the good one was rescored
    assert rescore(store)[0] == 1


def test_read_only_store_is_refused_before_any_work(registry, tmp_path, data, monkeypatch, capsys):
    """As root chmod does not bite, so the OS refusal is simulated where the store creates files."""
    import tempfile

    results = tmp_path / "results"
    real = tempfile.mkstemp

    def refuse(*a, dir=None, **k):  # noqa: A002 - mkstemp's own argument name
        if str(dir).startswith(str(results)):
            raise PermissionError(13, "Permission denied")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    code, out = cli(monkeypatch, capsys, *run_args(data, results))
    assert code == 2 and "not writable" in out and "Permission denied" in out
    assert len(out.strip().splitlines()) == 1


def test_unwritable_records_dir_stops_with_one_line_and_no_orphans(
    registry, tmp_path, data, monkeypatch, capsys
):
    from adbench import store as store_mod

    results = tmp_path / "results"
    real = store_mod.atomic_write_bytes
    calls = {"records": 0}

    def write(path, data_):
        if path.parent.name == "records" and not path.name.startswith("."):
            calls["records"] += 1
            if calls["records"] >= 2:
                raise PermissionError(13, "Permission denied", str(path))
        return real(path, data_)

    monkeypatch.setattr(store_mod, "atomic_write_bytes", write)
    code, out = cli(monkeypatch, capsys, *run_args(data, results))
    assert code == 2 and "Traceback" not in out and "cannot write record" in out and "stopped after 1" in out
    recs = {p.stem for p in (results / "records").glob("*.json")}
    preds = {p.stem for p in (results / "predictions").glob("*.npz")}
    assert len(recs) == 1 and preds == recs  # the first job is kept, no orphan predictions


def test_store_files_respect_the_umask(registry, tmp_path, data):
    old = os.umask(0o022)
    try:
        store = ResultsStore(tmp_path / "results")
        Runner(spec(data, categories=["alpha"]), store, registry).run()
        for path in [*store.records_dir.iterdir(), *store.predictions_dir.iterdir()]:
            assert path.stat().st_mode & 0o777 == 0o644, path
    finally:
        os.umask(old)


# --- datasets: selection, symlinks ----------------------------------------------------------------
def test_broken_unselected_category_does_not_abort(registry, tmp_path, data, monkeypatch, capsys):
    for p in (data / "beta/test").rglob("*.png"):
        p.unlink()  # beta: no test images (an error when selected)
    code, out = cli(monkeypatch, capsys, *run_args(data, tmp_path / "r", "--categories", "alpha"))
    assert code == 0 and "1 jobs run" in out, out


def test_folder_refuses_symlinks_leading_outside_its_root(registry, tmp_path, data):
    outside = tmp_path / "elsewhere.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(outside)
    link = data / "alpha/test/good/999.png"
    link.symlink_to(outside)
    with pytest.raises(AdbenchError, match=rf"{link} leads outside the root .*refused"):
        TinyDataset(data).load_category("alpha")


# --- plugins --------------------------------------------------------------------------------------
class Exiter:
    @hookimpl
    def adbench_methods(self):
        from adbench_median import MedianDeviation

        class Quitter(MedianDeviation):
            name = "quitter"

            def predict(self, images, ctx):
                if ctx.category == "alpha":
                    sys.exit(3)
                return super().predict(images, ctx)

        return [Quitter]


def test_plugin_calling_sys_exit_is_a_recorded_failure(tmp_path, data):
    reg = Registry(autoload=False, plugins=[TinyPlugin(), example_plugin_module(), Exiter()])
    store = ResultsStore(tmp_path / "results")
    summary = Runner(spec(data, methods=["quitter"], overrides={}), store, reg).run()
    recs = records(store)
    assert recs["alpha"]["status"] == "failed" and "SystemExit" in recs["alpha"]["error"]
    assert recs["beta"]["status"] == "ok" and summary.done == 1 and len(summary.failed) == 1


def test_broken_entry_point_is_reported_not_fatal(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    dist = site / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[adbench]\nbroken = broken_plugin_mod\n")
    (site / "broken_plugin_mod.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.syspath_prepend(str(site))
    reg = Registry(autoload=True)
    assert "patchead" in reg.names("method")  # the others still load
    assert reg.broken_lines() == ["plugin 'broken' skipped (broken-plugin 0.1: ImportError: needs libfoo)"]
    set_registry(reg)
    try:
        code, out = cli(monkeypatch, capsys, "list", "methods")
    finally:
        set_registry(None)
    assert code == 0 and "patchead" in out and "Traceback" not in out
    assert "warning: plugin 'broken' skipped (broken-plugin 0.1: ImportError: needs libfoo)" in out


# --- reports --------------------------------------------------------------------------------------
def test_dollar_signs_in_settings_do_not_break_charts(registry, tmp_path, data, monkeypatch, capsys):
    results = tmp_path / "results"
    store = ResultsStore(results)
    Runner(spec(data), store, registry).run()
    for path in store.records_dir.glob("*.json"):
        rec = json.loads(path.read_text())
        rec["variant"] = "weights=/w/$x^^2_\\q$.pt"  # invalid mathtext: crashed the chart
        path.write_text(json.dumps(rec))
    code, out = cli(
        monkeypatch,
        capsys,
        "report",
        "--format",
        "html",
        "--out",
        str(tmp_path / "rep"),
        "--results",
        str(results),
    )
    assert code == 0 and "Traceback" not in out, out


# --- the walk: every input of the issue through the CLI, never a traceback --------------------------
def _mask_other_size(data: Path, results: Path) -> None:
    mask = data / "alpha/ground_truth/square/000_mask.png"
    Image.fromarray(np.asarray(Image.open(mask))[:16, :16]).save(mask)


def _sixteen_bit(data: Path, results: Path) -> None:
    for p in (data / "alpha").rglob("*.png"):
        if "ground_truth" not in p.parts:
            Image.fromarray(_grey8(p).astype(np.uint16) * 257).save(p)


def _escaping_symlink(data: Path, results: Path) -> None:
    outside = data.parent / "outside.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(outside)
    (data / "alpha/test/good/999.png").symlink_to(outside)


def _bomb(data: Path, results: Path) -> None:
    Image.MAX_IMAGE_PIXELS = 200  # restored by the test; a 32x32 image is a "bomb" at this limit


def _damaged_store(data: Path, results: Path) -> None:
    store = ResultsStore(results)
    Runner(spec(data), store, None).run()
    recs = sorted(store.records_dir.glob("*.json"))
    recs[0].write_bytes(os.urandom(40))
    store.predictions_path(recs[1].stem).write_bytes(b"PK\x03\x04 truncated")


WALK = {  # name: (set-up, method, extra run args, exit status, text that must appear)
    "mask of another size": (_mask_other_size, "median_dev", [], 1, "is 16x16 but image"),
    "16-bit images": (_sixteen_bit, "median_dev", ["--categories", "alpha"], 0, "1 jobs run"),
    "symlink out of the root": (_escaping_symlink, "median_dev", [], 1, "leads outside the root"),
    "decompression bomb": (_bomb, "median_dev", ["--categories", "alpha"], 1, "DecompressionBombError"),
    "damaged record and predictions": (_damaged_store, "median_dev", [], 0, "2 jobs run, 0 already done"),
    "plugin calling sys.exit": (None, "quitter", [], 1, "SystemExit"),
}


@pytest.mark.parametrize("case", sorted(WALK))
def test_walk_no_traceback_for_any_listed_input(tmp_path, data, monkeypatch, capsys, case):
    reg = Registry(autoload=True, plugins=[TinyPlugin(), example_plugin_module(), Exiter()])
    set_registry(reg)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    results = tmp_path / "results"
    prepare, method, extra, status, text = WALK[case]
    try:
        if prepare is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prepare(data, results)
        args = run_args(data, results, *extra, method=method)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code, out = cli(monkeypatch, capsys, *args)
        assert "Traceback" not in out and code == status and text in out, out
        for sub in (["results"], ["rescore"], ["report", "--format", "html", "--out", str(tmp_path / "rep")]):
            code, out = cli(monkeypatch, capsys, *sub, "--results", str(results))
            assert "Traceback" not in out and code in (0, 1, 2), (sub, out)
            assert code != 2 or len(out.strip().splitlines()) == 1, (sub, out)
    finally:
        set_registry(None)
