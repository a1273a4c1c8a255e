"""Seconds per vip2clip training epoch: frozen-feature cache on/off, ICA on/off (tiny CLIP, CPU).

The visual features are cached once per fit; the text side is not cacheable (learnable prompts, and
with ICA one prompt pair per image through the frozen text tower each step). This prints what the
cache saves and what ICA's per-image text pass costs. The tiny backbone is randomly initialised: the
figures measure the engine, not any real model.
Usage: python benchmarks/bench_vip2clip.py [--images 64] [--size 112] [--epochs 3] [--backbone tiny-clip]
"""

from __future__ import annotations

import torch
from _training import random_batch, timed_fit, training_parser

from adbench.plugins.vip2clip import ViP2CLIP, ViP2CLIPConfig


def make(backbone: str, size: int, epochs: int, ica: bool) -> ViP2CLIP:
    cfg = ViP2CLIPConfig(clip_backbone=backbone, image_size=size, epochs=epochs, ica=ica)
    method = ViP2CLIP(cfg, "cuda" if torch.cuda.is_available() else "cpu")
    method.pretrained_backbones = False  # timing only: full-size backbones built randomly initialised
    torch.manual_seed(0)
    method.setup()
    return method


def main() -> None:
    ap = training_parser(__doc__)
    ap.add_argument("--backbone", default="tiny-clip")
    args = ap.parse_args()
    batch = random_batch(args)
    device = "cuda" if torch.cuda.is_available() else f"CPU threads {torch.get_num_threads()}"
    print(
        f"vip2clip on {args.backbone} (random weights), {args.images} images at {args.size} px, "
        f"batch 8, {args.epochs} epochs, {device}"
    )
    per_epoch = {}
    for ica in (True, False):
        for use_cache in (True, False):
            method = make(args.backbone, args.size, args.epochs, ica)
            log, total, per_epoch[ica, use_cache] = timed_fit(method, batch, use_cache)
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
