"""The learnable modules of vip2clip on plain tensors: ICA prompt learner, FGP, UTPA scoring.

Nothing here builds or calls a backbone: the prompt learner takes the frozen text tower as a callable,
FGP and UTPA take patch tokens (N, L, D) and text features, so every invariant is unit-testable on
random tensors. See ``vip2clip.py`` for the paper reference and the choices made where it is silent.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

#: ``encode(embeddings (T, L, W), eot_indices (T,)) -> (T, C)``: the frozen text tower (encode_text_embeddings).
TextEncoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class MetaNet(nn.Module):
    """ICA's Meta-Net, Linear-ReLU-Linear: a global image embedding (N, C_in) -> ``tokens`` offsets (N, r, W)."""

    def __init__(self, in_dim: int, hidden: int, width: int, tokens: int) -> None:
        super().__init__()
        self.tokens, self.width = tokens, width
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, tokens * width)
        )

    def forward(self, image_embedding: torch.Tensor) -> torch.Tensor:
        return self.net(image_embedding).view(-1, self.tokens, self.width)


class ViPPromptLearner(nn.Module):
    """Class-name-free prompts g_n = [v_1..v_e] good [z_1..z_r], g_a = [w_1..w_e] damaged [z_1..z_r].

    v / w are per-prompt learnable tokens; z_i = o_i + a_i with o shared by both prompts and a the
    Meta-Net's image-conditioned offsets (ICA; without a Meta-Net z_i = o_i, static prompts). The
    frozen embeddings of the fixed words are a buffer kept out of the state dict.
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        embeddings: torch.Tensor,
        placeholder: int,
        n_front: int,
        n_back: int,
        meta: MetaNet | None = None,
        init_std: float = 0.02,
    ) -> None:
        """``tokens`` (2, L) ids of "X*e word X*r." for (normal, anomalous), ``embeddings`` (2, L, W) their
        frozen token embeddings; the ``placeholder`` id marks the e front and r back learnable slots."""
        super().__init__()
        slots = [torch.nonzero(row == placeholder).flatten() for row in tokens]
        if any(len(s) != n_front + n_back for s in slots):
            raise ValueError("the tokenizer did not give one token per prompt placeholder")
        width = embeddings.shape[-1]
        self.n_front, self.n_back = n_front, n_back
        self.front = nn.Parameter(torch.randn(2, n_front, width) * init_std)  # v (normal), w (anomalous)
        self.shared = nn.Parameter(torch.randn(n_back, width) * init_std)  # o_1..o_r
        self.meta = meta
        self.register_buffer("base", embeddings.detach().clone(), persistent=False)
        self.register_buffer("front_idx", torch.stack([s[:n_front] for s in slots]), persistent=False)
        self.register_buffer("back_idx", torch.stack([s[n_front:] for s in slots]), persistent=False)
        eot = tokens.argmax(-1)
        self.register_buffer("eot", eot, persistent=False)
        self.length = int(eot.max()) + 1  # the causal text tower ignores tokens after EOT: run only this far

    def embeddings(self, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Input embeddings (B, 2, L, W): B = 1 for static prompts, else one pair per row of ``offsets`` (B, r, W)."""
        z = self.shared[None] if offsets is None else self.shared[None] + offsets.to(self.shared.dtype)
        b = z.shape[0]
        x = self.base[:, : self.length].to(z.dtype).expand(b, -1, -1, -1).clone()
        rows = torch.arange(2, device=x.device)[:, None]
        x[:, rows, self.front_idx] = self.front.to(z.dtype).expand(b, -1, -1, -1)
        x[:, rows, self.back_idx] = z[:, None].expand(-1, 2, -1, -1)
        return x

    def forward(self, encode: TextEncoder, image_embedding: torch.Tensor | None = None) -> torch.Tensor:
        """Text features (B, 2, C): B = N image-conditioned pairs with a Meta-Net and ``image_embedding``
        (N, C_in), else one static pair (B = 1)."""
        offsets = (
            self.meta(image_embedding) if self.meta is not None and image_embedding is not None else None
        )
        x = self.embeddings(offsets)
        b = x.shape[0]
        feats = encode(x.flatten(0, 1), self.eot.repeat(b))
        return feats.view(b, 2, -1)


