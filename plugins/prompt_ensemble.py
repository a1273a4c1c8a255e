"""Fixed-text prompt ensembles of the CLIP anomaly baselines (CLIP, WinCLIP, APRIL-GAN) and the
two-way text scoring they share.

A class's normal (anomalous) text feature is the mean of the L2-normalised features of every
state word x template sentence, renormalised (CLIP's prompt ensembling, used by WinCLIP's
compositional prompt ensemble and APRIL-GAN's state- and template-level ensembles).
The word lists are facts from the papers / official code (WinCLIP Sec. 4.1 and supplement, APRIL-GAN
``prompt_ensemble.py``); they live here once because three methods use them.
"""

from __future__ import annotations

from collections.abc import Sequence

import lazy_loader as lazy

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free


#: State words of WinCLIP's compositional prompt ensemble (Jeong et al. 2023, supplement).
WINCLIP_NORMAL_STATES = (
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)
WINCLIP_ANOMALOUS_STATES = ("damaged {}", "{} with flaw", "{} with defect", "{} with damage")

#: WinCLIP's template list (CLIP's ImageNet templates that suit inspection images, plus two of its own).
WINCLIP_TEMPLATES = (
    "a cropped photo of the {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a dark photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
)

#: APRIL-GAN's state words (WinCLIP's plus "broken {}") and its 35 templates (official prompt_ensemble.py).
APRILGAN_NORMAL_STATES = WINCLIP_NORMAL_STATES
APRILGAN_ANOMALOUS_STATES = ("damaged {}", "broken {}", "{} with flaw", "{} with defect", "{} with damage")
APRILGAN_TEMPLATES = (
    "a bad photo of a {}.",
    "a low resolution photo of the {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a bright photo of a {}.",
    "a dark photo of the {}.",
    "a photo of my {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a photo of one {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "a low resolution photo of a {}.",
    "a photo of a large {}.",
    "a blurry photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a photo of the small {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "a dark photo of a {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
)

#: The plain-CLIP baseline's two states ("a photo of a normal/damaged [class]").
#: The CLIP row of the AnomalyCLIP lineage (AnomalyCLIP appendix; zqhang/AnomalyCLIP issue #25: "two
#: single prompts"; issue #76 reproduces its 74.1 MVTec image AUROC with exactly these sentences).
CLIP_SINGLE_PROMPTS = ("a photo of a normal {}.", "a photo of an anomalous {}.")
#: CLIP-AC (WinCLIP's and AnomalyCLIP's baseline): the "normal" / "anomalous" descriptors in CLIP's
#: template ensemble; adbench uses WinCLIP's 22 inspection templates for the ensemble.
CLIP_NORMAL_STATES = ("normal {}",)


def class_name(category: str) -> str:
    """The object word used in prompts for a category folder name ("metal_nut" -> "metal nut")."""
    return category.replace("_", " ").strip()


def ensemble_sentences(states: Sequence[str], templates: Sequence[str], name: str) -> list[str]:
    """Every template filled with every state filled with ``name`` (states outer, templates inner)."""
    return [t.format(s.format(name)) for s in states for t in templates]


def text_features(backbone: object, sentences: Sequence[str]) -> torch.Tensor:
    """The ensemble feature (C,) of ``sentences``: mean of their normalised features, renormalised."""
    feats = torch.nn.functional.normalize(backbone.encode_text(list(sentences)).float(), dim=-1)  # type: ignore[attr-defined]
    return torch.nn.functional.normalize(feats.mean(0), dim=-1)


def normal_anomalous_features(
    backbone: object,
    name: str,
    normal_states: Sequence[str],
    anomalous_states: Sequence[str],
    templates: Sequence[str],
) -> torch.Tensor:
    """(2, C) unit normal / anomalous text features of the object ``name``."""
    return torch.stack(
        [
            text_features(backbone, ensemble_sentences(normal_states, templates, name)),
            text_features(backbone, ensemble_sentences(anomalous_states, templates, name)),
        ]
    )


class PromptEnsemble:
    """A frozen text tower's (2, C) normal / anomalous ensemble features per object name, encoded once
    (without gradients) and cached: the text side of CLIP, WinCLIP and APRIL-GAN."""

    def __init__(
        self,
        backbone: object,
        normal_states: Sequence[str],
        anomalous_states: Sequence[str],
        templates: Sequence[str],
    ) -> None:
        self.backbone = backbone
        self.states = (tuple(normal_states), tuple(anomalous_states))
        self.templates = tuple(templates)
        self._cache: dict[str, torch.Tensor] = {}

    def features(self, name: str) -> torch.Tensor:
        """(2, C) unit normal / anomalous features of the object ``name``."""
        if name not in self._cache:
            with torch.no_grad():
                self._cache[name] = normal_anomalous_features(
                    self.backbone, name, *self.states, self.templates
                )
        return self._cache[name]


def anomaly_probability(features: torch.Tensor, text: torch.Tensor, temperature: float) -> torch.Tensor:
    """P(anomalous) of each feature (..., C) against (2, C) normal/anomalous text features: the softmax
    over the two cosine similarities divided by ``temperature``."""
    logits = (
        torch.nn.functional.normalize(features.float(), dim=-1)
        @ torch.nn.functional.normalize(text.float(), dim=-1).T
    )
    return torch.softmax(logits / temperature, dim=-1)[..., 1]


def class_index_targets(categories: Sequence[object]) -> tuple[list[str], torch.Tensor]:
    """The auxiliary categories' object names (once each, in order) and each auxiliary test image's
    index into them, for methods whose training prompts name each image's class."""
    names = list(dict.fromkeys(c.object_name for c in categories))  # type: ignore[attr-defined]
    index = [names.index(c.object_name) for c in categories for _ in c.test]  # type: ignore[attr-defined]
    return names, torch.tensor(index, dtype=torch.long)
