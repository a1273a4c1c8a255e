"""anomalyclip: DPAM against a transcription of the official dual path, prompt shapes, parameter layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adbench.methods import Context
from adbench.plugins.anomalyclip import AnomalyCLIP, AnomalyCLIPConfig
from adbench.plugins.anomalyclip_modules import DeepTextPrompts
from adbench.plugins.prompt_learner import PromptLearner


def official_dpam_tokens(
    clip, images: torch.Tensor, dpam_layer: int, out_layers: list[int]
) -> dict[int, torch.Tensor]:
    """AnomalyCLIP's visual forward written out from its paper/code: blocks -1..-(dpam_layer-1) carry two
    streams; q, k, v come from the original stream; the V-V stream adds softmax(v v^T * scale) v through
    the block's out-projection and skips the MLP; out_layers read the V-V stream where it exists."""
    visual = clip.model.visual
    x = visual.conv1(clip.normalize(images))
    grid = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), x], dim=1)
    x = visual.ln_pre(x + clip.pos_embed(tuple(grid)))
    blocks = visual.transformer.resblocks
    replaced = {len(blocks) - i for i in range(1, dpam_layer)}  # resblocks[-i], 0-based indices
    vv, out = None, {}
    for idx, block in enumerate(blocks):
        if idx in replaced:
            attn = block.attn
            n, length, width = x.shape
            heads = attn.num_heads
            qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
            q, k, v = qkv.view(n, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
            scale = (width // heads) ** -0.5
            ori = (((q @ k.transpose(-2, -1)) * scale).softmax(-1) @ v).transpose(1, 2)
            sur = (((v @ v.transpose(-2, -1)) * scale).softmax(-1) @ v).transpose(1, 2)
            vv = (x if vv is None else vv) + attn.out_proj(sur.reshape(n, length, width))
            x = x + attn.out_proj(ori.reshape(n, length, width))
            x = x + block.mlp(block.ln_2(x))
        else:
            x = block(x)
        if idx + 1 in out_layers:
            out[idx + 1] = (vv if vv is not None else x)[:, 1:]
    return {i: clip.project_tokens(t).unflatten(1, tuple(grid)) for i, t in out.items()}


@pytest.fixture(scope="module")
def method():
    # the paper's four distinct layers (a recorded option) exercise every tap of the V-V path
    m = AnomalyCLIP(AnomalyCLIPConfig(backbone="tiny-clip", image_size=112, feature_layers=(6, 12, 18, 24)))
    m.setup()
    return m


def test_dpam_equals_the_backbone_vv_path(method):
    images = torch.rand(2, 3, 112, 112)
    # the tiny CLIP has 4 blocks: the official DPAM_layer=20 of 24 scales to 3 V-V blocks = DPAM_layer 4
    assert method.vv_blocks == 3 and method.taps == (1, 2, 3, 4)
    expected = official_dpam_tokens(
        method.clip, images, dpam_layer=method.vv_blocks + 1, out_layers=[1, 2, 3, 4]
    )
    feats = method.frozen_features(images)
    for i, layer in enumerate(method.taps):
        torch.testing.assert_close(feats[f"layer{i}"], expected[layer], rtol=1e-4, atol=1e-5)
    # layer 1 lies before the DPAM range (original stream); the others differ from the original stream
    plain = method.clip.forward_tokens(images, method.taps, project=True)
    torch.testing.assert_close(feats["layer0"], plain.patches[1])
    assert not torch.allclose(feats["layer3"], plain.patches[4])


def test_full_size_dpam_is_19_blocks():
    # DPAM_layer=20 on ViT-L/14 (24 blocks) replaces resblocks[-1..-19]: vv_blocks 19, from block 6 on
    cfg = AnomalyCLIPConfig()
    assert cfg.dpam_layer - 1 == 19 and 24 - (cfg.dpam_layer - 1) + 1 == 6  # V-V from block 6 on


def test_default_is_the_published_run_layer_24_weighted_four_times():
    # at zqhang/AnomalyCLIP 9f83c7f the four taps were all layer 24 (issue #64; #82: all results ran with 24)
    cfg = AnomalyCLIPConfig()
    assert cfg.feature_layers == (24,) and cfg.seg_weight == 4.0 and cfg.train_mask_resize == "bilinear"


def test_prompt_shapes_and_gradients(method):
    text = method.text_features()
    assert text.shape == (2, method.clip.output_dim)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))
    deep = method.learnable["deep"]
    assert len(deep.tokens) == 3  # 8 sets for the 12-layer tower scale to round(8 * 4 / 12) on 4 layers
    assert all(t.shape == (4, method.clip.text_width) for t in deep.tokens)
    assert method.learnable["prompts"].ctx.shape == (2, 12, method.clip.text_width)
    feats = method.frozen_features(torch.rand(2, 3, 112, 112))
    masks = torch.zeros(2, 112, 112, dtype=torch.uint8)
    masks[1, 30:60, 30:60] = 1
    loss, parts = method.training_loss(feats, masks, torch.tensor([0, 1]))
    method.learnable.zero_grad()
    loss.backward()
    assert set(parts) == {"seg", "cls"}
    assert method.learnable["prompts"].ctx.grad.abs().sum() > 0
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in deep.tokens)  # deep tokens are used
    assert all(p.grad is None for p in deep.unused_projections.parameters())  # as in the official code
    method.learnable.zero_grad()


def test_deep_tokens_change_the_text_features(method):
    before = method.text_features().detach()
    with torch.no_grad():
        method.learnable["deep"].tokens[0].add_(1.0)
    try:
        assert not torch.allclose(before, method.text_features().detach())
    finally:
        with torch.no_grad():
            method.learnable["deep"].tokens[0].sub_(1.0)


def test_full_size_parameter_layout_matches_the_published_count():
    # ViT-L/14@336 text width 768: 2 x 12 context tokens, 8 x 4 deep tokens, 8 unused Linear(768, 896)
    width = 768
    deep = DeepTextPrompts(9, 4, width, 896)
    ctx = 2 * 12 * width  # PromptLearner's (2, n_ctx, width) context
    total = ctx + sum(p.numel() for p in deep.parameters())
    assert total == 5_555_200  # the published 5.56 M
    assert ctx + sum(t.numel() for t in deep.tokens) == 43_008  # what the forward pass uses
    tokens = torch.zeros(2, 20, dtype=torch.long)
    assert sum(p.numel() for p in PromptLearner(tokens, torch.zeros(2, 20, width), 12).parameters()) == ctx


def test_unused_projections_do_not_change_predictions(method):
    lean = AnomalyCLIP(
        AnomalyCLIPConfig(
            backbone="tiny-clip", image_size=112, unused_projections=False, feature_layers=(6, 12, 18, 24)
        )
    )
    lean.setup()
    state = {k: v for k, v in method.learnable_state().items() if "unused" not in k}
    lean.load_learnable_state(state)
    images = torch.rand(2, 3, 112, 112)
    a = method.predict(images, Context("zero_shot", "x"))
    b = lean.predict(images, Context("zero_shot", "x"))
    torch.testing.assert_close(a.scores, b.scores)
    torch.testing.assert_close(a.maps, b.maps)
    assert a.maps.shape == (2, 8, 8) and ((a.maps >= 0) & (a.maps <= len(method.taps))).all()
