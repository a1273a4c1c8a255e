"""MuSc: batch zero-shot anomaly detection by mutual scoring of the unlabeled test images.

Paper: Li et al., "MuSc: Zero-Shot Industrial Anomaly Classification and Segmentation with Mutual
Scoring of the Unlabeled Images" (ICLR 2024); facts checked against the authors' public code.
Pipeline per category (all its test images at once):

1. Patch tokens of several blocks (paper: ViT-L/14@336 blocks 6, 12, 18, 24 at 518 px).
2. LNAMD: each layer's token grid is layer-normalised over (C, h, w) per image, then each patch is
   replaced by the mean of its r x r neighbourhood (zero padding counted) for every degree r in
   ``aggregation_degrees`` (1, 3, 5); features are L2-normalised.
3. MSM: for each degree and layer, every patch's Euclidean distance to its nearest patch in each
   other test image; the patch score is the mean over the interval of the lowest distances
   [``interval_low``, ``interval_high``) = [0, 30 %) of the other images. Scores are averaged over
   layers and degrees: that is the anomaly map.
4. Image score = maximum of the map, then RsCIN: on the graph of image features (CLS similarity),
   each score becomes the mean of the scores of its k most similar images (itself included), averaged
   over k in ``rscin_k`` (1, 2, 3 as MuSc's MVTec/BTAD setting; VisA uses 1, 8, 9).

Choices (recorded in every result's config):
* ``image_size`` 518 and the layers are the paper's for ViT-L (24 blocks); on backbones of another
  depth the layers scale proportionally (DINOv2 ViT-B: 3, 6, 9, 12; the 4-block demo models: 1, 2, 3, 4).
* RsCIN skips MuSc's min-max normalisation of the scores before the graph step: the step is a
  row-stochastic average, so the normalisation changes the result only by the same affine map for
  every image of the category, which no metric sees.
* The interval bounds take ``int()`` of fraction x (N - 1) as the code does, but keep at least one
  image (the code's mean over an empty interval is NaN for categories under 4 images).
* The RsCIN image feature is the backbone's final CLS token (CLIP: projected), L2-normalised for every
  backbone (MuSc normalises CLIP's and leaves DINOv2's raw), so that each image is its own nearest
  neighbour; backbones without a CLS token (CNNs) use the mean of their deepest tapped tokens.
* Token grids wait for LNAMD on the CPU; LNAMD and the distances run in fp32. The distances are computed per query against the whole category in blocks
  capped by ``max_chunk_elements`` (adbench.patch_nn), so memory stays linear in the category size.
* The map is returned at patch resolution; the runner upsamples it (bilinear, align_corners=False;
  the code: align_corners=True) and applies no Gaussian (the code smooths nothing); an evaluation
  protocol's sigma still applies, as recorded.
* ``preset`` official: the VisA setting RsCIN k = (1, 8, 9) (models/musc.py: ``if self.dataset ==
  'visa': k_score = [1, 8, 9]``); ``preset=none`` keeps ``rscin_k`` as given.
* Token grids follow the job's precision: fp16 on the CPU under bf16 (MuSc's fp16 autocast), fp32
  under ``--precision fp32``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import lazy_loader as lazy

from adbench import hookimpl
from adbench.backbones import build_backbone
from adbench.backbones.spec import scale_taps
from adbench.config import setting
from adbench.errors import AdbenchError
from adbench.fidelity import Choice
from adbench.methods import Context, Method, MethodConfig, Prediction
from adbench.patch_nn import MAX_ELEMENTS, per_reference_distances

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free

PAPER_DEPTH = 24  # layers are given for ViT-L/14 (24 blocks)


@dataclass
class MuScConfig(MethodConfig):
    """MuSc settings; defaults are the paper's (CLIP ViT-L/14@336 at 518 px)."""

    backbone: str = "clip-vitl14-336"
    weights: str | None = None
    image_size: int = setting(518, ge=14, le=4096)
    layers: tuple[int, ...] = setting((6, 12, 18, 24), ge=1, doc="1-based blocks for a 24-block model")
    aggregation_degrees: tuple[int, ...] = setting((1, 3, 5), ge=1, doc="LNAMD neighbourhood sizes r (odd)")
    interval_low: float = setting(0.0, ge=0, lt=1, doc="MSM: lower bound of the averaged interval")
    interval_high: float = setting(0.3, gt=0, le=1, doc="MSM: upper bound of the averaged interval")
    rscin_k: tuple[int, ...] = setting((1, 2, 3), ge=0, doc="RsCIN neighbourhood sizes; empty or 0 disables")
    feature_batch_size: int = setting(8, ge=1)
    max_chunk_elements: int = setting(MAX_ELEMENTS, ge=1)
    preset: Literal["official", "none"] = "official"


