"""``adbench datasets check`` / ``export-meta``, the ``meta`` round trip, broken fixtures and dataset roots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adbench.dataset_tools import check_dataset, export_meta
from adbench.errors import AdbenchError
from adbench.registry import Registry, set_registry

from .fixtures import trees
from .helpers import invoke_main


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(autoload=True)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ADBENCH_DATA", raising=False)
    monkeypatch.setenv("ADBENCH_CONFIG", str(tmp_path / "no-config.toml"))
    set_registry(None)


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str]:
    code, out, err = invoke_main(monkeypatch, capsys, *args)
    return code, out + err


@pytest.mark.parametrize("name", sorted(trees.GENERATORS))
def test_check_passes_on_every_fixture(registry: Registry, tmp_path: Path, name: str) -> None:
    expected = trees.GENERATORS[name](tmp_path)
    report = check_dataset(registry.dataset(name)(tmp_path))
    assert report.errors == []
    rows = {r.name: (r.train, r.test_normal, r.test_anomalous) for r in report.rows}
    assert rows == expected
    assert report.totals["test_images"] == sum(n + a for _, n, a in expected.values())


@pytest.mark.parametrize("name", sorted(trees.GENERATORS))
def test_export_meta_round_trips_through_meta(registry: Registry, tmp_path: Path, name: str) -> None:
    root = tmp_path / "data"
    trees.GENERATORS[name](root)
    ds = registry.dataset(name)(root)
    out = export_meta(ds)  # default: next to the images (the prepared folder for KSDD)
    data = json.loads(out.read_text())
    assert set(data) == {"train", "test"}
    entry = next(iter(data["test"].values()))[0]
    assert set(entry) == {"img_path", "mask_path", "cls_name", "specie_name", "anomaly"}
    back = registry.dataset("meta")(out.parent)
    assert back.categories() == ds.categories()
    for cat in ds.categories():
        a, b = ds.load_category(cat), back.load_category(cat)
        key = lambda s: (s.image_path.resolve(), s.label, s.mask_path.resolve() if s.mask_path else None)  # noqa: E731
        assert sorted(map(key, a.test), key=str) == sorted(map(key, b.test), key=str)
        assert sorted(s.image_path.resolve() for s in a.train) == sorted(
            s.image_path.resolve() for s in b.train
        )
        assert a.has_masks == b.has_masks


def test_ksdd_export_outside_the_images_is_refused(registry: Registry, tmp_path: Path) -> None:
    trees.make_ksdd(tmp_path / "raw")
    ds = registry.dataset("ksdd")(tmp_path / "raw")
    assert export_meta(ds).parent == ds.data_dir  # default: next to the prepared images
    with pytest.raises(AdbenchError, match="is outside"):
        export_meta(ds, tmp_path / "elsewhere" / "meta.json")


def test_check_reports_counts_against_published(registry: Registry, tmp_path: Path) -> None:
    trees.make_mvtec(tmp_path)
    report = check_dataset(registry.dataset("mvtec")(tmp_path))
    text = report.format()
    assert "test images: found 10, published 1,725" in text
    assert "categories: found 2, published 15" in text
    assert report.errors == [] and "0 error(s)" in text


# --- broken fixtures: each gives one clear line and a non-zero exit code -------------------------------


def test_missing_mask(registry: Registry, tmp_path: Path, monkeypatch, capsys) -> None:
    trees.make_mvtec(tmp_path)
    gone = tmp_path / "bottle/ground_truth/broken_large/001_mask.png"
    gone.unlink()
    with pytest.raises(AdbenchError) as err:
        registry.dataset("mvtec")(tmp_path).load_category("bottle")
    msg = str(err.value)
    assert "\n" not in msg and "bottle/test/broken_large/001.png has no mask" in msg and "001_mask" in msg
    registry.dataset("mvtec")(tmp_path).load_category("carpet")  # other categories still load
    code, out = run_cli(monkeypatch, capsys, "datasets", "check", "mvtec", "--root", str(tmp_path))
    assert code == 1 and "has no mask" in out
    assert "bottle" in out and "1 error(s)" in out


def test_extra_mask(registry: Registry, tmp_path: Path, monkeypatch, capsys) -> None:
    trees.make_mvtec(tmp_path)
    trees.mask(tmp_path / "carpet/ground_truth/broken_large/007_mask.png")
    with pytest.raises(AdbenchError, match=r"007_mask.png has no image \(expected .*broken_large/007\.\*\)"):
        registry.dataset("mvtec")(tmp_path).load_category("carpet")
    code, out = run_cli(monkeypatch, capsys, "datasets", "check", "mvtec", "--root", str(tmp_path))
    assert code == 1 and "has no image" in out


def test_mask_folder_without_test_folder(registry: Registry, tmp_path: Path) -> None:
    trees.make_mvtec(tmp_path)
    trees.mask(tmp_path / "carpet/ground_truth/hole/000_mask.png")
    report = check_dataset(registry.dataset("mvtec")(tmp_path), read_files=False)
    assert any("000_mask.png has no image" in e for e in report.errors)


def test_empty_category(registry: Registry, tmp_path: Path, monkeypatch, capsys) -> None:
    trees.make_mvtec(tmp_path)
    (tmp_path / "empty/test/good").mkdir(parents=True)
    with pytest.raises(AdbenchError, match="category 'empty' has no test images"):
        registry.dataset("mvtec")(tmp_path).load_category("empty")
    code, out = run_cli(monkeypatch, capsys, "datasets", "check", "mvtec", "--root", str(tmp_path))
    assert code == 1 and "has no test images" in out


def test_corrupt_png(registry: Registry, tmp_path: Path, monkeypatch, capsys) -> None:
    trees.make_mvtec(tmp_path)
    bad = tmp_path / "bottle/test/good/001.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated: the header parses, decoding fails
    report = check_dataset(registry.dataset("mvtec")(tmp_path))
    assert len(report.errors) == 1 and str(bad) in report.errors[0]
    assert {r.name: r.unreadable for r in report.rows} == {"bottle": 1, "carpet": 0}
    code, out = run_cli(monkeypatch, capsys, "datasets", "check", "mvtec", "--root", str(tmp_path))
    assert code == 1 and f"cannot read {bad}" in out


def test_mask_of_another_size_is_an_error_unless_the_dataset_resizes(
    registry: Registry, tmp_path: Path, monkeypatch
) -> None:
    trees.make_mvtec(tmp_path)
    small = trees.mask(
        tmp_path / "bottle/ground_truth/broken_large/000_mask.png", box=(1, 1, 4, 4), size=(8, 8)
    )
    image = small.parents[2] / "test/broken_large/000.png"
    message = f"mask {small} is 8x8 but image {image} is 16x16"
    mvtec = registry.dataset("mvtec")
    assert check_dataset(mvtec(tmp_path)).errors == [message]  # `run` refuses it, so `check` must fail
    monkeypatch.setattr(mvtec, "allow_mask_resize", True)  # a dataset whose preprocessing may resize masks
    report = check_dataset(mvtec(tmp_path))
    assert report.errors == []
    assert [w for w in report.warnings if "published" not in w] == [message]


def test_unreadable_image_error_names_the_file(tmp_path: Path) -> None:
    from adbench.data import load_image

    bad = tmp_path / "x.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(AdbenchError, match=r"cannot read image .*x\.png"):
        load_image(bad, 8)


def test_wrong_root(registry: Registry, tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(AdbenchError) as err:
        registry.dataset("visa")(tmp_path).categories()
    msg = str(err.value)
    assert "split_csv/1cls.csv" in msg and "found photos/, readme.txt" in msg and "\n" not in msg
    code, out = run_cli(monkeypatch, capsys, "datasets", "check", "btad", "--root", str(tmp_path))
    assert code == 1 and "{01,02,03}/train/ok/" in out and "found photos/" in out


def test_wrong_root_for_one_category_folder_hints_at_the_parent(registry: Registry, tmp_path: Path) -> None:
    trees.make_mvtec(tmp_path)
    with pytest.raises(AdbenchError, match="pass its parent folder"):
        registry.dataset("mvtec")(tmp_path / "bottle").categories()


def test_missing_root_says_how_to_set_it(registry: Registry, tmp_path: Path, monkeypatch, capsys) -> None:
    with pytest.raises(AdbenchError) as err:
        registry.dataset("mvtec")().categories()
    assert "dataset 'mvtec': no root folder given" in str(err.value)
    assert (
        "--root" in str(err.value)
        and "$ADBENCH_DATA" in str(err.value)
        and "[datasets.mvtec]" in str(err.value)
    )
    code, out = run_cli(monkeypatch, capsys, "datasets", "check", "mvtec", "--root", str(tmp_path / "nope"))
    assert code == 1 and f"root {tmp_path / 'nope'} is not a folder" in out


def test_unknown_category_suggests_the_nearest(registry: Registry, tmp_path: Path) -> None:
    trees.make_mvtec(tmp_path)
    with pytest.raises(AdbenchError, match="has no category 'botle'; did you mean 'bottle'"):
        registry.dataset("mvtec")(tmp_path).load_category("botle")


def _entry(img: str, mask: str, cls: str, specie: str, anomaly: int) -> dict:
    """One meta.json entry with AnomalyCLIP's field names."""
    return {"img_path": img, "mask_path": mask, "cls_name": cls, "specie_name": specie, "anomaly": anomaly}


