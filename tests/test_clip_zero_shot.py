"""clip: the plain CLIP baseline and the shared prompt-ensemble helpers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adbench.methods import Context
from adbench.plugins.clip_zero_shot import CLIPConfig, CLIPZeroShot
from adbench.plugins.prompt_ensemble import (
    WINCLIP_TEMPLATES,
    anomaly_probability,
    class_name,
    ensemble_sentences,
)


def test_sentences_and_class_names():
    assert class_name("metal_nut") == "metal nut"
    sentences = ensemble_sentences(("normal {}", "damaged {}"), WINCLIP_TEMPLATES[:2], "screw")
    assert sentences == [
        "a cropped photo of the normal screw.",
        "a cropped photo of a normal screw.",
        "a cropped photo of the damaged screw.",
        "a cropped photo of a damaged screw.",
    ]


def test_anomaly_probability_is_the_two_way_softmax():
    text = F.normalize(torch.randn(2, 16), dim=-1)
    feats = torch.randn(5, 16)
    cos = F.normalize(feats, dim=-1) @ text.T
    expected = torch.exp(cos[:, 1] / 0.07) / torch.exp(cos / 0.07).sum(-1)
    torch.testing.assert_close(anomaly_probability(feats, text, 0.07), expected)
    torch.testing.assert_close(
        anomaly_probability(text[1:] * 3, text, 0.01), torch.ones(1), atol=1e-3, rtol=0
    )


def test_requirements_follow_the_vv_option():
    assert CLIPZeroShot.backbone_requirements(CLIPConfig())["backbone"] == {"text", "projection"}
    assert "vv" in CLIPZeroShot.backbone_requirements(CLIPConfig(vv_blocks=2))["backbone"]


@pytest.fixture(scope="module")
def methods():
    out = {}
    for vv in (0, 2):
        m = CLIPZeroShot(CLIPConfig(backbone="tiny-clip", image_size=112, vv_blocks=vv))
        m.setup()
        out[vv] = m
    return out


def test_scores_and_maps_from_the_class_and_patch_tokens(methods):
    m = methods[0]
    images = torch.rand(2, 3, 112, 112)
    pred = m.predict(images, Context("zero_shot", "metal_nut"))
    tokens = m.clip.forward_tokens(images, [-1], project=True)
    text = m.text("metal_nut")
    torch.testing.assert_close(pred.scores, anomaly_probability(tokens.cls, text, 0.01))
    torch.testing.assert_close(pred.maps, anomaly_probability(tokens.patches[-1], text, 0.01))
    assert pred.maps.shape == (2, 8, 8)


def test_vv_path_changes_maps_not_image_scores(methods):
    images = torch.rand(2, 3, 112, 112)
    plain = methods[0].predict(images, Context("zero_shot", "bottle"))
    vv = methods[2].predict(images, Context("zero_shot", "bottle"))
    torch.testing.assert_close(plain.scores, vv.scores)
    assert not torch.allclose(plain.maps, vv.maps)


def test_published_name_only_for_the_published_backbone():
    """A tiny random or smaller CLIP is not the paper's row: no published number pairs with it."""
    from adbench.plugins.winclip import WinCLIP, WinCLIPConfig

    assert CLIPZeroShot.published_name(CLIPConfig()) == "CLIP"
    assert CLIPZeroShot.published_name(CLIPConfig(backbone="tiny-clip")) is None
    field = WinCLIP.backbone_fields[0]
    assert WinCLIP.published_name(WinCLIPConfig()) == "WinCLIP"
    assert WinCLIP.published_name(WinCLIPConfig(**{field: "tiny-clip"})) is None
