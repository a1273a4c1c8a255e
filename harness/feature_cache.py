"""Frozen-feature cache: backbone features of the auxiliary images, computed once per fit.

The backbones of the trained methods are frozen, so the features a method taps from them do not
change between epochs. The cache computes them in one pass and serves batches by index: in memory
(the extraction dtype, so served features equal recomputed ones) or, past a size limit, as float16
``.npy`` memory maps in a temporary folder under the adbench cache (removed on close).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from .errors import AdbenchError
from .paths import cache_dir

#: Above this many bytes of features the cache goes to disk in float16.
DEFAULT_MEMORY_LIMIT = 4 * 2**30


class FeatureCache:
    """Features of ``n`` samples by name, each (n, ...); ``get(indices)`` returns a batch dict."""

    def __init__(self, tensors: dict[str, torch.Tensor | np.ndarray], directory: Path | None = None) -> None:
        sizes = {len(t) for t in tensors.values()}
        if len(sizes) > 1:
            raise AdbenchError(f"feature cache: features have different sample counts {sorted(sizes)}")
        self._tensors = tensors
        self.directory = directory
        self.n = sizes.pop() if sizes else 0

    @property
    def on_disk(self) -> bool:
        return self.directory is not None

    def __len__(self) -> int:
        return self.n

    def get(
        self, indices: torch.Tensor | Iterable[int], device: torch.device | str = "cpu"
    ) -> dict[str, torch.Tensor]:
        """The features of the samples at ``indices``, on ``device`` (disk entries come back as float32)."""
        idx = torch.as_tensor(
            list(indices) if not isinstance(indices, torch.Tensor) else indices, dtype=torch.long
        )
        out = {}
        for name, t in self._tensors.items():
            if isinstance(t, np.ndarray):
                # Sorted fancy indexing reads a memmap in one sweep; restore the requested order after.
                order = np.argsort(idx.numpy(), kind="stable")
                rows = torch.from_numpy(np.ascontiguousarray(t[idx.numpy()[order]])).float()
                batch = torch.empty_like(rows)
                batch[torch.from_numpy(order)] = rows
            else:
                batch = t[idx]
            out[name] = batch.to(device, non_blocking=True)
        return out

    def close(self) -> None:
        """Drop the features and delete the disk folder, if any."""
        self._tensors = {}
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def build(
        cls,
        extract: Callable[[torch.Tensor], dict[str, torch.Tensor]],
        batches: Iterable[torch.Tensor],
        n: int,
        *,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        directory: Path | None = None,
    ) -> FeatureCache:
        """Run ``extract`` (without grad) over image ``batches`` covering ``n`` samples in order.

        The first batch fixes the shapes; when ``n`` samples would exceed ``memory_limit`` bytes the
        features go to float16 memory maps under ``directory`` (default: a temporary folder in
        ``$ADBENCH_HOME/features``).
        """
        store: dict[str, torch.Tensor | np.ndarray] = {}
        folder: Path | None = None
        pos = 0
        with torch.no_grad():
            for images in batches:
                feats = extract(images)
                b = len(images)
                if not store:
                    per_sample = sum(v[0].numel() * v.element_size() for v in feats.values())
                    if per_sample * n > memory_limit:
                        base = directory or cache_dir("features")
                        folder = Path(tempfile.mkdtemp(prefix="fit-", dir=base))
                        for k, v in feats.items():
                            store[k] = np.lib.format.open_memmap(
                                folder / f"{k}.npy", mode="w+", dtype=np.float16, shape=(n, *v.shape[1:])
                            )
                    else:
                        for k, v in feats.items():
                            store[k] = torch.empty((n, *v.shape[1:]), dtype=v.dtype)
                for k, v in feats.items():
                    if k not in store or tuple(store[k].shape[1:]) != tuple(v.shape[1:]):
                        raise AdbenchError(f"feature cache: feature '{k}' changed shape between batches")
                    if isinstance(store[k], np.ndarray):
                        store[k][pos : pos + b] = v.float().cpu().numpy().astype(np.float16)
                    else:
                        store[k][pos : pos + b] = v.cpu()
                pos += b
        if pos != n:
            raise AdbenchError(f"feature cache: expected {n} samples, the batches gave {pos}")
        if folder is not None:
            for arr in store.values():
                arr.flush()
        return cls(store, folder)
