"""dma_sap: invariants of each module on plain tensors, and the plugin on the tiny random backbones."""

from __future__ import annotations

import pytest
import torch

from adbench.backbones.spec import scale_taps
from adbench.methods import Context
from adbench.plugins.dma_sap import DMASAP, DMASAPConfig
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
        # one map per fused level (several levels only), then F_fusion's and F_self's
        assert maps.shape == (2, 2 if variant == "A" else 5, *grid)
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


# --- fidelity to the paper (issue 8) --------------------------------------------------------------------
def test_a_clip_is_peaked_when_patches_correlate_with_the_text():
    torch.manual_seed(0)
    dim, grid = 64, (6, 6)
    text = torch.nn.functional.normalize(torch.randn(2, dim), dim=-1)
    query = torch.nn.functional.normalize(text, dim=-1).mean(0)  # the class embedding the head passes
    dino = torch.randn(1, *grid, dim)
    dino[0, 2, 3] = 5 * query / query.norm() + 0.1 * torch.randn(dim)  # one patch carries the text direction
    a = DMA(dim).clip_attention(dino, query)[0, 0]
    assert a.argmax() == 2 * grid[1] + 3
    assert a.max() / a.min() > 50  # the old query/key path gave max/min ~ 1.1 (near uniform)
    flat = clip_guided_attention(query, dino.reshape(1, -1, dim))[0, 0]
    assert flat.max() / flat.min() < 2  # what the unprojected, unnormalised path gives


def test_sap_weights_see_every_level_map():
    head = FusionHead(16, 24, levels=3, variant="D")
    clip = [torch.randn(1, 4, 4, 16) for _ in range(3)]
    dino = [torch.randn(1, 4, 4, 24) for _ in range(3)]
    captured = {}
    head.sap.register_forward_hook(lambda m, args, out: captured.setdefault("maps", args[1]))
    maps, _ = head(clip, dino, torch.randn(1, 4, 4, 16), torch.randn(1, 16), torch.randn(2, 16))
    assert captured["maps"].shape == (1, 5, 16)
    fused = head.fuse(clip, dino, torch.randn(2, 16))[1]
    assert len(fused) == 3
    old = FusionHead(16, 24, levels=3, variant="D", seg_maps="fusion")
    assert old(clip, dino, torch.randn(1, 4, 4, 16), torch.randn(1, 16), torch.randn(2, 16))[0].shape[1] == 2


def test_variant_d_image_feature_is_cls_enhanced_by_sap():
    torch.manual_seed(0)
    head = FusionHead(16, 24, levels=3, variant="D", temperature=1.0)
    clip = [torch.randn(2, 4, 4, 16) for _ in range(3)]
    dino = [torch.randn(2, 4, 4, 24) for _ in range(3)]
    f_self, cls, text = torch.randn(2, 4, 4, 16), torch.randn(2, 16), torch.randn(2, 16)
    captured = {}
    head.sap.register_forward_hook(lambda m, args, out: captured.__setitem__("f_out", out))
    _, logits = head(clip, dino, f_self, cls, text)
    from adbench.plugins.dma_sap_modules import image_logits

    torch.testing.assert_close(logits, image_logits(cls + captured["f_out"], text, 1.0))
    head.image_feature = "sap"
    _, logits_sap = head(clip, dino, f_self, cls, text)
    torch.testing.assert_close(logits_sap, image_logits(captured["f_out"], text, 1.0))
    assert not torch.allclose(logits, logits_sap)


def test_vv_blocks_default_is_anomalyclip_dpam_layer_20():
    # AnomalyCLIP's DAPM_replace(DPAM_layer=20) replaces resblocks[-i] for i in range(1, 20): 19 blocks
    assert DMASAPConfig().vv_blocks == len(range(1, 20)) == 19
    from adbench.backbones import build_backbone

    clip = build_backbone("tiny-clip", pretrained=False)
    n = clip.num_blocks
    tokens = clip.forward_tokens(
        torch.rand(1, 3, 56, 56), list(range(1, n + 1)), project=True, vv_blocks=n - 1
    )
    assert sorted(tokens.vv) == list(range(2, n + 1))  # the last n-1 blocks carry the V-V path, not the first


