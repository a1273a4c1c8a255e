"""PatchEAD batch zero-shot scoring cost for a large category (no backbone: random unit features).

Default: 200 images at 448 px with DINOv2 ViT-B/14 geometry (32x32 = 1024 patches, 768 dims).
Scoring every query on a CPU takes long, so ``--queries`` scores a few and extrapolates; memory is
bounded by ``max_chunk_elements`` whatever the category size. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from adbench.patch_nn import per_reference_distances
from adbench.plugins.patchead import aggregate_references


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--patch", type=int, default=14)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=3, help="queries actually scored (the rest extrapolated)")
    ap.add_argument("--max-chunk-elements", type=int, default=2**25)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = ap.parse_args()

    grid = args.size // args.patch
    p = grid * grid
    dtype = getattr(torch, args.dtype)
    feats = F.normalize(torch.randn(args.images, p, args.dim), dim=-1).to(args.device, dtype)
    keep = round(0.3 * (args.images - 1))
    feature_mb = feats.numel() * feats.element_size() / 2**20
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(args.queries):
        dist = per_reference_distances(feats[i], feats, exclude=i, max_elements=args.max_chunk_elements)
        aggregate_references(dist, keep, "closest")
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB CUDA (features {feature_mb:.0f} MiB)"
    else:
        total = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak = (
            f"process peak RSS {total:.0f} MiB (before scoring {rss0:.0f} MiB; features {feature_mb:.0f} MiB)"
        )
    per_query = (time.perf_counter() - t0) / args.queries
    print(
        f"{args.images} images, {args.size} px, {p} patches x {args.dim} dims, {args.dtype} on {args.device}"
    )
    print(f"per query: {per_query:.2f} s -> whole category ~ {per_query * args.images / 60:.1f} min")
    print(f"similarity block <= {args.max_chunk_elements * 4 / 2**20:.0f} MiB; {peak}")


if __name__ == "__main__":
    main()
