"""crane: context-guided prompt learning with self-correlation attention (Crane), trained on auxiliary data.

Paper: Salehi et al., "Crane: Context-Guided Prompt Learning and Attention Refinement for Zero-Shot
Anomaly Detection", 2025; official code github.com/AlirezaSalehy/Crane (``train.py``, ``test.py``,
``models/Crane.py``, ``models/prompt_ensemble.py``, ``reproduce.sh``) at 39181f9. The DMA-SAP table's
"Crane" is the base version (``reproduce.sh``: ``--dino_model none``, layers 6 12 18 24), not Crane+.
Frozen CLIP ViT-L/14@336 (OpenAI) at 518 px. Attention refinement (E-Attn, not learned): in the last
20 blocks a second stream adds ``softmax(qq^T) + softmax(kk^T) + softmax(vv^T)`` applied to v (q, k, v
of the original stream) through the block's out-projection and skips the MLP; the tapped tokens come
from it, through ``ln_post`` + projection. Learnable (AnomalyCLIP's prompt learner): 12 context tokens
before "object." / "damaged object." and 4 tokens at the input of text blocks 2..9; context guidance:
the image's unit class embedding is inserted after the context tokens ("pad_suffix"), so the text
features are per image. Maps: per level softmax of cosine / 0.07; image feature: score-based pooling
(patch tokens averaged over levels, weighted by P(anomalous) of the levels' mean logits) mixed 0.5/0.5
with the class embedding. Loss: 2 x sum over levels of (focal + dice of P(anomalous)) + 0.2 x CE of the
image logits / 0.01; Adam lr 1e-3, betas (0.6, 0.999), batch 8, 5 epochs. Inference (``--soft_mean``):
map = mean over levels of P(anomalous), Gaussian sigma 4; image score = P(anomalous) of the pooled
image feature at temperature 0.07.

Choices (config values where they are settings):
* Position embeddings at 518 px are resampled bicubically by the shared backbone (the code: bilinear).
* Layers and ``eattn_layers`` are given for 24 blocks, ``deep_prompt_depth`` for 12 text layers; they
  scale on tiny demo towers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import lazy_loader as lazy

from adbench import hookimpl
from adbench.backbones.spec import scale_taps
from adbench.config import setting
from adbench.losses import dice_loss, focal_loss
from adbench.methods import Context, Method, Prediction, TrainedConfig

if TYPE_CHECKING:
    from .prompt_learner import PromptLearner

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free

CLIP_DEPTH = 24
TEXT_DEPTH = 12


@dataclass
class CraneConfig(TrainedConfig):
    """crane settings; defaults are ``reproduce.sh``'s Crane (train.py / test.py)."""

    backbone: str = "clip-vitl14-336"
    image_size: int = setting(518, ge=14, le=4096)
    n_ctx: int = setting(12, ge=1, doc="learnable context tokens per prompt")
    deep_prompt_depth: int = setting(9, ge=1, doc="text layers 2..depth get learnable tokens")
    deep_prompt_length: int = setting(4, ge=1, doc="learnable tokens per text layer")
    feature_layers: tuple[int, ...] = setting(
        (6, 12, 18, 24),
        ge=1,
        le=24,
        doc="ViT-L/14 blocks whose tokens are tapped (of 24; scaled to the tower)",
    )
    eattn_layers: int = setting(20, ge=0, doc="last blocks with the self-correlation stream")
    attn_type: Literal["vv", "kk", "qq", "qq+kk", "qq+kk+vv"] = "qq+kk+vv"
    image_context: bool = True
    score_pooling: bool = True
    pooling_alpha: float = setting(0.5, ge=0, le=1, doc="weight of the pooled patch feature")
    temperature: float = setting(0.07, gt=0)
    train_image_temperature: float = setting(0.01, gt=0, doc="temperature of the image CE in training")
    seg_weight: float = setting(2.0, ge=0)
    cls_weight: float = setting(0.2, ge=0)
    lr: float = setting(1e-3, gt=0)
    betas: tuple[float, ...] = setting((0.6, 0.999), ge=0, lt=1)
    batch_size: int = setting(8, ge=1)
    epochs: int = setting(5, ge=0)


