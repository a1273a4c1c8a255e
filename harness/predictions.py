"""The predictions file format (``predictions/<key>.npz``), owned by the results store: image scores
and labels, sample ids and anomaly types, and pixel maps and masks, packed without pickles.

Maps are stored as float16 when every value fits, else float32. Maps and masks of one size are
stacked (N, H, W); of several sizes (``--eval-size original``) they are flat pixel arrays plus
``shapes`` (N, 2). :func:`pack` writes that layout and :func:`unpack` reverses it, so readers
(``adbench rescore``, report figures) get one (H, W) array per image whichever layout was stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Arrays every predictions file holds (the runner writes them; rescore and reports read them).
PREDICTION_KEYS = frozenset({"scores", "labels", "maps", "masks", "ids"})

Pixels = np.ndarray | list[np.ndarray]


@dataclass
class StoredPredictions:
    """One job's predictions as read back: maps and masks stacked, or a list when sizes differ."""

    scores: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    anomaly_types: np.ndarray | None
    maps: Pixels | None  #: float32; None when the method produced none
    masks: Pixels | None  #: uint8; None when the dataset has none


def compact_maps(maps: np.ndarray) -> np.ndarray:
    """float16 copy of the maps when every value fits (|x| < 60000), else float32."""
    if maps.size and np.isfinite(maps).all() and np.abs(maps).max() < 6e4:
        return maps.astype(np.float16)
    return maps.astype(np.float32)


def unpack_ragged(flat: np.ndarray, shapes: np.ndarray) -> list[np.ndarray]:
    """Per-image arrays from flat pixels and their (N, 2) shapes."""
    ends = np.cumsum([int(h) * int(w) for h, w in shapes])
    return [p.reshape(int(h), int(w)) for p, (h, w) in zip(np.split(flat, ends[:-1]), shapes)]


def pack_pixels(maps: Pixels | None, masks: Pixels | None) -> dict[str, np.ndarray]:
    """Store arrays for maps and masks: stacked (N, H, W) when all images share a size, else flat
    pixel arrays plus ``shapes`` (N, 2) (no pickled object arrays; ``unpack_ragged`` reverses it)."""
    out = {"maps": np.zeros((0,), np.float16), "masks": np.zeros((0,), np.uint8)}
    if not (isinstance(maps, list) or isinstance(masks, list)):
        if maps is not None:
            out["maps"] = compact_maps(maps)
        if masks is not None:
            out["masks"] = masks.astype(np.uint8)
        return out
    if maps is not None:
        out["maps"] = compact_maps(np.concatenate([m.ravel() for m in maps]))
    if masks is not None:
        out["masks"] = np.concatenate([m.ravel() for m in masks]).astype(np.uint8)
    out["shapes"] = np.array([m.shape for m in (masks if masks is not None else maps)], dtype=np.int64)
    return out


def round_as_stored(maps: list[np.ndarray]) -> Pixels:
    """The maps as they will read back (float16 rounding when it fits), so scores computed now equal
    scores recomputed from the file: one stacked array when all sizes agree, else a list."""
    if len({a.shape for a in maps}) <= 1:
        stacked = np.stack(maps) if maps else np.zeros((0, 0, 0), np.float32)
        return compact_maps(stacked).astype(np.float32)
    flat = compact_maps(np.concatenate([a.ravel() for a in maps])).astype(np.float32)
    return unpack_ragged(flat, np.array([a.shape for a in maps]))


def pack(
    *,
    scores: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    anomaly_types: np.ndarray,
    maps: Pixels | None,
    masks: Pixels | None,
) -> dict[str, np.ndarray]:
    """The arrays of one predictions file."""
    return {
        "scores": scores.astype(np.float32),
        "labels": labels,
        "ids": ids,
        "anomaly_types": anomaly_types,
        **pack_pixels(maps, masks),
    }


def inconsistent_lengths(arrays: dict[str, np.ndarray]) -> str | None:
    """Why a predictions file's per-image arrays disagree on the number of images (None: they agree)."""
    n = len(arrays["labels"])
    counts = {k: len(arrays[k]) for k in ("scores", "ids", "anomaly_types", "shapes") if k in arrays}
    for k in ("maps", "masks"):  # stacked (N, H, W); flat pixels when ragged ("shapes" holds N then)
        if k in arrays and arrays[k].ndim == 3:
            counts[k] = len(arrays[k])
    bad = {k: c for k, c in counts.items() if c != n}
    if bad:
        return f"arrays of different lengths ({n} labels; {', '.join(f'{c} {k}' for k, c in bad.items())})"
    return None


def unpack(arrays: dict[str, np.ndarray]) -> StoredPredictions:
    """A predictions file's arrays as per-image maps and masks (ragged layouts unpacked)."""
    maps = arrays["maps"].astype(np.float32) if arrays["maps"].size else None
    masks = arrays["masks"] if arrays["masks"].size else None
    if "shapes" in arrays:  # per-image sizes (--eval-size original)
        masks = unpack_ragged(masks, arrays["shapes"]) if masks is not None else None
        maps = unpack_ragged(maps, arrays["shapes"]) if maps is not None else None
    return StoredPredictions(
        scores=arrays["scores"],
        labels=arrays["labels"],
        ids=arrays["ids"],
        anomaly_types=arrays.get("anomaly_types"),
        maps=maps,
        masks=masks,
    )
