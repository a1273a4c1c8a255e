"""Each real-dataset plugin reads a miniature copy of its native layout: categories, labels, mask pairing, counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adbench.data import load_mask
from adbench.errors import AdbenchError
from adbench.registry import Registry

from .fixtures import trees


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(autoload=True)


def _load(registry: Registry, name: str, root: Path):
    ds = registry.dataset(name)(root)
    return ds, {c: ds.load_category(c) for c in ds.categories()}


@pytest.mark.parametrize("name", sorted(trees.GENERATORS))
def test_fixture_loads_with_expected_counts(registry: Registry, tmp_path: Path, name: str) -> None:
    expected = trees.GENERATORS[name](tmp_path)
    ds, cats = _load(registry, name, tmp_path)
    assert sorted(cats) == sorted(expected)
    for cat, (n_train, n_normal, n_anom) in expected.items():
        c = cats[cat]
        assert len(c.train) == n_train, cat
        assert all(s.label == 0 for s in c.train)
        assert len(c.test) - c.num_anomalous == n_normal, cat
        assert c.num_anomalous == n_anom, cat
        assert len({s.id for s in [*c.train, *c.test]}) == len(c.train) + len(c.test), (
            "sample ids must be unique"
        )
        for s in c.test:
            assert s.image_path.is_file()
            if s.label == 0:
                assert s.mask_path is None
            elif ds.task != "image" and c.has_masks:
                assert s.mask_path is not None and s.mask_path.is_file()
        if ds.task == "image":
            assert not c.has_masks and all(s.mask_path is None for s in c.test)
    # the fingerprint is stable and depends on the files
    before = ds.fingerprint()
    assert before == registry.dataset(name)(tmp_path).fingerprint()
    changed = next(iter(cats.values())).test[0].image_path
    changed.write_bytes(changed.read_bytes() + b"\0")
    assert registry.dataset(name)(tmp_path).fingerprint() != before


def _mask_stem_matches(sample) -> bool:
    image, mask = sample.image_path.stem, sample.mask_path.stem
    return mask.startswith(image)


@pytest.mark.parametrize("name", ["mvtec", "btad", "visa", "isic", "cvc_colondb", "dagm", "ksdd"])
def test_masks_are_paired_by_name(registry: Registry, tmp_path: Path, name: str) -> None:
    trees.GENERATORS[name](tmp_path)
    _, cats = _load(registry, name, tmp_path)
    for c in cats.values():
        anomalous = [s for s in c.test if s.label]
        assert anomalous and all(_mask_stem_matches(s) for s in anomalous)


def test_mvtec_pairing_survives_a_gap_in_numbering(registry: Registry, tmp_path: Path) -> None:
    """Listing-order pairing would shift 002 onto 001's mask; name pairing does not."""
    trees.make_mvtec(tmp_path, categories=("bottle",))
    d = tmp_path / "bottle"
    trees.image(d / "test/broken_large/005.png", seed=9)
    trees.mask(d / "ground_truth/broken_large/005_mask.png", box=(0, 0, 2, 2))
    (d / "test/broken_large/001.png").unlink()
    (d / "ground_truth/broken_large/001_mask.png").unlink()
    c = registry.dataset("mvtec")(tmp_path).load_category("bottle")
    s = next(s for s in c.test if s.id == "test/broken_large/005")
    assert s.mask_path.name == "005_mask.png"
    assert load_mask(s.mask_path, 16).sum() == 4


def test_btad_normal_is_ok_and_extensions_differ(registry: Registry, tmp_path: Path) -> None:
    trees.make_btad(tmp_path)
    _, cats = _load(registry, "btad", tmp_path)
    first = next(s for s in cats["01"].test if s.label)
    assert (first.image_path.suffix, first.mask_path.suffix) == (".bmp", ".png")
    assert all(s.defect_type == "good" for s in cats["02"].test if not s.label)


def test_visa_reads_split_csv(registry: Registry, tmp_path: Path) -> None:
    trees.make_visa(tmp_path)
    c = registry.dataset("visa")(tmp_path).load_category("candle")
    assert {s.image_path.suffix for s in c.test} == {".JPG"}
    assert all(s.mask_path.suffix == ".png" for s in c.test if s.label)


