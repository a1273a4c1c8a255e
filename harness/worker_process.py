"""What runs inside a spawned worker process: pin it to one device and a thread budget, then run
the worker function on its groups. Shared by the local pool and the GPU packer (no import circle)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .jobs import JobSpec, RunSpec
    from .summary import RunSummary

_WORKER_DEVICE: str | None = None


def init_worker(devices: Any, threads: int) -> None:
    """Pin this worker process to one device (taken from the shared queue) and a thread budget."""
    global _WORKER_DEVICE
    _WORKER_DEVICE = devices.get()
    if _WORKER_DEVICE.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = _WORKER_DEVICE.split(":", 1)[1]
        _WORKER_DEVICE = "cuda"
    import torch

    if "OMP_NUM_THREADS" not in os.environ:  # an explicit setting wins (and keeps numbers bit-identical)
        torch.set_num_threads(threads)


def run_in_worker(worker: Any, run_spec: RunSpec, store_root: str, groups: list[list[JobSpec]]) -> RunSummary:
    return worker(run_spec, store_root, groups, _WORKER_DEVICE)
