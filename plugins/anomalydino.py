"""AnomalyDINO: few-shot anomaly detection by nearest-neighbour search in a DINOv2 patch memory bank.

Paper: Damm et al., "AnomalyDINO: Boosting Patch-based Few-shot Anomaly Detection with DINOv2"
(WACV 2025); facts checked against the authors' public code. The k normal references (each also
rotated by 0, 45, ..., 315 degrees with the rotation option) fill a memory bank of DINOv2 ViT-S/14
last-block patch tokens (final norm applied); a test patch scores its cosine distance to the nearest
bank patch; the image score is the mean of the top 1 % patch distances. Zero-shot masking keeps
only foreground patches of the test image (first principal component of its patch tokens > 10,
sign flipped when the centre is mostly background, then 3x3 dilation and closing); masked-out
patches score 0.

Choices (recorded in every result's config):
* Images are resized to a square ``image_size`` (448 = 32 x 32 patches) instead of the smaller edge
  to 448 with the aspect ratio kept: the runner feeds square images to every method.
* ``rotation`` is on by default: the code's "agnostic" preprocessing (every category rotated), which
  assumes nothing about the category. Rotations reflect the border (OpenCV's default border,
  scipy's ``mirror``).
* ``masking = paper`` masks the categories the code masks (``masked_categories``: MVTec AD capsule,
  hazelnut, pill, screw, toothbrush; every VisA category); ``on``/``off`` force it for all.
* ``neighbours`` 1 (the code's default); with more, the mean of the k nearest distances.
* An image whose mask keeps no patch at all keeps every patch instead (the code would score it 0):
  the threshold 10 is calibrated on DINOv2 ViT-S's feature scale, and on other or random backbones
  the paper's rule can empty the mask, which made every image of a masked category score 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import lazy_loader as lazy
import numpy as np

from adbench import hookimpl
from adbench.backbones import build_backbone
from adbench.config import setting
from adbench.errors import AdbenchError
from adbench.methods import Context, Method, MethodConfig, Prediction
from adbench.patch_nn import MAX_ELEMENTS, bank_knn_distances

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free

ROTATIONS = (0, 45, 90, 135, 180, 225, 270, 315)
#: Categories the authors' code masks under its default preprocessing (MVTec AD objects, all of VisA).
PAPER_MASKED = (
    "capsule",
    "hazelnut",
    "pill",
    "screw",
    "toothbrush",
    "candle",
    "capsules",
    "cashew",
    "chewinggum",
    "fryum",
    "macaroni1",
    "macaroni2",
    "pcb1",
    "pcb2",
    "pcb3",
    "pcb4",
    "pipe_fryum",
)


@dataclass
class AnomalyDINOConfig(MethodConfig):
    """AnomalyDINO settings; defaults are the paper's (DINOv2 ViT-S/14, 448 px, 1-NN, top 1 %)."""

    backbone: str = "dinov2-vits14"
    weights: str | None = None
    image_size: int = setting(448, ge=14, le=4096)
    rotation: bool = True
    masking: Literal["paper", "on", "off"] = "paper"
    masked_categories: tuple[str, ...] = PAPER_MASKED
    mask_threshold: float = setting(10.0, doc="first-principal-component threshold of the foreground")
    neighbours: int = setting(1, ge=1, doc="k of the k-NN distance")
    top_patch_fraction: float = setting(0.01, gt=0, le=1, doc="image score = mean of this top fraction")
    feature_batch_size: int = setting(8, ge=1)
    max_chunk_elements: int = setting(MAX_ELEMENTS, ge=1)


def rotated_references(images: torch.Tensor, angles: tuple[int, ...] = ROTATIONS) -> torch.Tensor:
    """Each reference (k, 3, H, W) rotated by every angle about its centre, borders mirrored: (k * len(angles), 3, H, W)."""
    from scipy.ndimage import rotate

    arr = images.detach().cpu().numpy()
    out = [
        img if angle == 0 else rotate(img, angle, axes=(1, 2), reshape=False, order=1, mode="mirror")
        for img in arr
        for angle in angles
    ]
    return torch.from_numpy(np.stack(out)).to(images.dtype).clamp(0, 1)


