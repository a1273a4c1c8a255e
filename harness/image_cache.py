"""Decoded-image cache: each image's resized pixels, so the next method on the same data decodes nothing.

An entry is the array :func:`adbench.image_io.resized_rgb` returns (uint8 for 8-bit files), saved as
``.npy`` under ``<adbench home>/image-cache`` and keyed by the file's content digest (the cached
BLAKE2b of :mod:`adbench.content_hash`, which the dataset fingerprint already computes), the size and
the interpolation: a rewritten file gets a new key, and the same file under two paths shares one.
Writes are atomic (temporary file + ``os.replace``), reads refresh the entry's mtime, and
:meth:`ImageCache.trim` deletes the least recently used entries beyond the size cap
(``$ADBENCH_IMAGE_CACHE_GB``, default 20). Numbers are identical with and without it (tested).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from .image_io import resized_rgb
from .paths import adbench_home

#: The interpolation :func:`resized_rgb` uses, part of every key.
INTERPOLATION = "bicubic"
#: Bumped when the stored array changes meaning (so old entries are never served).
FORMAT = 1
DEFAULT_MAX_GB = 20.0


def default_max_bytes() -> int:
    """The size cap: ``$ADBENCH_IMAGE_CACHE_GB`` gigabytes, default 20."""
    return int(float(os.environ.get("ADBENCH_IMAGE_CACHE_GB") or DEFAULT_MAX_GB) * 1e9)


class ImageCache:
    """Resized images on disk keyed by (content digest, size, interpolation), LRU-trimmed to a cap."""

    def __init__(self, directory: str | Path | None = None, max_bytes: int | None = None) -> None:
        self.directory = Path(directory) if directory else adbench_home() / "image-cache"
        self.max_bytes = default_max_bytes() if max_bytes is None else int(max_bytes)
        self.hits = self.misses = 0
        self._lock = threading.Lock()

    def entry(self, digest: str, size: int) -> Path:
        """Where the entry of one file's digest at one size lives (256 sub-folders by digest prefix)."""
        return self.directory / digest[:2] / f"{digest}-{size}-{INTERPOLATION}-v{FORMAT}.npy"

    def load(self, path: str | Path, digest: str, size: int) -> np.ndarray:
        """The resized pixels of ``path`` (content ``digest``): from the cache, else decoded and stored."""
        entry = self.entry(digest, size)
        try:
            arr = np.load(entry, allow_pickle=False)
        except (OSError, ValueError, EOFError):  # missing, or truncated by a crash elsewhere
            arr = None
        if arr is not None and arr.shape[:2] == (size, size):
            try:
                os.utime(entry)  # mark as recently used
            except OSError:
                pass  # a read-only cache still serves its entries
            self._count(hit=True)
            return arr
        arr = resized_rgb(path, size)
        self._count(hit=False)
        self._store(entry, arr)
        return arr

    def _count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def _store(self, entry: Path, arr: np.ndarray) -> None:
        """Atomic write; a full disk or read-only home only costs a decode next time."""
        tmp = entry.with_name(f".{entry.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
            os.replace(tmp, entry)
        except OSError:
            tmp.unlink(missing_ok=True)

    def trim(self) -> int:
        """Delete least recently used entries until the cache fits its cap; returns the bytes freed."""
        entries = []
        for sub in self.directory.glob("??"):
            for e in os.scandir(sub):
                if e.name.endswith(".npy"):
                    try:
                        st = e.stat()
                    except OSError:
                        continue
                    entries.append((st.st_mtime_ns, st.st_size, e.path))
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _, size, path in sorted(entries):
            if total - freed <= self.max_bytes:
                break
            try:
                os.unlink(path)
                freed += size
            except OSError:
                pass  # another process evicted it first
        return freed


_enabled = True
_custom: ImageCache | None = None  # set by configure(directory=...)
_default: ImageCache | None = None  # the one under the current $ADBENCH_HOME


def configure(
    enabled: bool = True, directory: str | Path | None = None, max_bytes: int | None = None
) -> None:
    """Turn the process-wide cache on or off (``adbench run --no-image-cache``) or move/cap it."""
    global _enabled, _custom, _default
    _enabled, _default = enabled, None  # counters start again
    _custom = ImageCache(directory, max_bytes) if directory or max_bytes is not None else None


def active() -> ImageCache | None:
    """The process-wide cache (under the current ``$ADBENCH_HOME``), or None when switched off."""
    global _default
    if not _enabled:
        return None
    if _custom is not None:
        return _custom
    if _default is None or _default.directory != adbench_home() / "image-cache":
        _default = ImageCache()
    return _default