def test_ksdd_thirds_are_labelled_by_their_mask(registry: Registry, tmp_path: Path) -> None:
    trees.make_ksdd(tmp_path / "raw")
    ds = registry.dataset("ksdd")(tmp_path / "raw")
    assert ds.variant == "ksdd-thirds-75-25-seed42"
    c = ds.load_category("electrical_commutators")
    anomalous = sorted(s.image_path.stem for s in c.test if s.label)
    assert anomalous == ["kos01_Part1_1", "kos02_Part0_0", "kos02_Part0_1"]
    for s in c.test + c.train:  # a third of a 12x30 image is 12x10
        from PIL import Image

        assert Image.open(s.image_path).size == (12, 10)
    for s in c.test:
        if s.label:
            assert load_mask(s.mask_path, 10).any()
    # deterministic and cached: a second instance reuses the same prepared folder and split
    again = registry.dataset("ksdd")(tmp_path / "raw")
    assert again.data_dir == ds.data_dir
    assert [s.id for s in again.load_category("electrical_commutators").train] == [s.id for s in c.train]
    assert ds.raw_counts() == {"raw_images": 6, "raw_anomalous_images": 2}


def test_ksdd_prepared_folder_changes_with_the_raw_files(registry: Registry, tmp_path: Path) -> None:
    trees.make_ksdd(tmp_path)
    first = registry.dataset("ksdd")(tmp_path).data_dir
    trees.image(tmp_path / "kos03" / "Part2.jpg", seed=99, size=(12, 30), mode="L")
    trees.mask(tmp_path / "kos03" / "Part2_label.bmp", box=(0, 0, 0, 0), size=(12, 30))
    second = registry.dataset("ksdd")(tmp_path).data_dir
    assert first != second and first.is_dir() and second.is_dir()


def test_dagm_merges_train_and_test_and_balances_normals(registry: Registry, tmp_path: Path) -> None:
    trees.make_dagm(tmp_path)
    ds = registry.dataset("dagm")(tmp_path)
    assert ds.variant == "dagm-merged-balanced"
    c = ds.load_category("Class1")
    assert len(c.test) - c.num_anomalous == c.num_anomalous
    assert {s.id for s in c.test if s.label} == {"Train/0002", "Test/0001", "Test/0003"}
    assert {s.id for s in c.test if not s.label} == {"Train/0001", "Test/0002", "Test/0004"}
    assert all(s.mask_path.name == f"{s.image_path.stem}_label.PNG" for s in c.test if s.label)


def test_dagm_labels_txt_disagreeing_with_masks_is_reported(registry: Registry, tmp_path: Path) -> None:
    trees.make_dagm(tmp_path)
    (tmp_path / "Class2/Test/Label/0003_label.PNG").unlink()
    ds = registry.dataset("dagm")(tmp_path)
    with pytest.raises(AdbenchError, match=r"Labels.txt marks .*0003.PNG defective but it has no mask"):
        ds.load_category("Class2")
    ds.load_category("Class1")  # the other class is unaffected


@pytest.mark.parametrize("name", ["ksdd", "dagm"])
def test_preconverted_copy_is_read_as_it_is(registry: Registry, tmp_path: Path, name: str) -> None:
    expected = trees.make_mvtec(tmp_path, categories=("Class1",), defect="defect")
    ds = registry.dataset(name)(tmp_path)
    assert ds.variant.endswith("-preconverted") and ds.categories() == ["Class1"]
    c = ds.load_category("Class1")
    assert (len(c.train), len(c.test) - c.num_anomalous, c.num_anomalous) == expected["Class1"]
    assert all(s.image_path.is_relative_to(tmp_path) for s in c.test)  # nothing prepared


def test_classification_and_segmentation_sets_declare_their_task(registry: Registry, tmp_path: Path) -> None:
    trees.make_headct(tmp_path / "h")
    trees.make_isic(tmp_path / "i")
    headct = registry.dataset("headct")(tmp_path / "h")
    isic = registry.dataset("isic")(tmp_path / "i")
    assert (headct.task, isic.task) == ("image", "pixel")
    h, i = headct.load_category("brain"), isic.load_category("skin")
    assert not h.has_masks and any("image metrics only" in n for n in h.notes)
    assert i.num_anomalous == len(i.test) and any("pixel metrics only" in n for n in i.notes)
    labels = {s.image_path.name: s.label for s in h.test}
    assert labels == {"000.png": 1, "001.png": 1, "002.png": 0, "003.png": 0, "004.png": 0}


