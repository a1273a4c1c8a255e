"""CLIP's vision tower run block by block with hooks, for methods that change the token stream itself.

The backbone's ``forward_tokens`` covers frozen taps and the V-V path; AdaCLIP (visual prompt tokens
appended to the sequence), MVFA-AD (adapters whose output is fed back into the stream) and Crane
(a self-correlation path beside the original stream) need to act between blocks, so they share this
loop instead of each re-implementing the tower. Gradients flow through the hooks' parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

#: ``hook(block_index (1-based), x (N, L, D)) -> x``; called before / after each block.
Hook = Callable[[int, torch.Tensor], torch.Tensor]


def run_blocks(
    clip: torch.nn.Module,
    images: torch.Tensor,
    *,
    before: Hook | None = None,
    after: Hook | None = None,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The sequence (N, L, D) after the last block (CLS first) and the patch grid (h, w)."""
    visual = clip.model.visual
    x, grid = clip._embed(images)
    x = visual.ln_pre(visual.patch_dropout(x))
    for i, block in enumerate(visual.transformer.resblocks, start=1):
        if before is not None:
            x = before(i, x)
        x = block(x)
        if after is not None:
            x = after(i, x)
    return x, grid


def qkv_heads(block: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (N, heads, L, d) of a block's attention on ``ln_1(x)``."""
    attn = block.attn
    n, length, width = x.shape
    heads = attn.num_heads
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(n, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    return q, k, v


def self_attend(
    block: torch.nn.Module, parts: dict[str, torch.Tensor], kinds: tuple[str, ...]
) -> torch.Tensor:
    """sum over ``kinds`` of softmax(t t^T / sqrt(d)) v, per head, merged over heads and through the
    block's out-projection: (N, L, D). torch's fused attention, so no (N, heads, L, L) matrix is held
    (about 1 GB per kind and block for ViT-L at 518 px and batch 8)."""
    v = parts["vv"]
    out = sum(torch.nn.functional.scaled_dot_product_attention(parts[k], parts[k], v) for k in kinds)
    return block.attn.out_proj(out.transpose(1, 2).flatten(2))


def self_correlation_stream(
    clip: torch.nn.Module, images: torch.Tensor, kinds: tuple[str, ...], blocks: int, taps: tuple[int, ...]
) -> tuple[torch.Tensor, dict[int, torch.Tensor], tuple[int, int]]:
    """CLIP Surgery-style second stream in the last ``blocks`` blocks: it starts from the block input and
    adds, per block, the sum over ``kinds`` ("qq", "kk", "vv") of softmax(t t^T) applied to v of the
    original stream, through the out-projection, skipping the MLP (V-V attention is ``("vv",)``; Crane's
    E-Attn ``("qq", "kk", "vv")``). Returns the final original sequence (N, L, D), each tap's sequence
    (the second stream inside its range, else the original) and the grid."""
    resblocks = clip.model.visual.transformer.resblocks
    start = len(resblocks) - blocks + 1
    state: dict[str, torch.Tensor] = {}
    levels: dict[int, torch.Tensor] = {}

    def refine(i: int, x: torch.Tensor) -> torch.Tensor:
        if i >= start:
            q, k, v = qkv_heads(resblocks[i - 1], x)
            parts = {"qq": q, "kk": k, "vv": v}
            state["sc"] = state.get("sc", x) + self_attend(resblocks[i - 1], parts, kinds)
        return x

    def read(i: int, x: torch.Tensor) -> torch.Tensor:
        if i in taps:
            levels[i] = state.get("sc", x)
        return x

    x, grid = run_blocks(clip, images, before=refine, after=read)
    return x, levels, grid


def build_frozen_clip(method: object) -> torch.nn.Module:
    """The frozen CLIP named by ``method.config.backbone`` on the method's device (random when
    ``pretrained_backbones`` is off), its weights identity recorded on the method."""
    from adbench.backbones import build_backbone

    name = method.config.backbone  # type: ignore[attr-defined]
    clip = build_backbone(name, device=method.device, pretrained=method.pretrained_backbones)  # type: ignore[attr-defined]
    method._weights = {name: clip.weights}  # type: ignore[attr-defined]
    return clip
