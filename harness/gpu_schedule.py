"""GPU-aware scheduling for ``--executor local --devices ...``: job groups packed onto GPUs by peak memory.

Each group's peak memory is estimated first from its method's parameter count and input size, then
replaced by what jobs of the same method and config measured (``timing.peak_mem_mb`` of records, this
run's or earlier ones). A group starts on the GPU where it fits best (most-loaded GPU that still has
room), so several small groups share one GPU; one that does not fit anywhere waits, and one larger than
an empty GPU runs alone. A job that runs out of memory is retried alone on its GPU with half the batch
size (down to 1), and its record notes the retry.

Free memory is read with ``nvidia-smi`` (:class:`NvidiaSmi`), never by opening a CUDA context in the
driver (which would pin ~300-500 MB on every GPU and fork badly). Tests pass a fake source.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .config import stable_hash, to_dict
from .errors import AdbenchError

if TYPE_CHECKING:
    from .jobs import JobSpec, RunSpec
    from .store import ResultsStore
    from .summary import RunSummary

#: Parameters assumed before anything was measured: a CLIP ViT-L/14 (vision + text towers).
DEFAULT_PARAMS = 430_000_000
#: Activation bytes per input byte of a batch at inference: a rough first guess (ViT-L/14 at 336 px,
#: batch 16, bf16: ~0.5 GB of activations for 21.7 MB of fp32 input, doubled for methods that keep
#: several layers' patch tokens); replaced by the measured peak after the first job of a method.
ACTIVATION_FACTOR = 50
#: Memory a job gets beyond its estimate, and the share of free memory left untouched.
ESTIMATE_MARGIN = 1.2
FREE_MEMORY_USED = 0.92
#: Most groups running at once on one GPU (CPU threads and host memory are shared too).
MAX_PER_DEVICE = 4


class DeviceMemory(Protocol):
    """Where free GPU memory comes from (nvidia-smi here, a fake in tests)."""

    def free_mb(self, index: int) -> float: ...


class NvidiaSmi:
    """Free memory per GPU from ``nvidia-smi --query-gpu`` (NVML underneath; no CUDA context here)."""

    def free_mb(self, index: int) -> float:
        try:
            out = subprocess.run(
                ["nvidia-smi", f"--id={index}", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            return float(out.strip().splitlines()[0])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
            raise AdbenchError(
                f"--devices: cannot read free memory of GPU {index} with nvidia-smi ({exc})"
            ) from None


def first_estimate_mb(params: int, image_size: int, batch_size: int) -> float:
    """Peak memory before any measurement: fp32 weights plus activations proportional to the batch input."""
    weights = params * 4
    batch_input = batch_size * 3 * image_size * image_size * 4
    return (weights + ACTIVATION_FACTOR * batch_input) / 2**20


def method_ident(spec: JobSpec) -> str:
    """Jobs whose peak memory is alike: same method and config (the input size is part of it)."""
    return stable_hash([spec.method, to_dict(spec.config)])


class MemoryEstimates:
    """Peak memory per method config: measured where any job ran (max over them), else a first estimate."""

    def __init__(self, batch_size: int, store: ResultsStore | None = None) -> None:
        self.batch_size = batch_size
        self.measured: dict[str, float] = {}
        self.params: dict[str, int] = {}
        for rec in store.iter_records() if store is not None else ():
            self.learn(rec)

    def learn(self, rec: dict[str, Any]) -> None:
        """Take a record's measured peak (CUDA allocations only) and parameter count."""
        ident = stable_hash([rec.get("method"), rec.get("method_config")])
        timing = rec.get("timing") or {}
        if rec.get("status") == "ok" and timing.get("peak_mem_kind") == "cuda_max_allocated":
            peak = float(timing.get("peak_mem_mb") or 0.0)
            self.measured[ident] = max(self.measured.get(ident, 0.0), peak)
        if rec.get("params_total"):
            self.params[ident] = int(rec["params_total"])

    def group_mb(self, group: Sequence[JobSpec], batch_size: int | None = None) -> float:
        """Estimated peak (MiB, with margin) of the largest job in a group."""
        return max(self.job_mb(s, batch_size) for s in group)

    def job_mb(self, spec: JobSpec, batch_size: int | None = None) -> float:
        ident = method_ident(spec)
        if ident in self.measured:
            return self.measured[ident] * ESTIMATE_MARGIN
        size = int(spec.config.image_size or 224)
        params = self.params.get(ident, DEFAULT_PARAMS)
        return first_estimate_mb(params, size, batch_size or self.batch_size) * ESTIMATE_MARGIN


