"""AnomalyDINO: few-shot anomaly detection by nearest-neighbour search in a DINOv2 patch memory bank.

Paper: Damm et al., "AnomalyDINO: Boosting Patch-based Few-shot Anomaly Detection with DINOv2"
(WACV 2025); facts checked against the authors' public code. The k normal references (each also
rotated by 0, 45, ..., 315 degrees with the rotation option) fill a memory bank of DINOv2 ViT-S/14
last-block patch tokens (final norm applied); a test patch scores its cosine distance to the nearest
bank patch; the image score is the mean of the top 1 % patch distances. Zero-shot masking keeps
only foreground patches of the test image (first principal component of its patch tokens > 10,
sign flipped when the centre is mostly background, then 3x3 dilation and closing); masked-out
patches score 0.

Choices (recorded in every result's config; ``adbench.fidelity`` lists them in docs/fidelity.md):
* ``resize`` shorter_edge: the shorter edge to ``image_size`` (448), the aspect ratio kept, then
  cropped to a multiple of the patch size from the top-left (src/backbones.py: ``transforms.Resize(
  size=smaller_edge_size)`` and ``prepare_image``'s crop); ``square`` resizes to 448 x 448.
* ``mask_morphology`` flat: the code's dilation and closing act on the (P, 1) array of flattened patch
  scores (``cv2.dilate`` on ``first_pc > threshold``), i.e. along rows of the patch grid; ``grid``
  applies the 3 x 3 operations on the 2-D patch grid (adbench's earlier form).
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
from adbench.fidelity import Choice
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
    resize: Literal["shorter_edge", "square"] = "shorter_edge"
    mask_morphology: Literal["flat", "grid"] = "flat"
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
    tokens: torch.Tensor,
    grid: tuple[int, int],
    threshold: float,
    border: float = 0.2,
    morphology: str = "flat",
) -> torch.Tensor:
    """AnomalyDINO's zero-shot mask of one image from its patch tokens (P, C): (P,) bool.

    First principal component > ``threshold``; if the central crop (``border`` off each side) keeps at
    most 35 % of its patches, the sign is flipped; then a dilation and a closing of size 3 (the border
    never erodes): on the flattened (P,) array as the code (``flat``), or 3 x 3 on the grid (``grid``).
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
    if morphology == "flat":
        mask, kernel = mask.reshape(-1), np.ones(3, dtype=bool)
    else:
        kernel = np.ones((3, 3), dtype=bool)
    mask = binary_dilation(mask, kernel)
    mask = binary_erosion(binary_dilation(mask, kernel), kernel, border_value=1)
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
    official_source = (
        "github.com/dammsi/AnomalyDINO @ b3435f0 (src/backbones.py, src/detection.py, src/utils.py)"
    )
    choices = (
        Choice(
            "resize",
            "shorter edge to 448, aspect ratio kept, top-left crop to a multiple of 14 (src/backbones.py "
            "transforms.Resize(size=smaller_edge_size) and prepare_image)",
            "none",
            "non-square datasets (VisA) see the published geometry",
            "--set anomalydino.resize=square",
        ),
        Choice(
            "mask morphology",
            "dilation and closing of size 3 along the flattened patch array, as cv2.dilate / "
            "morphologyEx act on the code's (P, 1) mask",
            "none",
            "masks grow along rows only",
            "--set anomalydino.mask_morphology=grid (3 x 3 on the patch grid)",
        ),
        Choice(
            "empty foreground mask",
            "keeps every patch",
            "the code would score the image 0 (threshold 10 is calibrated on DINOv2 ViT-S)",
            "only backbones off that feature scale",
            "",
        ),
        Choice(
            "rotation",
            "on: the code's 'agnostic' preprocessing; borders mirrored",
            "the code rotates with OpenCV's default border (reflect_101)",
            "small",
            "--set anomalydino.rotation=false",
        ),
        Choice(
            "map smoothing",
            "Gaussian sigma 4 by the engine (src/utils.py: gaussian_filter(dists, sigma=4) at image size)",
            "applied at the evaluation size (the code: each image's own size)",
            "small",
            "",
        ),
    )

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

    def input_shape(self, width: int, height: int) -> tuple[int, int] | None:
        """Shorter edge to ``image_size``, the longer scaled and truncated as torchvision's Resize(int)."""
        if self.config.resize == "square":
            return None
        size, short, long = self.image_size, min(width, height), max(width, height)
        other = int(size * long / short)
        return (size, other) if height <= width else (other, size)

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Last-block patch tokens (N, P, C), not normalised (masking reads their raw scale), and the
        grid; images are first cropped to a multiple of the patch size from the top-left (the code)."""
        p = int(self.encoder.patch_size)
        h, w = images.shape[-2:]
        images = images[..., : h - h % p, : w - w % p]
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
            cfg = self.config
            keep = torch.stack(
                [foreground_mask(f, grid, cfg.mask_threshold, morphology=cfg.mask_morphology) for f in feats]
            )
            patch = patch * keep.to(patch.device)
        return Prediction(
            scores=image_score(patch, self.config.top_patch_fraction), maps=patch.view(-1, *grid)
        )


@hookimpl
def adbench_methods() -> list[type[Method]]:
    return [AnomalyDINO]