def test_clinicdb_original_release_layout(registry: Registry, tmp_path: Path) -> None:
    trees.make_clinicdb_original(tmp_path)
    c = registry.dataset("cvc_clinicdb")(tmp_path).load_category("colon")
    assert [s.mask_path.parent.name for s in c.test] == ["Ground Truth", "Ground Truth"]


def test_mvtec_style_conversion_of_a_medical_set_is_read(registry: Registry, tmp_path: Path) -> None:
    """AdaCLIP's scripts expect medical sets converted to <cls>/test/<type> + ground_truth/<type>."""
    trees.image(tmp_path / "ColonDB/test/polyp/1.png")
    trees.mask(tmp_path / "ColonDB/ground_truth/polyp/1.png")
    c = registry.dataset("cvc_colondb")(tmp_path).load_category("ColonDB")
    assert c.num_anomalous == 1 and c.test[0].mask_path.name == "1.png"


def test_folder_single_category_root(registry: Registry, tmp_path: Path) -> None:
    for i in range(2):
        trees.image(tmp_path / "parts" / "normal" / f"{i}.png", seed=i)
    trees.image(tmp_path / "parts" / "abnormal" / "x.png", seed=3)
    ds = registry.dataset("folder")(tmp_path / "parts")
    assert ds.categories() == ["parts"]
    c = ds.load_category("parts")
    assert [s.label for s in c.test] == [0, 0, 1] and not c.has_masks


def test_mask_values_are_binarised(registry: Registry, tmp_path: Path) -> None:
    trees.make_kvasir(tmp_path)  # JPEG masks: values near 0 and 255 with compression noise
    c = registry.dataset("kvasir")(tmp_path).load_category("colon")
    m = load_mask(c.test[0].mask_path, 16).numpy()
    assert set(np.unique(m)) <= {0, 1} and m[5:9, 5:9].all()


def test_every_real_dataset_is_documented(registry: Registry) -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "datasets.md").read_text()
    names = [e.name for e in registry.entries("dataset") if e.name != "synthetic"]
    assert len(names) >= 17
    for name in names:
        cls = registry.dataset(name)
        assert f"(`{name}`)" in docs, name
        assert cls.description and cls.layout and cls.source and cls.task in ("image", "pixel", "both"), name


@pytest.mark.parametrize(
    ("name", "make", "remove", "named"),
    [
        ("liverct", trees.make_bmad, "Liver_AD/test/Ungood/anomaly_mask", "test/Ungood/anomaly_mask"),
        ("resc", trees.make_resc, "RESC/test/good/img", "test/good/img"),
        ("covid19", trees.make_covid19, "COVID-19_Radiography_Dataset/COVID", "COVID"),
    ],
)
def test_bmad_and_covid_refuse_a_missing_folder_in_one_line(
    registry: Registry, tmp_path: Path, name: str, make, remove: str, named: str
) -> None:
    import shutil

    make(tmp_path)
    shutil.rmtree(tmp_path / remove)
    with pytest.raises(AdbenchError, match=f"missing folder .*{named}") as err:
        registry.dataset(name)(tmp_path).load_category(registry.dataset(name).category)
    assert "\n" not in str(err.value)


def test_bmad_masks_pair_by_name_and_normals_have_none(registry: Registry, tmp_path: Path) -> None:
    trees.make_bmad(tmp_path)
    (tmp_path / "Liver_AD/test/Ungood/anomaly_mask/11.png").unlink()
    ds = registry.dataset("liverct")(tmp_path)
    with pytest.raises(AdbenchError, match=r"Ungood/img/11.png has no mask"):
        ds.load_category("liver")


def test_covid19_reads_normal_and_covid_only(registry: Registry, tmp_path: Path) -> None:
    trees.make_covid19(tmp_path)
    c = registry.dataset("covid19")(tmp_path).load_category("chest")
    assert sorted({s.image_path.parent.parent.name for s in c.test}) == ["COVID", "Normal"]
    assert not c.has_masks and all(s.mask_path is None for s in c.test)