@dataclass
class Task:
    """A group of jobs to run on one GPU; ``alone`` keeps every other group off that GPU meanwhile."""

    group: list[JobSpec]
    mb: float
    batch_size: int
    alone: bool = False
    retry_of: int | None = None  # the batch size that ran out of memory


@dataclass
class Packer:
    """Which GPU a task may start on now, given the free memory and what is already running."""

    capacity: dict[str, float]
    max_per_device: int = MAX_PER_DEVICE
    running: dict[str, list[Task]] = field(default_factory=dict)

    def place(self, task: Task) -> str | None:
        """The device to start ``task`` on now (best fit: least room left after it), or None to wait."""
        fits = []
        for dev, cap in self.capacity.items():
            here = self.running.get(dev, [])
            if here and (task.alone or any(t.alone for t in here) or len(here) >= self.max_per_device):
                continue
            used = sum(t.mb for t in here)
            if not here or used + task.mb <= cap:  # an empty GPU takes anything: it runs alone then
                fits.append((cap - used - task.mb, dev))
        return min(fits)[1] if fits else None

    def start(self, task: Task, dev: str) -> None:
        self.running.setdefault(dev, []).append(task)

    def finish(self, task: Task, dev: str) -> None:
        self.running[dev].remove(task)


Launch = Callable[[Task, str], Future]
Finished = Callable[[Task, str, Any], list[Task]]


def schedule(tasks: list[Task], packer: Packer, launch: Launch, finished: Finished) -> None:
    """Start tasks as they fit (largest first), wait for one to end, hand it to ``finished``, which
    returns follow-up tasks (retries); until nothing is left."""
    pending = sorted(tasks, key=lambda t: -t.mb)
    running: dict[Future, tuple[Task, str]] = {}
    while pending or running:
        for task in list(pending):
            dev = packer.place(task)
            if dev is not None:
                pending.remove(task)
                packer.start(task, dev)
                running[launch(task, dev)] = (task, dev)
        if not running:
            raise RuntimeError("a task cannot be placed on an idle machine")  # Packer takes all when idle
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            task, dev = running.pop(future)
            packer.finish(task, dev)
            pending += finished(task, dev, future)
        pending.sort(key=lambda t: -t.mb)


def is_out_of_memory(rec: dict[str, Any]) -> bool:
    """A failed record whose error is CUDA (or a fake device's) running out of memory."""
    error = str(rec.get("error") or "")
    return rec.get("status") == "failed" and ("OutOfMemoryError" in error or "out of memory" in error)


def device_index(dev: str) -> int:
    return int(dev.split(":", 1)[1]) if ":" in dev else 0