class FGP(nn.Module):
    """Fine-Grained Perception: the two text features query one layer's patch tokens (single-head
    cross-attention, Eq. 6): G~ = softmax(G W_q (F W_k)^T / sqrt(C)) F W_v W_o, text (C) -> patch width (D)."""

    def __init__(self, text_dim: int, patch_dim: int) -> None:
        super().__init__()
        self.q = nn.Linear(text_dim, text_dim)
        self.k = nn.Linear(patch_dim, text_dim)
        self.v = nn.Linear(patch_dim, text_dim)
        self.o = nn.Linear(text_dim, patch_dim)

    def attention(self, text: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Attention weights (N, 2, L) of the two prompts over the patches (the paper's Fig. 3)."""
        q, k = self.q(text), self.k(patches)
        return torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)

    def forward(self, text: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """``text`` (N, 2, C), ``patches`` (N, L, D) -> layer-specific prompts (N, 2, D)."""
        attended = F.scaled_dot_product_attention(self.q(text), self.k(patches), self.v(patches))
        return self.o(attended)


def alignment_logits(tokens: torch.Tensor, prompts: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cosine / temperature of tokens (N, L, D) or (N, D) against prompts (N, 2, D) -> (N, L, 2) or (N, 2)."""
    t = F.normalize(tokens.float(), dim=-1)
    p = F.normalize(prompts.float(), dim=-1)
    if t.dim() == 2:
        return torch.einsum("nd,nkd->nk", t, p) / temperature
    return torch.einsum("nld,nkd->nlk", t, p) / temperature


def topk_descriptor(patches: torch.Tensor, anomaly: torch.Tensor, k: int) -> torch.Tensor:
    """UTPA's image descriptor F_a (Eq. 8): mean of the k patches (N, L, D) with the highest ``anomaly`` (N, L)."""
    k = max(1, min(int(k), patches.shape[1]))
    idx = anomaly.topk(k, dim=1).indices
    return torch.gather(patches, 1, idx[..., None].expand(-1, -1, patches.shape[-1])).mean(1)


def combine_maps(normal: torch.Tensor, anomalous: torch.Tensor) -> torch.Tensor:
    """Eq. 11 before smoothing: mean over layers (dim 1) of (1 - M_n)/2 + M_a/2; in [0, 1] for maps in [0, 1]."""
    return (0.5 * (1 - normal) + 0.5 * anomalous).mean(1)


class UTPAHead(nn.Module):
    """FGP (optional, one module shared by the layers) and the per-layer text-patch alignment.

    Returns, per layer, the normal / anomalous patch probabilities (N, layers, 2, L) and the image
    logits of the top-k descriptor (N, layers, 2) (UTPA); ``global_logits`` scores the CLS embedding
    (the dual-branch ablation).
    """

    def __init__(self, text_dim: int, patch_dim: int, fgp: bool, top_k: int, temperature: float) -> None:
        super().__init__()
        self.fgp = FGP(text_dim, patch_dim) if fgp else None
        self.top_k, self.temperature = top_k, temperature

    def layer_prompts(self, text: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """G~^l (N, 2, D): FGP's output, or the text features themselves without FGP."""
        if self.fgp is None:
            return text.expand(patches.shape[0], -1, -1)
        return self.fgp(text.expand(patches.shape[0], -1, -1).to(patches.dtype), patches)

    def forward(self, text: torch.Tensor, layers: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``text`` (N or 1, 2, C), ``layers`` [(N, L, D)] -> probabilities (N, layers, 2, L), logits (N, layers, 2)."""
        probs, logits = [], []
        for patches in layers:
            prompts = self.layer_prompts(text, patches)
            p = torch.softmax(alignment_logits(patches, prompts, self.temperature), dim=-1)  # (N, L, 2)
            descriptor = topk_descriptor(patches, p[..., 1], self.top_k)
            probs.append(p.transpose(1, 2))
            logits.append(alignment_logits(descriptor, prompts, self.temperature))
        return torch.stack(probs, 1), torch.stack(logits, 1)

    def global_logits(self, text: torch.Tensor, image_embedding: torch.Tensor) -> torch.Tensor:
        """Dual-branch image logits (N, 2): the CLS embedding against the (pre-FGP) text features."""
        return alignment_logits(
            image_embedding, text.expand(image_embedding.shape[0], -1, -1), self.temperature
        )
