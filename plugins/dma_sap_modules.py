"""The learnable modules of dma_sap on plain tensors: DMA, hierarchical fusion, SAP, prompt learner.

Nothing here builds or calls a backbone: the fusion head takes frozen token grids (N, h, w, C) and
text features (2, C), so every invariant is unit-testable on random tensors. See ``dma_sap.py``
for the paper reference and the choices made where the paper is silent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = ("A", "B", "C", "D")
IMAGE_FEATURES = ("cls_sap", "sap")
SEG_MAPS = ("levels", "fusion")


def dino_self_attention(f: torch.Tensor, delta: float = 3.0, eps: float = 1.2) -> torch.Tensor:
    """A_dino = softmax(delta * (S - eps * mean(S))) over keys, S = cosine self-similarity of f (N, L, D)."""
    z = F.normalize(f, dim=-1)
    s = z @ z.transpose(1, 2)
    mu = s.mean(dim=(1, 2), keepdim=True)
    return torch.softmax(delta * (s - eps * mu), dim=-1)


def clip_guided_attention(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """A_clip = softmax(q K^T / sqrt(D)) over keys: ``query`` (D,) or (N, D), ``keys`` (N, L, D) -> (N, 1, L)."""
    q = query.expand(keys.shape[0], -1) if query.dim() == 1 else query
    return torch.softmax((q[:, None, :] @ keys.transpose(1, 2)) / math.sqrt(keys.shape[-1]), dim=-1)


def resize_attention(a: torch.Tensor, src: tuple[int, int], dst: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize an attention matrix (N, Lq, Lk) on grid ``src`` to grid ``dst`` along both axes.

    Rows are renormalised to their original sums, so a row-stochastic matrix stays row-stochastic.
    """
    if tuple(src) == tuple(dst):
        return a
    n, lq, lk = a.shape
    sums = a.sum(-1, keepdim=True).mean(1, keepdim=True)  # (N, 1, 1): the row sum to keep
    # keys axis: (N*Lq, 1, h', w') -> dst grid
    a = F.interpolate(a.reshape(n * lq, 1, *src), size=dst, mode="bilinear", align_corners=False)
    a = a.reshape(n, lq, -1).transpose(1, 2)  # (N, Lk_dst, Lq)
    a = F.interpolate(a.reshape(-1, 1, *src), size=dst, mode="bilinear", align_corners=False)
    a = a.reshape(n, -1, dst[0] * dst[1]).transpose(1, 2).clamp_min(0)  # (N, Lq_dst, Lk_dst)
    return a / a.sum(-1, keepdim=True).clamp_min(1e-12) * sums