def foreground_mask(
    tokens: torch.Tensor, grid: tuple[int, int], threshold: float, border: float = 0.2
) -> torch.Tensor:
    """AnomalyDINO's zero-shot mask of one image from its patch tokens (P, C): (P,) bool.

    First principal component > ``threshold``; if the central crop (``border`` off each side) keeps at
    most 35 % of its patches, the sign is flipped; then 3x3 dilation and 3x3 closing (the border never erodes).
    """
    from scipy.ndimage import binary_dilation, binary_erosion
    from sklearn.decomposition import PCA

    first = PCA(n_components=1, svd_solver="randomized", random_state=0).fit_transform(
        tokens.double().cpu().numpy()
    )
    mask = (first[:, 0] > threshold).reshape(grid)
    h, w = grid
    centre = mask[int(h * border) : int(h * (1 - border)), int(w * border) : int(w * (1 - border))]
    if centre.sum() <= centre.size * 0.35:
        mask = (-first[:, 0] > threshold).reshape(grid)
    square = np.ones((3, 3), dtype=bool)
    mask = binary_dilation(mask, square)
    mask = binary_erosion(binary_dilation(mask, square), square, border_value=1)
    if not mask.any():  # no foreground found (threshold off this backbone's scale): keep every patch
        mask[:] = True
    return torch.from_numpy(mask.reshape(-1))


def image_score(patch_scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean of the top ``fraction`` of patch scores of each image: (N,). The count is rounded down
    as the authors' ``mean_top1p`` (1024 patches -> 10), the maximum when it rounds to 0."""
    k = max(1, int(fraction * patch_scores.shape[-1]))
    return patch_scores.topk(k, dim=-1).values.mean(dim=-1)


class AnomalyDINO(Method):
    """Few-shot 1-NN patch scoring against a DINOv2 memory bank of the references (AnomalyDINO)."""

    name = "anomalydino"
    display_name = "AnomalyDINO"
    description = "AnomalyDINO: few-shot DINOv2 patch memory bank, cosine 1-NN, mean of top 1 % patches"
    config_cls = AnomalyDINOConfig
    supports = frozenset({"few_shot"})
    default_protocol = "few_shot"
    backbone_fields = ("backbone",)
    demo_backbones = {"backbone": "tiny-dinov2"}

    @classmethod
    def published_name(cls, config: AnomalyDINOConfig) -> str | None:
        """AnomalyDINO's numbers are not in the published table adbench compares with."""
        return None

    @classmethod
    def backbone_requirements(cls, config: AnomalyDINOConfig) -> dict[str, frozenset[str]]:
        """Only last-block patch tokens, which every backbone has."""
        return {}

    def setup(self) -> None:
        self.encoder = build_backbone(self.config.backbone, weights=self.config.weights, device=self.device)
        self._weights = {self.config.backbone: self.encoder.weights}

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Last-block patch tokens (N, P, C), not normalised (masking reads their raw scale), and the grid."""
        feats = []
        for tokens in self.encoder.batched_tokens(images, (-1,), self.config.feature_batch_size, self.device):
            (grid,) = tokens.patches.values()  # the last block only
            grid = grid.float()
            feats.append(grid.flatten(1, 2))
        return torch.cat(feats), tuple(grid.shape[1:3])  # type: ignore[return-value]

    def memory_bank(self, references: torch.Tensor) -> torch.Tensor:
        """L2-normalised bank (M, C) of the references (and their rotations), built once per job: the
        runner streams query batches with the same reference tensor, so it is memoised by identity."""
        cached = getattr(self, "_bank", None)
        if cached is None or cached[0] is not references:
            refs = rotated_references(references) if self.config.rotation else references
            self._bank = (
                references,
                torch.nn.functional.normalize(self.embed(refs)[0].flatten(0, 1), dim=-1),
            )
        return self._bank[1]

    def masks_category(self, category: str) -> bool:
        """Whether zero-shot masking applies to ``category`` under the configured rule."""
        if self.config.masking == "paper":
            return category in self.config.masked_categories
        return self.config.masking == "on"

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        if ctx.protocol != "few_shot":
            raise AdbenchError(f"anomalydino does not support protocol '{ctx.protocol}'")
        if ctx.references is None or len(ctx.references) == 0:
            raise AdbenchError("anomalydino few-shot needs reference images")
        bank = self.memory_bank(ctx.references)
        feats, grid = self.embed(images)
        patch = torch.stack(
            [
                bank_knn_distances(
                    torch.nn.functional.normalize(f, dim=-1),
                    bank,
                    k=self.config.neighbours,
                    max_elements=self.config.max_chunk_elements,
                )
                for f in feats
            ]
        )
        if self.masks_category(ctx.category):
            keep = torch.stack([foreground_mask(f, grid, self.config.mask_threshold) for f in feats])
            patch = patch * keep.to(patch.device)
        return Prediction(
            scores=image_score(patch, self.config.top_patch_fraction), maps=patch.view(-1, *grid)
        )


@hookimpl
def adbench_methods() -> list[type[Method]]:
    return [AnomalyDINO]
