"""Decode images of any bit depth to float [0, 1] without silently blanking them.

Pillow's ``convert("RGB")`` clips 16-bit and 32-bit pixels to 255 (a 16-bit PNG becomes all white, a
float TIFF all black), so high-bit-depth modes are scaled here instead: integer types by their type's
range, float images by their own min..max. An image whose values span less than one 8-bit step after
scaling (a 16-bit container holding 8-bit values, a 32-bit TIFF using a sliver of its range) is refused
with one line naming the file: it would load as a blank image and give meaningless scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import AdbenchError

#: Exceptions Pillow raises on unreadable, truncated or oversized (decompression bomb) files.
PIL_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)

#: Modes Pillow stores with more than 8 bits per sample; everything else converts to RGB losslessly.
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def bit_depth(img: Image.Image) -> str:
    """Human-readable sample type of an opened image: '8-bit', '16-bit', '32-bit integer', '32-bit float'."""
    if img.mode.startswith("I;16"):
        return "16-bit"
    if img.mode == "I":
        return "32-bit integer"
    if img.mode == "F":
        return "32-bit float"
    if img.mode == "1":
        return "1-bit"
    return "8-bit"


def _type_range(img: Image.Image, arr: np.ndarray) -> tuple[float, float]:
    """(low, high) of the pixel type: uint16, int32 (signed unless a TIFF says unsigned), float by value."""
    if img.mode.startswith("I;16"):
        return 0.0, 65535.0
    if img.mode == "I":
        sample_format = getattr(img, "tag_v2", {}).get(339, 2) if hasattr(img, "tag_v2") else 2
        if isinstance(sample_format, tuple):
            sample_format = sample_format[0]
        return (0.0, 2.0**32 - 1) if sample_format == 1 else (-(2.0**31), 2.0**31 - 1)
    finite = arr[np.isfinite(arr)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def high_depth_to_float(img: Image.Image, path: str | Path) -> np.ndarray:
    """A 16/32-bit or float image as float32 (H, W) in [0, 1]; one-line error when it would be blank."""
    arr = np.asarray(img).astype(np.float64)
    low, high = _type_range(img, arr)
    if img.mode == "F" and not np.isfinite(arr).all():
        raise AdbenchError(f"image {path} ({bit_depth(img)}) has NaN or infinite pixels")
    if high <= low:  # a constant float image
        return np.zeros(arr.shape, np.float32)
    scaled = np.clip((arr - low) / (high - low), 0.0, 1.0)
    if img.mode != "F" and scaled.max() - scaled.min() < 1 / 255:
        raise AdbenchError(
            f"image {path} ({bit_depth(img)}) uses only values {arr.min():g}..{arr.max():g} of its type's "
            f"range {low:g}..{high:g}: it would load as a blank image; rescale it (e.g. to 8 or 16 bit)"
        )
    return scaled.astype(np.float32)


def open_checked(path: str | Path) -> Image.Image:
    """Open and fully decode an image, turning any failure (bombs included) into one line naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy() if img.mode in HIGH_DEPTH_MODES else img.convert("RGB")
    except PIL_ERRORS as exc:
        raise AdbenchError(f"cannot read image {path}: {exc.__class__.__name__}: {exc}") from None


def resized_rgb(path: str | Path, size: int | tuple[int, int]) -> np.ndarray:
    """An image bicubic-resized to ``size`` (a square side, or (H, W)), 3 channels: uint8 for 8-bit
    files, float32 in [0, 1] otherwise.

    The compact form the decoded-image cache stores; :func:`to_float_rgb` gives the model input.
    """
    h, w = (size, size) if isinstance(size, int) else size
    img = open_checked(path)
    if img.mode not in HIGH_DEPTH_MODES:
        return np.asarray(img.resize((w, h), Image.BICUBIC))
    plane = Image.fromarray(high_depth_to_float(img, path)).resize((w, h), Image.BICUBIC)
    grey = np.clip(np.asarray(plane, dtype=np.float32), 0.0, 1.0)
    return np.repeat(grey[:, :, None], 3, axis=2)


def to_float_rgb(arr: np.ndarray) -> np.ndarray:
    """float32 [0, 1] pixels of :func:`resized_rgb`'s output (uint8 / 255, exactly as before caching)."""
    return np.asarray(arr, dtype=np.float32) / 255.0 if arr.dtype == np.uint8 else arr


def load_float_rgb(path: str | Path, size: int | tuple[int, int]) -> np.ndarray:
    """An image as float32 (H, W, 3) in [0, 1], bicubic-resized to ``size`` (a square side, or (H, W));
    exact 8-bit path for 8-bit files."""
    return to_float_rgb(resized_rgb(path, size))


def mask_array(path: str | Path) -> np.ndarray:
    """A mask as a bool (H, W) array: any non-zero pixel (any bit depth) is foreground."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in HIGH_DEPTH_MODES:
                return np.asarray(img) > 0
            return np.asarray(img.convert("L")) > 0
    except PIL_ERRORS as exc:
        raise AdbenchError(f"cannot read mask {path}: {exc.__class__.__name__}: {exc}") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except PIL_ERRORS as exc:
        raise AdbenchError(f"cannot read image {path}: {exc.__class__.__name__}: {exc}") from None
