"""GPU packing by memory and out-of-memory retries, with a fake device-memory source on the CPU."""

from __future__ import annotations

import dataclasses
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from adbench import gpu_schedule, hookimpl
from adbench.errors import AdbenchError
from adbench.gpu_schedule import MemoryEstimates, Packer, Task, first_estimate_mb, run_packed
from adbench.jobs import RunSpec
from adbench.runner import Runner, execute_groups
from adbench.store import ResultsStore
from adbench.summary import RunSummary

from .helpers import example_plugin_module, tiny_registry, write_tiny_dataset
from .test_executors import plan_env  # noqa: F401 - the fixture: workers find the test plugins


def task(mb: float, alone: bool = False) -> Task:
    return Task(group=[], mb=mb, batch_size=16, alone=alone)


def test_packer_fills_gpus_best_fit_and_waits_when_full() -> None:
    packer = Packer({"cuda:0": 10_000, "cuda:1": 4_000})
    placed = []
    for t in [task(3000), task(3000), task(3000), task(5000)]:
        dev = packer.place(t)
        placed.append(dev)
        if dev:
            packer.start(t, dev)
    # best fit: the first goes where least room is left; two more share cuda:0; the 5 GB job waits
    assert placed == ["cuda:1", "cuda:0", "cuda:0", None]
    assert len(packer.running["cuda:0"]) == 2


def test_packer_runs_oversized_and_alone_tasks_on_an_empty_gpu_only() -> None:
    packer = Packer({"cuda:0": 8000})
    small, huge = task(1000), task(20_000)
    packer.start(small, "cuda:0")
    assert packer.place(huge) is None  # waits for the GPU to empty
    assert packer.place(task(500, alone=True)) is None
    packer.finish(small, "cuda:0")
    assert packer.place(huge) == "cuda:0"  # alone on an empty GPU, even beyond its estimate
    packer.start(task(500, alone=True), "cuda:0")
    assert packer.place(task(10)) is None  # nothing joins a task that runs alone


def test_packer_limits_groups_per_gpu() -> None:
    packer = Packer({"cuda:0": 1e9}, max_per_device=2)
    for _ in range(2):
        packer.start(task(1), "cuda:0")
    assert packer.place(task(1)) is None


@dataclasses.dataclass
class _Config:
    image_size: int = 336


def test_estimates_start_from_parameters_then_use_measured_peak() -> None:
    spec = type("S", (), {"method": "m", "config": _Config()})()
    est = MemoryEstimates(batch_size=16)
    first = est.job_mb(spec)
    assert first == pytest.approx(first_estimate_mb(gpu_schedule.DEFAULT_PARAMS, 336, 16) * 1.2)
    assert est.job_mb(spec, batch_size=4) < first  # smaller batch, smaller estimate
    timing = {"peak_mem_mb": 900.0, "peak_mem_kind": "cuda_max_allocated"}
    est.learn({"method": "m", "method_config": {"image_size": 336}, "status": "ok", "timing": timing})
    assert est.job_mb(spec) == pytest.approx(900.0 * gpu_schedule.ESTIMATE_MARGIN)
    cpu = {"peak_mem_mb": 5.0, "peak_mem_kind": "job_max_rss"}  # CPU peaks say nothing of GPU memory
    est.learn({"method": "m", "method_config": {"image_size": 336}, "status": "ok", "timing": cpu})
    assert est.job_mb(spec) == pytest.approx(900.0 * gpu_schedule.ESTIMATE_MARGIN)


class FakeMemory:
    """Free memory per GPU index, as nvidia-smi would report it."""

    def __init__(self, free: dict[int, float]) -> None:
        self.free = free
        self.asked: list[int] = []

    def free_mb(self, index: int) -> float:
        self.asked.append(index)
        return self.free[index]


def oom_plugin(limit: int):
    """median_dev, but a batch of more than ``limit`` images raises CUDA's out-of-memory error."""
    base = example_plugin_module().MedianDeviation

    class Greedy(base):
        name = "greedy"

        def predict(self, images, ctx):
            if len(images) > limit:
                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (fake): batch of {len(images)}")
            return super().predict(images, ctx)

    class Plugin:
        @hookimpl
        def adbench_methods(self):
            return [Greedy]

    return Plugin()


