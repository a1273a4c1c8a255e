"""Tests of the built-in synthetic dataset: determinism, pinned output, layout, metadata, exact masks,
defect strength per anomaly type, atomic writes.

``python tests/test_synthetic.py [ROOT]`` writes a contact sheet (normals and one image per defect,
mask outlines in yellow, drawn just outside the mask) to /tmp/synthetic_preview.png for a visual check.
"""

from __future__ import annotations

import hashlib
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from adbench.data import load_mask
from adbench.datasets import synthetic
from adbench.datasets import synthetic_draw as draw
from adbench.datasets.synthetic import CATEGORIES, SyntheticDataset, generate, pixel_fingerprint
from adbench.errors import AdbenchError
from adbench.registry import Registry

SUBSET = ["gravel", "pill"]  # one texture, one object: enough for the (slower) regeneration tests
#: sha256 of every decoded image and mask of the default dataset (seed 0), in generation order.
PINNED_PIXEL_SHA256 = "5e0d94203843f1db28764c66906a6ca7b031dfd83c55c0bcd341d26a7bd3e17c"


@pytest.fixture(scope="session")
def dataset() -> SyntheticDataset:
    ds = SyntheticDataset()
    ds.categories()  # generates on first use into the session's ADBENCH_HOME
    return ds


@pytest.fixture(scope="session")
def subset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("subset") / "synthetic"
    generate(root, categories=SUBSET)
    return root


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_generated_into_cache_on_first_use(dataset: SyntheticDataset) -> None:
    assert dataset.root == synthetic.adbench_home() / "datasets" / "synthetic-v2"
    assert (dataset.root / synthetic.MARKER).is_file()
    assert dataset.categories() == list(CATEGORIES)
    assert not list(dataset.root.parent.glob(".synthetic-v2.tmp-*"))


def test_registered_through_hook() -> None:
    reg = Registry(autoload=False, plugins=[synthetic])
    assert reg.dataset("synthetic") is SyntheticDataset
    assert SyntheticDataset.task == "both" and SyntheticDataset.version == "2"


def test_two_generations_are_identical(dataset: SyntheticDataset, subset_root: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, categories=SUBSET)
    assert pixel_fingerprint(again) == pixel_fingerprint(subset_root)
    # The fingerprint recorded at generation matches what is read back from the PNG files.
    assert synthetic._read_marker(subset_root)["pixel_sha256"] == pixel_fingerprint(subset_root)
    # Images are keyed by category name, so a subset has the same pixels as the full set.
    for rel in ["gravel/test/small_spot/001.png", "pill/ground_truth/missing/000_mask.png"]:
        assert np.array_equal(_pixels(again / rel), _pixels(dataset.root / rel))
    other_seed = tmp_path / "seed1"
    generate(other_seed, seed=1, categories=["gravel"])
    assert not np.array_equal(
        _pixels(other_seed / "gravel/train/good/000.png"), _pixels(again / "gravel/train/good/000.png")
    )


def test_generator_output_is_pinned(dataset: SyntheticDataset) -> None:
    # A silent change of the generator must bump GENERATOR_VERSION (the cache folder name and the
    # dataset version in every job key); update these pins then, never without the bump.
    assert synthetic.GENERATOR_VERSION == "2"
    noise = draw.perlin_noise((16, 16), (2, 2), np.random.default_rng(0))
    quantised = np.round((noise + 1) * 100).astype(np.int16)
    assert hashlib.sha256(quantised.tobytes()).hexdigest()[:16] == "0f5afe484ee30c48"
    # The whole dataset: what was generated, and what reads back from the files.
    assert synthetic._read_marker(dataset.root)["pixel_sha256"] == PINNED_PIXEL_SHA256
    assert pixel_fingerprint(dataset.root) == PINNED_PIXEL_SHA256