def test_normal_map_dice_is_an_option_off_by_default():
    assert DMASAPConfig().normal_map_dice is False
    method = tiny_method()
    feats = method.frozen_features(torch.rand(2, 3, 56, 56))
    masks = torch.zeros(2, 56, 56, dtype=torch.uint8)
    masks[1, 10:30, 10:30] = 1
    labels = torch.tensor([0, 1])
    base = method.training_loss(feats, masks, labels)[0]
    method.config.normal_map_dice = True
    assert method.training_loss(feats, masks, labels)[0] > base


def test_prompt_learner_from_words_embeds_the_placeholders_and_names_the_option_on_a_bad_tokenizer():
    from adbench.errors import AdbenchError
    from adbench.plugins.prompt_learner import PromptLearner

    class Clip(torch.nn.Module):
        def __init__(self, split: bool):
            super().__init__()
            self.split, self.token_embedding = split, torch.nn.Embedding(50, 8)

        def tokenize(self, texts):
            ids = torch.zeros(len(texts), 10, dtype=torch.long)
            ids[:, 1:4] = torch.tensor([7, 8, 7]) if self.split else 7  # 3 placeholders "X"
            ids[:, 4], ids[:, 5] = torch.arange(len(texts)) + 20, 49  # the words, then EOT (the max id)
            return ids

    learner = PromptLearner.from_words(Clip(False), 3, "object", "damaged object", "dma_sap.n_ctx")
    assert learner.ctx.shape == (2, 3, 8) and learner.eot.tolist() == [5, 5]
    assert learner.suffix.shape == (2, 6, 8)  # everything after the 3 learnable positions stays frozen
    with pytest.raises(AdbenchError, match=r"dma_sap.n_ctx=3: the tokenizer"):
        PromptLearner.from_words(Clip(True), 3, "object", "damaged object", "dma_sap.n_ctx")


# --- fidelity II (issue 20) -----------------------------------------------------------------------------
def test_dino_backbone_default_is_vit_l_as_the_efficiency_paragraph_says():
    # Sec. 4.1.3 "CLIP ViT-L/14 + DINOv2 ViT-L"; the "12 blocks" reading stays reachable
    assert DMASAPConfig().dino_backbone == "dinov2-vitl14"
    assert scale_taps(DMASAPConfig().dino_layers, 12, 24) == (8, 16, 24)


@pytest.mark.parametrize("rule", ["mean", "sum", "segmentation"])
def test_seg_loss_keeps_the_papers_balance_of_l_seg_and_l_cls(rule):
    from adbench.losses import image_cross_entropy, segmentation_loss

    method = tiny_method(seg_loss=rule)
    feats = method.frozen_features(torch.rand(2, 3, 56, 56))
    masks = torch.zeros(2, 56, 56, dtype=torch.uint8)
    masks[1, 8:30, 12:40] = 1
    labels = torch.tensor([0, 1])
    loss, parts = method.training_loss(feats, masks, labels)
    maps, logits = method.forward_head(feats)
    per_map = [segmentation_loss(maps[:, m], masks) for m in range(maps.shape[1])]
    assert len(per_map) == 5  # three levels, F_fusion, F_self
    expected = {"mean": sum(per_map) / 5, "sum": sum(per_map), "segmentation": per_map[-2] + per_map[-1]}
    torch.testing.assert_close(torch.tensor(parts["seg"]), expected[rule].detach())
    torch.testing.assert_close(loss, expected[rule] + 0.2 * image_cross_entropy(logits, labels))
    if rule == "mean":  # the default: one focal + dice in scale, as Sec. 3.3.4's L_seg
        assert DMASAPConfig().seg_loss == "mean"


def test_info_prints_the_parameter_breakdown_beside_the_papers():
    from adbench.info import describe_method

    text = describe_method(
        "dma_sap", overrides={"clip_backbone": "tiny-clip", "dino_backbone": "tiny-dinov2"}
    )
    assert "parameter breakdown (adbench | paper Sec. 4.1.3, M):" in text
    for group, paper in (("visual encoder", 312.7), ("transformer", 85.1), ("embedding layers", 37.9)):
        assert f"  {group}: " in text and f"| {paper}" in text
    method = tiny_method()
    lines = method.parameter_breakdown()
    values = {ln.split(":")[0].strip(): float(ln.split(":")[1].split("|")[0]) for ln in lines[1:5]}
    clip = method.clip.model
    assert values["total"] == pytest.approx(
        (sum(p.numel() for p in clip.parameters()) + sum(p.numel() for p in method.learnable.parameters()))
        / 1e6,
        abs=0.051,
    )
