"""aprilgan: prompt ensembles, stage projections, the loss and the few-shot memory branch on the tiny CLIP."""

from __future__ import annotations

import pytest
import torch

from adbench.methods import Context
from adbench.patch_nn import nearest_cosine_distance
from adbench.plugins.aprilgan import APRILGAN, APRILGANConfig
from adbench.plugins.prompt_ensemble import (
    APRILGAN_ANOMALOUS_STATES,
    APRILGAN_NORMAL_STATES,
    APRILGAN_TEMPLATES,
    ensemble_sentences,
)


@pytest.fixture(scope="module")
def method():
    m = APRILGAN(APRILGANConfig(backbone="tiny-clip", image_size=112))
    m.setup()
    return m


def test_prompt_ensemble_sizes():
    assert len(ensemble_sentences(APRILGAN_NORMAL_STATES, APRILGAN_TEMPLATES, "screw")) == 7 * 35
    assert len(ensemble_sentences(APRILGAN_ANOMALOUS_STATES, APRILGAN_TEMPLATES, "screw")) == 5 * 35
    assert (
        ensemble_sentences(APRILGAN_ANOMALOUS_STATES, APRILGAN_TEMPLATES, "screw")[35]
        == "a bad photo of a broken screw."
    )


def test_stage_layout_and_full_size_count(method):
    assert method.taps == (1, 2, 3, 4)  # stages 6/12/18/24 of 24 blocks on the 4-block tiny CLIP
    assert [tuple(layer.weight.shape) for layer in method.learnable] == [(64, 64)] * 4
    # at full size: four Linear(1024, 768) (ViT-L/14 width -> joint space)
    assert 4 * (1024 * 768 + 768) == 3_148_800


def test_text_is_per_class_and_unit(method):
    a, b = method.text("screw"), method.text("metal nut")
    assert a.shape == (2, method.clip.output_dim)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(a, b)


def test_loss_decreases_when_training_the_projections(method):
    images = torch.rand(4, 3, 112, 112)
    masks = torch.zeros(4, 112, 112, dtype=torch.uint8)
    masks[1, 20:60, 20:60] = 1
    masks[3, 50:90, 40:80] = 1
    feats = method.frozen_features(images)
    method.train_classes = ["screw", "bottle"]
    feats["class_index"] = torch.tensor([0, 1, 1, 0])
    before = {k: v.clone() for k, v in method.learnable.state_dict().items()}
    opt = torch.optim.Adam(method.learnable.parameters(), lr=1e-2, betas=(0.5, 0.999))
    losses = []
    for _ in range(15):
        loss = method.training_loss(feats, masks, torch.tensor([0, 1, 0, 1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    method.learnable.load_state_dict(before)
    assert losses[-1] < losses[0]


def test_few_shot_adds_the_memory_distance(method):
    images = torch.rand(2, 3, 112, 112)
    zero = method.predict(images, Context("zero_shot", "bottle"))
    same = method.predict(images, Context("few_shot", "bottle", references=images))
    # every query token is in the memory: the few-shot term is 0 and the map is the zero-shot map
    torch.testing.assert_close(same.maps, zero.maps, rtol=1e-4, atol=1e-4)
    refs = torch.rand(3, 3, 112, 112)
    other = method.predict(images, Context("few_shot", "bottle", references=refs))
    feats, mem = method.frozen_features(images), method.frozen_features(refs)
    extra = sum(nearest_cosine_distance(feats[f"stage{i}"], mem[f"stage{i}"].flatten(0, 2)) for i in range(4))
    extra = torch.nn.functional.interpolate(
        extra[:, None], size=(112, 112), mode="bilinear", align_corners=True
    )[:, 0]
    torch.testing.assert_close(other.maps, zero.maps + extra, rtol=1e-4, atol=1e-4)
    expected = (zero.scores + other.maps.flatten(1).amax(1) / 12) / 2
    torch.testing.assert_close(other.scores, expected, rtol=1e-4, atol=1e-5)
