"""Images/s of the input pipeline (cold, cached), a DataLoader alternative and a full job with a null
method, against a plain single-thread decode loop of the same files in the same run; prints ratios.

Usage: python benchmarks/bench_pipeline.py [--images 48] [--size 518] [--batch-size 8] [--workers N]
Generated 1000x1000 RGB PNGs (smooth gradients + noise, ~1 MP as an industrial photo) in a temporary
folder; ADBENCH_HOME points at a temporary folder too, so the cache starts cold and nothing is kept.
This is the harness's own overhead: the figure to compare with a method's ms/image. Targets (issue 24):
pipeline >= 1.8x the plain loop on 2 cores; cached >= 10x cold; null-method job within 1.2x of the
pipeline alone (job images/s >= pipeline images/s / 1.2).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def write_pngs(folder: Path, n: int, side: int = 1000) -> list[Path]:
    """``n`` distinct 1 MP PNGs: a gradient per channel plus mild noise (compresses like a photo)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:side, :side].astype(np.float32) / side
    paths = []
    for i in range(n):
        base = np.stack([xx * (100 + i), yy * 150, (xx + yy) * 60], axis=-1)
        img = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"{i:04d}.png"
        Image.fromarray(img).save(path, compress_level=6)
        paths.append(path)
    return paths


def rate(n: int, fn, repeat: int = 2, before=None) -> float:
    """Images/s, best of ``repeat`` passes (the machine is shared: the best pass is the least disturbed);
    ``before`` runs untimed before each pass (e.g. emptying the cache for a cold pass)."""
    best = 0.0
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def plain_loop(paths: list[Path], size: int) -> None:
    """The harness before the pipeline: one image after another on the main thread."""
    from adbench.data import load_image

    for p in paths:
        load_image(p, size)


def pipeline(paths: list[Path], size: int, batch: int, workers: int | None) -> None:
    from adbench.input_pipeline import image_batches

    for _ in image_batches(paths, size, batch, workers=workers):
        pass


def dataloader(paths: list[Path], size: int, batch: int, workers: int) -> None:
    """The same decode in torch DataLoader worker processes (the alternative measured for the choice)."""
    from torch.utils.data import DataLoader

    for _ in DataLoader(_Files(paths, size), batch_size=batch, num_workers=workers):
        pass


@dataclass
class _Files(torch.utils.data.Dataset):
    paths: list[Path]
    size: int

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from adbench.data import load_image

        return load_image(self.paths[i], self.size)


def null_job(root: Path, store_dir: Path, size: int, batch: int, cache: bool) -> None:
    """One full `adbench run` job (plan, decode, predict, metrics, store) of a null method."""
    from adbench import hookimpl
    from adbench.datasets.folder import Folder
    from adbench.methods import Context, Method, MethodConfig, Prediction
    from adbench.registry import Registry
    from adbench.runner import Runner, RunSpec
    from adbench.store import ResultsStore

    class BenchFolder(Folder):
        name = "bench_folder"

    class Null(Method):
        name = "null"
        description = "returns zeros (harness overhead)"
        config_cls = MethodConfig
        supports = frozenset({"zero_shot"})
        default_protocol = "zero_shot"
        backbone_fields = ()

        def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
            return Prediction(scores=torch.zeros(len(images)), maps=None)

    class Plugin:
        @hookimpl
        def adbench_methods(self):
            return [Null]

        @hookimpl
        def adbench_datasets(self):
            return [BenchFolder]

    spec = RunSpec(
        methods=["null"],
        datasets=["bench_folder"],
        roots={"bench_folder": str(root)},
        overrides={"null": {"image_size": [str(size)]}},
        device="cpu",
        batch_size=batch,
        image_cache=cache,
        progress=False,
        force=True,
    )
    summary = Runner(spec, ResultsStore(store_dir), Registry(autoload=False, plugins=[Plugin()])).run()
    assert summary.done == 1, summary.failed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=518)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="decode threads (default: cores, 2..8)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="adbench-bench-") as tmp:
        os.environ["ADBENCH_HOME"] = str(Path(tmp) / "home")
        from adbench import image_cache
        from adbench.content_hash import file_digests
        from adbench.input_pipeline import decode_workers

        root = Path(tmp) / "data"
        paths = write_pngs(root / "cat" / "normal", args.images - args.images // 4)
        paths += write_pngs(root / "cat" / "abnormal", args.images // 4)
        file_digests(paths)  # content digests are cached by stat; a first run computes them once
        n, size, batch = len(paths), args.size, args.batch_size
        workers = args.workers or decode_workers()
        print(
            f"{n} PNGs of 1000x1000 -> {size} px, batch {batch}, {workers} decode threads, {os.cpu_count()} cores"
        )
        plain = rate(n, lambda: plain_loop(paths, size))
        image_cache.configure(enabled=False)
        piped = rate(n, lambda: pipeline(paths, size, batch, workers))
        loader = rate(n, lambda: dataloader(paths, size, batch, workers))
        image_cache.configure()
        cache_dir = image_cache.active().directory
        empty = lambda: shutil.rmtree(cache_dir, ignore_errors=True)  # noqa: E731
        cold = rate(n, lambda: pipeline(paths, size, batch, workers), before=empty)
        cached = rate(n, lambda: pipeline(paths, size, batch, workers))
        job_cold = rate(n, lambda: null_job(root, Path(tmp) / "r1", size, batch, cache=False))
        job_cached = rate(n, lambda: null_job(root, Path(tmp) / "r2", size, batch, cache=True))
        rows = [
            ("plain decode loop (1 thread)", plain, plain),
            ("pipeline, no cache", piped, plain),
            (f"DataLoader, {workers} worker processes", loader, plain),
            ("pipeline, cold cache (decode + write)", cold, plain),
            ("pipeline, cached", cached, plain),
            ("null-method job, no cache", job_cold, plain),
            ("null-method job, cached", job_cached, plain),
        ]
        for name, value, base in rows:
            print(f"{name:40s} {value:8.1f} images/s   {value / base:6.2f}x plain")
        print(f"pipeline / plain loop            {piped / plain:6.2f}x   (target >= 1.8 on 2 cores)")
        print(f"cached / cold pipeline           {cached / cold:6.2f}x   (target >= 10)")
        print(f"pipeline / null job (no cache)   {piped / job_cold:6.2f}x   (target <= 1.2)")
        print(f"pipeline / null job (cached)     {cached / job_cached:6.2f}x")
        print(f"thread pool / DataLoader         {piped / loader:6.2f}x")


if __name__ == "__main__":
    main()
