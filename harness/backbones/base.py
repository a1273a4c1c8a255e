"""One interface over every frozen vision(-language) encoder adbench uses.

A backbone maps images in [0, 1] to patch-token grids at any list of blocks, the CLS token, the
last block's CLS-to-patch attention and (CLIP models) text features. Methods only talk to this
interface, so a method runs on open_clip, timm, a CNN or a tiny random model alike.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import AdbenchError
from ..precision import autocast as precision_autocast
from .spec import CAPABILITIES, CLIP_CAPABILITIES, VIT_CAPABILITIES, BackboneSpec

__all__ = ["CAPABILITIES", "CLIP_CAPABILITIES", "VIT_CAPABILITIES", "Backbone", "BackboneSpec", "Tokens"]


@dataclass
class Tokens:
    """Features of a batch: ``patches[layer]`` is (N, h, w, C) for each requested block (keyed as
    requested: 1-based, or -1 = last); ``cls`` is the final CLS/global token (N, C_out) or None.

    Optional extras some backbones fill on request: ``vv[layer]`` the V-V attention path's patch
    tokens (CLIP, ``vv_blocks > 0``), ``attention`` the last block's CLS-to-patch attention (N, h, w).
    """

    patches: dict[int, torch.Tensor]
    cls: torch.Tensor | None = None
    grid: tuple[int, int] = (0, 0)
    vv: dict[int, torch.Tensor] = field(default_factory=dict)
    attention: torch.Tensor | None = None


class Backbone(nn.Module, ABC):
    """A frozen encoder. ``weights`` is 'random' or an identity of the loaded weights (tag or file hash)."""

    name: str
    patch_size: int
    embed_dim: int
    num_blocks: int
    capabilities: frozenset[str] = frozenset()  # set from the spec by build_from_spec
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    weights: str = "random"
    default_size: int = 224

    @property
    def has_text(self) -> bool:
        """Whether the backbone has a text tower (the ``text`` capability)."""
        return "text" in self.capabilities

    def train(self, mode: bool = True) -> Backbone:
        """Backbones are frozen feature extractors: they stay in eval mode even inside a training module."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        """Device of the backbone's parameters."""
        return next(self.parameters()).device

    def layer_indices(self, layers: Sequence[int]) -> dict[int, int]:
        """Map each requested layer (1-based, or negative from the end: -1 = last) to its 1-based block."""
        out = {}
        for layer in layers:
            block = self.num_blocks + 1 + int(layer) if int(layer) < 0 else int(layer)
            if not 1 <= block <= self.num_blocks:
                raise AdbenchError(
                    f"layer {layer} is out of range for backbone '{self.name}' "
                    f"(blocks 1..{self.num_blocks}, or -1 for the last)"
                )
            out[int(layer)] = block
        return out

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[None]:
        """The job's precision (``adbench.precision``): bf16 autocast when the run asked for it, else
        autocast explicitly off, so an fp32 record's features really are fp32."""
        return precision_autocast(device)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Map images in [0, 1] to the backbone's normalised input."""
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        return (images - mean) / std

    @abstractmethod
    def forward_tokens(
        self, images: torch.Tensor, layers: Sequence[int], *, with_attention: bool = False
    ) -> Tokens:
        """Patch tokens of the given blocks (1-based; -1 = last) for images in [0, 1] of any size.

        ``with_attention`` also fills ``Tokens.attention`` (the last block's CLS attention) from the
        same pass; a backbone without CLS attention raises TypeError, as :meth:`cls_attention` does.
        """

    def batched_tokens(
        self,
        images: torch.Tensor,
        layers: Sequence[int],
        batch_size: int,
        device: torch.device | str,
        **kwargs: object,
    ) -> Iterator[Tokens]:
        """:meth:`forward_tokens` over ``images`` in batches of ``batch_size``, each moved to ``device``:
        the patch methods embed a whole category (or memory) without one oversized pass."""
        for start in range(0, len(images), batch_size):
            yield self.forward_tokens(images[start : start + batch_size].to(device), layers, **kwargs)

    def cls_attention(self, images: torch.Tensor) -> torch.Tensor:
        """Last block's CLS-to-patch attention averaged over heads, (N, h, w)."""
        raise TypeError(f"backbone '{self.name}' has no CLS attention")

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalisable text features (T, C_out) for CLIP models."""
        raise TypeError(f"backbone '{self.name}' has no text tower")