def resize_grid(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a token grid (N, h, w, C) to (N, *size, C)."""
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    y = F.interpolate(x.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False)
    return y.permute(0, 2, 3, 1)


def anomaly_map(tokens: torch.Tensor, text: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Probability of "anomalous" per token: softmax over {normal, anomalous} of cosine / temperature.

    ``tokens`` (N, ..., C), ``text`` (2, C) ordered (normal, anomalous); returns (N, ...).
    """
    logits = F.normalize(tokens, dim=-1) @ F.normalize(text, dim=-1).T / temperature
    return torch.softmax(logits.float(), dim=-1)[..., 1]


def image_logits(feature: torch.Tensor, text: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """(N, 2) normal/anomalous logits of global features (N, C) against text features (2, C)."""
    return (F.normalize(feature, dim=-1) @ F.normalize(text, dim=-1).T / temperature).float()


def _identity_linear(dim: int) -> nn.Linear:
    """A ``dim -> dim`` linear layer that starts as the identity (an untrained layer changes nothing)."""
    layer = nn.Linear(dim, dim)
    nn.init.eye_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class DMA(nn.Module):
    """Dual-Modality Attention of one level: DINO self-similarity plus CLIP-text-guided attention
    (A_fused = A_dino + theta * A_clip) aggregates the values, then a projection ``proj``.

    A_clip = softmax(Q K^T / sqrt(D)) with Q = W_q LN(text query), K = W_k LN(projected DINO tokens):
    layer-normalised inputs have unit variance per channel, so Q K^T / sqrt(D) = sqrt(D) x cosine at
    the identity start, and patches that match the text get a peaked weight (a mean of unit text
    features against raw tokens gives logits of ~1/sqrt(D) and an almost uniform A_clip).
    """

    def __init__(self, dim: int, delta: float = 3.0, eps: float = 1.2, theta_init: float = 1.0) -> None:
        super().__init__()
        self.delta, self.eps = delta, eps
        self.theta = nn.Parameter(torch.tensor(float(theta_init)))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        # choice: identity starts, so an untrained DMA attends by cosine and passes the values through
        self.q_proj = _identity_linear(dim)
        self.k_proj = _identity_linear(dim)
        self.proj = _identity_linear(dim)

    def clip_attention(self, dino: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """A_clip (N, 1, L') of the text ``query`` (D,) or (N, D) over DINO tokens (N, h', w', D)."""
        n, h, w, d = dino.shape
        keys = self.k_proj(self.norm(dino.reshape(n, h * w, d)))
        return clip_guided_attention(self.q_proj(self.norm(query)), keys)

    def attention(self, dino: torch.Tensor, query: torch.Tensor, dst: tuple[int, int]) -> torch.Tensor:
        """A_fused (N, L_dst, L_dst) from projected DINO tokens (N, h', w', D) and the text query (D,)."""
        n, h, w, d = dino.shape
        flat = dino.reshape(n, h * w, d)
        a_dino = dino_self_attention(flat, self.delta, self.eps)
        a_clip = self.clip_attention(dino, query)  # (N, 1, L'): same for every query position
        fused = a_dino + self.theta * a_clip
        return resize_attention(fused, (h, w), dst)

    def forward(self, values: torch.Tensor, dino: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """``values`` (N, h, w, D) on the CLIP grid, ``dino`` projected (N, h', w', D) -> (N, h, w, D)."""
        n, h, w, d = values.shape
        a = self.attention(dino, query, (h, w))
        out = a.to(values.dtype) @ values.reshape(n, h * w, d)
        return self.proj(out).reshape(n, h, w, d)


class SAP(nn.Module):
    """Stabilized Attention-based Pooling: anomaly-map-weighted base feature, a light attention
    refinement, and a sigmoid gate between them."""

    def __init__(self, dim: int, gate_init: float = 0.0) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.gate = nn.Parameter(torch.tensor(float(gate_init)))

    @staticmethod
    def patch_weights(maps: torch.Tensor) -> torch.Tensor:
        """W = softmax over patches of the mean of the M maps: (N, M, L) -> (N, L)."""
        return torch.softmax(maps.float().mean(1), dim=-1)

    def forward(self, patches: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """``patches`` (N, L, C), ``maps`` (N, M, L) anomaly maps on the token grid -> f_out (N, C)."""
        w = self.patch_weights(maps).to(patches.dtype)[..., None]  # (N, L, 1)
        f_base = (w * patches).sum(1)
        q = self.query(f_base)
        k = patches * w
        a = torch.softmax((q[:, None, :] @ k.transpose(1, 2)) / patches.shape[-1], dim=-1)  # (N, 1, L)
        f_attn = (a @ patches)[:, 0]
        g = torch.sigmoid(self.gate)
        return (1 - g) * f_base + g * f_attn


class FusionHead(nn.Module):
    """Everything learnable in dma_sap except the prompts: per-level ``dino_proj``, DMA, level weights
    alpha/beta/gamma and SAP, switched by the ablation ``variant`` (Table 7)."""

    def __init__(
        self,
        dim: int,
        dino_dim: int,
        levels: int = 3,
        variant: str = "D",
        delta: float = 3.0,
        eps: float = 1.2,
        theta_init: float = 1.0,
        level_weights_init: Sequence[float] = (1.0, 1.0, 1.0),
        gate_init: float = 0.0,
        temperature: float = 0.07,
        image_feature: str = "cls_sap",
        seg_maps: str = "levels",
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r}: expected one of {', '.join(VARIANTS)}")
        if image_feature not in IMAGE_FEATURES:
            raise ValueError(f"image_feature {image_feature!r}: expected one of {', '.join(IMAGE_FEATURES)}")
        if seg_maps not in SEG_MAPS:
            raise ValueError(f"seg_maps {seg_maps!r}: expected one of {', '.join(SEG_MAPS)}")
        self.variant = variant
        self.image_feature, self.seg_maps = image_feature, seg_maps
        self.temperature = temperature
        self.levels = 1 if variant == "A" else levels
        self.dino_norm = nn.LayerNorm(dino_dim, elementwise_affine=False)
        self.dino_proj = nn.ModuleList(nn.Linear(dino_dim, dim) for _ in range(self.levels))
        self.dma = nn.ModuleList(
            DMA(dim, delta, eps, theta_init) for _ in range(self.levels if variant in ("C", "D") else 0)
        )
        if variant != "A":
            if len(level_weights_init) != levels:
                raise ValueError(f"level_weights_init needs {levels} values, got {len(level_weights_init)}")
            self.level_weights = nn.Parameter(torch.tensor([float(v) for v in level_weights_init]))
        self.sap = SAP(dim, gate_init) if variant == "D" else None

    def fuse(
        self, clip: Sequence[torch.Tensor], dino: Sequence[torch.Tensor], text: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """F_fusion (N, h, w, C) and each fused level (shallow -> deep) from CLIP and DINO levels
        (A fuses the deepest only)."""
        if self.variant == "A":
            clip, dino = clip[-1:], dino[-1:]
        grid = tuple(clip[0].shape[1:3])
        query = F.normalize(text.float(), dim=-1).mean(0).to(clip[0].dtype)  # the class ("object") embedding
        fused = []
        for i, (c, d) in enumerate(zip(clip, dino, strict=True)):
            d = self.dino_proj[i](self.dino_norm(d))
            values = c + resize_grid(d, grid)  # hierarchical fusion of the level (B)
            fused.append(self.dma[i](values, d, query) if self.dma else values)
        if self.variant == "A":
            return fused[0], fused
        return sum(wt * f for wt, f in zip(self.level_weights, fused, strict=True)), fused

    def forward(
        self,
        clip: Sequence[torch.Tensor],
        dino: Sequence[torch.Tensor],
        f_self: torch.Tensor,
        cls: torch.Tensor,
        text: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token-grid anomaly maps (N, M, h, w) and image logits (N, 2).

        ``seg_maps="levels"``: M = one map per fused level (when there are several), F_fusion's and
        F_self's (SAP's multi-scale {A_m}); ``"fusion"``: F_fusion's and F_self's only. The image
        feature phi(I) is CLIP's CLS embedding, enhanced by SAP in variant D: CLS + f_out
        (``image_feature="cls_sap"``) or f_out alone (``"sap"``).
        """
        fusion, levels = self.fuse(clip, dino, text)
        n, h, w, c = fusion.shape
        f_self = resize_grid(f_self, (h, w))
        grids = (
            [*levels, fusion, f_self] if self.seg_maps == "levels" and len(levels) > 1 else [fusion, f_self]
        )
        maps = torch.stack([anomaly_map(g, text, self.temperature) for g in grids], 1)
        feature = cls
        if self.sap is not None:
            pooled = self.sap(
                fusion.reshape(n, h * w, c), maps.reshape(n, maps.shape[1], h * w).to(fusion.dtype)
            )
            feature = cls + pooled if self.image_feature == "cls_sap" else pooled
        return maps, image_logits(feature, text, self.temperature)
