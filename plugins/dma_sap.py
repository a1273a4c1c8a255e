"""dma_sap: CLIP + DINOv2 hierarchical fusion with Dual-Modality Attention and Stabilized Attention Pooling.

Paper: Jiang et al., "Zero-Shot Industrial Anomaly Detection via CLIP-DINOv2 Multimodal Fusion and
Stabilized Attention Pooling", Electronics 14 (2025) 4785 (``shared/papers/dma_sap__clip_dinov2_fusion.txt``,
Sec. 3 and 4.1.3, ablation Table 7). Frozen CLIP ViT-L/14@336 (quickgelu, openai) tapped at blocks
8/16/24 and DINOv2 ViT-L at the relative depths 4/8/12 of 12 (8/16/24); per level ``dino_proj`` + DMA (delta 3.0, eps 1.2, learnable
theta); learnable level weights alpha/beta/gamma; learnable normal/anomalous prompts with "object" /
"damaged object"; SAP with a sigmoid gate; loss focal + dice + 0.2 x image CE; Adam lr 1e-3, batch 8,
10 epochs, 336 px. Ablations (Table 7) are ``variant=A|B|C|D``.

Choices where the paper is silent or contradicts itself (all are config values):
* ``dino_backbone`` (**choice**): DINOv2 ViT-L/14. Sec. 3.2 says "the DINOv2 model (with 12 blocks)",
  but Sec. 4.1.3 names the "dual-backbone architecture (CLIP ViT-L/14 + DINOv2 ViT-L)", and its
  parameter breakdown fits a 1024-wide DINOv2: 436 M = visual encoder 312.7 M + text transformer
  85.1 M + embeddings 37.9 M is CLIP ViT-L/14@336 (304.3 M + 85.1 M + 37.9 M) plus the learnable head,
  whose three ``dino_proj`` read 1024-wide tokens (``adbench info dma_sap`` prints adbench's breakdown
  beside the paper's). Two statements against one; the taps 4/8/12 of 12 blocks are read as the
  same relative depths, 8/16/24 of ViT-L's 24. ``dino_backbone=dinov2-vitb14`` is the "12 blocks"
  reading (the earlier default).
* CLIP patch tokens of every tap (and F_self) go through CLIP's own frozen ``ln_post`` + projection into
  the text space (as AnomalyCLIP), so DMA works at the joint width C (768 for ViT-L); ``dino_proj`` maps
  layer-normalised DINO tokens to C. The values DMA aggregates are the level's hierarchical fusion
  CLIP + dino_proj(DINO) (variant B's features); DMA's ``proj`` starts as the identity.
* A_clip (Sec. 3.3.1, Eq. for A_clip = Softmax(Q_clip K_dino^T / sqrt(D))): the query is the mean of
  the normalised normal/anomalous text features (the "object" class embedding, category-agnostic);
  Q = W_q LN(query), K = W_k LN(dino_proj tokens) with W_q, W_k learnable and starting as the identity,
  so the attention is sqrt(D) x cosine at the start and peaks on patches that match the text. A_fused
  rows are resized bilinearly to the CLIP grid and renormalised.
* ``theta_init`` 1.0, ``level_weights_init`` (1, 1, 1) (the paper reports convergence to 0.5, 0.5, 1.0),
  SAP ``gate_init`` 0 (sigma = 0.5), ``n_ctx`` 12 prompt tokens (AnomalyCLIP's length), temperature 0.07.
* F_self = CLIP's V-V attention path in the last ``vv_blocks`` = 19 blocks, read at the deepest tap:
  AnomalyCLIP's DPAM with its default ``DPAM_layer=20`` (its ``DAPM_replace`` loops
  ``range(1, DPAM_layer)`` over ``resblocks[-i]``, i.e. the last 19 of 24 blocks).
* ``seg_maps``: SAP takes "multi-scale anomaly heatmaps {A_m}" (Sec. 3.3.3, W = Softmax(1/M sum A_m)):
  ``levels`` (default) gives one map per fused level, plus F_fusion's and F_self's (Sec. 3.3: the
  local embeddings F_fusion and F_self are for segmentation); ``fusion`` keeps F_fusion's and F_self's
  only (the earlier form). SAP's W, L_seg and the output map (their mean) all use the same M maps.
* ``image_feature``: phi(I) is "the global image feature enhanced by the stabilized attention pooling
  module" (Sec. 3.3.4, L_cls), the global feature being CLIP's [CLS] (Sec. 3.3). Default ``cls_sap``:
  phi(I) = CLS + f_out in variant D (SAP adds to C's feature rather than replacing it); ``sap`` scores
  with f_out alone (the earlier form). A-C (no SAP) use the CLS embedding. Variant A fuses the deepest
  taps only, without level weights.
* L_seg = L_focal + ``dice_weight`` x L_dice (Sec. 3.3.4, lambda_dice not given: 1) on each anomaly map.
  ``seg_loss`` (**choice**): L_total = L_seg + 0.2 L_cls (Sec. 3.3.4) with L_seg one focal + dice
  term, so with M maps the default ``mean`` averages the per-map losses and keeps the paper's 0.2
  balance against L_cls; ``sum`` adds them (the earlier form: with M = 5 maps L_cls weighs 0.04 per
  map); ``segmentation`` sums over the maps of the segmentation embeddings F_fusion and F_self only
  (Sec. 3.3: "local embeddings F_fusion and F_self for segmentation").
  ``normal_map_dice`` (off) adds AnomalyCLIP's second dice term on the normal map (1 - A vs 1 - mask),
  which the paper does not have.
* ``betas``: the paper says Adam with lr 1e-3 and no betas; torch's defaults (0.9, 0.999) are used
  (AnomalyCLIP's code uses (0.5, 0.999); set ``--set dma_sap.betas=0.5,0.999`` for that).
* Taps are given for the paper's depths (CLIP 24, DINOv2 12 blocks) and scale proportionally on other
  depths (the 4-block tiny demo backbones tap 1/3/4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import lazy_loader as lazy

from adbench import hookimpl
from adbench.backbones.spec import require_text_tower, scale_taps
from adbench.config import setting
from adbench.errors import AdbenchError
from adbench.fidelity import Choice
from adbench.losses import dice_loss, image_cross_entropy, segmentation_loss
from adbench.methods import Context, Method, Prediction, TrainedConfig

if TYPE_CHECKING:
    from .prompt_learner import PromptLearner

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free

CLIP_DEPTH = 24
DINO_DEPTH = 12
#: Paper (no official code): Electronics 14 (2025) 4785, ``shared/papers/dma_sap__clip_dinov2_fusion.txt``.
OFFICIAL_SOURCE = "paper: Jiang et al., Electronics 14 (2025) 4785 (no official code)"
#: Recorded choices, field for field ``adbench.fidelity.Choice`` (topic, default, deviation, effect, option).
FIDELITY_CHOICES: tuple[dict[str, str], ...] = (
    {
        "topic": "DINOv2 size",
        "default": "ViT-L/14, taps 8/16/24 (Sec. 4.1.3 'CLIP ViT-L/14 + DINOv2 ViT-L'; breakdown 312.7 M fits 1024-wide dino_proj)",
        "deviation": "Sec. 3.2 says 'DINOv2 (with 12 blocks)', i.e. ViT-B",
        "effect": "adbench info: visual encoder 312.6 M (ViT-L) vs 312.0 M (ViT-B) against the paper's 312.7 M",
        "option": "--set dma_sap.dino_backbone=dinov2-vitb14",
    },
    {
        "topic": "L_seg over the M maps",
        "default": "mean of focal + dice over the maps, so L_total = L_seg + 0.2 L_cls keeps Sec. 3.3.4's balance",
        "deviation": "the paper writes L_seg for one map",
        "effect": "the earlier sum weighed L_cls 0.04 per map (M = 5)",
        "option": "--set dma_sap.seg_loss=sum|segmentation",
    },
)
#: Sec. 4.1.3: "The visual encoder constitutes the majority of parameters (312.7 M, 71.7%), followed
#: by the transformer (85.1 M, 19.5%) and embedding layers (37.9 M, 8.7%)"; about 436 M in total.
PAPER_BREAKDOWN_M = {"visual encoder": 312.7, "transformer": 85.1, "embedding layers": 37.9, "total": 436.0}


def _count(*modules: torch.nn.Module | torch.Tensor) -> int:
    return sum(
        m.numel() if isinstance(m, torch.Tensor) else sum(p.numel() for p in m.parameters()) for m in modules
    )


@dataclass
class DMASAPConfig(TrainedConfig):
    """dma_sap settings; defaults are the paper's (Sec. 3.3, 4.1.3)."""

    clip_backbone: str = "clip-vitl14-336"
    dino_backbone: str = setting(
        "dinov2-vitl14",
        doc="choice: ViT-L (Sec. 4.1.3 and its parameter breakdown); dinov2-vitb14 = the '12 blocks' sentence",
    )
    image_size: int = setting(336, ge=14, le=4096)
    variant: Literal["A", "B", "C", "D"] = "D"
    clip_layers: tuple[int, ...] = (8, 16, 24)
    dino_layers: tuple[int, ...] = (4, 8, 12)
    vv_blocks: int = setting(19, ge=0, doc="V-V blocks for F_self; AnomalyCLIP DPAM_layer=20 is 19 blocks")
    delta: float = setting(3.0, gt=0)
    eps: float = setting(1.2, gt=0)
    theta_init: float = 1.0
    level_weights_init: tuple[float, ...] = (1.0, 1.0, 1.0)
    gate_init: float = 0.0
    image_feature: Literal["cls_sap", "sap"] = "cls_sap"
    seg_maps: Literal["levels", "fusion"] = "levels"
    n_ctx: int = setting(12, ge=1)
    normal_words: str = "object"
    anomalous_words: str = "damaged object"
    temperature: float = setting(0.07, gt=0)
    cls_weight: float = setting(0.2, ge=0)
    dice_weight: float = setting(1.0, ge=0, doc="lambda_dice of L_seg (not given in the paper)")
    seg_loss: Literal["mean", "sum", "segmentation"] = setting(
        "mean",
        doc="choice: L_seg over the M maps: mean keeps 0.2 L_cls (Sec. 3.3.4); sum = earlier "
        "(0.04 per map); segmentation = F_fusion's and F_self's maps only (Sec. 3.3)",
    )
    normal_map_dice: bool = setting(
        False, doc="AnomalyCLIP's extra dice on the normal map (not in the paper)"
    )
    lr: float = setting(1e-3, gt=0)
    batch_size: int = setting(8, ge=1)
    epochs: int = setting(10, ge=0)


