"""adaclip: hybrid (static + image-conditioned dynamic) prompts in both CLIP towers (AdaCLIP).

Paper: Cao et al., "AdaCLIP: Adapting CLIP with Hybrid Learnable Prompts for Zero-Shot Anomaly
Detection", ECCV 2024; official code github.com/caoyunkang/AdaCLIP (``method/adaclip.py``,
``method/trainer.py``, ``train.py``) at e27ee32. Frozen CLIP ViT-L/14@336 (OpenAI) at 518 px.
Learnable (10.67 M at full size, as ViP2-CLIP's Table 3 prints): static prompts (depth 4 x length 5)
for the text (768) and the vision (1024) tower; dynamic prompts: one ``Linear(768, width)`` per prompt
token for each tower, applied to the frozen image embedding, added to the static ones; one
``Linear(1024, 768)`` per level (blocks 6, 12, 18, 24) for the patch tokens and one ``Linear(768, 768)``
for the class embedding. Vision prompts are appended after the patches at block 1 and replaced at
blocks 2..4; text prompts replace the 5 tokens after SOS at text blocks 2..4. Text: WinCLIP's normal
states and APRIL-GAN's anomalous states x 4 templates around the class name. Maps: per level the
softmax of 100 x cosine to the two text features; image score: the softmax of the class embedding
fused with the hybrid semantic fusion (HSF: k-means, 20 clusters, of the most anomalous patches;
0.2 fused + 0.8 class). Loss: focal(image) + per level focal + dice(anomalous) + dice(normal, 1 - mask);
AdamW lr 0.01, betas (0.5, 0.999), batch 1, 5 epochs. Inference: levels' logits averaged, then softmax.

Auxiliary data (:meth:`AdaCLIP.default_auxiliary`): the README's pairing, MVTec AD + CVC-ColonDB for
every target, VisA + CVC-ClinicDB for MVTec AD and CVC-ColonDB (its paper's description is marked
inaccurate there); the built-in dataset trains on itself.

Choices (config values where they are settings):
* The training engine shuffles all auxiliary images together; the class name in the training prompts
  is each auxiliary category's object word (as the code's ``cls_name``).
* Position embeddings at 518 px are resampled bicubically by the shared backbone; prompts run in the
  backbone's precision (the code casts them to fp16).
* The code validates every epoch on a held-out set and keeps the best epoch; the last epoch is used.
* Levels are given for 24 blocks and the prompt depth for 12 text layers' first 4; both scale on tiny
  demo towers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import lazy_loader as lazy

from adbench import hookimpl
from adbench.backbones.spec import scale_taps
from adbench.config import setting
from adbench.losses import dice_loss, focal_loss
from adbench.methods import Context, Method, Prediction, TrainedConfig

from .prompt_ensemble import (
    APRILGAN_ANOMALOUS_STATES,
    APRILGAN_TEMPLATES,
    WINCLIP_NORMAL_STATES,
    class_index_targets,
    ensemble_sentences,
)

if TYPE_CHECKING:
    from adbench.data import Category

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free

CLIP_DEPTH = 24
ADACLIP_TEMPLATES = APRILGAN_TEMPLATES[:4]  # 'a bad photo of a {}.', ... 'a cropped photo of the {}.'


@dataclass
class AdaCLIPConfig(TrainedConfig):
    """adaclip settings; defaults are the official ``train.py`` / ``method/trainer.py``."""

    backbone: str = "clip-vitl14-336"
    image_size: int = setting(518, ge=14, le=4096)
    feature_layers: tuple[int, ...] = setting(
        (6, 12, 18, 24),
        ge=1,
        le=24,
        doc="ViT-L/14 blocks whose tokens are tapped (of 24; scaled to the tower)",
    )
    prompting_depth: int = setting(4, ge=1, doc="layers with prompts (text blocks 2..depth get them)")
    prompting_length: int = setting(5, ge=1, doc="prompt tokens per layer")
    use_hsf: bool = True
    k_clusters: int = setting(20, ge=1, doc="k-means clusters of the hybrid semantic fusion")
    hsf_alpha: float = setting(0.2, ge=0, le=1, doc="weight of the fused patch feature in the image feature")
    temperature: float = setting(0.01, gt=0, doc="1 / the code's logit scale 100")
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = setting(0.01, gt=0)
    betas: tuple[float, ...] = setting((0.5, 0.999), ge=0, lt=1)
    weight_decay: float = setting(0.01, ge=0, doc="torch AdamW's default, which the code keeps")
    batch_size: int = setting(1, ge=1)
    epochs: int = setting(5, ge=0)


class AdaCLIP(Method):
    """Static + dynamic prompts in both towers, projected patch tokens, HSF image score."""

    name = "adaclip"
    display_name = "AdaCLIP"
    description = (
        "AdaCLIP: hybrid static + image-conditioned prompts in both CLIP towers, hybrid semantic fusion, "
        "trained on auxiliary data (Cao et al., ECCV 2024)"
    )
    config_cls = AdaCLIPConfig
    supports = frozenset({"zero_shot"})
    trained = True
    demo_backbones = {"backbone": "tiny-clip"}
    demo_settings = {"image_size": "112", "epochs": "1", "batch_size": "8"}  # each step runs the whole tower

    @classmethod
    def default_auxiliary(cls, target: str) -> list[str] | None:
        """The README's pairing (a dataset that trains on its own folds keeps them: the planner's rule)."""
        return ["visa", "cvc_clinicdb"] if target in ("mvtec", "cvc_colondb") else ["mvtec", "cvc_colondb"]

    @classmethod
    def backbone_requirements(cls, config: AdaCLIPConfig) -> dict[str, frozenset[str]]:
        return {"backbone": frozenset({"text", "deep_text_prompts", "projection"})}

    def setup(self) -> None:
        from .clip_stream import build_frozen_clip

        self.attach(build_frozen_clip(self))

    def attach(self, clip: torch.nn.Module) -> None:
        """Build the learnable parts for a frozen CLIP (``setup`` builds it by name)."""
        from .adaclip_modules import HybridPrompts

        cfg = self.config
        self.clip = clip
        self.taps = scale_taps(cfg.feature_layers, CLIP_DEPTH, clip.num_blocks)
        text_width = int(clip.token_embedding.weight.shape[1])
        width, out = int(clip.embed_dim), int(clip.output_dim)
        depth = min(cfg.prompting_depth, len(clip.text_transformer.resblocks), clip.num_blocks)
        self.learnable = torch.nn.ModuleDict(
            {
                "prompts": HybridPrompts(depth, cfg.prompting_length, text_width, width, out),
                "patch": torch.nn.ModuleList([torch.nn.Linear(width, out) for _ in self.taps]),
                "cls": torch.nn.Linear(out, out),
            }
        ).to(self.device)
        self.learnable.eval()
        self.train_classes: list[str] = []

    def learnable_module(self) -> torch.nn.Module:
        return self.learnable

    def frozen_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The images (the prompts change both towers) and the frozen image embedding the dynamic prompts
        are generated from."""
        return {"images": images, "embed": self.clip.forward_tokens(images, []).cls}

    def auxiliary_targets(self, categories: Sequence[Category]) -> dict[str, torch.Tensor]:
        """Each auxiliary image's class index into ``train_classes`` (the categories' object names)."""
        self.train_classes, index = class_index_targets(categories)
        return {"class_index": index}

    # --- towers with prompts ---------------------------------------------------------------------
    def visual(
        self, images: torch.Tensor, prompts: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], tuple[int, int]]:
        """Projected class embedding (N, C) and per-level unit patch features (N, P, C); ``prompts`` are
        the dynamic visual tokens (N, length, D)."""
        from .clip_stream import run_blocks

        static = self.learnable["prompts"].static_visual
        length = prompts.shape[1]
        levels: list[torch.Tensor] = []

        def insert(i: int, x: torch.Tensor) -> torch.Tensor:
            if i > len(static):
                return x
            ctx = (prompts + static[i - 1]).to(x.dtype)
            return torch.cat([x if i == 1 else x[:, :-length], ctx], dim=1)

        def read(i: int, x: torch.Tensor) -> torch.Tensor:
            if i in self.taps:
                levels.append(x[:, 1:-length])  # the prompts stay in the sequence after block 1
            return x

        x, grid = run_blocks(self.clip, images, before=insert, after=read)
        cls = self.clip.project_tokens(x[:, 0]).float()
        patches = [
            torch.nn.functional.normalize(self.learnable["patch"][j](t.float()), dim=-1)
            for j, t in enumerate(levels)
        ]
        return torch.nn.functional.normalize(self.learnable["cls"](cls), dim=-1), patches, grid

    def text(self, names: Sequence[str], prompts: torch.Tensor) -> torch.Tensor:
        """(N, 2, C) unit normal / anomalous ensemble features of image n's class ``names[n]`` with its
        dynamic text prompts ``prompts[n]`` (length, D) added to the static ones."""
        static = self.learnable["prompts"].static_text
        out = []
        for name, dyn in zip(names, prompts, strict=True):
            name = name.replace("-", " ")
            sentences = [
                ensemble_sentences(WINCLIP_NORMAL_STATES, ADACLIP_TEMPLATES, name),
                ensemble_sentences(APRILGAN_ANOMALOUS_STATES, ADACLIP_TEMPLATES, name),
            ]
            tokens = self.clip.tokenize(sentences[0] + sentences[1])
            # causal attention: nothing after the last end-of-text token reaches the features (exact)
            tokens = tokens[:, : max(int(tokens.argmax(-1).max()) + 1, len(static[0]) + 2)]
            deep = [static[j] + dyn for j in range(1, len(static))]
            feats = self.clip.encode_text_embeddings(
                self.clip.token_embedding(tokens), tokens.argmax(-1), deep
            )
            feats = torch.nn.functional.normalize(feats.float(), dim=-1)
            n = len(sentences[0])
            out.append(
                torch.nn.functional.normalize(torch.stack([feats[:n].mean(0), feats[n:].mean(0)]), dim=-1)
            )
        return torch.stack(out)

    def forward_head(
        self, images: torch.Tensor, embed: torch.Tensor, names: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Per-level logits (N, S, P, 2) and image probabilities (N, 2)."""
        from .adaclip_modules import hybrid_semantic_fusion

        cfg = self.config
        dyn_text, dyn_visual = self.learnable["prompts"].dynamic(embed.float())
        image, patches, grid = self.visual(images, dyn_visual)
        text = self.text(names, dyn_text)  # (N, 2, C)
        logits = torch.stack([p @ text.transpose(1, 2) / cfg.temperature for p in patches], dim=1)
        if cfg.use_hsf:
            anomaly = logits.mean(1).softmax(-1)[..., 1]
            fused = hybrid_semantic_fusion(patches, anomaly, cfg.k_clusters).to(image.device)
            image = torch.nn.functional.normalize(cfg.hsf_alpha * fused + (1 - cfg.hsf_alpha) * image, dim=-1)
        score = torch.softmax((image[:, None] @ text.transpose(1, 2))[:, 0] / cfg.temperature, dim=-1)
        return logits, score, grid

    def training_loss(
        self, features: dict[str, torch.Tensor], masks: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        names = [self.train_classes[i] for i in features["class_index"].tolist()]
        logits, score, grid = self.forward_head(features["images"], features["embed"], names)
        maps = (
            torch.nn.functional.interpolate(
                logits.permute(0, 1, 3, 2).flatten(1, 2).unflatten(-1, grid),
                size=masks.shape[-2:],
                mode="bilinear",
                align_corners=True,
            )
            .unflatten(1, (logits.shape[1], 2))
            .softmax(dim=2)
        )
        gt = masks.float()
        seg = sum(
            focal_loss(maps[:, i, 1], gt) + dice_loss(maps[:, i, 1], gt) + dice_loss(maps[:, i, 0], 1 - gt)
            for i in range(maps.shape[1])
        )
        cls = focal_loss(score[:, 1], labels.float())
        return cls + seg, {"cls": float(cls.detach()), "seg": float(seg.detach())}

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        with torch.no_grad():
            embed = self.clip.forward_tokens(images, []).cls
            names = [ctx.object_name or ctx.category] * len(images)
            logits, score, grid = self.forward_head(images, embed, names)
            amap = logits.mean(1).softmax(-1)[..., 1].unflatten(-1, grid)
        return Prediction(scores=score[:, 1].float(), maps=amap.float())


@hookimpl
def adbench_methods() -> list[type[Method]]:
    return [AdaCLIP]
