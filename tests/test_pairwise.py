"""``adbench compare``: pairing jobs from a store, per-category and per-dataset paired tests."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from adbench.cli import cli
from adbench.errors import AdbenchError
from adbench.reports.pairwise import Side, compare, render
from adbench.store import ResultsStore

from .fixtures.records import job_record


def _store_with_predictions(tmp_path, strength=None, seeds=(0,), protocol="zero_shot", shots=0):
    """Two methods on two categories of one dataset with planted predictions: ``good`` separates
    the classes, ``weak`` barely does."""
    strength = strength or {"good": 3.0, "weak": 0.3}
    store = ResultsStore(tmp_path / "store")
    rng = np.random.default_rng(0)
    labels = np.array([0] * 30 + [1] * 30)
    masks = np.zeros((60, 16, 16), np.uint8)
    masks[30:, 4:10, 4:10] = 1
    for method, s in strength.items():
        for cat in ("c1", "c2"):
            for seed in seeds:
                rec = job_record(
                    method, "mvtec", cat, protocol=protocol, shots=shots, seed=seed, n_test=60, n_anomalous=30
                )
                store.write_record(rec)
                maps = (rng.random(masks.shape) + s * masks * rng.random()).astype(np.float16)
                store.write_predictions(
                    rec.key,
                    scores=(rng.normal(size=60) + s * labels).astype(np.float32),
                    labels=labels,
                    ids=np.array([f"{i}" for i in range(60)]),
                    maps=maps,
                    masks=masks,
                )
    return store


def test_compare_rows_per_category_and_dataset_mean_with_holm(tmp_path):
    store = _store_with_predictions(tmp_path)
    rows = compare(store, Side("good"), Side("weak"), ["image_auroc", "pixel_ap"], n_resamples=200)
    cats = [r for r in rows if r.category is not None]
    means = [r for r in rows if r.category is None]
    assert {(r.category, r.metric) for r in cats} == {
        (c, m) for c in ("c1", "c2") for m in ("image_auroc", "pixel_ap")
    }
    assert len(means) == 2
    for r in rows:
        assert r.diff > 0 and r.low > 0 and r.p < 0.05
        assert r.p_holm >= r.p
    auroc = [r for r in cats if r.metric == "image_auroc"]
    assert all(r.test == "DeLong" for r in auroc)
    mean = next(r for r in means if r.metric == "image_auroc")
    assert mean.diff == pytest.approx(np.mean([r.diff for r in auroc]))


def test_compare_few_shot_resamples_seeds(tmp_path):
    store = _store_with_predictions(tmp_path, seeds=(0, 1, 2), protocol="few_shot", shots=2)
    rows = compare(store, Side("good"), Side("weak"), ["image_auroc"], n_resamples=200)
    assert rows and all(r.seeds == 3 and r.test == "paired bootstrap" for r in rows)


def test_compare_refuses_unknown_metric_and_missing_method(tmp_path):
    store = _store_with_predictions(tmp_path)
    with pytest.raises(AdbenchError, match="--metrics"):
        compare(store, Side("good"), Side("weak"), ["image_magic"])
    with pytest.raises(AdbenchError, match="no successful jobs of 'nope'"):
        compare(store, Side("good"), Side("nope"))


def test_side_parses_settings():
    side = Side.parse("patchead:align=true:k=4")
    assert side.method == "patchead" and side.settings == (("align", "true"), ("k", "4"))
    with pytest.raises(AdbenchError):
        Side.parse("patchead:align")


def test_compare_cli_formats(tmp_path):
    store = _store_with_predictions(tmp_path)
    runner = CliRunner()
    base = ["compare", "good", "weak", "--results", str(store.root), "--metrics", "image_auroc,image_ap"]
    md = runner.invoke(cli, base)
    assert md.exit_code == 0, md.output
    assert "| mvtec (zero_shot) | **mean** | image_auroc |" in md.output and "Holm" in md.output
    js = runner.invoke(cli, [*base, "--format", "json"])
    data = json.loads(js.output)
    assert data["a"] == "good" and len(data["rows"]) == 6
    csv = runner.invoke(cli, [*base, "--format", "csv"])
    assert csv.output.splitlines()[0].startswith("dataset,category,protocol")


def test_render_markdown_marks_dataset_mean(tmp_path):
    store = _store_with_predictions(tmp_path)
    rows = compare(store, Side("good"), Side("weak"), ["image_ap"], n_resamples=100)
    text = render(rows, Side("good"), Side("weak"), "markdown")
    assert text.count("**mean**") == 1 and "paired bootstrap" in text


def test_table_marks_tie_close_columns_and_not_clearly_worse_ones(tmp_path):
    """good ≫ weak; a near-copy of good must be marked as not significantly worse, weak must not."""
    from adbench.reports.table_stats import table_marks

    store = _store_with_predictions(tmp_path, strength={"good": 3.0, "twin": 2.95, "weak": 0.3})
    frame = store.frame()
    cells = {
        ("mvtec", m): [(r.category, int(r.seed), r.key) for r in frame[frame["method"] == m].itertuples()]
        for m in ("good", "twin", "weak")
    }
    marks = table_marks(store, "image_auroc", cells, {"mvtec": "good"}, n_resamples=200)
    assert set(marks) == {("mvtec", "twin"), ("mvtec", "weak")}
    assert marks[("mvtec", "twin")].tied and not marks[("mvtec", "weak")].tied
    assert marks[("mvtec", "weak")].p_holm >= marks[("mvtec", "weak")].p


def test_cell_interval_contains_the_value_and_published_note(tmp_path):
    from adbench.reports.pairwise import job_predictions
    from adbench.reports.table_stats import JobCache, cell_interval, published_inside
    from adbench.significance import bootstrap_values

    store = _store_with_predictions(tmp_path)
    frame = store.frame()
    weak = frame[frame["method"] == "weak"]
    jobs = [(r.category, int(r.seed), r.key) for r in weak.itertuples()]
    lo, hi = cell_interval(JobCache(store, ["image_ap"], 200), "image_ap", jobs)
    value = np.mean([bootstrap_values("image_ap", [job_predictions(store, k)], 10)[0] for *_, k in jobs])
    assert lo < value < hi and hi - lo > 0.02
    assert published_inside(value, (lo, hi)).startswith("published value inside")
    assert published_inside(hi + 0.01, (lo, hi)).startswith("published value above")


def test_any_protocol_pairs_the_same_images_and_random_weights_are_named(tmp_path):
    store = ResultsStore(tmp_path / "store")
    labels = np.array([0] * 10 + [1] * 10)
    rng = np.random.default_rng(1)
    for method, protocol, random in (("good", "batch_zero_shot", False), ("weak", "zero_shot", True)):
        rec = job_record(
            method, "mvtec", "c1", protocol=protocol, random_weights=random, n_test=20, n_anomalous=10
        )
        store.write_record(rec)
        store.write_predictions(
            rec.key,
            scores=(rng.normal(size=20) + 2 * labels).astype(np.float32),
            labels=labels,
            ids=np.arange(20),
            maps=np.zeros(0, np.float16),
            masks=np.zeros(0, np.uint8),
        )
    with pytest.raises(AdbenchError, match="--any-protocol pairs them"):
        compare(store, Side("good"), Side("weak"), ["image_auroc"])
    rows = compare(store, Side("good"), Side("weak"), ["image_auroc"], any_protocol=True)
    assert rows[0].protocol == "batch_zero_shot vs zero_shot" and all(r.random_weights for r in rows)
    assert render(rows, Side("good"), Side("weak"), "markdown").startswith("**RANDOM WEIGHTS**")


def test_compare_refuses_jobs_scored_on_other_images(tmp_path):
    """Same labels, other image ids (another copy of the data): no silently wrong difference."""
    store = ResultsStore(tmp_path / "store")
    labels = np.array([0] * 10 + [1] * 10)
    for method, ids in (("good", np.arange(20)), ("weak", np.arange(20) + 100)):
        rec = job_record(method, "mvtec", "c1", n_test=20, n_anomalous=10)
        store.write_record(rec)
        store.write_predictions(
            rec.key,
            scores=(np.linspace(0, 1, 20) + labels).astype(np.float32),
            labels=labels,
            ids=ids.astype(str),
            maps=np.zeros(0, np.float16),
            masks=np.zeros(0, np.uint8),
        )
    with pytest.raises(AdbenchError, match="same test images"):
        compare(store, Side("good"), Side("weak"), ["image_auroc"])


def test_predictions_of_different_lengths_are_one_line_errors(tmp_path):
    store = ResultsStore(tmp_path / "store")
    rec = job_record("good", "mvtec", "c1", n_test=20, n_anomalous=10)
    store.write_record(rec)
    store.write_predictions(
        rec.key,
        scores=np.zeros(15, np.float32),
        labels=np.array([0] * 10 + [1] * 10),
        ids=np.arange(20),
        maps=np.zeros(0, np.float16),
        masks=np.zeros(0, np.uint8),
    )
    with pytest.raises(AdbenchError, match="different lengths .*20 labels; 15 scores"):
        store.read_predictions(rec.key)
