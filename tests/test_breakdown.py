"""Per-anomaly-type results and the demo grid: the metric, the runner's record fields, the report
tables, and what ``adbench run --demo`` plans."""

from __future__ import annotations

import dataclasses
import math

import pytest

from adbench import hookimpl
from adbench.config import expand
from adbench.data import Category
from adbench.demo import DemoConfig, demo_grid
from adbench.errors import AdbenchError
from adbench.jobs import RunSpec
from adbench.metrics import image_auroc, image_auroc_by_group
from adbench.registry import Registry
from adbench.reports.render import build_report
from adbench.runner import Runner
from adbench.scoring import rescore
from adbench.store import ResultsStore

from .helpers import TinyDataset, tiny_registry, write_tiny_dataset


def test_image_auroc_by_group_compares_normals_with_one_type_only() -> None:
    labels = [0, 0, 0, 1, 1, 1, 1, 1]
    scores = [0.0, 1.0, 2.0, 5.0, 6.0, 0.5, 1.5, 3.0]
    groups = [None, None, None, "structural", "structural", "logical", "logical", None]
    out = image_auroc_by_group(labels, scores, groups)
    assert set(out) == {"structural", "logical"}  # an anomaly without a type is in no group
    assert out["structural"] == 1.0
    # logical 0.5 beats one normal of three, 1.5 beats two: 3 of 6 pairs
    assert out["logical"] == pytest.approx(0.5)
    assert out["logical"] == image_auroc([0, 0, 0, 1, 1], [0.0, 1.0, 2.0, 0.5, 1.5])
    no_normals = image_auroc_by_group([1, 1], [0.3, 0.4], ["logical", "logical"])
    assert math.isnan(no_normals["logical"])
    assert image_auroc_by_group([0, 0], [0.1, 0.2], [None, None]) == {}


class TypedTiny(TinyDataset):
    """The tiny fixture with alpha's anomalies "structural", beta's "logical", declared difficulties
    and a demo grid of two blur sizes."""

    name = "typed"
    demo = (DemoConfig("median_dev", {"blur": "3"}), DemoConfig("median_dev", {"blur": "5"}))

    def load_category(self, name: str) -> Category:
        cat = super().load_category(name)
        kind = "structural" if name == "alpha" else "logical"
        test = [dataclasses.replace(s, anomaly_type=kind if s.label else None) for s in cat.test]
        return dataclasses.replace(cat, test=test, difficulty="easy" if name == "alpha" else "hard")


class TypedPlugin:
    @hookimpl
    def adbench_datasets(self):
        return [TypedTiny]


@pytest.fixture()
def typed(tmp_path):
    write_tiny_dataset(tmp_path / "data")
    return tmp_path, ResultsStore(tmp_path / "results"), tiny_registry(TypedPlugin())


def _spec(tmp_path, **kw) -> RunSpec:
    base = dict(methods=[], datasets=["typed"], roots={"typed": str(tmp_path / "data")}, progress=False)
    return RunSpec(**{**base, **kw})


def test_demo_runs_the_declared_grid(typed) -> None:
    tmp_path, store, reg = typed
    jobs = Runner(_spec(tmp_path, demo=True), store, reg).plan()
    assert sorted((j.config.blur, j.category) for j in jobs) == [
        (3, "alpha"),
        (3, "beta"),
        (5, "alpha"),
        (5, "beta"),
    ]
    # --set wins over the demo's value of the same field; equal configurations run once
    same = Runner(_spec(tmp_path, demo=True, overrides={"median_dev": {"blur": ["7"]}}), store, reg).plan()
    assert sorted((j.config.blur, j.category) for j in same) == [(7, "alpha"), (7, "beta")]
    # --demo with --methods keeps its old meaning: the named methods, demo backbones only
    named = Runner(_spec(tmp_path, demo=True, methods=["median_dev"]), store, reg).plan()
    assert [j.config.blur for j in named] == [5, 5]
    assert demo_grid([TypedTiny.demo, TypedTiny.demo], {}) == [
        ("median_dev", [{"blur": ["3"]}, {"blur": ["5"]}])
    ]