def run_packed(
    worker: Any,
    run_spec: RunSpec,
    store_root: str,
    groups: list[list[JobSpec]],
    devices: list[str],
    memory: DeviceMemory | None = None,
    launcher: Callable[[str], Callable[[RunSpec, list[JobSpec]], Future]] | None = None,
) -> RunSummary:
    """Run groups on the GPUs in ``devices`` packed by memory, retrying out-of-memory jobs alone with a
    smaller batch. ``launcher(dev)`` gives a submit function for one device (default: spawned
    processes pinned to it, each running ``worker``); ``memory`` reads free memory (default: nvidia-smi)."""
    from .store import ResultsStore
    from .summary import RunSummary

    store = ResultsStore(store_root)
    memory = memory or NvidiaSmi()
    estimates = MemoryEstimates(run_spec.batch_size, store)
    packer = Packer({d: memory.free_mb(device_index(d)) * FREE_MEMORY_USED for d in dict.fromkeys(devices)})
    pools: dict[str, Callable[[RunSpec, list[JobSpec]], Future]] = {}
    total = RunSummary()

    def launch(task: Task, dev: str) -> Future:
        if dev not in pools:
            pools[dev] = (launcher or _process_launcher(worker, store_root, len(packer.capacity)))(dev)
        force = run_spec.force or task.retry_of is not None
        spec = dataclasses.replace(run_spec, batch_size=task.batch_size, force=force)
        return pools[dev](spec, task.group)

    def finished(task: Task, dev: str, future: Future) -> list[Task]:
        try:
            summary = future.result()
        except Exception as exc:  # a dead worker: what reached the store counts, the rest failed
            summary = RunSummary()
            summary.failed += [f"{s.label}: worker failed ({type(exc).__name__}: {exc})" for s in task.group]
        records = {s.key: _read(store, s.key) for s in task.group}
        for rec in records.values():
            if rec is not None:
                estimates.learn(rec)
        if task.retry_of is not None:
            _note_retry(store, task, dev, records)
        oom = [s for s in task.group if records[s.key] is not None and is_out_of_memory(records[s.key])]
        if not oom or task.batch_size <= 1:
            total.merge(summary)
            return []
        labels = {s.label for s in oom}
        summary.failed = [line for line in summary.failed if line.split(": ", 1)[0] not in labels]
        total.merge(summary)
        smaller = max(1, task.batch_size // 2)
        return [Task(oom, estimates.group_mb(oom, smaller), smaller, alone=True, retry_of=task.batch_size)]

    tasks = [Task(g, estimates.group_mb(g), run_spec.batch_size) for g in groups]
    try:
        schedule(tasks, packer, launch, finished)
    finally:
        for submit in pools.values():
            getattr(submit, "shutdown", lambda: None)()
    return total


def _read(store: ResultsStore, key: str) -> dict[str, Any] | None:
    try:
        return store.read_record(key)
    except AdbenchError:
        return None


def _note_retry(store: ResultsStore, task: Task, dev: str, records: dict[str, Any]) -> None:
    """Say in each retried job's record that it ran again, alone, with a smaller batch."""
    note = (
        f"retried alone on {dev} with batch size {task.batch_size} after running out of GPU memory "
        f"at batch size {task.retry_of}"
    )
    for spec in task.group:
        rec = records.get(spec.key)
        if rec is not None and note not in rec.get("notes", []):
            rec["notes"] = [*rec.get("notes", []), note]
            store.write_record(rec)


class _Device:
    """Stands in for executors' device queue: every worker process of a GPU's pool takes that GPU."""

    def __init__(self, dev: str) -> None:
        self.dev = dev

    def get(self) -> str:
        return self.dev


def _run_group_on_gpu(worker: Any, run_spec: RunSpec, store_root: str, group: list[JobSpec]) -> RunSummary:
    """Worker side: run one group, then hand the allocator's cached blocks back to the GPU, so the
    memory the driver packed by is really free for the next group (in this or another process)."""
    import gc

    import torch

    from .worker_process import run_in_worker

    try:
        return run_in_worker(worker, run_spec, store_root, [group])
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _process_launcher(
    worker: Any, store_root: str, n_devices: int
) -> Callable[[str], Callable[[RunSpec, list[JobSpec]], Future]]:
    """Per device, a pool of spawned worker processes pinned to it (CUDA works after spawn); a pool
    broken by a dead worker is replaced at the next submission."""
    from .worker_process import init_worker

    threads = max(1, (os.cpu_count() or 1) // (n_devices * MAX_PER_DEVICE))

    def for_device(dev: str) -> Callable[[RunSpec, list[JobSpec]], Future]:
        ctx = multiprocessing.get_context("spawn")
        holder: list[ProcessPoolExecutor] = []

        def new_pool() -> ProcessPoolExecutor:
            return ProcessPoolExecutor(
                MAX_PER_DEVICE, mp_context=ctx, initializer=init_worker, initargs=(_Device(dev), threads)
            )

        def submit(spec: RunSpec, group: list[JobSpec]) -> Future:
            if not holder:
                holder.append(new_pool())
            try:
                return holder[0].submit(_run_group_on_gpu, worker, spec, store_root, group)
            except BrokenProcessPool:
                holder[0].shutdown(wait=False, cancel_futures=True)
                holder[0] = new_pool()
                return holder[0].submit(_run_group_on_gpu, worker, spec, store_root, group)

        submit.shutdown = lambda: holder and holder[0].shutdown()  # type: ignore[attr-defined]
        return submit

    return for_device