def test_metadata_declares_difficulty_and_anomaly_types(dataset: SyntheticDataset) -> None:
    info = synthetic._read_marker(dataset.root)["categories_info"]
    assert list(info) == list(CATEGORIES) and len(CATEGORIES) >= 10
    assert {i["difficulty"] for i in info.values()} == {"easy", "medium", "hard"}
    assert {t for i in info.values() for t in i["defects"].values()} == {
        "structural",
        "subtle",
        "small",
        "logical",
    }
    for name, spec in synthetic.SPECS.items():
        cat = dataset.load_category(name)
        assert cat.difficulty == spec.difficulty == info[name]["difficulty"]
        for s in cat.test:
            expected = None if s.label == 0 else info[name]["defects"][s.defect_type]
            assert s.anomaly_type == expected
    # logical anomalies live in their own scene categories, as in MVTec LOCO
    kinds = {name: spec.kind for name, spec in synthetic.SPECS.items()}
    for name, i in info.items():
        assert (set(i["defects"].values()) == {"logical"}) == (kinds[name] == "scene")
    # object test splits are mostly anomalous, as MVTec AD's
    assert all(s.n_test_anomalous > 2 * s.n_test_good for s in synthetic.SPECS.values() if s.kind == "object")


@pytest.mark.parametrize("category", CATEGORIES)
def test_counts_labels_and_masks(dataset: SyntheticDataset, category: str) -> None:
    cat = dataset.load_category(category)
    spec = synthetic.SPECS[category]
    assert len(cat.train) >= 10 and len(cat.test) == spec.n_test_good + spec.n_test_anomalous >= 48
    assert cat.num_anomalous == spec.n_test_anomalous
    assert all(s.label == 0 and s.defect_type == "good" and s.mask_path is None for s in cat.train)
    assert {s.defect_type for s in cat.test} == {"good", *synthetic.defect_types(category)}
    assert len({s.id for s in [*cat.train, *cat.test]}) == len(cat.train) + len(cat.test)
    for s in [*cat.train, *cat.test]:
        assert s.image_path.parent.name == s.defect_type  # label matches the MVTec folder
        assert s.label == int(s.defect_type != "good")
        img = Image.open(s.image_path)
        assert img.size == (256, 256) and img.mode == "RGB"
        if s.label:
            mask = _pixels(s.mask_path)
            assert mask.shape == (256, 256)
            assert set(np.unique(mask)) == {0, 255}
            assert s.mask_path.name == s.image_path.stem + "_mask.png"
            assert (
                s.mask_path.parent.name == s.defect_type and s.mask_path.parent.parent.name == "ground_truth"
            )
        else:
            assert s.mask_path is None and load_mask(s.mask_path, 8).sum() == 0


@pytest.mark.parametrize("category", CATEGORIES)
def test_masks_are_exactly_the_changed_pixels(dataset: SyntheticDataset, category: str) -> None:
    # Re-render each anomalous image's defect-free original from its seed and diff it with the file.
    rows = synthetic._samples(category)
    for n, (split, defect, index) in enumerate(rows):
        if defect == "good":
            continue
        base, _ = synthetic.render_normal(category, synthetic._rng(0, category, n))
        img = _pixels(dataset.root / category / split / defect / f"{index:03d}.png")
        mask = _pixels(dataset.root / category / "ground_truth" / defect / f"{index:03d}_mask.png") > 0
        changed = (img != base).any(axis=-1)
        assert np.array_equal(changed, mask), f"{category}/{defect}/{index:03d}"
        kind = synthetic.ANOMALY_TYPES[defect]
        area = mask.mean()
        diff = np.abs(img.astype(int) - base.astype(int)).max(axis=-1)[mask].mean()
        low, high = {
            "structural": ({"scratch": 0.006, "missing": 0.012}.get(defect, 0.02), 0.2),
            "subtle": (0.012, 0.2),
            "small": (0.0001, 0.002),  # at most ~130 px of 256^2: a few pixels at a 224-px eval size
            "logical": (0.004, 0.2),
        }[kind]
        assert low <= area <= high, f"{category}/{defect}: area {area:.4f}"
        if kind == "subtle":
            assert 5 < diff < 20, f"{category}/{defect}/{index:03d}: contrast {diff:.1f} is not subtle"
        else:
            assert diff > 40, f"{category}/{defect}/{index:03d}: too faint"


