"""Runner: grid expansion, records, resume, --force, failure isolation, atomic writes, rescore."""

from __future__ import annotations

import json
import os

import pytest
import torch

from adbench import hookimpl
from adbench.errors import AdbenchError
from adbench.jobs import RunSpec
from adbench.methods import Context, Method, Prediction
from adbench.runner import Runner
from adbench.scoring import rescore
from adbench.store import ResultsStore

from .helpers import TinyDataset, tiny_registry, write_tiny_dataset


@pytest.fixture()
def setup(tmp_path):
    write_tiny_dataset(tmp_path / "data")
    return tmp_path, ResultsStore(tmp_path / "results")


def _spec(tmp_path, **kw):
    base = dict(
        methods=["median_dev"], datasets=["tiny"], roots={"tiny": str(tmp_path / "data")}, progress=False
    )
    base.update(kw)
    return RunSpec(**base)


def test_run_writes_records_and_rerun_does_no_work(setup):
    tmp_path, store = setup
    reg = tiny_registry()
    first = Runner(_spec(tmp_path), store, reg).run()
    assert (first.done, first.skipped, first.failed) == (2, 0, [])
    records = list(store.iter_records())
    assert {r["category"] for r in records} == {"alpha", "beta"}
    rec = records[0]
    assert rec["status"] == "ok" and rec["protocol"] == "batch_zero_shot"
    assert rec["metrics"]["image_auroc"] > 0.9  # the bright squares are easy
    assert rec["metric_definitions"]["pixel_aupro"].startswith("aupro")
    assert rec["method_config"] == {"image_size": 128, "blur": 5}
    assert rec["timing"]["images_per_s"] > 0
    assert rec["random_weights"] is False
    second = Runner(_spec(tmp_path), store, reg).run()
    assert (second.done, second.skipped) == (0, 2)
    forced = Runner(_spec(tmp_path, force=True), store, reg).run()
    assert forced.done == 2


def test_grid_expansion_and_key_depends_on_config(setup):
    tmp_path, store = setup
    spec = _spec(tmp_path, overrides={"median_dev": {"blur": ["3,5"]}}, categories=["alpha"])
    jobs = Runner(spec, store, tiny_registry()).plan()
    assert len(jobs) == 2 and len({j.key for j in jobs}) == 2
    assert sorted(j.config.blur for j in jobs) == [3, 5]


def test_few_shot_grid_and_unsupported_protocol(setup):
    tmp_path, store = setup
    jobs = Runner(
        _spec(tmp_path, protocol="few_shot", shots=(1, 2), categories=["alpha"]), store, tiny_registry()
    ).plan()
    assert sorted((j.shots, j.seed) for j in jobs) == [(k, s) for k in (1, 2) for s in (0, 1, 2)]
    with pytest.raises(AdbenchError, match="does not support protocol 'zero_shot'"):
        Runner(_spec(tmp_path, protocol="zero_shot"), store, tiny_registry()).plan()


class Crashy(Method):
    name = "crashy"
    config_cls = type("C", (), {"__dataclass_fields__": {}})
    supports = frozenset({"batch_zero_shot"})
    default_protocol = "batch_zero_shot"
    backbone_fields = ()

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        if ctx.category == "alpha":
            raise RuntimeError("boom")
        return Prediction(images.mean((1, 2, 3)))


def test_one_failing_job_does_not_stop_the_run(setup):
    from dataclasses import dataclass

    from adbench.methods import MethodConfig

    @dataclass
    class CrashCfg(MethodConfig):
        image_size: int = 32

    Crashy.config_cls = CrashCfg

    class P:
        @hookimpl
        def adbench_methods(self):
            return [Crashy]

    tmp_path, store = setup
    summary = Runner(_spec(tmp_path, methods=["crashy"]), store, tiny_registry(P())).run()
    assert summary.done == 1 and len(summary.failed) == 1 and "boom" in summary.failed[0]
    failed = [r for r in store.iter_records() if r["status"] == "failed"]
    assert failed[0]["category"] == "alpha"
    # the failed job is retried by the next run, the finished one is not
    again = Runner(_spec(tmp_path, methods=["crashy"]), store, tiny_registry(P())).run()
    assert again.skipped == 1 and len(again.failed) == 1


