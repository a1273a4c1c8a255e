"""patchead: cross-patch scoring against brute force, reference rules, protocols on planted defects."""

import pytest
import torch
import torch.nn.functional as F

from adbench.backbones.base import Backbone, Tokens
from adbench.methods import Context
from adbench.plugins.patchead import (
    PatchEAD,
    PatchEADConfig,
    aggregate_references,
    cross_patch_distances,
    image_score,
)


def _unit(*shape):
    return F.normalize(torch.randn(*shape), dim=-1)


def test_distances_equal_brute_force_with_groups_and_chunks():
    torch.manual_seed(0)
    q, refs = _unit(7, 5), _unit(4, 6, 5)
    groups = torch.tensor([0, 1, 1, 2])
    expected = torch.full((7, 3), float("inf"))
    for p in range(7):
        for r in range(4):
            d = 1 - max(float(q[p] @ refs[r, j]) for j in range(6))
            expected[p, groups[r]] = min(expected[p, groups[r]], d)
    got = cross_patch_distances(q, refs, groups, 3)
    chunked = cross_patch_distances(q, refs, groups, 3, max_elements=6)  # one query patch per chunk
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(chunked, got)


def test_reference_rules_and_self_exclusion():
    dist = torch.tensor([[0.1, 0.5, 0.9, float("inf")]])
    assert aggregate_references(dist, 2, "closest").item() == pytest.approx(0.3)
    assert aggregate_references(dist, 2, "farthest").item() == pytest.approx(0.7)


def test_image_score_is_mean_of_top_fraction():
    s = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    assert image_score(s, 0.5).item() == pytest.approx(2.5)
    assert image_score(s, 0.0001).item() == pytest.approx(3.0)


class PixelPatches(Backbone):
    """A transparent test encoder: each 8x8 patch's raw pixels are its feature."""

    name, patch_size, embed_dim, num_blocks, weights = "pixels", 8, 192, 1, "none"

    def forward_tokens(self, images, layers):
        x = F.unfold(images, 8, stride=8)  # (N, 192, P)
        h = images.shape[-2] // 8
        return Tokens({1: x.transpose(1, 2).reshape(len(images), h, h, -1) - 0.5}, None, (h, h))

    def cls_attention(self, images):
        return images.mean(1)[:, ::8, ::8]


def _method(**kw) -> PatchEAD:
    m = PatchEAD(PatchEADConfig(backbone="pixels", image_size=64, layers=(1,), **kw))
    m.encoder = PixelPatches()
    return m


def _batch_with_defect(n=8):
    torch.manual_seed(1)
    base = torch.rand(3, 64, 64)
    imgs = (base + 0.02 * torch.randn(n, 3, 64, 64)).clamp(0, 1)
    imgs[2, :, 16:24, 40:48] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    return imgs


def test_batch_zero_shot_finds_planted_defect():
    imgs = _batch_with_defect()
    pred = _method().predict(imgs, Context("batch_zero_shot", "c"))
    assert pred.scores.argmax().item() == 2
    assert pred.maps.shape == (8, 8, 8)
    assert pred.maps[2].flatten().argmax().item() == 2 * 8 + 5  # the defect's patch (row 2, col 5)


def test_few_shot_uses_references():
    imgs = _batch_with_defect()
    refs = imgs[[0, 1]]
    pred = _method().predict(imgs[2:6], Context("few_shot", "c", references=refs))
    assert pred.scores.argmax().item() == 0


def test_foreground_mask_downweights_background():
    imgs = _batch_with_defect()
    plain = _method().predict(imgs, Context("batch_zero_shot", "c"))
    masked = _method(foreground_mask=True, mask_threshold=2.0).predict(imgs, Context("batch_zero_shot", "c"))
    assert torch.allclose(masked.maps, plain.maps * 0.5)  # threshold above every value: all background


def test_alignment_adds_references_and_keeps_shapes():
    imgs = _batch_with_defect(4)
    pred = _method(align=True).predict(imgs, Context("batch_zero_shot", "c"))
    assert pred.scores.shape == (4,) and torch.isfinite(pred.scores).all()