def test_meta_path_escaping_the_root_is_refused(registry: Registry, tmp_path: Path) -> None:
    root = tmp_path / "data"
    trees.image(tmp_path / "outside.png")
    trees.image(root / "inside.png")
    entries = [_entry("inside.png", "", "obj", "good", 0), _entry("../outside.png", "", "obj", "bad", 1)]
    meta = {"train": {}, "test": {"obj": entries}}
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(AdbenchError, match=r"path '../outside.png' .* escapes the root .*; refused"):
        registry.dataset("meta")(root).load_category("obj")
    meta["test"]["obj"][1]["img_path"] = str(tmp_path / "outside.png")  # absolute, elsewhere
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(AdbenchError, match="escapes the root"):
        registry.dataset("meta")(root).load_category("obj")


def test_meta_reads_anomalyclip_capitalised_splits(registry: Registry, tmp_path: Path) -> None:
    trees.image(tmp_path / "Class1/Test/0001.PNG")
    trees.mask(tmp_path / "Class1/Test/Label/0001_label.PNG")
    entry = _entry("Class1/Test/0001.PNG", "Class1/Test/Label/0001_label.PNG", "Class1", "", 1)
    (tmp_path / "meta.json").write_text(json.dumps({"Train": {"Class1": []}, "Test": {"Class1": [entry]}}))
    c = registry.dataset("meta")(tmp_path).load_category("Class1")
    assert (
        c.num_anomalous == 1
        and c.test[0].mask_path.name == "0001_label.PNG"
        and c.test[0].defect_type == "defect"
    )


