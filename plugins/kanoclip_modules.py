"""The learnable modules of KAnoCLIP on plain tensors: knowledge-driven prompts, deformable
self-attention, Bi-CMCI stages and the Conv-Adapter.

Nothing here builds a backbone: the prompt learner takes the frozen tokenizer / embedding / text
tower as callables, the other modules take token grids (N, h, w, C) and text features (N, 2, C), so
every invariant is unit-testable on random tensors. See ``kanoclip.py`` for the paper reference and
the choices made where the paper is silent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Tokenize = Callable[[Sequence[str]], torch.Tensor]
Embed = Callable[[torch.Tensor], torch.Tensor]
Encode = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class KnowledgePromptLearner(nn.Module):
    """Learnable prefixes [N_1..N_K] and [A_1..A_K] before "[state word] [class]." (Eq. 1).

    One prompt per state word (normal: "normal", "perfect"; abnormal: "abnormal", "defective");
    a class's normal / abnormal text feature is the mean of its prompts' features (w̄n, w̄a).
    Token ids and frozen embeddings of the fixed words are rebuilt per class list and kept out of
    the state dict.
    """

    def __init__(
        self,
        dim: int,
        n_ctx: int,
        normal_words: Sequence[str],
        abnormal_words: Sequence[str],
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.n_ctx = n_ctx
        self.words = (tuple(normal_words), tuple(abnormal_words))
        self.ctx = nn.Parameter(torch.randn(2, n_ctx, dim) * init_std)  # [N_1..N_K], [A_1..A_K]

    def texts(self, class_names: Sequence[str]) -> list[str]:
        """Placeholder prompts, class-major: for each class its normal words then its abnormal words."""
        placeholder = " ".join(["X"] * self.n_ctx)
        return [f"{placeholder} {w} {c}." for c in class_names for group in self.words for w in group]

    def forward(
        self, class_names: Sequence[str], tokenize: Tokenize, embed: Embed, encode: Encode
    ) -> torch.Tensor:
        """(C, 2, D_out) mean normal / abnormal text features per class (not normalised)."""
        tokens = tokenize(self.texts(class_names))
        with torch.no_grad():
            frozen = embed(tokens)
        n_normal, n_abnormal = (len(g) for g in self.words)
        which = torch.tensor([0] * n_normal + [1] * n_abnormal, device=frozen.device).repeat(len(class_names))
        ctx = self.ctx.to(frozen.dtype)[which]  # (T, K, D): each prompt's prefix
        emb = torch.cat([frozen[:, :1], ctx, frozen[:, 1 + self.n_ctx :]], dim=1)
        feats = encode(emb, tokens.argmax(-1))  # (T, D_out)
        per_class = feats.reshape(len(class_names), n_normal + n_abnormal, -1)
        return torch.stack([per_class[:, :n_normal].mean(1), per_class[:, n_normal:].mean(1)], dim=1)


class DeformableSelfAttention(nn.Module):
    """Deformable multi-head self-attention over a token grid (Xia et al. 2022, DAT), with
    ``torch.nn.functional.grid_sample`` instead of a compiled extension.

    Every position queries keys / values sampled bilinearly at a (h/stride, w/stride) grid of
    reference points moved by offsets predicted from the queries (depthwise conv, GELU, 1x1 conv,
    tanh-bounded to ``offset_range`` grid cells).
    """

    def __init__(self, dim: int, heads: int = 8, stride: int = 2, offset_range: float = 2.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.stride, self.offset_range = heads, stride, offset_range
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.offset = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.GELU(), nn.Conv2d(dim, 2, 1, bias=False)
        )
        nn.init.zeros_(self.offset[-1].weight)  # start at the reference grid

    def sample_points(self, x: torch.Tensor) -> torch.Tensor:
        """Sampling positions (N, h', w', 2) as (x, y) in [-1, 1] (align_corners=True) for a grid (N, h, w, C)."""
        n, h, w, _ = x.shape
        hs, ws = max(1, h // self.stride), max(1, w // self.stride)
        q = self.q(x).permute(0, 3, 1, 2)
        q = F.adaptive_avg_pool2d(q, (hs, ws))
        off = torch.tanh(self.offset(q)).permute(0, 2, 3, 1) * self.offset_range  # (N, h', w', 2) in cells
        ys = torch.linspace(0, h - 1, hs, device=x.device, dtype=x.dtype)
        xs = torch.linspace(0, w - 1, ws, device=x.device, dtype=x.dtype)
        ref = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (h', w', 2) (x, y) in cells
        pos = (ref + off).clone()
        pos[..., 0] = pos[..., 0] / max(w - 1, 1) * 2 - 1
        pos[..., 1] = pos[..., 1] / max(h - 1, 1) * 2 - 1
        return pos

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, h, w, C) -> (N, h, w, C)."""
        n, h, w, c = x.shape
        pos = self.sample_points(x)
        sampled = F.grid_sample(
            x.permute(0, 3, 1, 2), pos, mode="bilinear", padding_mode="border", align_corners=True
        )  # (N, C, h', w')
        k, v = self.kv(sampled.flatten(2).transpose(1, 2)).chunk(2, dim=-1)  # (N, S, C)
        q = self.q(x).reshape(n, h * w, c)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n, t.shape[1], self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return self.out(out.transpose(1, 2).reshape(n, h, w, c))


