"""The seed tables' baselines (adaclip, anovl, crane, mvfa): shared stream, full-size parameter counts,
auxiliary pairings and the parts that make each method what it is."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from adbench.backbones import build_backbone
from adbench.info import published_trainable
from adbench.methods import Context
from adbench.planner import auxiliary_names
from adbench.plugins.adaclip import AdaCLIP, AdaCLIPConfig
from adbench.plugins.adaclip_modules import HybridPrompts
from adbench.plugins.anovl import AnoVL, AnoVLConfig, domain_templates
from adbench.plugins.clip_stream import self_correlation_stream
from adbench.plugins.crane import Crane, CraneConfig
from adbench.plugins.mvfa import MVFA
from adbench.plugins.mvfa_modules import ClipAdapter

SIZE = 112


@pytest.fixture(scope="module")
def clip():
    return build_backbone("tiny-clip", device="cpu", pretrained=False)


def _count(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def test_vv_stream_equals_the_backbone_vv_path(clip) -> None:
    images = torch.rand(2, 3, SIZE, SIZE)
    ref = clip.forward_tokens(images, [2, 4], vv_blocks=3)
    _, levels, grid = self_correlation_stream(clip, images, ("vv",), 3, (2, 4))
    for tap in (2, 4):
        torch.testing.assert_close(levels[tap][:, 1:].unflatten(1, grid), ref.vv[tap], atol=1e-5, rtol=1e-5)


def test_adaclip_full_size_trainable_count_is_the_published_one() -> None:
    """ViT-L/14@336: text width 768, vision width 1024, embedding 768; 4 levels, depth 4, length 5."""
    heads = (
        HybridPrompts(4, 5, 768, 1024, 768),
        *(torch.nn.Linear(1024, 768) for _ in range(4)),
        torch.nn.Linear(768, 768),
    )
    assert _count(*heads) == 10_665_472  # published 10.67 M (ViP2-CLIP, Table 3)
    assert "10.67 M" in published_trainable(AdaCLIP, AdaCLIPConfig())


def test_mvfa_full_size_trainable_count() -> None:
    assert _count(*(ClipAdapter(1024, 768) for _ in range(8))) == 12_582_912


def test_auxiliary_pairings_of_the_methods() -> None:
    assert auxiliary_names("liverct", None, MVFA) == ["brainmri", "resc"]  # leave-one-out
    assert auxiliary_names("visa", None, MVFA) == ["mvtec"]
    assert auxiliary_names("visa", None, AdaCLIP) == ["mvtec", "cvc_colondb"]
    assert auxiliary_names("mvtec", None, AdaCLIP) == ["visa", "cvc_clinicdb"]
    assert auxiliary_names("synthetic", None, AdaCLIP) == ["synthetic"]
    assert auxiliary_names("liverct", ["mvtec"], MVFA) == ["mvtec"]  # an explicit --train-on wins


def test_anovl_domain_templates_follow_the_code() -> None:
    t = domain_templates("industrial photo")
    assert t[0] == "a cropped industrial photo of the {}" and t[12] == "an industrial photo of a {}"
    assert domain_templates("surface picture")[21] == "a surface picture of a {} for anomaly detection"


def test_anovl_test_time_adaptation_changes_the_map_reproducibly() -> None:
    images = torch.rand(2, 3, SIZE, SIZE)
    ctx = Context("zero_shot", "bottle", seed=0, object_name="bottle")

    def run(steps: int) -> torch.Tensor:
        method = AnoVL(
            dataclasses.replace(AnoVLConfig(backbone="tiny-clip", image_size=SIZE), tta_steps=steps)
        )
        method.pretrained_backbones = False
        method.setup()
        return method.predict(images, ctx).maps

    adapted = run(5)
    assert torch.equal(adapted, run(5))
    assert not torch.allclose(adapted, run(0))


def test_crane_text_is_conditioned_on_each_image(clip) -> None:
    method = Crane(CraneConfig(backbone="tiny-clip", image_size=SIZE))
    method.attach(clip)
    feats = method.frozen_features(torch.rand(2, 3, SIZE, SIZE))
    with torch.no_grad():
        text = method.text_features(feats["cls"])
        assert not torch.allclose(text[0], text[1])
        method.config = dataclasses.replace(method.config, image_context=False)
        plain = method.text_features(feats["cls"])
    assert torch.allclose(plain[0], plain[1])


def test_demo_settings_apply_under_demo_only_and_yield_to_set() -> None:
    from adbench.jobs import RunSpec, method_configs

    demo = method_configs(AdaCLIP, RunSpec(methods=["adaclip"], demo=True))[0]
    assert (demo.backbone, demo.image_size, demo.epochs) == ("tiny-clip", 112, 1)
    assert method_configs(AdaCLIP, RunSpec(methods=["adaclip"]))[0].image_size == 518
    chosen = RunSpec(methods=["adaclip"], demo=True, overrides={"adaclip": {"epochs": ["3"]}})
    assert method_configs(AdaCLIP, chosen)[0].epochs == 3


def test_text_tower_cut_after_the_last_end_of_text_token_is_exact(clip) -> None:
    """AdaCLIP encodes its sentences per image; the causal mask makes the cut exact."""
    tokens = clip.tokenize(["a bad photo of a flawless brick.", "a cropped photo of the brick with flaw."])
    deep = [torch.randn(5, clip.token_embedding.weight.shape[1])]
    eot = tokens.argmax(-1)
    cut = tokens[:, : int(eot.max()) + 1]
    with torch.no_grad():
        full = clip.encode_text_embeddings(clip.token_embedding(tokens), eot, deep)
        short = clip.encode_text_embeddings(clip.token_embedding(cut), eot, deep)
    torch.testing.assert_close(short, full, atol=1e-5, rtol=1e-5)


def test_anovl_without_adaptation_steps_leaves_the_tokens_as_they_are():
    """tta_steps=0 disables the test-time adaptation (no untrained adapter is applied)."""
    from types import SimpleNamespace

    from adbench.plugins.anovl import AnoVL, AnoVLConfig

    tokens, text, sentences = torch.randn(4, 4, 8), torch.randn(2, 8), torch.randn(6, 8)
    out = AnoVL.adapt(SimpleNamespace(config=AnoVLConfig(tta_steps=0)), tokens, text, sentences, 0)
    assert torch.equal(out, tokens)
