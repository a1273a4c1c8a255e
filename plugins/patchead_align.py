"""PatchEAD+ alignment: rotation + translation between two images from ORB keypoint matches.

The paper says "a feature-matching method from traditional image processing"; scikit-image's ORB,
descriptor matching and RANSAC over a Euclidean transform are exactly that, so no hand-written
matcher is needed. Images are matched in grey at a reduced size, then warped at full size.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from skimage.feature import ORB, match_descriptors
from skimage.measure import ransac
from skimage.transform import EuclideanTransform, warp

MATCH_SIZE = 192


def _grey(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> grey (MATCH_SIZE, MATCH_SIZE) float64 for keypoint detection."""
    small = torch.nn.functional.interpolate(
        image[None].float().cpu(), size=(MATCH_SIZE, MATCH_SIZE), mode="area"
    )[0]
    return (0.299 * small[0] + 0.587 * small[1] + 0.114 * small[2]).numpy().astype(np.float64)


def estimate_transform(moving: torch.Tensor, fixed: torch.Tensor, seed: int = 0) -> EuclideanTransform | None:
    """The rotation + translation mapping ``fixed`` coordinates onto ``moving`` ones, or None when
    too few keypoints match (the caller then keeps the image as it is)."""
    orb = ORB(n_keypoints=150, fast_threshold=0.05)
    keys, descs = [], []
    for img in (moving, fixed):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                orb.detect_and_extract(_grey(img))
        except (RuntimeError, ValueError):
            return None
        keys.append(orb.keypoints.copy())
        descs.append(orb.descriptors.copy())
    if min(len(k) for k in keys) < 4:
        return None
    matches = match_descriptors(descs[0], descs[1], cross_check=True)
    if len(matches) < 4:
        return None
    # keypoints are (row, col); transforms work on (x, y)
    src = keys[1][matches[:, 1]][:, ::-1]
    dst = keys[0][matches[:, 0]][:, ::-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, inliers = ransac(
            (src, dst),
            EuclideanTransform,
            min_samples=3,
            residual_threshold=3.0,
            max_trials=200,
            rng=np.random.default_rng(seed),
        )
    if model is None or inliers is None or inliers.sum() < 4:
        return None
    return model


def align_to(moving: torch.Tensor, fixed: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``moving`` (3, H, W) warped so that it lines up with ``fixed``; unchanged when matching fails."""
    model = estimate_transform(moving, fixed, seed)
    if model is None:
        return moving
    h, w = moving.shape[-2:]
    scale = np.diag([w / MATCH_SIZE, h / MATCH_SIZE, 1.0])
    full = EuclideanTransform(matrix=scale @ model.params @ np.linalg.inv(scale))
    arr = moving.detach().float().cpu().permute(1, 2, 0).numpy()
    out = warp(arr, full, mode="edge", preserve_range=True)  # full maps output (fixed) coords -> input
    return torch.from_numpy(out.astype(np.float32)).permute(2, 0, 1).to(moving.device, moving.dtype)


def alignment_variants(moving: torch.Tensor, fixed: torch.Tensor, seed: int = 0) -> list[torch.Tensor]:
    """The paper's extra references: the aligned image and its 180-degree rotation."""
    aligned = align_to(moving, fixed, seed)
    return [aligned, torch.rot90(aligned, 2, dims=(-2, -1))]