class BiCMCIStage(nn.Module):
    """One stage of Bi-CMCI: deformable self-attention over the patch grid, self-attention over the
    two text tokens, then bidirectional cross-attention with one shared similarity matrix (BiXT):
    text-to-visual refines patches, visual-to-text refines the text; maps from the refined pair."""

    def __init__(self, dim: int, heads: int = 8, stride: int = 2, offset_range: float = 2.0) -> None:
        super().__init__()
        self.norm_v, self.norm_t = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.visual_sa = DeformableSelfAttention(dim, heads, stride, offset_range)
        self.text_sa = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_v2, self.norm_t2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ref_v, self.ref_t = nn.Linear(dim, dim), nn.Linear(dim, dim)  # shared-similarity projections
        self.val_v, self.val_t = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out_v, self.out_t = nn.Linear(dim, dim), nn.Linear(dim, dim)
        for lin in (self.out_v, self.out_t):  # choice: residual branches start at zero (stage = identity)
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        for lin in (self.visual_sa.out, self.text_sa.out_proj):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, patches: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``patches`` (N, h, w, C), ``text`` (N, 2, C) -> refined (N, h, w, C) and (N, 2, C)."""
        n, h, w, c = patches.shape
        v = patches + self.visual_sa(self.norm_v(patches))
        t_norm = self.norm_t(text)
        t = text + self.text_sa(t_norm, t_norm, t_norm, need_weights=False)[0]
        vf, tn = self.norm_v2(v).reshape(n, h * w, c), self.norm_t2(t)
        sim = self.ref_v(vf) @ self.ref_t(tn).transpose(1, 2) / c**0.5  # (N, L, 2), shared by both directions
        v = v + self.out_v(torch.softmax(sim, dim=-1) @ self.val_t(tn)).reshape(n, h, w, c)
        t = t + self.out_t(torch.softmax(sim.transpose(1, 2), dim=-1) @ self.val_v(vf))
        return v, t


def state_maps(patches: torch.Tensor, text: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """(N, 2, h, w) softmax over {normal, abnormal} of cosine(patch, text) / temperature.

    ``patches`` (N, h, w, C), ``text`` (N, 2, C) ordered (normal, abnormal).
    """
    logits = torch.einsum("nhwc,nkc->nkhw", F.normalize(patches, dim=-1), F.normalize(text, dim=-1))
    return torch.softmax(logits.float() / temperature, dim=1)


class BiCMCI(nn.Module):
    """Bi-CMCI over the stages: per-stage maps summed and normalised to [0, 1] (mean over stages),
    giving M_n, M_a (N, h, w). With ``enabled=False`` the stage maps come from the raw patches and
    text (the ablation without Bi-CMCI)."""

    def __init__(
        self,
        dim: int,
        stages: int = 4,
        enabled: bool = True,
        heads: int = 8,
        stride: int = 2,
        offset_range: float = 2.0,
        temperature: float = 0.07,
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.stages = nn.ModuleList(
            BiCMCIStage(dim, heads, stride, offset_range) for _ in range(stages if enabled else 0)
        )
        self.n_stages = stages

    def forward(
        self, patches: Sequence[torch.Tensor], text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``patches`` one (N, h, w, C) grid per stage, ``text`` (N, 2, C) -> M_n, M_a (N, h, w)."""
        if len(patches) != self.n_stages:
            raise ValueError(f"Bi-CMCI expects {self.n_stages} stages, got {len(patches)}")
        total = 0
        for i, p in enumerate(patches):
            v, t = self.stages[i](p, text) if self.stages else (p, text)
            total = total + state_maps(v, t, self.temperature)
        m = total / len(patches)  # Norm(sum): each stage map lies in [0, 1], so the mean does too
        return m[:, 0], m[:, 1]


def combine_maps(m_n: torch.Tensor, m_a: torch.Tensor) -> torch.Tensor:
    """M = (M_a + 1 - M_n) / 2 before the Gaussian filter (Eq. 10); the filter is applied by the caller."""
    return (m_a + 1 - m_n) / 2


class ConvAdapter(nn.Module):
    """Depthwise-separable bottleneck on the global feature, Eq. 11: Î_G = W_up ReLU(DW(LN(I_G) W_down)).

    On a single feature vector the depthwise convolution has spatial size 1 (a learnable
    per-channel scale); W_down / W_up are the pointwise (1x1) convolutions of Eq. 11. With
    ``residual`` (a recorded choice, not in Eq. 11) I_G is added and W_up starts at zero, so the
    untrained adapter is the identity.
    """

    def __init__(self, dim: int, reduction: int = 4, residual: bool = False) -> None:
        super().__init__()
        hidden = max(1, dim // reduction)
        self.residual = residual
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Conv1d(dim, hidden, 1)
        self.depthwise = nn.Conv1d(hidden, hidden, 1, groups=hidden)
        self.up = nn.Conv1d(hidden, dim, 1)
        if residual:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (N, C)."""
        x = self.norm(feature)[..., None]
        branch = self.up(F.relu(self.depthwise(self.down(x))))[..., 0]
        return feature + branch if self.residual else branch


def global_probability(feature: torch.Tensor, text: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """softmax(Î_G · F_text^T)[abnormal] per image: ``feature`` (N, C), ``text`` (N, 2, C) -> (N,)."""
    logits = torch.einsum("nc,nkc->nk", F.normalize(feature, dim=-1), F.normalize(text, dim=-1))
    return torch.softmax(logits.float() / temperature, dim=-1)[:, 1]
