"""clip: plain CLIP zero-shot anomaly detection, the "CLIP" row of the ZSAD tables.

Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
ICML 2021 (code: github.com/openai/CLIP); as an anomaly baseline in WinCLIP (Jeong et al., CVPR 2023)
and AnomalyCLIP (Zhou et al., ICLR 2024, github.com/zqhang/AnomalyCLIP). Training-free: the image
score is the softmax over the cosine similarities of the CLS embedding with the ensembled text
features of "a photo of a normal [class]" / "a photo of a damaged [class]"; the anomaly map is the
same two-way softmax for every projected patch token (``vv_blocks > 0`` reads the tokens of the V-V
attention path instead, as CLIP Surgery-style baselines do; the original CLIP has no such path).

Choices (config values):
* ``backbone`` CLIP ViT-L/14@336 (OpenAI) at 336 px, the CLIP the AnomalyCLIP table reproduces.
* The "standard template ensemble" is WinCLIP's template list (``prompt_ensemble.WINCLIP_TEMPLATES``)
  around the two state phrases "normal [class]" / "damaged [class]".
* ``temperature`` 0.01 = CLIP's learned logit scale 100.
* ``vv_blocks`` 0: the original path (projected patch tokens of the last block).
"""

from __future__ import annotations

from dataclasses import dataclass

import lazy_loader as lazy

from adbench import hookimpl
from adbench.config import setting
from adbench.errors import AdbenchError
from adbench.methods import Context, Method, MethodConfig, Prediction

from .prompt_ensemble import (
    CLIP_ANOMALOUS_STATES,
    CLIP_NORMAL_STATES,
    WINCLIP_TEMPLATES,
    PromptEnsemble,
    anomaly_probability,
    class_name,
)

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free


@dataclass
class CLIPConfig(MethodConfig):
    """clip settings: CLIP's own backbone, input size and logit scale."""

    backbone: str = "clip-vitl14-336"
    image_size: int = setting(336, ge=14, le=4096)
    temperature: float = setting(0.01, gt=0, doc="softmax temperature (CLIP's logit scale 100)")
    vv_blocks: int = setting(0, ge=0, doc="0: original patch tokens; n: V-V path of the last n blocks")


class CLIPZeroShot(Method):
    """Plain CLIP: class-token image score and patch-token map against normal/damaged prompts."""

    name = "clip"
    display_name = "CLIP"
    description = (
        "plain CLIP zero-shot: 'a photo of a normal/damaged [class]' prompt ensemble (Radford et al. 2021)"
    )
    config_cls = CLIPConfig
    supports = frozenset({"zero_shot"})
    default_protocol = "zero_shot"
    demo_backbones = {"backbone": "tiny-clip"}

    @classmethod
    def backbone_requirements(cls, config: CLIPConfig) -> dict[str, frozenset[str]]:
        """Text tower and projected patch tokens; the V-V path when asked for."""
        needed = {"text", "projection"} | ({"vv"} if config.vv_blocks else set())
        return {"backbone": frozenset(needed)}

    def setup(self) -> None:
        from adbench.backbones import build_backbone

        self.clip = build_backbone(
            self.config.backbone, device=self.device, pretrained=self.pretrained_backbones
        )
        self._weights = {self.config.backbone: self.clip.weights}
        if self.config.vv_blocks > self.clip.num_blocks:
            raise AdbenchError(
                f"clip.vv_blocks={self.config.vv_blocks}: backbone '{self.config.backbone}' has "
                f"{self.clip.num_blocks} blocks"
            )
        self._prompts = PromptEnsemble(
            self.clip, CLIP_NORMAL_STATES, CLIP_ANOMALOUS_STATES, WINCLIP_TEMPLATES
        )

    def text(self, category: str) -> torch.Tensor:
        """(2, C) normal / damaged text features of the category, computed once per category."""
        return self._prompts.features(class_name(category))

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        text = self.text(ctx.category)
        vv = self.config.vv_blocks
        tokens = self.clip.forward_tokens(images, [-1], project=True, vv_blocks=vv)
        patches = tokens.vv[-1] if vv else tokens.patches[-1]
        t = self.config.temperature
        return Prediction(
            scores=anomaly_probability(tokens.cls, text, t),
            maps=anomaly_probability(patches, text, t),
        )


@hookimpl
def adbench_methods() -> list[type[Method]]:
    return [CLIPZeroShot]
