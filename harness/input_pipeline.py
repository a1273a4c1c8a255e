"""The input pipeline: test images decoded and resized in worker threads, a few batches ahead of the model.

``image_batches`` yields a split's images batch by batch, in order, while the next ``PREFETCH_BATCHES``
batches decode in a thread pool (Pillow releases the GIL while it decodes and resizes); on CUDA each
batch is stacked into pinned memory and copied with ``non_blocking``. At most
``(PREFETCH_BATCHES + 1) * batch_size`` decoded images are held. Pixels come from the decoded-image
cache (:mod:`adbench.image_cache`) when it is on, and are the same numbers either way.

Threads rather than ``torch.utils.data.DataLoader`` worker processes: see THREAD_VS_DATALOADER below.
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
# THREAD_VS_DATALOADER: threads, because Pillow releases the GIL in decode and resize, and threads
# share the cache, need no pickling of decoded arrays between processes and start in microseconds.
# Measured with benchmarks/bench_pipeline.py (generated 1 MP PNGs to 518 px, batch 8, 2 cores
# shared with ~8 busy processes, best of 2 passes): plain loop 7.6 / 9.8 images/s, thread pool (2)
# 12.4 / 17.0, DataLoader with 2 worker processes 10.0 / 16.4 (32 / 48 images): threads 1.04-1.24x.


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


def _decode_into(
    out: np.ndarray, path: Path, digest: str | None, size: int, cache: image_cache.ImageCache | None
) -> None:
    """Decode one image (from the cache when it is on) straight into its (3, size, size) float32 slot
    of the batch: one pass instead of convert + transpose + stack (measured 9.4 -> ~3 ms/image cached)."""
    arr = cache.load(path, digest, size) if cache is not None and digest else resized_rgb(path, size)
    if arr.dtype == np.uint8:  # == to_float_rgb: uint8 / 255 in float32, the same rounding
        np.divide(arr.transpose(2, 0, 1), np.float32(255.0), out=out)
    else:
        out[...] = to_float_rgb(arr).transpose(2, 0, 1)


class _Decoder:
    """Decodes one split's images in a thread pool into preallocated (pinned on CUDA) batch tensors."""

    def __init__(self, paths: Sequence[str | Path], size: int, device: Any, workers: int | None) -> None:
        self.paths = [Path(p) for p in paths]
        self.size = int(size)
        self.device = torch.device(device or "cpu")
        self.cache = image_cache.active()
        self.digests = _digests(self.paths, self.cache)
        self.misses = self.cache.misses if self.cache is not None else 0
        self.pool = ThreadPoolExecutor(workers or decode_workers(), thread_name_prefix="adbench-decode")

    def submit(self, start: int, stop: int) -> tuple[Any, list[Future]]:
        """Start decoding images ``start:stop`` into a new batch tensor."""
        cuda = self.device.type == "cuda"
        batch = torch.empty((stop - start, 3, self.size, self.size), dtype=torch.float32, pin_memory=cuda)
        slots = batch.numpy()
        futures = [
            self.pool.submit(_decode_into, slots[i - start], p, self.digests.get(p), self.size, self.cache)
            for i, p in enumerate(self.paths[start:stop], start)
        ]
        return batch, futures

    def collect(self, batch: Any, futures: list[Future]) -> Any:
        """The batch once decoded (errors re-raised), on the device (non-blocking copy on CUDA)."""
        for f in futures:
            f.result()
        cuda = self.device.type == "cuda"
        return batch.to(self.device, non_blocking=True) if cuda else batch.to(self.device)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.cache is not None and self.cache.misses != self.misses:
            self.cache.trim()  # something was written: keep the cache under its cap


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
    decoder = _Decoder(paths, size, device, workers)
    starts = list(range(0, len(decoder.paths), batch_size))
    pending: deque[tuple[Any, list[Future]]] = deque()
    try:
        for k in range(len(starts)):
            for j in range(k + len(pending), min(k + prefetch + 1, len(starts))):
                pending.append(decoder.submit(starts[j], min(starts[j] + batch_size, len(decoder.paths))))
            yield decoder.collect(*pending.popleft())
    finally:
        decoder.close()


def load_all(paths: Sequence[str | Path], size: int, workers: int | None = None) -> Any:
    """Every image at ``paths`` as one (N, 3, size, size) CPU tensor, decoded in parallel (batch
    zero-shot, which needs its whole split, and few-shot references)."""
    if not paths:
        return torch.empty(0, 3, size, size)
    decoder = _Decoder(paths, size, "cpu", workers)
    try:
        return decoder.collect(*decoder.submit(0, len(decoder.paths)))
    finally:
        decoder.close()


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]`` in the decode thread pool (masks), in order; errors re-raised."""
    if len(items) < 2:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers or decode_workers(), thread_name_prefix="adbench-decode") as pool:
        return list(pool.map(fn, items))
