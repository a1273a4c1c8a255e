"""Seconds per vip2clip training epoch: frozen-feature cache on/off, ICA on/off (tiny CLIP, CPU).

The visual features are cached once per fit; the text side is not cacheable (learnable prompts, and
with ICA one prompt pair per image through the frozen text tower each step). This prints what the
cache saves and what ICA's per-image text pass costs. The tiny backbone is randomly initialised: the
figures measure the engine, not any real model.
Usage: python benchmarks/bench_vip2clip.py [--images 64] [--size 112] [--epochs 3] [--backbone tiny-clip]
"""

from __future__ import annotations

import argparse
import time

import torch

from adbench.plugins.vip2clip import ViP2CLIP, ViP2CLIPConfig
from adbench.training import train


def make(backbone: str, size: int, epochs: int, ica: bool) -> ViP2CLIP:
    cfg = ViP2CLIPConfig(clip_backbone=backbone, image_size=size, epochs=epochs, ica=ica)
    method = ViP2CLIP(cfg, "cuda" if torch.cuda.is_available() else "cpu")
    method.pretrained_backbones = False  # timing only: full-size backbones built randomly initialised
    torch.manual_seed(0)
    method.setup()
    return method


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--backbone", default="tiny-clip")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.images, 3, args.size, args.size, generator=g)
    masks = (torch.rand(args.images, args.size, args.size, generator=g) > 0.9).to(torch.uint8)
    labels = (torch.arange(args.images) % 2).long()
    device = "cuda" if torch.cuda.is_available() else f"CPU threads {torch.get_num_threads()}"
    print(
        f"vip2clip on {args.backbone} (random weights), {args.images} images at {args.size} px, "
        f"batch 8, {args.epochs} epochs, {device}"
    )
    per_epoch = {}
    for ica in (True, False):
        for use_cache in (True, False):
            method = make(args.backbone, args.size, args.epochs, ica)
            t0 = time.perf_counter()
            log = train(method, None, masks, labels, images=images, use_cache=use_cache, progress=False)
            total = time.perf_counter() - t0
            per_epoch[ica, use_cache] = sum(log.epoch_seconds) / len(log.epoch_seconds)
            print(
                f"ica={str(ica):5} cache={str(use_cache):5}: {per_epoch[ica, use_cache]:.3f} s/epoch, "
                f"feature pass {log.feature_seconds:.3f} s (once), total {total:.3f} s, "
                f"losses {[round(x, 4) for x in log.losses]}"
            )
    for ica in (True, False):
        print(f"ica={ica}: the cache speeds an epoch up {per_epoch[ica, False] / per_epoch[ica, True]:.2f}x")
    print(
        f"with the cache, ICA's per-image text pass costs {per_epoch[True, True] / per_epoch[False, True]:.2f}x "
        "the epoch time of static prompts"
    )


if __name__ == "__main__":
    main()
