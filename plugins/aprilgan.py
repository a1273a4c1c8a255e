"""aprilgan: APRIL-GAN (VAND 2023 challenge), linear maps of CLIP patch tokens into the text space.

Paper: Chen et al., "A Zero-/Few-Shot Anomaly Classification and Segmentation Method for CVPR 2023 VAND
Workshop Challenge Tracks 1&2: 1st Place on Zero-shot AD and 4th Place on Few-shot AD", arXiv
2305.17382; official code github.com/ByChelsea/VAND-APRIL-GAN (``train.py``, ``test.py``,
``model.py``, ``prompt_ensemble.py``, ``few_shot.py``). Frozen CLIP ViT-L/14@336 (OpenAI) at 518 px.
Learnable: one ``Linear(1024, 768)`` per tapped stage (blocks 6, 12, 18, 24) applied to the raw block
outputs (no ``ln_post``), trained on auxiliary data with focal (two-way softmax) + dice (anomalous
channel) per stage; Adam lr 1e-3, betas (0.5, 0.999), batch 8. Text: state-level x template-level
ensemble around the class name (7 normal, 5 anomalous states x 35 templates), logit scale 100.
Zero-shot: image score = P(anomalous) of the class embedding; each stage's 2-channel logits are
upsampled bilinearly (align_corners=True) to the input size and then soft-maxed (test.py); map = sum
over stages of P(anomalous), no Gaussian smoothing. Training: each auxiliary image is scored against
its own class's prompts (train.py: ``text_prompts[cls]`` per item), masks resized bilinearly and
thresholded at 0.5, the same upsample-then-softmax maps.
Few-shot (protocol ``few_shot``): a memory of the k reference images' raw tokens per stage; each query
token scores 1 - its largest cosine similarity to the memory; the stage maps (upsampled the same way)
are summed and added to the zero-shot map; the image score is the mean of the zero-shot image score
and the map's maximum.

Choices (config values where they are settings; ``adbench.fidelity`` lists them in docs/fidelity.md):
* ``preset`` official: the fit trained on MVTec AD (used for every other target) runs 3 epochs with
  mosaic augmentation at rate 0.2 (train.sh: ``--epoch 3 --aug_rate 0.2``); the VisA-trained fit
  (for MVTec AD) 15 epochs without; ``preset=none`` keeps ``epochs`` / ``mosaic_rate`` as given.
* Few-shot image score: the code min-max normalises the maps' maxima over the whole test split before
  averaging; a method here sees query batches, so the maximum is divided by its upper bound
  (stages x 3: a probability in [0, 1] plus a cosine distance in [0, 2] per stage) instead.
* Stages are given for 24 blocks and scale proportionally on other depths (tiny demo backbones).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import lazy_loader as lazy

from adbench import hookimpl
from adbench.backbones.spec import scale_taps
from adbench.config import setting
from adbench.errors import AdbenchError
from adbench.fidelity import Choice
from adbench.losses import OFFICIAL_FOCAL_SMOOTH, dice_loss, focal_loss
from adbench.methods import Context, Method, Prediction, TrainedConfig
from adbench.patch_nn import nearest_cosine_distance

from .prompt_ensemble import (
    APRILGAN_ANOMALOUS_STATES,
    APRILGAN_NORMAL_STATES,
    APRILGAN_TEMPLATES,
    PromptEnsemble,
    class_name,
)

if TYPE_CHECKING:
    from adbench.data import Category

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free


CLIP_DEPTH = 24


@dataclass
class APRILGANConfig(TrainedConfig):
    """aprilgan settings; defaults are the official scripts' (train.sh / test_*.sh)."""

    backbone: str = "clip-vitl14-336"
    image_size: int = setting(518, ge=14, le=4096)
    feature_layers: tuple[int, ...] = (6, 12, 18, 24)
    temperature: float = setting(0.01, gt=0, doc="1 / the code's logit scale 100")
    lr: float = setting(1e-3, gt=0)
    betas: tuple[float, ...] = setting((0.5, 0.999), ge=0, lt=1)
    batch_size: int = setting(8, ge=1)
    epochs: int = setting(15, ge=0)
    mosaic_rate: float = setting(0.0, ge=0, le=1, doc="2x2 mosaic augmentation rate (the code's aug_rate)")
    preset: Literal["official", "none"] = "official"
    train_mask_resize: Literal["bilinear", "nearest"] = "bilinear"
    upsample: Literal["logits", "probabilities"] = "logits"


