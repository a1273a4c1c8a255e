"""dma_sap: invariants of each module on plain tensors, and the plugin on the tiny random backbones."""

from __future__ import annotations

import pytest
import torch

from adbench.methods import Context
from adbench.plugins.dma_sap import DMASAP, DMASAPConfig, scale_taps
from adbench.plugins.dma_sap_modules import (
    DMA,
    SAP,
    FusionHead,
    anomaly_map,
    clip_guided_attention,
    dino_self_attention,
    resize_attention,
)


def test_dino_self_attention_rows_are_distributions():
    a = dino_self_attention(torch.randn(2, 30, 16), delta=3.0, eps=1.2)
    assert a.shape == (2, 30, 30)
    assert (a >= 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 30))


def test_dino_self_attention_prefers_similar_tokens():
    f = torch.randn(1, 10, 8)
    a = dino_self_attention(f)
    # each token's own similarity (cosine 1) is its largest, so the diagonal is the row maximum
    assert torch.equal(a[0].argmax(-1), torch.arange(10))


def test_clip_guided_attention_is_a_distribution_over_keys():
    a = clip_guided_attention(torch.randn(16), torch.randn(3, 25, 16))
    assert a.shape == (3, 1, 25)
    torch.testing.assert_close(a.sum(-1), torch.ones(3, 1))


@pytest.mark.parametrize("src,dst", [((5, 5), (8, 8)), ((6, 4), (3, 7)), ((4, 4), (4, 4))])
def test_resize_attention_keeps_rows_stochastic(src, dst):
    a = torch.softmax(torch.randn(2, src[0] * src[1], src[0] * src[1]), -1)
    r = resize_attention(a, src, dst)
    assert r.shape == (2, dst[0] * dst[1], dst[0] * dst[1])
    torch.testing.assert_close(r.sum(-1), torch.ones(2, dst[0] * dst[1]))


@pytest.mark.parametrize("clip_grid,dino_grid", [((8, 8), (8, 8)), ((8, 6), (5, 7))])
def test_dma_output_has_the_clip_grid(clip_grid, dino_grid):
    dma = DMA(16, theta_init=0.5)
    out = dma(torch.randn(2, *clip_grid, 16), torch.randn(2, *dino_grid, 16), torch.randn(16))
    assert out.shape == (2, *clip_grid, 16)
    a = dma.attention(torch.randn(2, *dino_grid, 16), torch.randn(16), clip_grid)
    # A_fused = A_dino + theta * A_clip: every row sums to 1 + theta
    torch.testing.assert_close(a.sum(-1), torch.full((2, clip_grid[0] * clip_grid[1]), 1.5))


def test_sap_weights_are_a_distribution_over_patches():
    w = SAP.patch_weights(torch.rand(3, 2, 49))
    assert w.shape == (3, 49)
    assert (w > 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(3))


def test_sap_weights_favour_anomalous_patches():
    maps = torch.zeros(1, 2, 10)
    maps[0, :, 3] = 1.0
    assert SAP.patch_weights(maps)[0].argmax() == 3


def test_sap_gate_at_zero_returns_f_base():
    sap = SAP(8)
    patches, maps = torch.randn(2, 12, 8), torch.rand(2, 2, 12)
    w = torch.softmax(maps.mean(1), -1)
    f_base = (w[..., None] * patches).sum(1)
    with torch.no_grad():
        sap.gate.fill_(-1e4)  # sigmoid(gate) == 0
    torch.testing.assert_close(sap(patches, maps), f_base)
    with torch.no_grad():
        sap.gate.fill_(0.0)
    assert not torch.allclose(sap(patches, maps), f_base)


def test_anomaly_map_is_a_probability():
    m = anomaly_map(torch.randn(2, 4, 5, 8), torch.randn(2, 8))
    assert m.shape == (2, 4, 5)
    assert ((m >= 0) & (m <= 1)).all()


@pytest.mark.parametrize("variant", ["A", "B", "C", "D"])
def test_fusion_head_shapes_for_any_grid(variant):
    head = FusionHead(16, 24, levels=3, variant=variant)
    n_levels = 1 if variant == "A" else 3
    for grid, dgrid in [((6, 6), (6, 6)), ((7, 5), (4, 6))]:
        clip = [torch.randn(2, *grid, 16) for _ in range(n_levels)]
        dino = [torch.randn(2, *dgrid, 24) for _ in range(n_levels)]
        maps, logits = head(clip, dino, torch.randn(2, *grid, 16), torch.randn(2, 16), torch.randn(2, 16))
        assert maps.shape == (2, 2, *grid)
        assert logits.shape == (2, 2)
    assert (head.sap is not None) == (variant == "D")
    assert len(head.dma) == (3 if variant in "CD" else 0)


def test_scale_taps():
    assert scale_taps((8, 16, 24), 24, 24) == (8, 16, 24)
    assert scale_taps((8, 16, 24), 24, 4) == (1, 3, 4)
    assert scale_taps((4, 8, 12), 12, 24) == (8, 16, 24)


# --- the plugin on the tiny random backbones (same code paths as the full-size ones) ------------------
def tiny_method(**kw) -> DMASAP:
    cfg = DMASAPConfig(clip_backbone="tiny-clip", dino_backbone="tiny-dinov2", image_size=56, **kw)
    method = DMASAP(cfg, "cpu")
    method.setup()
    return method


@pytest.mark.parametrize("size", [56, 70])
def test_predict_map_has_input_size(size):
    method = tiny_method()
    pred = method.predict(torch.rand(2, 3, size, size), Context("zero_shot", "x"))
    assert pred.maps.shape == (2, size, size)
    assert pred.scores.shape == (2,)
    assert ((pred.scores >= 0) & (pred.scores <= 1)).all()


def test_learnable_state_has_no_backbone_and_gradients_reach_prompts():
    method = tiny_method()
    state = method.learnable_state()
    assert all(k.startswith(("prompts.", "head.")) for k in state)
    n_learn = sum(v.numel() for v in state.values())
    assert n_learn < sum(p.numel() for p in method.clip.parameters()) / 10
    feats = method.frozen_features(torch.rand(2, 3, 56, 56))
    loss, parts = method.training_loss(feats, torch.zeros(2, 56, 56, dtype=torch.uint8), torch.tensor([0, 1]))
    loss.backward()
    assert set(parts) == {"seg", "cls"}
    assert method.learnable["prompts"].ctx.grad is not None
    assert method.learnable["prompts"].ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in method.clip.parameters())


def test_variant_a_taps_only_the_deepest_layers():
    method = tiny_method(variant="A")
    assert method.clip_taps == (4,) and method.dino_taps == (4,)
    assert set(method.frozen_features(torch.rand(1, 3, 56, 56))) == {"clip0", "dino0", "self", "cls"}
