"""Seconds to fingerprint a large folder dataset: first time (every file hashed) vs again (digest cache).

Writes ``--gb`` GB of random 1 MiB files in the ``folder`` layout (content is never decoded by the
fingerprint, so random bytes stand in for images), then times a bare directory walk with ``stat``,
the first fingerprint, and a second one over the unchanged files.
Usage: python benchmarks/bench_fingerprint.py [--gb 2] [--dir /tmp/adbench-bench-fp] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def write_dataset(root: Path, gb: float, file_mb: int = 1) -> int:
    n = int(gb * 1024 / file_mb)
    per_cat = n // 4
    for c in range(4):
        for split in ("train/good", "test/good"):
            (root / f"cat{c}" / split).mkdir(parents=True, exist_ok=True)
        for i in range(per_cat):
            split = "train/good" if i % 2 else "test/good"
            (root / f"cat{c}" / split / f"{i:05d}.png").write_bytes(os.urandom(file_mb << 20))
    return per_cat * 4


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="adbench-bench-fp-"))
    os.environ["ADBENCH_HOME"] = str(base / "home")  # a fresh digest cache
    from adbench.datasets.folder import Folder

    root = base / "data"
    n = write_dataset(root, args.gb)
    try:
        t = time.perf_counter()
        walked = sum(os.stat(p).st_size > 0 for p in root.rglob("*.png"))
        walk_s = time.perf_counter() - t
        t = time.perf_counter()
        ds = Folder(root)
        for name in ds.categories():
            ds.load_category(name)
        scan_s = time.perf_counter() - t
        t = time.perf_counter()
        first = Folder(root).fingerprint()
        first_s = time.perf_counter() - t
        t = time.perf_counter()
        second = Folder(root).fingerprint()
        second_s = time.perf_counter() - t
        assert first == second and walked == n
        print(f"{n} files, {args.gb:g} GB (page cache warm: the files were just written)")
        print(f"directory walk + stat:        {walk_s:7.3f} s")
        print(f"folder plugin scan (no hash): {scan_s:7.3f} s")
        print(f"fingerprint, first (hashing): {first_s:7.3f} s  ({args.gb * 1024 / first_s:.0f} MB/s)")
        print(f"fingerprint, again (cached):  {second_s:7.3f} s")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
