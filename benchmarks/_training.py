"""What the training benchmarks share: their options, a random batch, and one timed fit.

Imported as a sibling module by ``python benchmarks/bench_*.py`` (the script's folder is on sys.path).
"""

from __future__ import annotations

import argparse
import time

import torch

from adbench.methods import Method
from adbench.training import TrainLog, train


def training_parser(doc: str) -> argparse.ArgumentParser:
    """The options every training benchmark takes (images, size, epochs, threads)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    return ap


def random_batch(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded random images, sparse masks and alternating labels (applies ``--threads`` first)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.images, 3, args.size, args.size, generator=g)
    masks = (torch.rand(args.images, args.size, args.size, generator=g) > 0.9).to(torch.uint8)
    labels = (torch.arange(args.images) % 2).long()
    return images, masks, labels


def timed_fit(
    method: Method, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], use_cache: bool
) -> tuple[TrainLog, float, float]:
    """Train once: the fit log, the total seconds and the mean seconds per epoch."""
    images, masks, labels = batch
    t0 = time.perf_counter()
    log = train(method, None, masks, labels, images=images, use_cache=use_cache, progress=False)
    total = time.perf_counter() - t0
    return log, total, sum(log.epoch_seconds) / len(log.epoch_seconds)
