"""Executors: run a plan's job groups here, on one worker per GPU (or N CPU workers), or on a Ray cluster.

A plan is a list of plain :class:`~adbench.jobs.JobSpec` records grouped so that jobs sharing a model
instance (a trained fit, a set-up backbone, a loaded test split) run in one worker, one after another.
Each executor receives the worker function (``adbench.runner.execute_groups``: a worker process rebuilds
the registry, looks the plugins up by name, executes its groups and writes records straight into the
shared results store), so no harness module is imported back from here. Per-job claim files keep two
workers (or two shards, or two machines on a shared filesystem) from computing a job twice. ``--shard I/N`` takes every N-th
group of the full plan (sorted by group id), so N independent processes cover it exactly once.

No home-made scheduler: the local executor is :class:`concurrent.futures.ProcessPoolExecutor` (spawned
processes, so CUDA works), the cluster executor is Ray (``pip install "adbench-zsad[ray]"``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import AdbenchError
from .worker_process import init_worker as _init_worker
from .worker_process import run_in_worker as _run_in_worker

if TYPE_CHECKING:
    from .jobs import JobSpec, RunSpec
    from .summary import RunSummary

#: ``worker(run_spec, store_root, groups, device)``: executes job groups and returns their summary.
Worker = Callable[["RunSpec", str, "list[list[JobSpec]]", "str | None"], "RunSummary"]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``I/N`` -> (I, N) with 0 <= I < N; one-line error otherwise."""
    if text is None:
        return None
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = -1
    if not sep or n < 1 or not 0 <= i < n:
        raise AdbenchError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. --shard 0/4")
    return i, n


def run_serial(
    worker: Worker, run_spec: RunSpec, store_root: str, groups: list[list[JobSpec]], total: RunSummary
) -> RunSummary:
    """Every group in this process, one after another (the worker is the driver's own runner)."""
    total.merge(worker(run_spec, store_root, groups, None))
    return total


# --- local: one process per GPU, or N CPU processes ---------------------------------------------------
def worker_devices(devices: Sequence[str] | None, workers: int | None) -> list[str]:
    """One entry per worker: ``--devices 0,1`` -> cuda:0, cuda:1; else ``--workers N`` CPU workers."""
    if devices:
        out = [d if d.startswith(("cuda", "cpu")) else f"cuda:{d}" for d in devices]
        bad = [d for d in out if not re.fullmatch(r"cpu|cuda(:\d+)?", d)]
        if bad:
            raise AdbenchError(
                f"--devices {','.join(devices)}: {bad[0]!r} is not a GPU index (e.g. --devices 0,1)"
            )
        return out
    if not workers or workers < 1:
        raise AdbenchError("--executor local: give --devices 0,1,... or --workers N (N >= 1)")
    return ["cpu"] * workers


def run_local(
    worker: Worker, run_spec: RunSpec, store_root: str, groups: list[list[JobSpec]], total: RunSummary
) -> RunSummary:
    """Groups spread over one spawned process per device; a crashed worker fails only its groups
    (the pool is replaced and unfinished groups resubmitted once), Ctrl-C stops the workers.
    GPUs (``--devices 0,1``) are packed by memory instead (:mod:`adbench.gpu_schedule`)."""
    devices = worker_devices(run_spec.devices, run_spec.workers)
    if all(d.startswith("cuda") for d in devices):
        from .gpu_schedule import run_packed

        total.merge(run_packed(worker, run_spec, store_root, groups, devices))
        return total
    from .worker_pool import run_pool

    total.merge(
        run_pool(
            run_spec, store_root, groups, devices, functools.partial(_run_in_worker, worker), _init_worker
        )
    )
    return total


# --- ray ------------------------------------------------------------------------------------------------
def run_ray(
    worker: Worker, run_spec: RunSpec, store_root: str, groups: list[list[JobSpec]], total: RunSummary
) -> RunSummary:
    """One Ray task per job group, asking for the GPUs its method declares when the cluster has GPUs;
    workers write to the shared store, the driver only gathers their summaries."""
    try:
        import ray
    except ImportError:
        raise AdbenchError('--executor ray needs Ray: pip install "adbench-zsad[ray]"') from None
    from .ray_cluster import absolute_paths, connect

    run_spec, store_root = absolute_paths(run_spec, store_root)  # tasks run in the head's folder
    started = not ray.is_initialized()
    if started:
        connect(ray, run_spec.address)
    try:
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        task = ray.remote(worker)
        refs = []
        for group in groups:
            gpus = group[0].gpus if has_gpu else 0
            device = "cuda" if gpus else "cpu"
            refs.append(task.options(num_gpus=gpus, num_cpus=1).remote(run_spec, store_root, [group], device))
        for ref, group in zip(refs, groups, strict=True):
            try:
                total.merge(ray.get(ref))
            except ray.exceptions.RayError as exc:
                cause = getattr(exc, "cause", None) or exc  # a task's own exception, not Ray's wrapper
                first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
                total.failed += [f"{s.label}: Ray task failed ({first})" for s in group]
        return total
    finally:
        if started:
            ray.shutdown()


@dataclass(frozen=True)
class Executor:
    """One way to run a plan: ``run(worker, run_spec, store_root, groups, summary)``."""

    run: Callable[..., RunSummary]
    #: The driver's own runner executes (progress bar, observers told per job); else workers do.
    in_process: bool = False


#: ``--executor`` name -> how it runs (the one list of executor choices).
EXECUTORS: dict[str, Executor] = {
    "serial": Executor(run_serial, in_process=True),
    "local": Executor(run_local),
    "ray": Executor(run_ray),
}
