"""clip / clip_ac: plain CLIP zero-shot anomaly detection, the "CLIP" and "CLIP-AC" rows of the ZSAD tables.

Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
ICML 2021 (code: github.com/openai/CLIP); as anomaly baselines in WinCLIP (Jeong et al., CVPR 2023)
and AnomalyCLIP (Zhou et al., ICLR 2024, github.com/zqhang/AnomalyCLIP), whose table KAnoCLIP and
ViP2-CLIP copy. Training-free: the image score is the softmax over the cosine similarities of the CLS
embedding with the normal / anomalous text features; the anomaly map is the same two-way softmax for
every projected patch token (``vv_blocks > 0`` reads the tokens of the V-V attention path instead, as
CLIP Surgery-style baselines do; the original CLIP has no such path).

* ``clip`` (published "CLIP"): two single prompts, "a photo of a normal [class]." / "a photo of an
  anomalous [class]." and an unmodified vision side (AnomalyCLIP's maintainers, issue #25: "we use two
  single prompts ... We do not modify the vision side"; issue #76 reproduces the 74.1 MVTec image
  AUROC with these two sentences).
* ``clip_ac`` (published "CLIP-AC"): the "normal" / "anomalous" descriptors in a template ensemble
  (KAnoCLIP: "CLIP-AC made slight improvements by adding 'normal' and 'abnormal' descriptors").

Choices (config values; ``adbench.fidelity`` lists them in docs/fidelity.md):
* ``backbone`` CLIP ViT-L/14@336 (OpenAI) at 336 px, the CLIP the AnomalyCLIP table reproduces.
* ``prompts`` ensemble uses WinCLIP's 22 inspection templates (``prompt_ensemble.WINCLIP_TEMPLATES``);
  the CLIP-AC papers name CLIP's ImageNet template ensemble without listing it.
* ``anomalous_word`` "anomalous"; "damaged" with the ensemble is adbench's earlier ``clip`` (no
  published row).
* ``temperature`` 0.01 = CLIP's learned logit scale 100.
* No map smoothing of its own (``smoothing_sigma`` 0): an evaluation protocol with a sigma applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import lazy_loader as lazy

from adbench import hookimpl
from adbench.config import setting
from adbench.errors import AdbenchError
from adbench.fidelity import Choice
from adbench.methods import Context, Method, MethodConfig, Prediction

from .prompt_ensemble import (
    CLIP_NORMAL_STATES,
    CLIP_SINGLE_PROMPTS,
    WINCLIP_TEMPLATES,
    PromptEnsemble,
    anomaly_probability,
    class_name,
)

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free


@dataclass
class CLIPConfig(MethodConfig):
    """clip settings: CLIP's own backbone, input size and logit scale; the two single prompts."""

    backbone: str = "clip-vitl14-336"
    image_size: int = setting(336, ge=14, le=4096)
    temperature: float = setting(0.01, gt=0, doc="softmax temperature (CLIP's logit scale 100)")
    vv_blocks: int = setting(0, ge=0, doc="0: original patch tokens; n: V-V path of the last n blocks")
    prompts: Literal["single", "ensemble"] = "single"
    anomalous_word: str = setting(
        "anomalous",
        pattern=r"[^{}\s][^{}]*",  # one word or phrase; braces would be read as a template slot
        doc="the anomalous descriptor ('damaged': adbench's earlier clip)",
    )


@dataclass
class CLIPACConfig(CLIPConfig):
    """clip_ac settings: the descriptor pair in the template ensemble."""

    prompts: Literal["single", "ensemble"] = "ensemble"


