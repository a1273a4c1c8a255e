"""The input pipeline: test images decoded and resized in worker threads, a few batches ahead of the model.

``image_batches`` yields a split's images batch by batch, in order, while the next ``PREFETCH_BATCHES``
batches decode in a thread pool (Pillow releases the GIL while it decodes and resizes); on CUDA each
batch is stacked into pinned memory and copied with ``non_blocking``. At most
``(PREFETCH_BATCHES + 1) * batch_size`` decoded images are held. Pixels come from the decoded-image
cache (:mod:`adbench.image_cache`) when it is on, and are the same numbers either way.

Threads rather than ``torch.utils.data.DataLoader`` worker processes: THREAD_VS_DATALOADER below.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import lazy_loader as lazy
import numpy as np

from . import image_cache
from .content_hash import file_digests
from .image_io import resized_rgb, to_float_rgb

torch = lazy.load("torch")  # `adbench list` stays torch-free

T = TypeVar("T")
R = TypeVar("R")

#: Batches decoded ahead of the one the model is running on.
PREFETCH_BATCHES = 2
# Measured with benchmarks/bench_pipeline.py (64 generated 1 MP PNGs to 518 px, 2 shared cores):
# THREAD_VS_DATALOADER = "thread pool 2 workers: X img/s; DataLoader 2 worker processes: Y img/s"
THREAD_VS_DATALOADER = ""


def decode_workers() -> int:
    """Decode threads: ``$ADBENCH_DECODE_WORKERS``, else the usable cores (2 to 8)."""
    env = os.environ.get("ADBENCH_DECODE_WORKERS")
    if env:
        return max(1, int(env))
    return max(2, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))


def _digests(paths: Sequence[Path], cache: image_cache.ImageCache | None) -> dict[Path, str]:
    """Content digests (cached by stat) for the cache's keys; none when the cache is off."""
    if cache is None:
        return {}
    try:
        return file_digests(paths)
    except OSError:  # a missing file: decoded uncached, so its read error names it
        return {}


def _decode(path: Path, digest: str | None, size: int, cache: image_cache.ImageCache | None) -> np.ndarray:
    """One image as float32 (3, size, size) in [0, 1], from the cache when it is on."""
    arr = cache.load(path, digest, size) if cache is not None and digest else resized_rgb(path, size)
    return np.ascontiguousarray(to_float_rgb(arr).transpose(2, 0, 1))


class _Decoder:
    """Decodes one split's images in a thread pool; a window bounds how many are held decoded."""

    def __init__(self, paths: Sequence[str | Path], size: int, workers: int | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.size = int(size)
        self.cache = image_cache.active()
        self.digests = _digests(self.paths, self.cache)
        self.misses = self.cache.misses if self.cache is not None else 0
        self.pool = ThreadPoolExecutor(workers or decode_workers(), thread_name_prefix="adbench-decode")

    def submit(self, i: int) -> Future:
        p = self.paths[i]
        return self.pool.submit(_decode, p, self.digests.get(p), self.size, self.cache)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.cache is not None and self.cache.misses != self.misses:
            self.cache.trim()  # something was written: keep the cache under its cap


def _stack(arrays: list[np.ndarray], device: Any) -> Any:
    """(N, 3, H, W) float tensor on ``device``; via pinned memory and a non-blocking copy on CUDA."""
    cuda = device.type == "cuda"
    out = torch.empty((len(arrays), *arrays[0].shape), dtype=torch.float32, pin_memory=cuda)
    torch.stack([torch.from_numpy(a) for a in arrays], out=out)
    return out.to(device, non_blocking=True) if cuda else out.to(device)


def image_batches(
    paths: Sequence[str | Path],
    size: int,
    batch_size: int,
    device: Any = None,
    prefetch: int = PREFETCH_BATCHES,
    workers: int | None = None,
) -> Iterator[Any]:
    """The images at ``paths`` as (B, 3, size, size) float tensors on ``device``, in order, decoded
    ``prefetch`` batches ahead in worker threads."""
    device = torch.device(device or "cpu")
    decoder = _Decoder(paths, size, workers)
    window = (prefetch + 1) * batch_size
    pending: deque[Future] = deque()
    submitted = 0
    try:
        for start in range(0, len(decoder.paths), batch_size):
            while submitted < len(decoder.paths) and len(pending) < window:
                pending.append(decoder.submit(submitted))
                submitted += 1
            n = min(batch_size, len(decoder.paths) - start)
            yield _stack([pending.popleft().result() for _ in range(n)], device)
    finally:
        decoder.close()


def load_all(paths: Sequence[str | Path], size: int, workers: int | None = None) -> Any:
    """Every image at ``paths`` as one (N, 3, size, size) CPU tensor, decoded in parallel (batch
    zero-shot, which needs its whole split, and few-shot references)."""
    if not paths:
        return torch.empty(0, 3, size, size)
    decoder = _Decoder(paths, size, workers)
    try:
        return _stack(
            [f.result() for f in [decoder.submit(i) for i in range(len(paths))]], torch.device("cpu")
        )
    finally:
        decoder.close()


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]`` in the decode thread pool (masks), in order; errors re-raised."""
    if len(items) < 2:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers or decode_workers(), thread_name_prefix="adbench-decode") as pool:
        return list(pool.map(fn, items))
