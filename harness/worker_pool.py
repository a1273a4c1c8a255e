"""The local executor's process pool, made to survive faults: a dead worker, Ctrl-C, a dead driver.

:class:`concurrent.futures.ProcessPoolExecutor` breaks as a whole when one worker dies (every pending
future fails, the healthy workers' groups too) and, on Ctrl-C, waits for every queued group before
returning. Here a broken pool is replaced and its unfinished groups resubmitted once (jobs already in
the store are skipped by their workers), Ctrl-C cancels what is queued, stops the workers and frees
their claims, and each worker exits on its own when its driver dies (``kill -9``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .jobs import JobSpec, RunSpec
    from .summary import RunSummary

#: A group whose worker died is run again this many times before its jobs count as failed.
RESUBMITS = 1
#: Seconds between a worker's checks that its driver is still alive.
WATCH_S = 1.0


def watch_driver(driver_pid: int, every_s: float = WATCH_S) -> None:
    """In a worker: exit at once when the driver process is gone (re-parented: ppid changes)."""

    def watch() -> None:
        while True:
            if os.getppid() != driver_pid:
                os._exit(1)  # no cleanup to run: the driver is gone and stale claims expire by pid
            time.sleep(every_s)

    threading.Thread(target=watch, name="adbench-driver-watch", daemon=True).start()


def worker_setup(driver_pid: int, init: Callable[..., None], *init_args: Any) -> None:
    """Worker initializer: Ctrl-C is the driver's to handle (it stops the workers and frees their
    claims), the driver is watched, then the executor's own set-up (device, threads) runs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_driver(driver_pid)
    init(*init_args)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel queued groups and terminate the workers now (3.11 has no public call for this)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.terminate()
    for proc in processes:
        proc.join(timeout=10)


def _unfinished(group: list[JobSpec], store_root: str) -> list[JobSpec]:
    from .store import ResultsStore

    store = ResultsStore(store_root)
    return [s for s in group if not store.has(s.key)]


def run_pool(
    run_spec: RunSpec,
    store_root: str,
    groups: list[list[JobSpec]],
    devices: list[str],
    target: Callable[..., RunSummary],
    init: Callable[..., None],
) -> RunSummary:
    """Run ``target(run_spec, store_root, [group])`` per group on one spawned worker per device."""
    from .run_options import check_workers
    from .store import ResultsStore
    from .summary import RunSummary

    check_workers(devices)
    total = RunSummary()
    ctx = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    pending, tries = list(groups), 0
    while pending:
        queue = ctx.Queue()
        for d in devices:
            queue.put(d)
        pool = ProcessPoolExecutor(
            max_workers=len(devices),
            mp_context=ctx,
            initializer=worker_setup,
            initargs=(os.getpid(), init, queue, threads),
        )
        broken: list[list[JobSpec]] = []
        try:
            futures: dict[Future, list[JobSpec]] = {
                pool.submit(target, run_spec, store_root, [g]): g for g in pending
            }
            for future in as_completed(futures):
                try:
                    total.merge(future.result())
                except BrokenProcessPool:  # a worker died: every unfinished group of this pool lands here
                    broken.append(futures[future])
        except BaseException:  # Ctrl-C (or any driver error): stop now, free the workers' claims
            _stop(pool)
            ResultsStore(store_root).sweep_stale_claims()
            raise
        pool.shutdown(wait=True)
        pending = []
        for group in broken:
            left = _unfinished(group, store_root)
            done = [s for s in group if s not in left]
            total.done += len(done)
            total.written += [s.key for s in done]
            if not left:
                continue
            if tries < RESUBMITS:
                pending.append(left)
            else:
                total.failed += [
                    f"{s.label}: worker process died before finishing; rerun to resume" for s in left
                ]
        tries += 1
    return total
