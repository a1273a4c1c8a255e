"""Batch zero-shot scoring cost against category size: time and peak memory of the shared
nearest-neighbour core (``adbench.patch_nn``) as MuSc and PatchEAD call it.

Random unit features of the right shape isolate the scoring core from the backbone: 448 px with
patch 14 gives 32 x 32 = 1024 patches per image; ``--dim`` 1024 is CLIP ViT-L (MuSc), 768 DINOv2
ViT-B (PatchEAD). Each category size runs in its own process so its peak RSS is its own. A query
costs O(N) (its patches against every other image), a category O(N^2): the table shows both. On a
CPU only ``--queries`` queries are scored and the category time is extrapolated (MuSc repeats the
pass for each of its 4 layers x 3 aggregation degrees) from the CPU time of one query, which a
machine shared with other jobs disturbs less than wall time. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(n: int, args: argparse.Namespace) -> dict:
    """Score ``args.queries`` queries of an ``n``-image category with MuSc's MSM and PatchEAD's rule."""
    from adbench.patch_nn import per_reference_distances
    from adbench.plugins.musc import interval_mean
    from adbench.plugins.patchead import aggregate_references

    torch.manual_seed(0)
    p = (args.size // args.patch) ** 2
    feats = torch.randn(n, p, args.dim, device=args.device)
    feats /= feats.norm(dim=-1, keepdim=True)  # in place: one copy of the features
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() / 2**20 if cuda else _rss_mib()
    timings, cpu = {}, {}
    for rule in ("musc", "patchead"):
        c0 = time.process_time()
        t0 = time.perf_counter()
        for i in range(args.queries):
            if rule == "musc":
                d = per_reference_distances(
                    feats[i], feats, exclude=i, metric="euclidean", max_elements=args.max_chunk_elements
                )
                interval_mean(d, 0.0, 0.3)
            else:
                d = per_reference_distances(feats[i], feats, exclude=i, max_elements=args.max_chunk_elements)
                aggregate_references(d, max(1, round(0.3 * (n - 1))), "closest")
        if cuda:
            torch.cuda.synchronize()
        timings[rule] = (time.perf_counter() - t0) / args.queries
        cpu[rule] = (time.process_time() - c0) / args.queries
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mib()
    return {
        "images": n,
        "patches": p,
        "features_mib": feats.numel() * 4 / 2**20,
        "before_mib": base,
        "peak_mib": peak,
        "musc_query_s": timings["musc"],
        "patchead_query_s": timings["patchead"],
        "musc_query_cpu_s": cpu["musc"],
        "patchead_query_cpu_s": cpu["patchead"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", default="100,200,500", help="category sizes")
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--patch", type=int, default=14)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--queries", type=int, default=1, help="queries scored per size (the rest extrapolated)")
    ap.add_argument("--max-chunk-elements", type=int, default=2**25)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args)))
        return
    block = args.max_chunk_elements * 4 / 2**20
    print(
        f"{args.size} px, patch {args.patch}, dim {args.dim}, float32 on {args.device}, torch threads "
        f"{torch.get_num_threads()}; similarity block <= {block:.0f} MiB; {args.queries} queries timed per size"
    )
    mem = "peak CUDA alloc" if args.device.startswith("cuda") else "peak RSS"
    print(
        f"| images | features MiB | {mem} MiB (before scoring) | MSM s/query wall (CPU) | MuSc category "
        f"(12 passes, from CPU s) | PatchEAD s/query wall (CPU) | PatchEAD category (from CPU s) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    passthrough = [
        f"--size={args.size}",
        f"--patch={args.patch}",
        f"--dim={args.dim}",
        f"--queries={args.queries}",
        f"--max-chunk-elements={args.max_chunk_elements}",
        f"--device={args.device}",
    ]
    for n in (int(x) for x in args.images.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(n), *passthrough],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        musc_min = r["musc_query_cpu_s"] * n * 12 / 60
        pe_min = r["patchead_query_cpu_s"] * n / 60
        print(
            f"| {n} | {r['features_mib']:.0f} | {r['peak_mib']:.0f} ({r['before_mib']:.0f}) | "
            f"{r['musc_query_s']:.2f} ({r['musc_query_cpu_s']:.2f}) | {musc_min:.1f} min | "
            f"{r['patchead_query_s']:.2f} ({r['patchead_query_cpu_s']:.2f}) | {pe_min:.1f} min |"
        )


if __name__ == "__main__":
    main()
