"""dma_sap: CLIP + DINOv2 hierarchical fusion with Dual-Modality Attention and Stabilized Attention Pooling.

Paper: Jiang et al., "Zero-Shot Industrial Anomaly Detection via CLIP-DINOv2 Multimodal Fusion and
Stabilized Attention Pooling", Electronics 14 (2025) 4785 (``shared/papers/dma_sap__clip_dinov2_fusion.txt``,
Sec. 3 and 4.1.3, ablation Table 7). Frozen CLIP ViT-L/14@336 (quickgelu, openai) tapped at blocks
8/16/24 and DINOv2 (12 blocks) at 4/8/12; per level ``dino_proj`` + DMA (delta 3.0, eps 1.2, learnable
theta); learnable level weights alpha/beta/gamma; learnable normal/anomalous prompts with "object" /
"damaged object"; SAP with a sigmoid gate; loss focal + dice + 0.2 x image CE; Adam lr 1e-3, batch 8,
10 epochs, 336 px. Ablations (Table 7) are ``variant=A|B|C|D``.

Choices where the paper is silent or contradicts itself (all are config values):
* ``dino_backbone``: ViT-B/14 (12 blocks, as the text says; the efficiency paragraph says ViT-L).
* CLIP patch tokens of every tap (and F_self) go through CLIP's own frozen ``ln_post`` + projection into
  the text space (as AnomalyCLIP), so DMA works at the joint width C (768 for ViT-L); ``dino_proj`` maps
  layer-normalised DINO tokens to C. The values DMA aggregates are the level's hierarchical fusion
  CLIP + dino_proj(DINO) (variant B's features); DMA's ``proj`` starts as the identity.
* A_clip's query is the mean of the normalised normal/anomalous text features (the "object" class
  embedding, category-agnostic); A_fused rows are resized bilinearly to the CLIP grid and renormalised.
* ``theta_init`` 1.0, ``level_weights_init`` (1, 1, 1) (the paper reports convergence to 0.5, 0.5, 1.0),
  SAP ``gate_init`` 0 (sigma = 0.5), ``n_ctx`` 12 prompt tokens (AnomalyCLIP's length), temperature 0.07.
* F_self = CLIP's V-V attention path in the last ``vv_blocks`` = 20 blocks (AnomalyCLIP's DPAM), read at
  the deepest tap. The M maps of SAP and the segmentation loss are those of F_fusion and F_self; the
  output map is their mean; L_seg sums focal + ``dice_weight`` (1) x dice over the M maps.
* Image score: variant D uses SAP's f_out; A-C (no SAP) use CLIP's CLS embedding. Variant A fuses the
  deepest taps only, without level weights.
* Taps are given for the paper's depths (CLIP 24, DINOv2 12 blocks) and scale proportionally on other
  depths (the 4-block tiny demo backbones tap 1/3/4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from adbench import hookimpl
from adbench.errors import AdbenchError
from adbench.losses import image_cross_entropy, segmentation_loss
from adbench.methods import Context, Method, Prediction

from .dma_sap_modules import FusionHead, PromptLearner

CLIP_DEPTH = 24
DINO_DEPTH = 12


@dataclass
class DMASAPConfig:
    """dma_sap settings; defaults are the paper's (Sec. 3.3, 4.1.3)."""

    clip_backbone: str = "clip-vitl14-336"
    dino_backbone: str = "dinov2-vitb14"
    image_size: int = 336
    variant: Literal["A", "B", "C", "D"] = "D"
    clip_layers: tuple[int, ...] = (8, 16, 24)
    dino_layers: tuple[int, ...] = (4, 8, 12)
    vv_blocks: int = 20
    delta: float = 3.0
    eps: float = 1.2
    theta_init: float = 1.0
    level_weights_init: tuple[float, ...] = (1.0, 1.0, 1.0)
    gate_init: float = 0.0
    n_ctx: int = 12
    normal_words: str = "object"
    anomalous_words: str = "damaged object"
    temperature: float = 0.07
    cls_weight: float = 0.2
    dice_weight: float = 1.0
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    lr_schedule: Literal["constant", "cosine"] = "constant"
    batch_size: int = 8
    epochs: int = 10


def scale_taps(taps: tuple[int, ...], paper_depth: int, depth: int) -> tuple[int, ...]:
    """Taps given for a ``paper_depth``-block model, moved proportionally to a ``depth``-block one."""
    if depth == paper_depth:
        return tuple(taps)
    return tuple(min(depth, max(1, round(t * depth / paper_depth))) for t in taps)


class DMASAP(Method):
    """CLIP + DINOv2 fusion (DMA) with stabilized attention pooling (SAP); trained on auxiliary data."""

    name = "dma_sap"
    title = "DMA-SAP"
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
    smoothing_sigma = 4.0

    def setup(self) -> None:
        from adbench.backbones import build_backbone

        cfg = self.config
        clip = build_backbone(cfg.clip_backbone, device=self.device, pretrained=self.pretrained_backbones)
        dino = build_backbone(cfg.dino_backbone, device=self.device, pretrained=self.pretrained_backbones)
        self._weights = {cfg.clip_backbone: clip.weights, cfg.dino_backbone: dino.weights}
        self.attach(clip, dino)

    def attach(self, clip: nn.Module, dino: nn.Module) -> None:
        """Build the learnable parts for the given frozen backbones (``setup`` builds them by name)."""
        cfg = self.config
        if not getattr(clip, "has_text", False):
            raise AdbenchError(
                f"dma_sap.clip_backbone={cfg.clip_backbone!r}: needs a CLIP model with a text tower"
            )
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
        self.learnable = nn.ModuleDict(
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
                ),
            }
        ).to(self.device)
        self.learnable.eval()

    def _prompt_learner(self) -> PromptLearner:
        cfg = self.config
        placeholder = " ".join(["X"] * cfg.n_ctx)
        texts = [f"{placeholder} {cfg.normal_words}.", f"{placeholder} {cfg.anomalous_words}."]
        tokens = self.clip.tokenize(texts)
        ctx_ids = tokens[:, 1 : 1 + cfg.n_ctx]
        if not bool((ctx_ids == ctx_ids[0, 0]).all()):
            raise AdbenchError(
                f"dma_sap.n_ctx={cfg.n_ctx}: the tokenizer did not give one token per placeholder"
            )
        with torch.no_grad():
            emb = self.clip.token_embedding(tokens)
        return PromptLearner(tokens, emb, cfg.n_ctx)

    # --- the trained-method hooks ------------------------------------------------------------
    def learnable_module(self) -> nn.Module:
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
        seg = sum(segmentation_loss(maps[:, m], masks, self.config.dice_weight) for m in range(maps.shape[1]))
        cls = image_cross_entropy(logits, labels)
        loss = seg + self.config.cls_weight * cls
        return loss, {"seg": float(seg.detach()), "cls": float(cls.detach())}

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        with torch.no_grad():
            maps, logits = self.forward_head(self.frozen_features(images))
        scores = torch.softmax(logits, dim=-1)[:, 1]
        amap = F.interpolate(
            maps.mean(1, keepdim=True), size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        return Prediction(scores=scores.float(), maps=amap[:, 0].float())


@hookimpl
def adbench_methods() -> list[type[Method]]:
    return [DMASAP]
