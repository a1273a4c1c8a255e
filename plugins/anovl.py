"""anovl: V-V attention, domain-aware state prompts and per-image test-time adaptation (AnoVL).

Paper: Deng et al., "AnoVL: Adapting Vision-Language Models for Unified Zero-shot Anomaly
Localization", arXiv 2308.15939; official code github.com/hq-deng/AnoVL (``vl_test.py``,
``model.py``, ``prompt_ensemble.py``, ``open_clip/transformer.py``, ``test_zero_shot.sh``) at 3a70bfd.
CLIP ViT-B/16+ at 240 px (LAION-400M). Vision: V-V attention (CLIP Surgery) in all 12 blocks; the map
reads the V-V stream's tokens of block 12 through ``ln_post`` + projection. Text: domain-aware
prompts, 7 normal / 7 anomalous states x WinCLIP's 22 templates with "photo" replaced by "industrial
photo", "industrial image", "manufacturing image" (objects) or "industrial photo", "textural photo",
"surface picture" (the five MVTec AD textures); ensemble = normalised mean of the raw sentence
features. Test-time adaptation, per image, from a fresh initialisation: a text adapter
(``Linear(C, T)`` onto the T sentence features, tanh, back to C; output 0.5 x + 0.5 adapter(x)) is
trained for 5 AdamW steps (lr 1e-3) on the image's own tokens and a Gaussian-noised copy, with the
entropy of the clean map plus 0.5 x the cross-entropy pushing noised tokens to "anomalous" and clean
ones to "normal". Map: softmax over the raw cosines (no temperature), 3 x 3 mean filter; image score:
P(anomalous) of the V-V stream's class token the same way.

The DMA-SAP paper lists AnoVL under "trained on auxiliary dataset", but the official code trains
nothing on auxiliary data (its only learning is the per-image adaptation above), so this plugin is
training-free and runs under the ``zero_shot`` protocol, the setting those rows are compared under.

Choices (config values where they are settings):
* Weights: the shared ``clip-vitb16plus-240`` (LAION-400M epoch 31, WinCLIP's); the script names
  ``laion400m_e32``.
* The image score is computed on the image itself; the code averages it over a batch of augmented
  copies (``aug``, not in the released code).
* The adaptation's randomness (noise, initialisation) is seeded per job and image.
"""

from __future__ import annotations

from dataclasses import dataclass

import lazy_loader as lazy

from adbench import hookimpl
from adbench.config import setting
from adbench.methods import Context, Method, MethodConfig, Prediction

from .prompt_ensemble import WINCLIP_ANOMALOUS_STATES, WINCLIP_NORMAL_STATES, WINCLIP_TEMPLATES

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free

#: AnoVL's states: WinCLIP's with "normal {}" for "{}" and three more anomalous adjectives.
NORMAL_STATES = ("normal {}", *WINCLIP_NORMAL_STATES[1:])
ANOMALOUS_STATES = (
    "damaged {}",
    "abnormal {}",
    "imperfect {}",
    "blemished {}",
    *WINCLIP_ANOMALOUS_STATES[1:],
)
OBJECT_DOMAINS = ("industrial photo", "industrial image", "manufacturing image")
TEXTURE_DOMAINS = ("industrial photo", "textural photo", "surface picture")
#: MVTec AD's texture categories, which the code prompts with the texture domains.
TEXTURES = ("carpet", "leather", "grid", "tile", "wood")


def domain_templates(domain: str) -> list[str]:
    """WinCLIP's templates with "photo" replaced by ``domain`` (article fixed, no final period), as
    AnoVL's ``inds_temp`` / ``img_temp`` / ... lists spell them."""
    out = []
    for template in WINCLIP_TEMPLATES:
        text = template.rstrip(".").replace("photo", domain)
        out.append(text.replace("a industrial", "an industrial"))
    return out


@dataclass
class AnoVLConfig(MethodConfig):
    """anovl settings; defaults are ``test_zero_shot.sh`` (MVTec AD) and ``vl_test.py``."""

    backbone: str = "clip-vitb16plus-240"
    image_size: int = setting(240, ge=14, le=4096)
    layer: int = setting(12, ge=1, le=12, doc="block whose V-V tokens make the map (of 12)")
    tta_steps: int = setting(5, ge=0, doc="adaptation steps per image (the code's --epoch); 0 disables")
    tta_lr: float = setting(1e-3, gt=0)
    noise_std: float = setting(0.0605, gt=0, doc="std of the noised copy: 0.05 x 1.1")
    hard_weight: float = setting(0.5, ge=0)


