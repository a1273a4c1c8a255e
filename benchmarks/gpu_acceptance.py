"""GPU acceptance run: every method, full size, random weights, one generated category, through the runner.

Usage (GPU machine, ~8 minutes on one H100):   python benchmarks/gpu_acceptance.py
CPU smoke form (CI, tiny backbones):           python benchmarks/gpu_acceptance.py --device cpu --tiny
Options: --methods a,b  --precisions bf16,fp32  --images N (test images; default 32, --tiny 2)

Each method is built at its paper configuration with randomly initialised backbones (nothing is
downloaded; every record says ``random_weights``), trained methods with ``epochs=0`` (inference is
what is measured), and run by the real runner (input pipeline, autocast, metrics, store) on one
generated category of 518 px images with masks, once per precision. Prints per method and precision:
images/s, ms/image, peak GPU memory, trainable parameters, and the paper's figure beside them
(``reports/data/published_efficiency.csv``). Exits 1 if any method fails. Scores are meaningless
(random weights); only speed, memory and "it runs on CUDA" are checked.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 518
TINY_SIZE = 112  # the tiny demo backbones' native size


def generate(root: Path, n_test: int, size: int = SIZE) -> None:
    """MVTec layout: categories ``target`` (measured) and ``aux`` (what trained methods fit on),
    grey textures, anomalies with a bright square and its mask."""
    rng = np.random.default_rng(0)
    for cat, n in (("target", n_test), ("aux", 2)):
        n_anom = max(1, n // 2)
        for split, count in (("train/good", 2), ("test/good", n - n_anom), ("test/square", n_anom)):
            folder = root / cat / split
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                img = np.clip(128 + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
                if split == "test/square":
                    y, x = rng.integers(0, size - size // 6, 2)
                    img[y : y + size // 6, x : x + size // 6] = 250
                    mask = np.zeros((size, size), np.uint8)
                    mask[y : y + size // 6, x : x + size // 6] = 255
                    mdir = root / cat / "ground_truth" / "square"
                    mdir.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask).save(mdir / f"{i:03d}_mask.png")
                Image.fromarray(img).save(folder / f"{i:03d}.png")


@contextmanager
def random_weights() -> Iterator[None]:
    """Every backbone randomly initialised and keyed ``random`` (records say so): no weights needed."""
    from adbench.backbones import weights

    original = weights.resolve_weights
    weights.resolve_weights = lambda spec, explicit=None, pretrained=True: weights.WeightSource(
        "random", weights.RANDOM
    )
    try:
        yield
    finally:
        weights.resolve_weights = original


def registry():
    """The installed plugins plus the generated dataset (a ``folder`` dataset under its own name)."""
    from adbench import hookimpl
    from adbench.datasets.folder import Folder
    from adbench.registry import Registry

    class Acceptance(Folder):
        name = "acceptance"
        title = "generated acceptance images"

    class Plugin:
        @hookimpl
        def adbench_datasets(self):
            return [Acceptance]

    return Registry(plugins=[Plugin()])


def run_one(reg, name: str, precision: str, args: argparse.Namespace, root: Path, results: Path) -> dict:
    """One method at one precision through the runner; its record's figures (or its error)."""
    from adbench.runner import Runner, RunSpec
    from adbench.store import ResultsStore

    cls = reg.method(name)
    overrides: dict[str, list[str]] = {}
    if args.tiny:
        overrides = {f: [b] for f, b in cls.demo_backbones.items()} | {"image_size": [str(TINY_SIZE)]}
    if cls.trained:
        overrides["epochs"] = ["0"]
    spec = RunSpec(
        methods=[name],
        datasets=["acceptance"],
        roots={"acceptance": str(root)},
        categories=["target"],
        shots=(1,),
        seeds=(0,),
        overrides={name: overrides},
        device=args.device,
        precision=precision,
        batch_size=args.batch_size,
        train_on=["acceptance"],
        progress=False,
        force=True,
    )
    store = ResultsStore(results / f"{name}-{precision}")
    summary = Runner(spec, store, reg).run()
    records = list(store.iter_records())
    if summary.failed or not records or records[0]["status"] != "ok":
        error = summary.failed[0] if summary.failed else (records[0].get("error") if records else "no record")
        return {"method": name, "precision": precision, "error": str(error).splitlines()[0]}
    rec = records[0]
    timing = rec["timing"]
    ips = timing.get("images_per_s") or 0.0
    return {
        "method": name,
        "title": rec["method_title"],
        "precision": rec["precision"],
        "images_per_s": ips,
        "ms_per_image": 1000.0 / ips if ips else float("nan"),
        "peak_mb": timing.get("peak_mem_mb"),
        "peak_kind": timing.get("peak_mem_kind"),
        "trainable_m": (rec.get("params_trainable") or 0) / 1e6,
        "total_m": (rec.get("params_total") or 0) / 1e6,
        "random_weights": rec["random_weights"],
    }


