"""mvfa: multi-level visual feature adapters on frozen CLIP (MVFA-AD), trained on auxiliary data.

Paper: Huang et al., "Adapting Visual-Language Models for Generalizable Anomaly Detection in Medical
Images", CVPR 2024; official code github.com/MediaBrain-SJTU/MVFA-AD (``CLIP/adapter.py``,
``train_zero.py``, ``test_zero.py``, ``utils.py``) at a30bf7b. Frozen CLIP ViT-L/14@336 (OpenAI) at
240 px. Learnable: after each of blocks 6, 12, 18, 24 a segmentation and a detection adapter, each
``Linear(1024, 768, bias=False)`` + LeakyReLU then ``Linear(768, 1024, bias=False)`` + LeakyReLU; the
block output becomes ``0.8 x + 0.1 seg_out + 0.1 det_out`` (fed back into the tower) and the 768-wide
bottleneck tokens are compared with the text features (APRIL-GAN's state x 35-template ensemble,
logit scale 100). Loss per level: BCE-with-logits of the mean P(anomalous) of the detection tokens
against the image label, plus focal + dice of the segmentation map where masks exist; Adam lr 1e-4,
betas (0.5, 0.999), batch 1, 50 epochs. Inference: image score = sum over levels of the mean
P(anomalous) of the detection tokens; map = sum over levels of the segmentation P(anomalous).

Zero-shot protocol of the paper: leave-one-out over its six medical sets (train on the other five,
:meth:`MVFA.default_auxiliary`). adbench ships three of them (Brain MRI, Liver CT, RESC), so a medical
target of that benchmark trains on the other two; every other target uses the papers' default
auxiliary (MVTec AD, VisA for MVTec AD), the protocol KAnoCLIP states for its baselines.

Choices (config values where they are settings):
* The bottleneck is the text width (768 on ViT-L/14, the code's constant) so tiny demo towers fit.
* The segmentation loss is skipped per image where the auxiliary image has no mask although anomalous
  (an image-level set); the code decides per dataset (``CLASS_INDEX``), which is the same for the
  datasets it uses.
* Training prompts use each auxiliary category's object word (the code's ``REAL_NAME``); inference the
  target's (``Dataset.object_name``: "liver", "retina" where the code writes "Liver", "retinal OCT").
* The few-shot branch (memory of adapted reference tokens) is not implemented: zero-shot only.
* The test-time min-max normalisation over the split is left out (it does not change AUROC/AP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import lazy_loader as lazy

from adbench import hookimpl
from adbench.backbones.spec import scale_taps
from adbench.config import setting
from adbench.losses import dice_loss, focal_loss
from adbench.methods import Context, Method, Prediction, TrainedConfig

from .prompt_ensemble import (
    APRILGAN_ANOMALOUS_STATES,
    APRILGAN_NORMAL_STATES,
    APRILGAN_TEMPLATES,
    PromptEnsemble,
    class_index_targets,
)

if TYPE_CHECKING:
    from adbench.data import Category

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free

CLIP_DEPTH = 24
#: The sets of MVFA-AD's benchmark that adbench ships (the paper's leave-one-out pool).
MVFA_MEDICAL = ("brainmri", "liverct", "resc")


@dataclass
class MVFAConfig(TrainedConfig):
    """mvfa settings; defaults are the official ``train_zero.py`` / ``test_zero.py``."""

    backbone: str = "clip-vitl14-336"
    image_size: int = setting(240, ge=14, le=4096)
    feature_layers: tuple[int, ...] = setting(
        (6, 12, 18, 24),
        ge=1,
        le=24,
        doc="ViT-L/14 blocks whose tokens are tapped (of 24; scaled to the tower)",
    )
    stream_weight: float = setting(0.8, ge=0, le=1, doc="weight of the block output in the fed-back stream")
    adapter_weight: float = setting(0.1, ge=0, le=1, doc="weight of each adapter's output in the stream")
    temperature: float = setting(0.01, gt=0, doc="1 / the code's logit scale 100")
    lr: float = setting(1e-4, gt=0)
    betas: tuple[float, ...] = setting((0.5, 0.999), ge=0, lt=1)
    batch_size: int = setting(1, ge=1)
    epochs: int = setting(50, ge=0)


class MVFA(Method):
    """Residual seg/det adapters inside a frozen CLIP vision tower, scored against prompt ensembles."""

    name = "mvfa"
    display_name = "MVFA-AD"
    description = (
        "MVFA-AD: multi-level residual visual adapters in frozen CLIP ViT-L/14@336, trained on auxiliary "
        "(medical leave-one-out) data (Huang et al., CVPR 2024)"
    )
    config_cls = MVFAConfig
    supports = frozenset({"zero_shot"})
    trained = True
    demo_backbones = {"backbone": "tiny-clip"}
    demo_settings = {"image_size": "112", "epochs": "1", "batch_size": "8"}  # each step runs the whole tower
    smoothing_sigma = 0.0  # the code smooths nothing

    @classmethod
    def default_auxiliary(cls, target: str) -> list[str] | None:
        """Leave-one-out over MVFA-AD's medical sets; None (the papers' default) for other targets."""
        return [d for d in MVFA_MEDICAL if d != target] if target in MVFA_MEDICAL else None

    @classmethod
    def backbone_requirements(cls, config: MVFAConfig) -> dict[str, frozenset[str]]:
        return {"backbone": frozenset({"text"})}

    def setup(self) -> None:
        from .clip_stream import build_frozen_clip

        self.attach(build_frozen_clip(self))

    def attach(self, clip: torch.nn.Module) -> None:
        """Build the adapters for a frozen CLIP (``setup`` builds it by name)."""
        from .mvfa_modules import ClipAdapter

        self.clip = clip
        self.taps = scale_taps(self.config.feature_layers, CLIP_DEPTH, clip.num_blocks)
        width, bottleneck = int(clip.embed_dim), int(clip.output_dim)
        self.learnable = torch.nn.ModuleDict(
            {
                "seg": torch.nn.ModuleList([ClipAdapter(width, bottleneck) for _ in self.taps]),
                "det": torch.nn.ModuleList([ClipAdapter(width, bottleneck) for _ in self.taps]),
            }
        ).to(self.device)
        self.learnable.eval()
        self._prompts = PromptEnsemble(
            clip, APRILGAN_NORMAL_STATES, APRILGAN_ANOMALOUS_STATES, APRILGAN_TEMPLATES
        )
        self.train_classes: list[str] = []

    def learnable_module(self) -> torch.nn.Module:
        return self.learnable

    def frozen_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The images themselves: the adapters change the stream, so nothing after the input is frozen."""
        return {"images": images}

    def auxiliary_targets(self, categories: Sequence[Category]) -> dict[str, torch.Tensor]:
        """Each auxiliary image's class index into ``train_classes`` (the categories' object names)."""
        self.train_classes, index = class_index_targets(categories)
        return {"class_index": index}

    def adapted_tokens(
        self, images: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], tuple[int, int]]:
        """Segmentation and detection bottleneck tokens (N, P, C) per level, and the patch grid."""
        from .clip_stream import run_blocks

        cfg = self.config
        seg_tokens, det_tokens = [], []

        def adapt(i: int, x: torch.Tensor) -> torch.Tensor:
            if i not in self.taps:
                return x
            level = self.taps.index(i)
            seg_mid, seg_out = self.learnable["seg"][level](x)
            det_mid, det_out = self.learnable["det"][level](x)
            seg_tokens.append(seg_mid[:, 1:])
            det_tokens.append(det_mid[:, 1:])
            return cfg.stream_weight * x + cfg.adapter_weight * (seg_out + det_out)

        _, grid = run_blocks(self.clip, images, after=adapt)
        return seg_tokens, det_tokens, grid

    def heads(
        self, images: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """P(anomalous) (N, S, P) of the segmentation and detection tokens per level; ``text`` (N|1, 2, C)."""
        seg, det, grid = self.adapted_tokens(images)
        t = self.config.temperature

        def prob(tokens: torch.Tensor) -> torch.Tensor:
            logits = torch.nn.functional.normalize(tokens.float(), dim=-1) @ text.transpose(-1, -2).float()
            return torch.softmax(logits / t, dim=-1)[..., 1]

        return torch.stack([prob(s) for s in seg], 1), torch.stack([prob(d) for d in det], 1), grid

    def training_loss(
        self, features: dict[str, torch.Tensor], masks: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        text = torch.stack([self._prompts.features(n) for n in self.train_classes])[features["class_index"]]
        seg, det, grid = self.heads(features["images"], text)
        score = det.mean(-1)  # (N, S)
        target = labels.float()[:, None].expand_as(score)
        det_loss = torch.nn.functional.binary_cross_entropy_with_logits(score, target) * score.shape[1]
        has_mask = (labels == 0) | (masks.flatten(1).amax(1) > 0)
        seg_loss = score.new_zeros(())
        if bool(has_mask.any()):
            maps = torch.nn.functional.interpolate(
                seg[has_mask].unflatten(-1, grid), size=masks.shape[-2:], mode="bilinear", align_corners=True
            )
            gt = masks[has_mask].float()
            seg_loss = sum(
                focal_loss(maps[:, i], gt) + dice_loss(maps[:, i], gt) for i in range(maps.shape[1])
            )
        return det_loss + seg_loss, {"det": float(det_loss.detach()), "seg": float(seg_loss.detach())}

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        text = self._prompts.features(ctx.object_name or ctx.category)[None]
        with torch.no_grad():
            seg, det, grid = self.heads(images, text)
        return Prediction(scores=det.mean(-1).sum(1).float(), maps=seg.sum(1).unflatten(-1, grid).float())


@hookimpl
def adbench_methods() -> list[type[Method]]:
    return [MVFA]