class Crane(Method):
    """Image-conditioned learnable prompts over a self-correlation path of frozen CLIP."""

    name = "crane"
    display_name = "Crane"
    description = (
        "Crane: context-guided learnable prompts and self-correlation attention refinement over frozen "
        "CLIP ViT-L/14@336, trained on auxiliary data (Salehi et al., 2025)"
    )
    config_cls = CraneConfig
    supports = frozenset({"zero_shot"})
    trained = True
    demo_backbones = {"backbone": "tiny-clip"}
    demo_settings = {"image_size": "112"}  # the tiny backbone's native size
    smoothing_sigma = 4.0

    @classmethod
    def backbone_requirements(cls, config: CraneConfig) -> dict[str, frozenset[str]]:
        return {"backbone": frozenset({"text", "deep_text_prompts", "projection"})}

    def setup(self) -> None:
        from .clip_stream import build_frozen_clip

        self.attach(build_frozen_clip(self))

    def attach(self, clip: torch.nn.Module) -> None:
        """Build the prompt learner for a frozen CLIP (``setup`` builds it by name)."""
        from .anomalyclip_modules import DeepTextPrompts

        cfg = self.config
        text_depth = len(clip.text_transformer.resblocks)
        deep_sets = min(text_depth - 1, round((cfg.deep_prompt_depth - 1) * text_depth / TEXT_DEPTH))
        self.clip = clip
        self.taps = scale_taps(cfg.feature_layers, CLIP_DEPTH, clip.num_blocks)
        self.eattn_blocks = min(clip.num_blocks, round(cfg.eattn_layers * clip.num_blocks / CLIP_DEPTH))
        width = int(clip.token_embedding.weight.shape[1])
        self.learnable = torch.nn.ModuleDict(
            {
                "prompts": self._prompt_learner(),
                "deep": DeepTextPrompts(deep_sets + 1, cfg.deep_prompt_length, width, None),
            }
        ).to(self.device)
        self.learnable.eval()

    def _prompt_learner(self) -> PromptLearner:
        from .prompt_learner import PromptLearner

        return PromptLearner.from_words(
            self.clip, self.config.n_ctx, "object", "damaged object", "crane.n_ctx"
        )

    def learnable_module(self) -> torch.nn.Module:
        return self.learnable

    def frozen_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unit tokens of each level from the self-correlation stream (the original one before its
        range) and the unit class embedding: nothing learnable touches the vision tower."""
        from .clip_stream import self_correlation_stream

        kinds = tuple(self.config.attn_type.split("+"))
        x, levels, grid = self_correlation_stream(self.clip, images, kinds, self.eattn_blocks, self.taps)
        levels = {t: seq[:, 1:] for t, seq in levels.items()}
        feats = {
            f"layer{j}": torch.nn.functional.normalize(
                self.clip.project_tokens(levels[t]).float(), dim=-1
            ).unflatten(1, grid)
            for j, t in enumerate(self.taps)
        }
        feats["cls"] = torch.nn.functional.normalize(self.clip.project_tokens(x[:, 0]).float(), dim=-1)
        return feats

    def text_features(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 2, C) unit text features, each image's class embedding inserted after the contexts."""
        learner = self.learnable["prompts"]
        deep = self.learnable["deep"]()
        emb = learner.embeddings()  # (2, L, D)
        if not self.config.image_context:
            feats = self.clip.encode_text_embeddings(emb, learner.eot, deep_prompts=deep)
            return torch.nn.functional.normalize(feats.float(), dim=-1).expand(len(image), -1, -1)
        cut = 1 + learner.n_ctx
        out = []
        for token in image:
            row = token.to(emb.dtype).expand(2, 1, -1)
            padded = torch.cat([emb[:, :cut], row, emb[:, cut:-1]], dim=1)
            out.append(self.clip.encode_text_embeddings(padded, learner.eot + 1, deep_prompts=deep))
        return torch.nn.functional.normalize(torch.stack(out).float(), dim=-1)

    def forward_head(self, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-level softmax maps (N, S, h, w, 2), the pooled unit image feature (N, C) and text (N, 2, C)."""
        cfg = self.config
        text = self.text_features(feats["cls"])
        tokens = torch.stack([feats[f"layer{j}"] for j in range(len(self.taps))], dim=1)  # (N, S, h, w, C)
        logits = torch.einsum("nshwc,nkc->nshwk", tokens, text) / cfg.temperature
        image = feats["cls"]
        if cfg.score_pooling:
            weight = logits.mean(1).softmax(-1)[..., 1:]  # (N, h, w, 1)
            pooled = torch.nn.functional.normalize((tokens.mean(1) * weight).sum((1, 2)), dim=-1)
            image = torch.nn.functional.normalize(
                cfg.pooling_alpha * pooled + (1 - cfg.pooling_alpha) * image, dim=-1
            )
        return logits.softmax(-1), image, text

    def training_loss(
        self, features: dict[str, torch.Tensor], masks: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        probs, image, text = self.forward_head(features)
        maps = torch.nn.functional.interpolate(
            probs[..., 1], size=masks.shape[-2:], mode="nearest"
        )  # the code's default
        gt = masks.float()
        seg = sum(focal_loss(maps[:, i], gt) + dice_loss(maps[:, i], gt) for i in range(maps.shape[1]))
        logits = (image[:, None] @ text.transpose(1, 2))[:, 0] / cfg.train_image_temperature
        cls = torch.nn.functional.cross_entropy(logits, labels.long())
        loss = cfg.seg_weight * seg + cfg.cls_weight * cls
        return loss, {"seg": float(seg.detach()), "cls": float(cls.detach())}

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        with torch.no_grad():
            probs, image, text = self.forward_head(self.frozen_features(images))
            logits = (image[:, None] @ text.transpose(1, 2))[:, 0] / self.config.temperature
        return Prediction(scores=logits.softmax(-1)[:, 1].float(), maps=probs[..., 1].mean(1).float())


@hookimpl
def adbench_methods() -> list[type[Method]]:
    return [Crane]
