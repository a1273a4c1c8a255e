"""patchead: cross-patch scoring against brute force, reference rules, protocols on planted defects."""

import pytest
import torch
import torch.nn.functional as F

from adbench.backbones.base import Backbone, Tokens
from adbench.errors import AdbenchError
from adbench.methods import Context
from adbench.plugins.patchead import (
    PatchEAD,
    PatchEADConfig,
    aggregate_references,
    foreground_weights,
    image_score,
)


def _unit(*shape):
    return F.normalize(torch.randn(*shape), dim=-1)


def test_reference_rules_and_self_exclusion():
    dist = torch.tensor([[0.1, 0.5, 0.9, float("inf")]])
    assert aggregate_references(dist, 2, "closest").item() == pytest.approx(0.3)
    assert aggregate_references(dist, 2, "farthest").item() == pytest.approx(0.7)


def test_image_score_is_mean_of_top_fraction():
    s = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    assert image_score(s, 0.5).item() == pytest.approx(2.5)
    assert image_score(s, 0.0001).item() == pytest.approx(3.0)


class PixelPatches(Backbone):
    """A transparent test encoder: each 8x8 patch's raw pixels are its feature; counts its passes."""

    name, patch_size, embed_dim, num_blocks, weights = "pixels", 8, 192, 1, "none"

    def __init__(self):
        super().__init__()
        self.passes = 0

    def forward_tokens(self, images, layers, *, with_attention=False):
        self.passes += 1
        x = F.unfold(images, 8, stride=8)  # (N, 192, P)
        h = images.shape[-2] // 8
        tokens = Tokens({1: x.transpose(1, 2).reshape(len(images), h, h, -1) - 0.5}, None, (h, h))
        if with_attention:
            tokens.attention = images.mean(1)[:, ::8, ::8]
        return tokens


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


def test_foreground_mask_comes_from_the_same_backbone_pass():
    imgs = _batch_with_defect()
    method = _method(foreground_mask=True)
    method.predict(imgs, Context("batch_zero_shot", "c"))
    assert method.encoder.passes == 1  # feature_batch_size 8 = one batch of 8 images


def test_foreground_weights_threshold_per_image():
    att = torch.tensor([[[0.0, 1.0], [0.02, 0.5]]])  # min-max normalised: 0, 1, 0.02, 0.5
    w = foreground_weights(att, (2, 2), threshold=0.05, background=0.5)
    assert w.tolist() == [[0.5, 1.0, 0.5, 1.0]]


def test_foreground_mask_on_a_cnn_is_a_one_line_error():
    from adbench.backbones.efficientnet import EfficientNetBackbone

    method = _method(foreground_mask=True)
    method.encoder = EfficientNetBackbone.__new__(EfficientNetBackbone)  # never reaches the network
    method.encoder.name = "efficientnet-lite0"
    with pytest.raises(AdbenchError, match="needs CLS attention: backbone 'efficientnet-lite0' has no CLS"):
        method.predict(torch.rand(2, 3, 32, 32), Context("batch_zero_shot", "c"))


def test_few_shot_references_are_embedded_once_per_job():
    imgs = _batch_with_defect()
    method, refs = _method(), imgs[[0, 1]]
    ctx = Context("few_shot", "c", references=refs)
    for start in range(0, 8, 2):  # the runner streams query batches with one reference tensor
        method.predict(imgs[start : start + 2], ctx)
    assert method.encoder.passes == 4 + 1


def test_alignment_undoes_a_rotation_and_shift():
    from skimage import data

    from adbench.plugins.patchead_align import align_to

    photo = torch.from_numpy(data.astronaut()[::2, ::2].copy()).permute(2, 0, 1).float() / 255
    moved = torch.roll(torch.rot90(photo, 1, dims=(1, 2)), shifts=(9, -6), dims=(1, 2))
    aligned = align_to(moved, photo)
    inner = (slice(None), slice(30, -30), slice(30, -30))  # away from the rolled border
    before = (moved - photo)[inner].abs().mean()
    after = (aligned - photo)[inner].abs().mean()
    assert after < 0.25 * before


def test_alignment_adds_references_and_keeps_shapes():
    imgs = _batch_with_defect(4)
    pred = _method(align=True).predict(imgs, Context("batch_zero_shot", "c"))
    assert pred.scores.shape == (4,) and torch.isfinite(pred.scores).all()