class CLIPZeroShot(Method):
    """Plain CLIP: class-token image score and patch-token map against normal/anomalous prompts."""

    name = "clip"
    display_name = "CLIP"
    description = (
        "plain CLIP zero-shot: 'a photo of a normal/an anomalous [class].' (Radford et al. 2021), "
        "the CLIP row of the AnomalyCLIP lineage"
    )
    config_cls = CLIPConfig
    supports = frozenset({"zero_shot"})
    default_protocol = "zero_shot"
    demo_backbones = {"backbone": "tiny-clip"}
    smoothing_sigma = 0.0  # a plain CLIP baseline applies no Gaussian of its own
    official_source = (
        "AnomalyCLIP appendix (Baselines) and github.com/zqhang/AnomalyCLIP issue #25 "
        "(two single prompts, vision side unmodified); CLIP-AC: WinCLIP Sec. 5, KAnoCLIP Sec. 4"
    )
    choices = (
        Choice(
            "prompts",
            "clip: 'a photo of a normal [class].' / 'a photo of an anomalous [class].' (issue #25: two "
            "single prompts; issue #76 reproduces 74.1 MVTec image AUROC with them); clip_ac: 'normal' / "
            "'anomalous' descriptors in a template ensemble",
            "clip_ac's templates are WinCLIP's 22 inspection templates (the papers name CLIP's ImageNet "
            "ensemble without listing it)",
            "CLIP-AC rows within a few points",
            "--methods clip_ac, or --set clip.prompts=ensemble; --set clip.anomalous_word=damaged "
            "(the earlier ensemble, no published row)",
        ),
        Choice(
            "map smoothing",
            "none of its own (plain CLIP); an evaluation protocol's sigma applies as recorded",
            "none",
            "",
            "--eval-protocol anomalyclip (sigma 4, as the AnomalyCLIP table)",
        ),
    )

    @classmethod
    def published_name(cls, config: CLIPConfig) -> str | None:
        """CLIP for the single pair, CLIP-AC for the descriptor ensemble; None for other wordings or
        another backbone than the published ViT-L/14@336."""
        if (
            config.anomalous_word != "anomalous"
            or config.vv_blocks
            or not cls.runs_published_backbones(config)
        ):
            return None
        return "CLIP" if config.prompts == "single" else "CLIP-AC"

    @classmethod
    def backbone_requirements(cls, config: CLIPConfig) -> dict[str, frozenset[str]]:
        """Text tower and projected patch tokens; the V-V path when asked for."""
        needed = {"text", "projection"} | ({"vv"} if config.vv_blocks else set())
        return {"backbone": frozenset(needed)}

    def setup(self) -> None:
        from adbench.backbones import build_backbone

        cfg = self.config
        self.clip = build_backbone(cfg.backbone, device=self.device, pretrained=self.pretrained_backbones)
        self._weights = {cfg.backbone: self.clip.weights}
        if cfg.vv_blocks > self.clip.num_blocks:
            raise AdbenchError(
                f"{self.name}.vv_blocks={cfg.vv_blocks}: backbone '{cfg.backbone}' has "
                f"{self.clip.num_blocks} blocks"
            )
        anomalous = f"{cfg.anomalous_word} {{}}"
        if cfg.prompts == "single":
            normal_sentence, _ = CLIP_SINGLE_PROMPTS
            article = "an" if cfg.anomalous_word[:1].lower() in "aeiou" else "a"
            sentences = (normal_sentence, f"a photo of {article} {anomalous}.")
            self._prompts = PromptEnsemble(self.clip, sentences[:1], sentences[1:], ("{}",))
        else:
            self._prompts = PromptEnsemble(self.clip, CLIP_NORMAL_STATES, (anomalous,), WINCLIP_TEMPLATES)

    def text(self, category: str) -> torch.Tensor:
        """(2, C) normal / anomalous text features of the category, computed once per category."""
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


class CLIPAC(CLIPZeroShot):
    """CLIP-AC: the normal / anomalous descriptors in a template ensemble (the published CLIP-AC row)."""

    name = "clip_ac"
    display_name = "CLIP-AC"
    description = "CLIP-AC zero-shot: 'normal'/'anomalous' descriptors in a prompt template ensemble"
    config_cls = CLIPACConfig


@hookimpl
def adbench_methods() -> list[type[Method]]:
    return [CLIPZeroShot, CLIPAC]
