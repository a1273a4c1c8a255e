"""Tiny randomly initialised models for tests and demos, built through the same library wrappers
(open_clip config mechanism -> :class:`OpenCLIPBackbone`; timm DINOv2 config -> :class:`TimmViTBackbone`).

They carry no pretrained weights: their ``weights`` identity is 'random' (the build is seeded, see
``adbench.backbones.build_from_spec``), unless a file is given or found under ``$ADBENCH_WEIGHTS``.
Results computed with them are labelled random by the runner and mean nothing about real models.
"""

from __future__ import annotations

from .base import BackboneSpec
from .open_clip_backbone import OpenCLIPBackbone, build_open_clip
from .timm_backbone import TimmViTBackbone, build_timm
from .weights import WeightSource

# open_clip model-config overrides (top-level keys of the model config): ViT with patch 14, width 64,
# 4 blocks of 4 heads; text tower width 64, 4 blocks, the standard BPE vocabulary and 77-token context.
TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 112, "layers": 4, "width": 64, "head_width": 16, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 4},
}
# timm overrides of the DINOv2-with-registers architecture: width 96, 4 blocks, 4 heads, 4 registers.
TINY_DINOV2_ARGS = {"embed_dim": 96, "depth": 4, "num_heads": 4, "img_size": 112}


def build_tiny_clip(spec: BackboneSpec, source: WeightSource) -> OpenCLIPBackbone:
    """A 4-block width-64 CLIP (patch 14) from open_clip's factory with an overridden model config."""
    return build_open_clip(spec, source, **TINY_CLIP_CONFIG)


def build_tiny_dinov2(spec: BackboneSpec, source: WeightSource) -> TimmViTBackbone:
    """A 4-block width-96 DINOv2-with-registers ViT (patch 14) from timm's registry with overridden args."""
    return build_timm(spec, source, **TINY_DINOV2_ARGS)