def paper_figures(titles: set[str]) -> dict[str, str]:
    """Method title -> the paper's 'ms/image, GPU memory, trainable M (GPU, px)' where one is published."""
    from adbench.reports.published import load_efficiency

    out = {}
    for row in load_efficiency().itertuples():
        if row.method in titles:
            parts = [f"{row.infer_ms_per_image:g} ms"]
            if row.gpu_mem_gb == row.gpu_mem_gb:  # not NaN
                parts.append(f"{row.gpu_mem_gb:g} GB")
            if row.trainable_params_m == row.trainable_params_m:
                parts.append(f"{row.trainable_params_m:g} M trainable")
            out[row.method] = f"{', '.join(parts)} ({row.gpu}, {row.input_px} px)"
    return out


def print_table(rows: list[dict], device: str) -> None:
    papers = paper_figures({r.get("title", "") for r in rows})
    kinds = {r.get("peak_kind") for r in rows if "error" not in r}
    print(
        f"device: {device}; random weights; trained methods at epochs=0; peak memory: {', '.join(map(str, kinds))}"
    )
    head = f"{'method':12s} {'prec':14s} {'img/s':>8s} {'ms/img':>8s} {'peak MB':>9s} {'train M':>8s}  paper"
    print(head)
    for r in rows:
        if "error" in r:
            print(f"{r['method']:12s} {r['precision']:14s} FAILED: {r['error']}")
            continue
        print(
            f"{r['method']:12s} {r['precision']:14s} {r['images_per_s']:8.1f} {r['ms_per_image']:8.1f} "
            f"{r['peak_mb'] or 0:9.0f} {r['trainable_m']:8.2f}  {papers.get(r['title'], '')}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny demo backbones at 112 px (CPU smoke test)")
    parser.add_argument("--methods", default=None, help="comma-separated (default: every registered method)")
    parser.add_argument("--precisions", default=None, help="default bf16,fp32 (fp32 only on the CPU)")
    parser.add_argument("--images", type=int, default=None, help="test images (default 32; --tiny 2)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    n_images = args.images or (2 if args.tiny else 32)
    precisions = (args.precisions or ("fp32" if args.device == "cpu" else "bf16,fp32")).split(",")
    with tempfile.TemporaryDirectory(prefix="adbench-acceptance-") as tmp:
        os.environ.setdefault("ADBENCH_HOME", str(Path(tmp) / "home"))
        os.environ.setdefault("ADBENCH_OFFLINE", "1")
        reg = registry()
        names = args.methods.split(",") if args.methods else reg.names("method")
        root = Path(tmp) / "data"
        generate(root, n_images, TINY_SIZE if args.tiny else SIZE)
        rows = []
        with random_weights():
            for name in names:
                for precision in precisions:
                    rows.append(run_one(reg, name, precision, args, root, Path(tmp) / "results"))
                    print(f"  {name} {precision}: {'FAILED' if 'error' in rows[-1] else 'ok'}", flush=True)
        print_table(rows, args.device)
    failed = [r for r in rows if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
