"""Print parameter counts and single-image forward times of every built-in backbone.

Models whose weights are not available here are built randomly initialised (``pretrained=False``):
the parameter counts are exact either way; the timings are of the architecture, not of any result.
Usage: ``python benchmarks/backbones.py [--device cuda] [--names clip-vitl14-336,dinov2-vitb14]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from adbench.backbones import build_backbone, clear_backbone_cache
from adbench.errors import WeightsNotFoundError
from adbench.registry import get_registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--names", default="", help="comma-separated backbone names (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    names = [n for n in args.names.split(",") if n] or get_registry().names("backbone")
    print(f"{'backbone':22} {'weights':34} {'params (M)':>10} {'size':>5} {'build s':>8} {'forward ms':>10}")
    for name in names:
        start = time.perf_counter()
        try:
            bb = build_backbone(name, device=device)
        except WeightsNotFoundError:
            bb = build_backbone(name, device=device, pretrained=False)
        built = time.perf_counter() - start
        params = sum(p.numel() for p in bb.parameters()) / 1e6
        size = bb.default_size
        x = torch.rand(1, 3, size, size, device=device)
        with torch.inference_mode():
            bb.forward_tokens(x, [-1])  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.repeats):
                bb.forward_tokens(x, [-1])
            if device.type == "cuda":
                torch.cuda.synchronize()
        ms = (time.perf_counter() - start) / args.repeats * 1000
        label = bb.weights if len(bb.weights) <= 34 else bb.weights[:31] + "..."
        print(f"{name:22} {label:34} {params:10.1f} {size:5d} {built:8.1f} {ms:10.1f}")
        del bb
        clear_backbone_cache()  # the build cache would otherwise keep every model in memory


if __name__ == "__main__":
    main()