class AnoVL(Method):
    """Training-free V-V CLIP with domain-aware prompts and a per-image adapted text projection."""

    name = "anovl"
    display_name = "AnoVL"
    description = (
        "AnoVL: V-V attention CLIP, domain-aware state prompts and per-image test-time adaptation "
        "(Deng et al., 2023); training-free"
    )
    config_cls = AnoVLConfig
    supports = frozenset({"zero_shot"})
    demo_backbones = {"backbone": "tiny-clip"}
    demo_settings = {"image_size": "112"}  # the tiny backbone's native size
    smoothing_sigma = 0.0  # the 3 x 3 mean filter is part of the map

    @classmethod
    def backbone_requirements(cls, config: AnoVLConfig) -> dict[str, frozenset[str]]:
        return {"backbone": frozenset({"text", "projection"})}

    def setup(self) -> None:
        from adbench.backbones import build_backbone

        self.clip = build_backbone(
            self.config.backbone, device=self.device, pretrained=self.pretrained_backbones
        )
        self._weights = {self.config.backbone: self.clip.weights}
        self.tap = max(1, round(self.config.layer * self.clip.num_blocks / 12))
        self._text: dict[tuple[str, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    def text(self, name: str, texture: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(2, C) unit ensemble features and the (T, C) unit sentence features (normal first)."""
        key = (name, texture)
        if key not in self._text:
            domains = TEXTURE_DOMAINS if texture else OBJECT_DOMAINS
            templates = [t for d in domains for t in domain_templates(d)]
            with torch.no_grad():
                groups = [
                    self.clip.encode_text(
                        [t.format(s.format(name)) for t in templates for s in states]
                    ).float()
                    for states in (NORMAL_STATES, ANOMALOUS_STATES)
                ]
            ensemble = torch.nn.functional.normalize(torch.stack([g.mean(0) for g in groups]), dim=-1)
            self._text[key] = (ensemble, torch.nn.functional.normalize(torch.cat(groups), dim=-1))
        return self._text[key]

    def tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """V-V stream tokens of the tapped block (N, h, w, C) and its final class token (N, C), projected."""
        from .clip_stream import self_correlation_stream

        n = self.clip.num_blocks
        _, levels, grid = self_correlation_stream(self.clip, images, ("vv",), n, (self.tap, n))
        patches = self.clip.project_tokens(levels[self.tap][:, 1:]).float().unflatten(1, grid)
        return patches, self.clip.project_tokens(levels[n][:, 0]).float()

    def adapt(
        self, tokens: torch.Tensor, text: torch.Tensor, sentences: torch.Tensor, seed: int
    ) -> torch.Tensor:
        """Tokens (h, w, C) of one image after its own test-time adaptation of the text adapter."""
        from .anovl_modules import TextAdapter, adaptation_loss

        cfg = self.config
        if cfg.tta_steps == 0:  # no adaptation: the tokens as the tower gives them (no untrained adapter)
            return tokens
        generator = torch.Generator(device="cpu").manual_seed(seed)
        # the runner predicts under inference mode; the adaptation needs autograd on fresh copies
        with torch.inference_mode(False), torch.enable_grad():
            tokens, text, sentences = tokens.clone(), text.clone(), sentences.clone()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                adapter = TextAdapter(sentences).to(tokens.device)
            optimizer = torch.optim.AdamW(adapter.parameters(), lr=cfg.tta_lr)
            for _ in range(cfg.tta_steps):
                noise = torch.randn(tokens.shape, generator=generator).to(tokens) * cfg.noise_std
                both = adapter(torch.stack([tokens, tokens + noise]))
                probs = (torch.nn.functional.normalize(both, dim=-1) @ text.T).softmax(-1)
                loss = adaptation_loss(probs, cfg.hard_weight)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                return adapter(tokens[None])[0]

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        text, sentences = self.text(ctx.object_name or ctx.category, ctx.category in TEXTURES)
        with torch.no_grad():
            patches, cls = self.tokens(images)
        maps = []
        for i, tokens in enumerate(patches):
            adapted = self.adapt(tokens, text, sentences, seed=ctx.seed * 100_003 + i)
            prob = (torch.nn.functional.normalize(adapted, dim=-1) @ text.T).softmax(-1)[..., 1]
            padded = torch.nn.functional.pad(prob[None, None], (1, 1, 1, 1), mode="replicate")
            maps.append(torch.nn.functional.avg_pool2d(padded, 3, stride=1)[0, 0])
        scores = (torch.nn.functional.normalize(cls, dim=-1) @ text.T).softmax(-1)[:, 1]
        return Prediction(scores=scores.float(), maps=torch.stack(maps).float())


@hookimpl
def adbench_methods() -> list[type[Method]]:
    return [AnoVL]
