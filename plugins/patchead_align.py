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


def at_size(model: EuclideanTransform, h: int, w: int) -> EuclideanTransform:
    """A transform estimated at MATCH_SIZE, expressed in the pixel coordinates of an (h, w) grid
    (pixel centres line up: x_grid + 0.5 = (x_match + 0.5) * w / MATCH_SIZE)."""
    sx, sy = w / MATCH_SIZE, h / MATCH_SIZE
    to_grid = np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2], [0, 0, 1.0]])
    return EuclideanTransform(matrix=to_grid @ model.params @ np.linalg.inv(to_grid))


def warp_grid(grid: torch.Tensor, transform: EuclideanTransform) -> torch.Tensor:
    """(C, H, W) resampled at ``transform``(output coordinates): output pixel p takes grid[transform(p)]."""
    arr = grid.detach().float().cpu().permute(1, 2, 0).numpy()
    out = warp(arr, transform, mode="edge", preserve_range=True)
    return torch.from_numpy(out.astype(np.float32)).permute(2, 0, 1).to(grid.device, grid.dtype)


def align_to(moving: torch.Tensor, fixed: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``moving`` (3, H, W) warped so that it lines up with ``fixed``; unchanged when matching fails."""
    model = estimate_transform(moving, fixed, seed)
    if model is None:
        return moving
    return warp_grid(moving, at_size(model, *moving.shape[-2:]))  # maps fixed coords -> moving coords


def common_pose(images: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, list[EuclideanTransform | None]]:
    """Every image (N, 3, H, W) brought into the pose of the first (Sec. 4.2: "we use the first image
    as the query and apply the same process to all other images"), and per image the transform from
    the common pose to its own (None: identity, for the first image and failed matches)."""
    out, transforms = [images[0]], [None]
    for image in images[1:]:
        model = estimate_transform(image, images[0], seed)
        transforms.append(model)
        out.append(image if model is None else warp_grid(image, at_size(model, *image.shape[-2:])))
    return torch.stack(out), transforms


def back_to_own_pose(maps: torch.Tensor, transforms: list[EuclideanTransform | None]) -> torch.Tensor:
    """Maps (N, ..., h, w) computed in the common pose, each warped back into its image's own pose."""
    out = []
    for amap, model in zip(maps, transforms, strict=True):
        if model is None:
            out.append(amap)
            continue
        h, w = amap.shape[-2:]
        inverse = EuclideanTransform(matrix=np.linalg.inv(at_size(model, h, w).params))
        out.append(warp_grid(amap.reshape(-1, h, w), inverse).reshape(amap.shape))
    return torch.stack(out)


def alignment_variants(moving: torch.Tensor, fixed: torch.Tensor, seed: int = 0) -> list[torch.Tensor]:
    """The paper's extra references: the aligned image and its 180-degree rotation."""
    aligned = align_to(moving, fixed, seed)
    return [aligned, torch.rot90(aligned, 2, dims=(-2, -1))]