def test_demo_without_a_declared_grid_is_a_clear_error(typed) -> None:
    tmp_path, store, reg = typed
    spec = RunSpec(methods=[], datasets=["tiny"], roots={"tiny": str(tmp_path / "data")}, demo=True)
    with pytest.raises(AdbenchError, match="declares a demo grid"):
        Runner(spec, store, reg).plan()


def test_records_and_report_break_results_down_by_type_and_difficulty(typed) -> None:
    tmp_path, store, reg = typed
    summary = Runner(_spec(tmp_path, methods=["median_dev"]), store, reg).run()
    assert summary.done == 2 and not summary.failed
    records = {r["category"]: r for r in store.iter_records()}
    for cat, kind, difficulty in (("alpha", "structural", "easy"), ("beta", "logical", "hard")):
        rec = records[cat]
        assert rec["difficulty"] == difficulty
        # one type per category here, so the per-type AUROC is the category's image AUROC
        assert rec["image_auroc_by_anomaly_type"] == {kind: pytest.approx(rec["metrics"]["image_auroc"])}
        pred = store.read_predictions(rec["key"])
        assert list(pred["anomaly_types"]) == ["" if lab == 0 else kind for lab in pred["labels"]]
    # rescore recomputes the breakdown from the stored predictions
    rec = records["alpha"]
    rec["image_auroc_by_anomaly_type"] = {"structural": 0.0}
    store.write_record(rec)
    assert rescore(store) == (2, [])
    assert store.read_record(rec["key"])["image_auroc_by_anomaly_type"]["structural"] == pytest.approx(
        rec["metrics"]["image_auroc"]
    )
    report = build_report(store, tmp_path / "report", plots=False)
    tables = {t.id: t for t in report.tables}
    by_type = {r.label: r.cells[0].parts[0].value for r in tables["breakdown-anomaly-type"].rows}
    assert by_type == {
        "structural (1)": pytest.approx(100 * records["alpha"]["metrics"]["image_auroc"]),
        "logical (1)": pytest.approx(100 * records["beta"]["metrics"]["image_auroc"]),
    }
    by_difficulty = {r.label for r in tables["breakdown-difficulty"].rows}
    assert by_difficulty == {"easy (1)", "hard (1)"}
    assert [t.section for t in report.tables].count("breakdown") == 2


def test_datasets_without_types_get_no_breakdown(tmp_path) -> None:
    write_tiny_dataset(tmp_path / "data")
    store = ResultsStore(tmp_path / "results")
    spec = RunSpec(
        methods=["median_dev"], datasets=["tiny"], roots={"tiny": str(tmp_path / "data")}, progress=False
    )
    Runner(spec, store, tiny_registry()).run()
    rec = next(store.iter_records())
    assert rec["image_auroc_by_anomaly_type"] == {} and rec["difficulty"] is None
    assert not [
        t for t in build_report(store, tmp_path / "r", plots=False).tables if t.section == "breakdown"
    ]


def test_synthetic_declares_three_differing_demo_configurations() -> None:
    from adbench.datasets import synthetic
    from adbench.plugins import backbones, patchead

    demo = synthetic.SyntheticDataset.demo
    assert len(demo) >= 3 and len({tuple(sorted(c.settings.items())) for c in demo}) == len(demo)
    reg = Registry(autoload=False, plugins=[synthetic, patchead, backbones])
    grid = demo_grid([demo], {})
    for method, sets in grid:
        cls = reg.method(method)
        for override in sets:  # every declared value is a valid setting of the method
            assert len(expand(cls.config_cls, override, method)) == 1
    names = {c.settings.get("backbone") for c in demo}
    assert {"efficientnet-lite0", "tiny-dinov2"} <= names  # a real backbone against a random one
    assert any(c.settings.get("align") == "true" for c in demo)  # PatchEAD against PatchEAD+