class APRILGAN(Method):
    """Per-stage linear projections of frozen CLIP patch tokens, scored against prompt ensembles."""

    name = "aprilgan"
    display_name = "APRIL-GAN"
    description = (
        "APRIL-GAN: learnable linear maps of CLIP ViT-L/14@336 stage tokens into the text space, trained "
        "on an auxiliary dataset; few-shot memory branch (Chen et al., VAND 2023)"
    )
    config_cls = APRILGANConfig
    supports = frozenset({"zero_shot", "few_shot"})
    default_protocol = "zero_shot"
    trained = True
    demo_backbones = {"backbone": "tiny-clip"}
    smoothing_sigma = 0.0  # test.py applies no Gaussian to the maps
    official_source = (
        "github.com/ByChelsea/VAND-APRIL-GAN @ f13b8a6 (train.py, test.py, dataset.py, train.sh)"
    )
    choices = (
        Choice(
            "training prompts",
            "each auxiliary image's own class name (train.py: text_features from text_prompts[cls] per item)",
            "none",
            "",
            "",
        ),
        Choice(
            "map resolution",
            "2-channel logits upsampled bilinearly (align_corners=True) to the input size, then softmax "
            "(test.py / train.py: F.interpolate(..., mode='bilinear', align_corners=True); torch.softmax(dim=1))",
            "none",
            "",
            "--set aprilgan.upsample=probabilities (softmax at token resolution; the engine upsamples)",
        ),
        Choice(
            "map smoothing",
            "none: test.py applies no Gaussian",
            "none (an evaluation protocol with a sigma still smooths, as recorded)",
            "",
            "--eval-protocol anomalyclip (sigma 4)",
        ),
        Choice(
            "MVTec-trained fit",
            "3 epochs with mosaic augmentation rate 0.2 for targets trained on MVTec AD; 15 epochs "
            "without for the VisA-trained fit (train.sh)",
            "mosaics tile the already resized images (the code tiles the originals, then resizes)",
            "small",
            "--set aprilgan.preset=none (epochs / mosaic_rate as given)",
        ),
        Choice(
            "training masks",
            "resized bilinearly and thresholded at 0.5 (train.py transform + 'gt[gt > 0.5] = 1')",
            "none",
            "",
            "--set aprilgan.train_mask_resize=nearest",
        ),
        Choice(
            "few-shot image score",
            "mean of the zero-shot score and the map maximum divided by its bound (stages x 3)",
            "the code min-max normalises the maxima over the whole test split (a method sees batches here)",
            "image AUROC can differ slightly in few-shot",
            "",
        ),
    )

    @classmethod
    def config_for_dataset(
        cls, config: APRILGANConfig, dataset: str, auxiliary: Sequence[str] = ()
    ) -> APRILGANConfig:
        """Under ``preset=official``, a target whose fit trains on MVTec AD gets train.sh's MVTec
        settings: 3 epochs, mosaic rate 0.2."""
        if config.preset != "official" or list(auxiliary) != ["mvtec"]:
            return config
        return dataclasses.replace(config, epochs=3, mosaic_rate=0.2)

    @classmethod
    def train_mask_resize(cls, config: APRILGANConfig) -> str:
        return config.train_mask_resize

    @classmethod
    def mosaic_rate(cls, config: APRILGANConfig) -> float:
        return float(config.mosaic_rate)

    @classmethod
    def backbone_requirements(cls, config: APRILGANConfig) -> dict[str, frozenset[str]]:
        """The text tower (prompt ensembles); patch tokens come raw, the CLS embedding projected."""
        return {"backbone": frozenset({"text"})}

    def setup(self) -> None:
        from adbench.backbones import build_backbone

        clip = build_backbone(self.config.backbone, device=self.device, pretrained=self.pretrained_backbones)
        self._weights = {self.config.backbone: clip.weights}
        self.attach(clip)

    def attach(self, clip: torch.nn.Module) -> None:
        """Build the per-stage linear layers for a frozen CLIP (``setup`` builds it by name)."""
        self.clip = clip
        self.taps = scale_taps(self.config.feature_layers, CLIP_DEPTH, clip.num_blocks)
        self.learnable = torch.nn.ModuleList(
            [torch.nn.Linear(int(clip.embed_dim), int(clip.output_dim)) for _ in self.taps]
        ).to(self.device)
        self.learnable.eval()
        self._prompts = PromptEnsemble(
            clip, APRILGAN_NORMAL_STATES, APRILGAN_ANOMALOUS_STATES, APRILGAN_TEMPLATES
        )
        self._memory: tuple[torch.Tensor, list[torch.Tensor]] | None = None
        self.train_classes: list[str] = []  # filled by auxiliary_targets before a fit

    def text(self, name: str) -> torch.Tensor:
        """(2, C) unit normal / anomalous ensemble features for the object ``name`` (cached)."""
        return self._prompts.features(name)

    # --- the trained-method hooks ------------------------------------------------------------
    def learnable_module(self) -> torch.nn.Module:
        return self.learnable

    def frozen_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw stage tokens (N, h, w, D) and the class embedding (N, C)."""
        tokens = self.clip.forward_tokens(images, self.taps)
        feats = {f"stage{i}": tokens.patches[t] for i, t in enumerate(self.taps)}
        feats["cls"] = tokens.cls
        return feats

    def upsample(self, maps: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, C, S, S) at the input size, bilinear with align_corners=True (test.py)."""
        return torch.nn.functional.interpolate(
            maps, size=(self.image_size, self.image_size), mode="bilinear", align_corners=True
        )

    def stage_maps(self, feats: dict[str, torch.Tensor], text: torch.Tensor) -> torch.Tensor:
        """P(anomalous) (N, S, H, W) of each stage's projected tokens against the text features (2, C),
        or one pair per image (N, 2, C): logits upsampled to the input size, then soft-maxed."""
        maps = []
        for i, layer in enumerate(self.learnable):
            proj = torch.nn.functional.normalize(layer(feats[f"stage{i}"].float()), dim=-1)
            if text.dim() == 3:
                logits = torch.einsum("nhwc,nkc->nkhw", proj, text) / self.config.temperature
            else:
                logits = torch.einsum("nhwc,kc->nkhw", proj, text) / self.config.temperature
            if self.config.upsample == "logits":
                maps.append(torch.softmax(self.upsample(logits), dim=1)[:, 1])
            else:
                maps.append(torch.softmax(logits, dim=1)[:, 1])
        return torch.stack(maps, dim=1)

    def auxiliary_targets(self, categories: list[Category]) -> dict[str, torch.Tensor]:
        """Each auxiliary test image's class index into ``train_classes`` (the categories' names)."""
        self.train_classes = list(dict.fromkeys(class_name(c.name) for c in categories))
        index = [self.train_classes.index(class_name(c.name)) for c in categories for _ in c.test]
        return {"class_index": torch.tensor(index, dtype=torch.long)}

    def training_loss(
        self, features: dict[str, torch.Tensor], masks: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        if "class_index" not in features or not self.train_classes:
            raise AdbenchError(
                "aprilgan: training needs each image's class (auxiliary_targets was not called)"
            )
        text = torch.stack([self.text(name) for name in self.train_classes])[features["class_index"]]
        maps = self.stage_maps(features, text)
        if maps.shape[-2:] != masks.shape[-2:]:
            maps = torch.nn.functional.interpolate(
                maps, size=masks.shape[-2:], mode="bilinear", align_corners=True
            )
        target = masks.float()
        return sum(
            focal_loss(maps[:, i], target, smooth=OFFICIAL_FOCAL_SMOOTH) + dice_loss(maps[:, i], target)
            for i in range(maps.shape[1])
        )

    def reference_memory(self, references: torch.Tensor) -> list[torch.Tensor]:
        """Raw stage tokens of the references flattened to (k*P, D) per stage, built once per job."""
        if self._memory is None or self._memory[0] is not references:
            feats = self.frozen_features(references.to(self.device))
            self._memory = (references, [feats[f"stage{i}"].flatten(0, 2) for i in range(len(self.taps))])
        return self._memory[1]

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        text = self.text(class_name(ctx.category))
        with torch.no_grad():
            feats = self.frozen_features(images)
            amap = self.stage_maps(feats, text).sum(1)
            logits = (
                torch.nn.functional.normalize(feats["cls"].float(), dim=-1) @ text.T / self.config.temperature
            )
            scores = torch.softmax(logits, dim=-1)[:, 1]
            if ctx.protocol == "few_shot":
                if ctx.references is None or len(ctx.references) == 0:
                    raise AdbenchError("aprilgan few-shot needs reference images")
                memory = self.reference_memory(ctx.references)
                distance = torch.stack(
                    [nearest_cosine_distance(feats[f"stage{i}"], mem) for i, mem in enumerate(memory)], 1
                )
                if distance.shape[-2:] != amap.shape[-2:]:
                    distance = self.upsample(distance)
                amap = amap + distance.sum(1)
                scores = (scores + amap.flatten(1).amax(1) / (3 * len(self.taps))) / 2
        return Prediction(scores=scores.float(), maps=amap.float())


@hookimpl
def adbench_methods() -> list[type[Method]]:
    return [APRILGAN]