#: models/musc.py: RsCIN k per dataset (VisA 1, 8, 9; MVTec AD and others 1, 2, 3).
RSCIN_PRESETS = {"visa": (1, 8, 9)}


def lnamd(tokens: torch.Tensor, r: int) -> torch.Tensor:
    """LNAMD of one layer: tokens (N, h, w, C) -> aggregated L2-normalised features (N, h*w, C).

    Layer norm over (C, h, w) per image (no affine), then the r x r neighbourhood mean with zero
    padding counted (MuSc's unfold + adaptive average pooling is exactly this average pooling).
    """
    x = tokens.permute(0, 3, 1, 2).float()
    x = torch.nn.functional.layer_norm(x, x.shape[1:])
    if r > 1:
        x = torch.nn.functional.avg_pool2d(x, r, stride=1, padding=(r - 1) // 2, count_include_pad=True)
    return torch.nn.functional.normalize(x.flatten(2).transpose(1, 2), dim=-1)


def interval_mean(dist: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """MSM aggregation: per row of (P, R) distances (``inf`` = excluded), the mean of the sorted
    values in positions [int(low * n), int(high * n)) with n the number of valid references."""
    n = int(torch.isfinite(dist[0]).sum())
    hi = max(1, int(high * n))
    lo = min(int(low * n), hi - 1)
    return dist.topk(hi, dim=1, largest=False).values[:, lo:].mean(dim=1)


def mutual_scores(
    feats: torch.Tensor, low: float, high: float, max_elements: int = MAX_ELEMENTS
) -> torch.Tensor:
    """MSM over one category: features (N, P, C) -> patch scores (N, P), each image scored by all others."""
    return torch.stack(
        [
            interval_mean(
                per_reference_distances(
                    feats[i], feats, exclude=i, metric="euclidean", max_elements=max_elements
                ),
                low,
                high,
            )
            for i in range(len(feats))
        ]
    )


def rscin(scores: torch.Tensor, image_features: torch.Tensor, ks: tuple[int, ...]) -> torch.Tensor:
    """RsCIN re-scoring: each image score becomes the mean score of its k most similar images
    (similarity = dot product of image features, itself included), averaged over ``ks``.

    With no edges beyond the self loops (ks = (1,)) or RsCIN disabled (empty, or a 0 in ``ks``), the
    scores come back unchanged.
    """
    if not ks or 0 in ks:
        return scores
    sim = image_features.float() @ image_features.float().T
    n = len(scores)
    out = []
    for k in ks:
        top = sim.topk(min(k, n), dim=1)
        weights = torch.zeros_like(sim).scatter_(1, top.indices, top.values)
        out.append((weights / weights.sum(dim=1, keepdim=True)) @ scores.float())
    return torch.stack(out).mean(dim=0)


class MuSc(Method):
    """Batch zero-shot mutual scoring among a category's unlabeled test images (MuSc, ICLR 2024)."""

    name = "musc"
    display_name = "MuSc"
    description = "MuSc: batch zero-shot mutual scoring of unlabeled test images (LNAMD + MSM + RsCIN)"
    config_cls = MuScConfig
    supports = frozenset({"batch_zero_shot"})
    default_protocol = "batch_zero_shot"
    backbone_fields = ("backbone",)
    demo_backbones = {"backbone": "tiny-clip"}
    smoothing_sigma = 0.0  # models/musc.py scores the bilinearly upsampled maps without a Gaussian
    official_source = "github.com/xrli-U/MuSc @ b76b93d (models/musc.py, models/modules/_RsCIN.py)"
    choices = (
        Choice(
            "map smoothing",
            "none: models/musc.py upsamples the maps bilinearly and scores them as they are",
            "none (adbench applied sigma 4 before)",
            "pixel metrics of the published rows",
            "--eval-protocol anomalyclip (sigma 4)",
        ),
        Choice(
            "RsCIN k on VisA",
            "(1, 8, 9) on VisA, (1, 2, 3) elsewhere (models/musc.py k_score)",
            "none",
            "VisA image metrics",
            "--set musc.preset=none (rscin_k as given)",
        ),
        Choice(
            "RsCIN min-max normalisation",
            "skipped: the row-stochastic step commutes with the per-category affine map",
            "the code normalises scores first (_RsCIN.RsCIN)",
            "none on any metric",
            "",
        ),
        Choice(
            "image score",
            "maximum of the patch-resolution map",
            "the code takes the maximum of the map upsampled with align_corners=True",
            "tiny: bilinear values lie between grid values",
            "",
        ),
        Choice(
            "MSM interval on tiny categories",
            "int(fraction x (N - 1)) as the code, keeping at least one image",
            "the code's mean over an empty interval is NaN (under 4 images)",
            "only categories with under 4 test images",
            "",
        ),
    )

    @classmethod
    def config_for_dataset(
        cls, config: MuScConfig, dataset: str, auxiliary: Sequence[str] = ()
    ) -> MuScConfig:
        """Under ``preset=official``, the code's per-dataset RsCIN k (VisA: 1, 8, 9)."""
        if config.preset != "official" or dataset not in RSCIN_PRESETS:
            return config
        return dataclasses.replace(config, rscin_k=RSCIN_PRESETS[dataset])

    @classmethod
    def published_name(cls, config: MuScConfig) -> str | None:
        """MuSc's numbers are not in the published table adbench compares with."""
        return None

    @classmethod
    def backbone_requirements(cls, config: MuScConfig) -> dict[str, frozenset[str]]:
        """Only patch tokens and the final image token, which every backbone has."""
        return {}

    def setup(self) -> None:
        self.encoder = build_backbone(self.config.backbone, weights=self.config.weights, device=self.device)
        self._weights = {self.config.backbone: self.encoder.weights}
        self.taps = scale_taps(self.config.layers, PAPER_DEPTH, self.encoder.num_blocks)

    def embed(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Token grids (N, h, w, C) of each tapped layer (on the CPU: a category can be large) and
        the L2-normalised image features (N, D) for RsCIN."""
        from adbench.precision import FP32, active_precision

        layers: list[list[torch.Tensor]] = [[] for _ in self.taps]
        image_feats = []
        # MuSc runs under fp16 autocast: fp16 halves a category's memory; fp32 when the job asks for it
        store_dtype = torch.float32 if active_precision(self.device) == FP32 else torch.float16
        for tokens in self.encoder.batched_tokens(
            images, self.taps, self.config.feature_batch_size, self.device
        ):
            grids = [tokens.patches[t].float() for t in self.taps]
            for store, grid in zip(layers, grids, strict=True):
                store.append(grid.to(store_dtype).cpu())
            cls = tokens.cls if tokens.cls is not None else grids[-1].mean(dim=(1, 2))
            image_feats.append(torch.nn.functional.normalize(cls.float(), dim=-1).cpu())
        return [torch.cat(g) for g in layers], torch.cat(image_feats)

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        if ctx.protocol != "batch_zero_shot":
            raise AdbenchError(f"musc does not support protocol '{ctx.protocol}'")
        if len(images) < 2:
            raise AdbenchError(f"batch zero-shot needs at least 2 test images in category '{ctx.category}'")
        cfg = self.config
        if any(r % 2 == 0 for r in cfg.aggregation_degrees):
            raise AdbenchError(f"musc.aggregation_degrees must be odd, got {cfg.aggregation_degrees}")
        layers, image_feats = self.embed(images)
        size = max(tuple(g.shape[1:3]) for g in layers)
        total = None
        for r in cfg.aggregation_degrees:
            for grid in layers:
                feats = lnamd(grid, r)
                if tuple(grid.shape[1:3]) != size:  # CNN stages: bring every layer to the finest grid
                    h, w = grid.shape[1:3]
                    up = torch.nn.functional.interpolate(
                        feats.transpose(1, 2).view(len(grid), -1, h, w), size=size, mode="bilinear"
                    )
                    feats = torch.nn.functional.normalize(up.flatten(2).transpose(1, 2), dim=-1)
                scores = mutual_scores(
                    feats.to(self.device), cfg.interval_low, cfg.interval_high, cfg.max_chunk_elements
                ).cpu()
                total = scores if total is None else total + scores
        patch = total / (len(cfg.aggregation_degrees) * len(layers))  # type: ignore[operator]
        image = rscin(patch.amax(dim=1), image_feats, tuple(cfg.rscin_k))
        return Prediction(scores=image, maps=patch.view(len(images), *size))


@hookimpl
def adbench_methods() -> list[type[Method]]:
    return [MuSc]


__all__ = ["MuSc", "MuScConfig", "interval_mean", "lnamd", "mutual_scores", "rscin"]