def test_interrupted_write_leaves_no_partial_record(setup, monkeypatch):
    tmp_path, store = setup

    def killed(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        store.write_record({"key": "abc", "status": "ok"})
    assert not list(store.records_dir.iterdir())


def test_rescore_recomputes_from_stored_predictions(setup):
    tmp_path, store = setup
    Runner(_spec(tmp_path, categories=["alpha"]), store, tiny_registry()).run()
    (rec,) = store.iter_records()
    original = rec["metrics"]
    path = store.record_path(rec["key"])
    tampered = dict(rec, metrics={k: 0.0 for k in original})
    path.write_text(json.dumps(tampered))
    assert rescore(store) == (1, [])
    assert store.read_record(rec["key"])["metrics"] == pytest.approx(original, nan_ok=True)


def test_categories_filter_across_datasets(tmp_path):
    write_tiny_dataset(tmp_path / "a", categories=("alpha",))
    write_tiny_dataset(tmp_path / "b", categories=("beta",))

    class Other(TinyDataset):
        name = "tiny2"

    class P:
        @hookimpl
        def adbench_datasets(self):
            return [Other]

    reg = tiny_registry(P())
    roots = {"tiny": str(tmp_path / "a"), "tiny2": str(tmp_path / "b")}
    store = ResultsStore(tmp_path / "results")
    spec = RunSpec(
        methods=["median_dev"], datasets=["tiny", "tiny2"], roots=roots, categories=["beta"], progress=False
    )
    jobs = Runner(spec, store, reg).plan()
    assert [(j.dataset.name, j.category) for j in jobs] == [("tiny2", "beta")]
    spec.categories = ["gamma"]
    with pytest.raises(AdbenchError, match="gamma not in any of tiny, tiny2"):
        Runner(spec, store, reg).plan()


def test_records_follow_the_schema_with_per_job_measurements(setup):
    from adbench.record import SCHEMA_VERSION

    tmp_path, store = setup
    Runner(_spec(tmp_path), store, tiny_registry()).run()
    recs = list(store.records())
    assert {r.schema_version for r in recs} == {SCHEMA_VERSION}
    rec = recs[0]
    assert rec.method_title == "median_dev" and rec.dataset_n_categories == 2 and rec.params_total == 0
    # CPU peak memory is reset per job on Linux, so earlier jobs' models do not count
    assert rec.timing.peak_mem_kind in ("job_max_rss", "process_max_rss") and rec.timing.peak_mem_mb > 0
    assert rec.train_on is None and rec.train_on_policy is None


def test_parameter_counts_count_shared_parameters_once():
    from adbench.measure import parameter_counts

    class Fake(Method):
        name = "fake"
        trained = True

        def __init__(self):
            super().__init__(None)
            self.backbone = torch.nn.Linear(4, 4)  # 20 parameters
            self.head = torch.nn.Linear(4, 2)  # 10 parameters
            self.parts = [self.backbone]  # held twice: counted once

        def learnable_module(self):
            return self.head

        def predict(self, images, ctx):
            raise NotImplementedError

    assert parameter_counts(Fake()) == (30, 10)


def test_streamed_protocols_decode_one_batch_at_a_time_with_identical_scores(tmp_path):
    """Zero-shot and few-shot stream test images from disk batch by batch (memory bounded by the
    batch); the scores equal scoring the decoded split at once."""
    from adbench import protocols
    from adbench.data import load_images
    from adbench.methods import Context

    from .helpers import TinyDataset, example_plugin_module, write_tiny_dataset

    write_tiny_dataset(tmp_path, categories=("alpha",), n_normal=5, n_anom=5)
    category = TinyDataset(tmp_path).load_category("alpha")
    plugin = example_plugin_module()
    method = plugin.MedianDeviation(plugin.MedianDevConfig(image_size=32))
    refs = load_images(category.train, 32)
    ctx = Context(protocol="few_shot", category="alpha", references=refs)
    sizes = []
    real = method.predict

    def spy(images, ctx):
        sizes.append(len(images))
        return real(images, ctx)

    method.predict = spy
    streamed = protocols.predict_category(method, category.test, ctx, batch_size=4, size=32)
    method.predict = real
    whole = protocols.predict_category(method, load_images(category.test, 32), ctx, batch_size=4)
    assert sizes == [4, 4, 2]
    assert torch.equal(streamed.scores, whole.scores) and torch.equal(streamed.maps, whole.maps)
