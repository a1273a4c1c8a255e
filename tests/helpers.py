"""Test helpers: a tiny on-disk dataset with planted defects and registries built by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from adbench import hookimpl
from adbench.datasets.folder import Folder
from adbench.registry import Registry

EXAMPLE_PLUGIN_DIR = Path(__file__).resolve().parents[1] / "docs" / "example_plugin"


def write_tiny_dataset(root: Path, categories=("alpha", "beta"), n_normal=4, n_anom=4, size=32) -> None:
    """MVTec-like folders: noisy grey normals; anomalies carry a bright square and its mask."""
    rng = np.random.default_rng(0)
    for cat in categories:
        for split, count in (("train/good", 3), ("test/good", n_normal), ("test/square", n_anom)):
            d = root / cat / split
            d.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                img = (128 + rng.normal(0, 8, (size, size, 3))).clip(0, 255).astype(np.uint8)
                if split == "test/square":
                    y, x = rng.integers(4, size - 12, 2)
                    img[y : y + 8, x : x + 8] = 255
                    mask = np.zeros((size, size), np.uint8)
                    mask[y : y + 8, x : x + 8] = 255
                    mdir = root / cat / "ground_truth" / "square"
                    mdir.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask).save(mdir / f"{i:03d}_mask.png")
                Image.fromarray(img).save(d / f"{i:03d}.png")


class TinyDataset(Folder):
    """The ``folder`` plugin under a test name: it reads :func:`write_tiny_dataset`'s MVTec layout."""

    name = "tiny"
    description = "test fixture"


class TinyPlugin:
    """Registers TinyDataset."""

    @hookimpl
    def adbench_datasets(self):
        return [TinyDataset]


def example_plugin_module():
    """The README's example plugin, imported from docs/example_plugin."""
    if str(EXAMPLE_PLUGIN_DIR) not in sys.path:
        sys.path.insert(0, str(EXAMPLE_PLUGIN_DIR))
    import adbench_median

    return adbench_median


def tiny_registry(*extra) -> Registry:
    return Registry(autoload=False, plugins=[TinyPlugin(), example_plugin_module(), *extra])


def invoke_main(monkeypatch, capsys, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Run ``adbench ARGS`` in-process through the console entry point: (exit status, stdout, stderr)."""
    import io

    from adbench.cli import main

    monkeypatch.setattr(sys, "argv", ["adbench", *args])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
