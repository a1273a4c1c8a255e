"""Per-job measurements for the efficiency table: peak memory of one job and parameter counts."""

from __future__ import annotations

import resource
from pathlib import Path

import torch

from .methods import Method

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset_peak_memory(device: torch.device) -> str:
    """Start a per-job peak-memory window; returns what :func:`peak_memory_mb` will measure.

    CUDA: the allocator's peak is reset. CPU: Linux resets the process's peak resident set size
    (VmHWM) when "5" is written to /proc/self/clear_refs; no library exposes this, hence by hand.
    Where that is impossible the figure is the process's lifetime peak (it includes earlier jobs).
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_max_allocated"
    try:
        _CLEAR_REFS.write_text("5")
        return "job_max_rss"
    except OSError:
        return "process_max_rss"


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA allocation since the reset, or the peak resident set size on the CPU (MiB)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def parameter_counts(method: Method) -> tuple[int, int]:
    """(total, trainable) parameters of a set-up method: every ``nn.Module`` it holds, shared
    parameters counted once; trainable = the learnable module of a trained method, else 0."""
    seen: dict[int, int] = {}
    stack = list(vars(method).values())
    while stack:
        value = stack.pop()
        if isinstance(value, torch.nn.Module):
            seen.update({id(p): p.numel() for p in value.parameters()})
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif hasattr(value, "__dict__") and not isinstance(value, type | torch.Tensor):
            # backbone wrappers hold their nn.Module as an attribute
            stack.extend(v for v in vars(value).values() if isinstance(v, torch.nn.Module | list | dict))
    trainable = sum(p.numel() for p in method.learnable_module().parameters()) if method.trained else 0
    return sum(seen.values()), trainable
