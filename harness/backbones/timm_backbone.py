"""timm Vision Transformers (DINOv2 ViT-S/B/L/14, with or without registers; tiny-dinov2).

Built with ``dynamic_img_size=True`` so any input size works (timm resamples the position
embeddings per grid). Blocks are run here one by one: tokens can be tapped at any block (prefix
tokens, i.e. CLS and registers, dropped) and the last block's CLS attention is computed from its
``qkv`` layer, because timm's fused attention does not return weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
from torch import nn

from .base import Backbone, BackboneSpec, Tokens
from .weights import WeightSource, download_failure_as_missing


class TimmViTBackbone(Backbone):
    """A frozen timm ``VisionTransformer``; patch tokens default to the final norm applied
    (DINOv2's ``x_norm_patchtokens`` / ``get_intermediate_layers(norm=True)``)."""

    def __init__(self, name: str, model: nn.Module) -> None:
        super().__init__()
        if not getattr(model, "dynamic_img_size", False):
            raise TypeError(f"backbone '{name}': build the timm model with dynamic_img_size=True")
        self.name = name
        self.model = model
        self.patch_size = model.patch_embed.patch_size[0]
        self.embed_dim = model.embed_dim
        self.num_blocks = len(model.blocks)
        self.num_prefix_tokens = model.num_prefix_tokens
        cfg = model.pretrained_cfg or {}
        self.mean = tuple(cfg.get("mean", self.mean))
        self.std = tuple(cfg.get("std", self.std))

    def _cls_attention(self, block: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """CLS-to-patch attention of ``block`` for its input ``x``, averaged over heads, (N, h, w)."""
        attn = block.attn
        n, length, _ = x.shape
        qkv = (
            attn.qkv(block.norm1(x)).view(n, length, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        )
        q, k = attn.q_norm(qkv[0][:, :, :1]), attn.k_norm(qkv[1])
        weights = (q @ k.transpose(-2, -1) * attn.scale).softmax(dim=-1)  # (N, heads, 1, L)
        return weights[:, :, 0, self.num_prefix_tokens :].mean(dim=1).float().unflatten(1, grid)

    def forward_tokens(
        self,
        images: torch.Tensor,
        layers: Sequence[int],
        *,
        norm: bool = True,
        with_attention: bool = False,
        cls: bool = True,
    ) -> Tokens:
        """Patch tokens (N, h, w, C) of ``layers`` for images in [0, 1] of any size.

        ``norm`` applies the model's final LayerNorm to every tapped block (default, as DINOv2's own
        feature API); ``norm=False`` gives the raw residual stream. ``Tokens.cls`` is the normalised
        final CLS token; ``with_attention`` fills ``Tokens.attention``; ``cls=False`` stops early.
        """
        taps = self.layer_indices(layers)
        model = self.model
        depth = self.num_blocks if (cls or with_attention) else max(taps.values(), default=0)
        with self.autocast(images.device):
            x = model.patch_embed(self.normalize(images))  # (N, h, w, C) with dynamic_img_size
            grid = (x.shape[1], x.shape[2])
            x = model.norm_pre(model.patch_drop(model._pos_embed(x)))
            stream: dict[int, torch.Tensor] = {}
            attention = None
            for i, block in enumerate(model.blocks[:depth], start=1):
                if with_attention and i == self.num_blocks:
                    attention = self._cls_attention(block, x, grid)
                x = block(x)
                if i in taps.values():
                    stream[i] = x
            pooled = None
            if depth == self.num_blocks and cls and model.cls_token is not None:
                pooled = model.norm(x[:, 0]).float()

            def finish(t: torch.Tensor) -> torch.Tensor:
                t = t[:, self.num_prefix_tokens :]
                return (model.norm(t) if norm else t).float().unflatten(1, grid)

            patches = {layer: finish(stream[block]) for layer, block in taps.items()}
        return Tokens(patches=patches, cls=pooled, grid=grid, attention=attention)

    def cls_attention(self, images: torch.Tensor) -> torch.Tensor:
        """Last block's CLS-to-patch attention averaged over heads, (N, h, w); registers excluded."""
        tokens = self.forward_tokens(images, [], with_attention=True, cls=False)
        assert tokens.attention is not None
        return tokens.attention


def create_timm(spec: BackboneSpec, source: WeightSource, **overrides: object) -> nn.Module:
    """Build the timm model of ``spec`` with the resolved weights; a local file goes through
    ``pretrained_cfg_overlay=dict(file=...)`` so timm's checkpoint filter converts raw DINOv2 files."""
    name = f"{spec.model_name}.{spec.pretrained}" if spec.pretrained else spec.model_name
    kwargs: dict = {
        "num_classes": 0,
        "dynamic_img_size": True,
        **spec.kwargs.get("model_args", {}),
        **overrides,
    }
    if source.kind == "download":
        with download_failure_as_missing(spec):
            return timm.create_model(name, pretrained=True, **kwargs)
    if source.path is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    return timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay={"file": str(source.path)}, **kwargs
    )


def build_timm(spec: BackboneSpec, source: WeightSource, **overrides: object) -> TimmViTBackbone:
    """Builder for the timm specs (``spec.model_name`` + ``spec.pretrained`` tag, e.g. ``lvd142m``;
    ``overrides`` reach the model args, as for tiny-dinov2)."""
    return TimmViTBackbone(spec.name, create_timm(spec, source, **overrides))