def normal_map_dice(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Dice of the normal map (1 - prob) against the normal pixels (1 - mask), resized to the mask."""
    if prob.shape[-2:] != mask.shape[-2:]:
        prob = torch.nn.functional.interpolate(
            prob[:, None], size=mask.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0]
    return dice_loss(1 - prob, 1 - mask.to(prob.dtype))


class DMASAP(Method):
    """CLIP + DINOv2 fusion (DMA) with stabilized attention pooling (SAP); trained on auxiliary data."""

    name = "dma_sap"
    display_name = "DMA-SAP"
    official_source = OFFICIAL_SOURCE
    choices = tuple(Choice(**c) for c in FIDELITY_CHOICES)
    description = (
        "CLIP ViT-L/14@336 + DINOv2 hierarchical fusion with Dual-Modality Attention and Stabilized "
        "Attention Pooling; learnable prompts, trained on an auxiliary dataset (Jiang et al. 2025)"
    )
    config_cls = DMASAPConfig
    supports = frozenset({"zero_shot"})
    default_protocol = "zero_shot"
    trained = True
    backbone_fields = ("clip_backbone", "dino_backbone")
    demo_backbones = {"clip_backbone": "tiny-clip", "dino_backbone": "tiny-dinov2"}

    @classmethod
    def backbone_requirements(cls, config: DMASAPConfig) -> dict[str, frozenset[str]]:
        """Prompts through the text tower, projected patch tokens and the V-V path (F_self) of CLIP."""
        return {"clip_backbone": frozenset({"text", "projection", "vv"})}

    smoothing_sigma = 4.0

    def setup(self) -> None:
        from adbench.backbones import build_backbone

        cfg = self.config
        clip = build_backbone(cfg.clip_backbone, device=self.device, pretrained=self.pretrained_backbones)
        dino = build_backbone(cfg.dino_backbone, device=self.device, pretrained=self.pretrained_backbones)
        self._weights = {cfg.clip_backbone: clip.weights, cfg.dino_backbone: dino.weights}
        self.attach(clip, dino)

    def attach(self, clip: torch.nn.Module, dino: torch.nn.Module) -> None:
        """Build the learnable parts for the given frozen backbones (``setup`` builds them by name)."""
        from .dma_sap_modules import FusionHead

        cfg = self.config
        require_text_tower(clip, "dma_sap.clip_backbone", cfg.clip_backbone)
        if len(cfg.clip_layers) != len(cfg.dino_layers):
            raise AdbenchError("dma_sap: clip_layers and dino_layers must pair up (same length)")
        self.clip, self.dino = clip, dino
        self.clip_taps = scale_taps(cfg.clip_layers, CLIP_DEPTH, clip.num_blocks)
        self.dino_taps = scale_taps(cfg.dino_layers, DINO_DEPTH, dino.num_blocks)
        if cfg.variant == "A":
            self.clip_taps, self.dino_taps = self.clip_taps[-1:], self.dino_taps[-1:]
        self.vv_blocks = min(clip.num_blocks, max(1, round(cfg.vv_blocks * clip.num_blocks / CLIP_DEPTH)))
        self.vv_blocks = max(self.vv_blocks, clip.num_blocks - self.clip_taps[-1] + 1)
        dim = int(clip.output_dim)
        self.learnable = torch.nn.ModuleDict(
            {
                "prompts": self._prompt_learner(),
                "head": FusionHead(
                    dim,
                    int(dino.embed_dim),
                    levels=len(cfg.clip_layers),
                    variant=cfg.variant,
                    delta=cfg.delta,
                    eps=cfg.eps,
                    theta_init=cfg.theta_init,
                    level_weights_init=cfg.level_weights_init,
                    gate_init=cfg.gate_init,
                    temperature=cfg.temperature,
                    image_feature=cfg.image_feature,
                    seg_maps=cfg.seg_maps,
                ),
            }
        ).to(self.device)
        self.learnable.eval()

    def parameter_breakdown(self) -> list[str]:
        """adbench's parameter groups beside Sec. 4.1.3's: visual encoder = CLIP's image tower plus the
        learnable head, transformer = CLIP's text transformer, embedding layers = its token embedding.
        The DINOv2 tower is listed apart: the paper's 436 M is matched without it."""
        model = self.clip.model
        learnable = _count(self.learnable)
        groups = {
            "visual encoder": _count(model.visual) + learnable,
            "transformer": _count(model.transformer),
            "embedding layers": _count(model.token_embedding),
        }
        groups["total"] = _count(model) + learnable
        lines = ["parameter breakdown (adbench | paper Sec. 4.1.3, M):"]
        lines += [f"  {k}: {v / 1e6:.1f} | {PAPER_BREAKDOWN_M[k]}" for k, v in groups.items()]
        lines.append(f"    of which learnable head and prompts: {learnable / 1e6:.2f}")
        lines.append(
            f"  DINOv2 tower ({self.config.dino_backbone}, frozen): {_count(self.dino) / 1e6:.1f} | not counted"
        )
        return lines

    def _prompt_learner(self) -> PromptLearner:
        from .prompt_learner import PromptLearner

        cfg = self.config
        return PromptLearner.from_words(
            self.clip, cfg.n_ctx, cfg.normal_words, cfg.anomalous_words, "dma_sap.n_ctx"
        )

    # --- the trained-method hooks ------------------------------------------------------------
    def learnable_module(self) -> torch.nn.Module:
        return self.learnable

    def frozen_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """CLIP taps and F_self in the text space, CLIP's CLS embedding, DINO taps (all float32)."""
        ct = self.clip.forward_tokens(images, self.clip_taps, project=True, vv_blocks=self.vv_blocks)
        dt = self.dino.forward_tokens(images, self.dino_taps, cls=False)
        feats = {f"clip{i}": ct.patches[t] for i, t in enumerate(self.clip_taps)}
        feats |= {f"dino{i}": dt.patches[t] for i, t in enumerate(self.dino_taps)}
        feats["self"] = ct.vv[self.clip_taps[-1]]
        feats["cls"] = ct.cls
        return feats

    def text_features(self) -> torch.Tensor:
        """(2, C) normal / anomalous text features from the learnable prompts (frozen text tower)."""
        return self.learnable["prompts"](self.clip.encode_text_embeddings)

    def forward_head(self, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token-grid maps (N, M, h, w) and image logits (N, 2) from frozen features."""
        n_levels = len(self.clip_taps)
        text = self.text_features().float()
        return self.learnable["head"](
            [feats[f"clip{i}"].float() for i in range(n_levels)],
            [feats[f"dino{i}"].float() for i in range(n_levels)],
            feats["self"].float(),
            feats["cls"].float(),
            text,
        )

    def training_loss(
        self, features: dict[str, torch.Tensor], masks: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        maps, logits = self.forward_head(features)  # segmentation_loss resizes each map to the masks
        cfg = self.config
        supervised = (
            range(maps.shape[1] - 2, maps.shape[1])
            if cfg.seg_loss == "segmentation"
            else range(maps.shape[1])
        )
        seg = sum(segmentation_loss(maps[:, m], masks, cfg.dice_weight) for m in supervised)
        if cfg.normal_map_dice:
            seg = seg + sum(normal_map_dice(maps[:, m], masks) for m in supervised)
        if cfg.seg_loss == "mean":
            seg = seg / len(supervised)
        cls = image_cross_entropy(logits, labels)
        loss = seg + self.config.cls_weight * cls
        return loss, {"seg": float(seg.detach()), "cls": float(cls.detach())}

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        with torch.no_grad():
            maps, logits = self.forward_head(self.frozen_features(images))
        scores = torch.softmax(logits, dim=-1)[:, 1]
        amap = torch.nn.functional.interpolate(
            maps.mean(1, keepdim=True), size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        return Prediction(scores=scores.float(), maps=amap[:, 0].float())


@hookimpl
def adbench_methods() -> list[type[Method]]:
    return [DMASAP]
