"""The category-agnostic learnable text prompt shared by DMA-SAP and AnomalyCLIP (CoOp-style contexts
in front of fixed "object" / "damaged object" words), in one place so no plugin imports another."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from adbench.errors import AdbenchError


class PromptLearner(nn.Module):
    """Two category-agnostic learnable contexts, [ctx_n] + "object" and [ctx_a] + "damaged object".

    The frozen token embeddings of the fixed words are buffers kept out of the state dict; the text
    tower itself stays in the backbone and is passed in at call time.
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        embeddings: torch.Tensor,
        n_ctx: int,
        init_std: float = 0.02,
    ) -> None:
        """``tokens`` (2, L) ids of "X * n_ctx + words" for (normal, anomalous); ``embeddings`` (2, L, D) their
        frozen token embeddings. Positions 1..n_ctx (after SOS) become learnable."""
        super().__init__()
        d = embeddings.shape[-1]
        self.n_ctx = n_ctx
        self.ctx = nn.Parameter(torch.randn(2, n_ctx, d) * init_std)
        self.register_buffer("prefix", embeddings[:, :1].detach().clone(), persistent=False)
        self.register_buffer("suffix", embeddings[:, 1 + n_ctx :].detach().clone(), persistent=False)
        self.register_buffer("eot", tokens.argmax(-1), persistent=False)

    @classmethod
    def from_words(
        cls, clip: nn.Module, n_ctx: int, normal_words: str, anomalous_words: str, option: str
    ) -> PromptLearner:
        """The learner for "X * n_ctx + words." (normal, anomalous), tokenised and embedded by the frozen
        ``clip``; ``option`` (e.g. "dma_sap.n_ctx") is named when the tokenizer splits a placeholder."""
        placeholder = " ".join(["X"] * n_ctx)
        tokens = clip.tokenize([f"{placeholder} {normal_words}.", f"{placeholder} {anomalous_words}."])
        ctx_ids = tokens[:, 1 : 1 + n_ctx]
        if not bool((ctx_ids == ctx_ids[0, 0]).all()):
            raise AdbenchError(f"{option}={n_ctx}: the tokenizer did not give one token per placeholder")
        with torch.no_grad():
            emb = clip.token_embedding(tokens)
        return cls(tokens, emb, n_ctx)

    def embeddings(self) -> torch.Tensor:
        """The (2, L, D) input embeddings with the learnable contexts in place."""
        return torch.cat([self.prefix, self.ctx.to(self.prefix.dtype), self.suffix], dim=1)

    def forward(self, encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Text features (2, C) from ``encode(embeddings, eot_indices)`` (the frozen text tower)."""
        return encode(self.embeddings(), self.eot)
