"""Seconds per training epoch of dma_sap with and without the frozen-feature cache (tiny backbones, CPU).

The tiny backbones are randomly initialised: the figures measure the engine, not any real model.
Usage: python benchmarks/bench_feature_cache.py [--images 64] [--size 112] [--epochs 3] [--variant D]
"""

from __future__ import annotations

import argparse
import time

import torch

from adbench.plugins.dma_sap import DMASAP, DMASAPConfig
from adbench.training import train


def make(size: int, epochs: int, variant: str) -> DMASAP:
    cfg = DMASAPConfig(
        clip_backbone="tiny-clip",
        dino_backbone="tiny-dinov2",
        image_size=size,
        epochs=epochs,
        variant=variant,
    )
    method = DMASAP(cfg, "cpu")
    torch.manual_seed(0)
    method.setup()
    return method


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--variant", default="D")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.images, 3, args.size, args.size, generator=g)
    masks = (torch.rand(args.images, args.size, args.size, generator=g) > 0.9).to(torch.uint8)
    labels = (torch.arange(args.images) % 2).long()
    print(
        f"dma_sap variant {args.variant}, tiny-clip + tiny-dinov2 (random weights), {args.images} images "
        f"at {args.size} px, batch 8, {args.epochs} epochs, CPU threads {torch.get_num_threads()}"
    )
    rows = {}
    for use_cache in (True, False):
        method = make(args.size, args.epochs, args.variant)
        t0 = time.perf_counter()
        log = train(method, None, masks, labels, images=images, use_cache=use_cache, progress=False)
        total = time.perf_counter() - t0
        per_epoch = sum(log.epoch_seconds) / len(log.epoch_seconds)
        rows[use_cache] = (log, total, per_epoch)
        label = "with cache" if use_cache else "no cache  "
        print(
            f"{label}: {per_epoch:.3f} s/epoch, feature pass {log.feature_seconds:.3f} s (once), "
            f"total {total:.3f} s, losses {[round(x, 4) for x in log.losses]}"
        )
    (c_log, c_total, c_epoch), (_, n_total, n_epoch) = rows[True], rows[False]
    print(
        f"speed-up per epoch: {n_epoch / c_epoch:.2f}x; whole fit ({args.epochs} epochs): {n_total / c_total:.2f}x"
    )
    print(f"paper setting (10 epochs): {(10 * n_epoch) / (c_log.feature_seconds + 10 * c_epoch):.2f}x")


if __name__ == "__main__":
    main()