def test_meta_flags_masks_paired_by_listing_order(registry: Registry, tmp_path: Path) -> None:
    trees.image(tmp_path / "a/001.png")
    trees.mask(tmp_path / "gt/002_mask.png")
    entry = _entry("a/001.png", "gt/002_mask.png", "a", "x", 1)
    (tmp_path / "meta.json").write_text(json.dumps({"train": {}, "test": {"a": [entry]}}))
    report = check_dataset(registry.dataset("meta")(tmp_path))
    assert any("does not match image" in w for w in report.warnings)


def test_export_meta_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    trees.make_btad(tmp_path)
    code, out = run_cli(monkeypatch, capsys, "datasets", "export-meta", "btad", "--root", str(tmp_path))
    assert code == 0 and out.strip() == str(tmp_path / "meta.json")
    data = json.loads((tmp_path / "meta.json").read_text())
    assert {e["img_path"] for e in data["test"]["01"] if e["anomaly"]} == {
        "01/test/ko/0000.bmp",
        "01/test/ko/0001.bmp",
    }
    code, out = run_cli(monkeypatch, capsys, "datasets", "check", "meta", "--root", str(tmp_path))
    assert code == 0, out


# --- roots: --root, $ADBENCH_DATA/<name>, config file ------------------------------------------------------


def test_root_from_adbench_data(registry: Registry, tmp_path: Path, monkeypatch) -> None:
    trees.make_btad(tmp_path / "btad")
    monkeypatch.setenv("ADBENCH_DATA", str(tmp_path))
    assert registry.dataset("btad")().root == tmp_path / "btad"
    assert registry.dataset("btad")(tmp_path / "x").root == tmp_path / "x"  # explicit root wins


def test_root_from_config_file(registry: Registry, tmp_path: Path, monkeypatch) -> None:
    trees.make_visa(tmp_path / "VisA_20220922")
    cfg = tmp_path / "config.toml"
    cfg.write_text('[datasets.visa]\nroot = "VisA_20220922"\n')
    monkeypatch.setenv("ADBENCH_CONFIG", str(cfg))
    monkeypatch.setenv(
        "ADBENCH_DATA", str(tmp_path / "empty")
    )  # no $ADBENCH_DATA/visa: the config file is used
    ds = registry.dataset("visa")()
    assert ds.root == tmp_path / "VisA_20220922" and ds.categories() == ["candle", "pcb1"]
    cfg.write_text("[datasets.visa\n")
    with pytest.raises(AdbenchError, match=f"cannot read config file {cfg}"):
        registry.dataset("visa")()
