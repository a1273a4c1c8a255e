"""Test images by sample id, for qualitative figures: the store keeps maps, not images."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .data import load_image
from .errors import AdbenchError
from .registry import Registry, get_registry


def image_loader(
    roots: dict[str, str], registry: Registry | None = None
) -> Callable[[str, str, Sequence[str], int], dict[str, np.ndarray]]:
    """A loader ``(dataset, category, ids, size) -> {id: HxWx3 uint8}`` through the dataset plugins."""
    registry = registry or get_registry()

    def load(dataset: str, category: str, ids: Sequence[str], size: int) -> dict[str, np.ndarray]:
        try:
            ds = registry.dataset(dataset)(roots.get(dataset))
            samples = {s.id: s for s in ds.load_category(category).test}
        except AdbenchError as exc:
            raise AdbenchError(
                f"figures: cannot read the {dataset} images ({exc}); give --root {dataset}=PATH"
            ) from exc
        return {
            i: (load_image(samples[i].image_path, size).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            for i in ids
            if i in samples
        }

    return load