def in_process_launcher(registry, store_root, log):
    """Runs a group here (CPU, one thread) instead of in a spawned process pinned to the GPU."""
    pool = ThreadPoolExecutor(1)

    def for_device(dev):
        def submit(spec, group):
            log.append((dev, spec.batch_size, [s.label for s in group]))
            runner = Runner(dataclasses.replace(spec, device="cpu"), ResultsStore(store_root), registry)
            return pool.submit(runner.execute, list(group))

        return submit

    return for_device


def run_greedy(tmp_path, limit: int, batch_size: int, categories, devices, memory):
    """Plan median_dev-that-runs-out-of-memory on the tiny dataset (one group per job) and run it
    packed on fake GPUs; returns (summary, store, [(device, batch size, labels)] per launch)."""
    write_tiny_dataset(tmp_path / "data", categories=categories)
    registry = tiny_registry(oom_plugin(limit=limit))
    spec = RunSpec(
        methods=["greedy"],
        datasets=["tiny"],
        roots={"tiny": str(tmp_path / "data")},
        protocol="few_shot",
        shots=(1,),
        seeds=(0,),
        batch_size=batch_size,
        progress=False,
    )
    store = ResultsStore(tmp_path / "results")
    planner = Runner(spec, store, registry)
    groups = [[j] for j in planner.plan()]
    log: list = []
    launcher = in_process_launcher(registry, store.root, log)
    return run_packed(execute_groups, spec, str(store.root), groups, devices, memory, launcher), store, log


def test_out_of_memory_job_retried_alone_with_smaller_batch_and_recorded(tmp_path):
    memory = FakeMemory({0: 80_000, 1: 80_000})
    summary, store, log = run_greedy(tmp_path, 2, 8, ("alpha", "beta"), ["cuda:0", "cuda:1"], memory)
    assert sorted(memory.asked) == [0, 1]
    assert summary.failed == [] and summary.done == 2
    assert sorted(b for _, b, _ in log) == [2, 2, 4, 4, 8, 8]  # 8 -> 4 -> 2, per category
    for rec in store.iter_records():
        assert rec["status"] == "ok"
        assert any("retried alone" in n and "batch size 2" in n and "batch size 4" in n for n in rec["notes"])


def test_out_of_memory_at_batch_one_stays_failed(tmp_path):
    summary, _, log = run_greedy(tmp_path, 0, 2, ("alpha",), ["cuda:0"], FakeMemory({0: 1e6}))
    assert [b for _, b, _ in log] == [2, 1]
    assert len(summary.failed) == 1 and "out of memory" in summary.failed[0]


def test_nvidia_smi_reads_free_memory_without_cuda(monkeypatch):
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="81234\n")

    monkeypatch.setattr(gpu_schedule.subprocess, "run", fake_run)
    assert gpu_schedule.NvidiaSmi().free_mb(3) == 81234.0
    assert calls[0][:2] == ["nvidia-smi", "--id=3"]

    def missing(cmd, **kw):
        raise FileNotFoundError(2, "No such file or directory", "nvidia-smi")

    monkeypatch.setattr(gpu_schedule.subprocess, "run", missing)
    with pytest.raises(AdbenchError, match="cannot read free memory of GPU 0 with nvidia-smi"):
        gpu_schedule.NvidiaSmi().free_mb(0)


def test_local_executor_packs_gpus(monkeypatch):
    from adbench import executors

    seen = []

    def fake(worker, spec, root, groups, devices):
        seen.append(devices)
        return RunSummary()

    monkeypatch.setattr(gpu_schedule, "run_packed", fake)
    executors.run_local(
        execute_groups,
        RunSpec(methods=["m"], devices=["0", "1"], executor="local"),
        "store",
        [],
        RunSummary(),
    )
    assert seen == [["cuda:0", "cuda:1"]]


def test_default_launcher_runs_groups_in_spawned_workers(plan_env, tmp_path, monkeypatch):
    """The real worker pool (spawned processes, here pinned to the CPU) gives the serial records."""
    from .test_executors import _records, _spec

    monkeypatch.setattr(gpu_schedule, "MAX_PER_DEVICE", 1)  # one spawned worker: a faster test

    spec = _spec(plan_env)
    serial = ResultsStore(tmp_path / "serial")
    Runner(spec, serial).run()
    store = ResultsStore(tmp_path / "packed")
    planner = Runner(spec, store)
    groups = [[j] for j in planner.plan()]
    summary = run_packed(execute_groups, spec, str(store.root), groups, ["cpu"], FakeMemory({0: 1e9}))
    assert summary.done == len(groups) == 6 and not summary.failed
    assert _records(store) == _records(serial)