def _median_detector_auroc(cat) -> float:
    """Pixel AUROC of |image - median of the train normals| (colour distance, lightly smoothed), on the
    normal and structural (clearly visible) test images."""
    train = np.stack([_pixels(s.image_path) for s in cat.train]).astype(np.float32)
    median = np.median(train, axis=0)
    scores, labels = [], []
    for s in cat.test:
        if s.anomaly_type not in (None, "structural"):
            continue
        dev = np.linalg.norm(_pixels(s.image_path).astype(np.float32) - median, axis=-1)
        scores.append(ndimage.gaussian_filter(dev, 2).ravel())
        labels.append((load_mask(s.mask_path, 256).numpy() > 0).ravel())
    return roc_auc_score(np.concatenate(labels), np.concatenate(scores))


@pytest.mark.parametrize("category", [c for c, s in synthetic.SPECS.items() if s.kind == "texture"])
def test_trivial_detector_sees_structural_texture_defects(dataset: SyntheticDataset, category: str) -> None:
    assert _median_detector_auroc(dataset.load_category(category)) > 0.7


def test_interrupted_generation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = synthetic._generate_category

    def failing(root, category, seed, digest):
        if category == "pill":
            raise KeyboardInterrupt
        real(root, category, seed, digest)

    monkeypatch.setattr(synthetic, "_generate_category", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "ds", categories=["gravel", "pill"])
    assert list(tmp_path.iterdir()) == []


def test_losing_a_rename_race_keeps_the_winner(subset_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend the target was absent when we started: our rename then fails on the finished one.
    real = synthetic._check_existing
    calls = []

    def absent_first(root, wanted):
        calls.append(root)
        return False if len(calls) == 1 else real(root, wanted)

    before = pixel_fingerprint(subset_root)
    monkeypatch.setattr(synthetic, "_check_existing", absent_first)
    generate(subset_root, categories=SUBSET)
    assert len(calls) == 2
    assert pixel_fingerprint(subset_root) == before
    assert not list(subset_root.parent.glob(".synthetic.tmp-*"))


def test_concurrent_generations_do_not_corrupt(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(generate, [root, root], [0, 0], [["gravel"], ["gravel"]]))
    single = tmp_path / "single"
    generate(single, categories=["gravel"])
    assert pixel_fingerprint(root) == pixel_fingerprint(single)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "single"]


def test_bad_roots_and_names(tmp_path: Path, subset_root: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.txt").write_text("x")
    with pytest.raises(AdbenchError, match="not a complete synthetic dataset"):
        SyntheticDataset(junk).categories()
    with pytest.raises(AdbenchError, match="seed"):
        generate(subset_root, seed=3, categories=SUBSET)
    with pytest.raises(AdbenchError, match="no category 'bricks'"):
        generate(tmp_path / "x", categories=["bricks"])
    ds = SyntheticDataset(subset_root)
    assert ds.categories() == SUBSET
    with pytest.raises(AdbenchError, match="did you mean 'pill'"):
        ds.load_category("pil")
    empty = tmp_path / "empty"
    empty.mkdir()
    generate(empty, categories=["gravel"])  # an empty folder is replaced atomically
    assert (empty / "gravel/train/good/000.png").is_file()


def contact_sheet(root: Path, out: Path, thumb: int = 192) -> None:
    """Per category: two normals, then the first image of each defect with its mask outlined in yellow."""
    rows = []
    ds = SyntheticDataset(root)
    for name in ds.categories():
        cat = ds.load_category(name)
        tiles = [_pixels(cat.train[0].image_path), _pixels(cat.test[0].image_path)]
        for defect in synthetic.defect_types(name):
            s = next(s for s in cat.test if s.defect_type == defect)
            img = _pixels(s.image_path).copy()
            mask = _pixels(s.mask_path) > 0
            img[ndimage.binary_dilation(mask, iterations=2) & ~ndimage.binary_dilation(mask)] = (255, 255, 0)
            tiles.append(img)
        width = 2 + max(len(spec.defects) for spec in synthetic.SPECS.values())
        tiles += [np.zeros_like(tiles[0])] * (width - len(tiles))
        small = [np.asarray(Image.fromarray(t).resize((thumb, thumb), Image.NEAREST)) for t in tiles]
        rows.append(np.concatenate(small, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(out)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else SyntheticDataset().root
    if len(sys.argv) > 1:
        generate(target)
    contact_sheet(target, Path("/tmp/synthetic_preview.png"))
    print("wrote /tmp/synthetic_preview.png")
