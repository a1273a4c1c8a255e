"""Backbones: token taps, CLS attention, text tower, V-V path, weight resolution, EfficientNet weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import adbench.plugins.backbones as builtin
from adbench.backbones import build_backbone, build_from_spec, resolve_backbone_identity
from adbench.backbones import weights as weights_mod
from adbench.errors import AdbenchError, WeightsNotFoundError
from adbench.registry import Registry

TINY = ["tiny-clip", "tiny-dinov2"]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(autoload=False, plugins=[builtin])


@pytest.fixture(scope="module")
def tiny(registry: Registry) -> dict:
    return {name: build_backbone(name, registry=registry) for name in TINY}


def _images(n: int, h: int, w: int | None = None, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w or h, generator=torch.Generator().manual_seed(seed))


def test_builtin_specs_are_registered(registry: Registry) -> None:
    expected = {
        "clip-vitl14-336", "clip-vitb16plus-240", "clip-vitb16", "dinov2-vits14", "dinov2-vitb14",
        "dinov2-vitb14-reg", "dinov2-vitl14", "efficientnet-lite0", "tiny-clip", "tiny-dinov2",
    }  # fmt: skip
    assert set(registry.names("backbone")) == expected
    assert all(registry.backbone(n).description for n in expected)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("size", [112, 154])
def test_tiny_tokens_at_several_layers_and_sizes(tiny: dict, name: str, size: int) -> None:
    bb = tiny[name]
    with torch.no_grad():
        tokens = bb.forward_tokens(_images(2, size), [1, 3, -1])
    side = size // 14
    assert list(tokens.patches) == [1, 3, -1]
    for t in tokens.patches.values():
        assert t.shape == (2, side, side, bb.embed_dim) and torch.isfinite(t).all()
    assert tokens.grid == (side, side)
    assert not torch.equal(tokens.patches[1], tokens.patches[3])
    assert tokens.cls is not None and tokens.cls.shape == (2, getattr(bb, "output_dim", bb.embed_dim))


@pytest.mark.parametrize("name", TINY)
def test_non_square_input_and_last_layer_alias(tiny: dict, name: str) -> None:
    bb = tiny[name]
    with torch.no_grad():
        tokens = bb.forward_tokens(_images(1, 112, 168), [4, -1], cls=False)
    assert tokens.patches[4].shape[1:3] == (8, 12)
    assert torch.equal(tokens.patches[4], tokens.patches[-1])
    assert tokens.cls is None


@pytest.mark.parametrize("name", TINY)
def test_batched_tokens_equal_one_pass(tiny: dict, name: str) -> None:
    bb, images = tiny[name], _images(5, 56)
    with torch.no_grad():
        whole = bb.forward_tokens(images, [2, -1])
        parts = list(bb.batched_tokens(images, [2, -1], 2, "cpu"))
    assert [len(t.patches[-1]) for t in parts] == [2, 2, 1]
    for layer in (2, -1):
        torch.testing.assert_close(torch.cat([t.patches[layer] for t in parts]), whole.patches[layer])
    torch.testing.assert_close(torch.cat([t.cls for t in parts]), whole.cls)


def test_layer_out_of_range_is_a_user_error(tiny: dict) -> None:
    with pytest.raises(AdbenchError, match="out of range"):
        tiny["tiny-dinov2"].forward_tokens(_images(1, 112), [5])


def test_clip_cls_matches_open_clip_encode_image(tiny: dict) -> None:
    bb = tiny["tiny-clip"]
    x = _images(2, 112)
    with torch.no_grad():
        ours = bb.forward_tokens(x, []).cls
        ref = bb.model.encode_image(bb.normalize(x))
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_dinov2_last_tokens_match_timm_forward_features(tiny: dict) -> None:
    bb = tiny["tiny-dinov2"]
    x = _images(2, 126)
    with torch.no_grad():
        tokens = bb.forward_tokens(x, [-1])
        ref = bb.model.forward_features(bb.normalize(x))
    assert bb.num_prefix_tokens == 5  # CLS + 4 registers, dropped from the grid
    torch.testing.assert_close(tokens.patches[-1].flatten(1, 2), ref[:, 5:], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(tokens.cls, ref[:, 0], rtol=1e-4, atol=1e-5)


def _last_block_input(bb, block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = block.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        bb.forward_tokens(x, [])
    finally:
        handle.remove()
    return seen[-1]


@pytest.mark.parametrize("name", TINY)
def test_cls_attention_shape_and_reference(tiny: dict, name: str) -> None:
    bb = tiny[name]
    x = _images(2, 112, 140)
    with torch.no_grad():
        att = bb.cls_attention(x)
        assert att.shape == (2, 8, 10)
        assert (att >= 0).all() and (att.flatten(1).sum(1) <= 1 + 1e-5).all()
        if name == "tiny-clip":  # reference: nn.MultiheadAttention's own head-averaged weights
            block = bb.model.visual.transformer.resblocks[-1]
            y = block.ln_1(_last_block_input(bb, block, x))
            ref = block.attn(y, y, y, need_weights=True, average_attn_weights=True)[1][:, 0, 1:]
        else:  # reference: timm's unfused attention, weights captured at its dropout
            block = bb.model.blocks[-1]
            block.attn.fused_attn = False
            seen = []
            handle = block.attn.attn_drop.register_forward_hook(lambda _m, _i, out: seen.append(out))
            try:
                bb.forward_tokens(x, [])
            finally:
                handle.remove()
                block.attn.fused_attn = True
            ref = seen[-1].mean(dim=1)[:, 0, bb.num_prefix_tokens :]
    torch.testing.assert_close(att.flatten(1), ref, rtol=1e-4, atol=1e-6)


def test_text_encoding_and_embedding_splicing(tiny: dict) -> None:
    bb = tiny["tiny-clip"]
    texts = ["a photo of a flawless object", "a photo of a damaged object"]
    with torch.no_grad():
        feats = bb.encode_text(texts)
        tokens = bb.tokenize(texts)
        again = bb.encode_text_embeddings(bb.token_embedding(tokens), tokens.argmax(dim=-1))
    assert feats.shape == (2, bb.output_dim)
    torch.testing.assert_close(again, feats)
    assert not torch.allclose(feats[0], feats[1])
    # learnable context vectors spliced in after the start token: gradients reach them
    emb = bb.token_embedding(tokens).detach()
    ctx = torch.zeros(3, bb.text_width, requires_grad=True)
    spliced = torch.cat([emb[:, :1], ctx.expand(2, -1, -1), emb[:, 1:-3]], dim=1)
    out = bb.encode_text_embeddings(spliced, tokens.argmax(dim=-1) + 3)
    out.sum().backward()
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0
    # deep prompts replace tokens at deeper blocks and change the features
    deep = [torch.randn(2, bb.text_width, requires_grad=True) for _ in range(2)]
    deep_out = bb.encode_text_embeddings(emb, tokens.argmax(dim=-1), deep_prompts=deep)
    deep_out.sum().backward()
    assert deep[1].grad is not None and not torch.allclose(deep_out.detach(), feats)


def test_vv_path_starts_at_block_input_and_skips_mlp(tiny: dict) -> None:
    bb = tiny["tiny-clip"]
    x = _images(1, 112)
    with torch.no_grad():
        tokens = bb.forward_tokens(x, [2, 3, 4], vv_blocks=2)
        assert set(tokens.vv) == {3, 4}  # only taps inside the V-V range
        block = bb.model.visual.transformer.resblocks[2]
        inp = _last_block_input(bb, block, x)
        y = F.linear(block.ln_1(inp), block.attn.in_proj_weight, block.attn.in_proj_bias)
        v = y.chunk(3, dim=-1)[2].unflatten(-1, (block.attn.num_heads, -1)).transpose(1, 2)
        att = (v @ v.transpose(-2, -1) * v.shape[-1] ** -0.5).softmax(-1) @ v
        ref = inp + block.attn.out_proj(att.transpose(1, 2).flatten(2))
        torch.testing.assert_close(tokens.vv[3].flatten(1, 2), ref[:, 1:], rtol=1e-4, atol=1e-5)
        plain = bb.forward_tokens(x, [2, 3, 4])
        torch.testing.assert_close(plain.patches[4], tokens.patches[4])  # original path untouched
        projected = bb.forward_tokens(x, [4], vv_blocks=1, project=True)
        both = bb.forward_tokens(x, [2, 3, 4], vv_blocks=2, with_attention=True)  # shared q/k/v pass
        torch.testing.assert_close(both.vv[4], tokens.vv[4])
        torch.testing.assert_close(both.attention, bb.cls_attention(x))
    assert projected.vv[4].shape == (1, 8, 8, bb.output_dim)


@pytest.mark.parametrize("name", TINY)
def test_random_init_is_reproducible(registry: Registry, name: str) -> None:
    spec = registry.backbone(name)
    state = torch.random.get_rng_state()
    a, b = build_from_spec(spec), build_from_spec(spec)
    assert torch.equal(torch.random.get_rng_state(), state)  # the seeded build leaves the global RNG alone
    assert a.weights == "random"
    x = _images(1, 112)
    with torch.no_grad():
        torch.testing.assert_close(
            a.forward_tokens(x, [-1]).patches[-1], b.forward_tokens(x, [-1]).patches[-1]
        )


def test_build_cache_and_freezing(registry: Registry, tiny: dict) -> None:
    bb = build_backbone("tiny-dinov2", registry=registry)
    assert bb is tiny["tiny-dinov2"]
    assert (
        bb.default_size == registry.backbone("tiny-dinov2").default_size == 112
    )  # the spec's, not timm's cfg
    assert not any(p.requires_grad for p in bb.parameters())
    bb.train()
    assert not bb.training and not bb.model.training


@pytest.mark.parametrize("name", TINY)
def test_weights_file_in_adbench_weights_is_found_and_loaded(
    registry: Registry, tmp_path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    spec = registry.backbone(name)
    other = build_from_spec(dataclasses.replace(spec, kwargs={**spec.kwargs, "seed": 7}))
    save_file(
        {k: v.contiguous() for k, v in other.model.state_dict().items()}, tmp_path / f"{name}.safetensors"
    )
    monkeypatch.setenv("ADBENCH_WEIGHTS", str(tmp_path))
    loaded = build_backbone(name, registry=registry)
    assert loaded.weights.startswith(f"file:{name}.safetensors:")
    assert resolve_backbone_identity(name, registry=registry) == loaded.weights
    x = _images(1, 112)
    with torch.no_grad():
        ref = other.forward_tokens(x, [-1]).patches[-1]
        torch.testing.assert_close(loaded.forward_tokens(x, [-1]).patches[-1], ref)
        random0 = build_from_spec(spec, weights="random").forward_tokens(x, [-1]).patches[-1]
    assert not torch.allclose(random0, ref)


def test_download_failure_is_a_missing_weights_error(registry: Registry) -> None:
    spec = registry.backbone("clip-vitb16")
    with pytest.raises(WeightsNotFoundError, match="download failed: ConnectionError") as info:
        with weights_mod.download_failure_as_missing(spec):
            raise ConnectionError("hub unreachable")
    assert "\n" not in str(info.value) and "'clip-vitb16'" in str(info.value)


def test_explicit_weights_path(registry: Registry, tmp_path) -> None:
    with pytest.raises(AdbenchError, match="not found"):
        resolve_backbone_identity("tiny-clip", str(tmp_path / "nope.safetensors"), registry=registry)
    assert resolve_backbone_identity("clip-vitl14-336", "random", registry=registry) == "random"


def test_missing_weights_error_is_one_line_and_offline(
    registry: Registry, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADBENCH_OFFLINE", "1")
    monkeypatch.setenv("ADBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(weights_mod, "library_cached_file", lambda spec: None)  # ignore this machine's caches

    def no_network(*args: object, **kwargs: object) -> bool:
        raise AssertionError("offline resolution must not probe the network")

    monkeypatch.setattr(weights_mod, "host_reachable", no_network)
    for name, wanted in [
        ("clip-vitb16", "ViT-B-16.pt"),
        ("dinov2-vitb14-reg", "vit_base_patch14_reg4_dinov2"),
    ]:
        with pytest.raises(WeightsNotFoundError) as info:
            build_backbone(name, registry=registry)
        msg = str(info.value)
        assert "\n" not in msg and f"'{name}'" in msg and wanted in msg and str(tmp_path) in msg
        assert f"{name}.safetensors" in msg
    # a file under the library's own name is found without building anything
    (tmp_path / "vit_base_patch14_reg4_dinov2.safetensors").write_bytes(b"0" * 100)
    ident = resolve_backbone_identity("dinov2-vitb14-reg", registry=registry)
    assert ident.startswith("file:vit_base_patch14_reg4_dinov2.safetensors:100:")


@pytest.fixture(scope="module")
def effnet(registry: Registry):
    return build_backbone("efficientnet-lite0", registry=registry)


def test_efficientnet_real_weights_and_taps(effnet) -> None:
    assert effnet.weights == "imagenet:efficientnet_lite0"
    with torch.no_grad():
        tokens = effnet.forward_tokens(_images(2, 128), [1, 2, 3, -1])
    shapes = {k: tuple(v.shape) for k, v in tokens.patches.items()}
    assert shapes == {1: (2, 32, 32, 24), 2: (2, 16, 16, 40), 3: (2, 8, 8, 80), -1: (2, 8, 8, 112)}
    assert tokens.cls is None
    with pytest.raises(TypeError):
        effnet.cls_attention(_images(1, 64))
    with pytest.raises(TypeError):
        effnet.encode_text(["x"])


def test_efficientnet_classifies_a_real_photograph(effnet) -> None:
    from skimage.data import coffee

    img = torch.from_numpy(np.ascontiguousarray(coffee())).permute(2, 0, 1)[None].float() / 255
    img = F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        top5 = effnet.classify(img).topk(5).indices[0].tolist()
    assert {967, 968, 504} & set(top5)  # ImageNet: espresso, cup, coffee mug


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_state_dict_file_formats(tmp_path) -> None:
    lin = torch.nn.Linear(3, 2)
    torch.jit.script(lin).save(str(tmp_path / "openai_style.pt"))  # OpenAI CLIP ships TorchScript archives
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in lin.state_dict().items()}}, tmp_path / "wrapped.pth"
    )
    with pytest.raises(AdbenchError, match="TorchScript archive.*--trust-weights"):
        weights_mod.load_state_dict_file(tmp_path / "openai_style.pt")  # torch.jit.load runs code
    weights_mod.trust_torchscript(True)
    try:
        for name in ("openai_style.pt", "wrapped.pth"):
            state = weights_mod.load_state_dict_file(tmp_path / name)
            assert set(state) == {"weight", "bias"} and torch.equal(state["weight"], lin.weight)
    finally:
        weights_mod.trust_torchscript(False)
    assert weights_mod.is_torchscript(tmp_path / "openai_style.pt")
    assert not weights_mod.is_torchscript(tmp_path / "wrapped.pth")


def test_full_size_clip_random_build_uses_quick_gelu(registry: Registry) -> None:
    bb = build_backbone("clip-vitb16", pretrained=False, registry=registry)
    assert bb.weights == "random" and bb.num_blocks == 12 and bb.output_dim == 512
    assert type(bb.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    with torch.no_grad():
        tokens = bb.forward_tokens(_images(1, 240), [6, 12], cls=False)
    assert tokens.patches[12].shape == (1, 15, 15, 768)


def test_capabilities_are_checked_at_plan_time(tmp_path):
    from adbench.jobs import RunSpec
    from adbench.runner import Runner
    from adbench.store import ResultsStore

    spec = RunSpec(
        methods=["patchead"],
        overrides={"patchead": {"backbone": ["efficientnet-lite0"], "foreground_mask": ["true"]}},
        progress=False,
    )
    with pytest.raises(AdbenchError, match="lacks cls_attention.*tiny-dinov2"):
        Runner(spec, ResultsStore(tmp_path)).plan()
    spec = RunSpec(
        methods=["dma_sap"], overrides={"dma_sap": {"clip_backbone": ["tiny-dinov2"]}}, progress=False
    )
    with pytest.raises(AdbenchError, match="dma_sap.clip_backbone=tiny-dinov2.*lacks projection, text, vv"):
        Runner(spec, ResultsStore(tmp_path)).plan()


def test_built_backbones_carry_their_spec_capabilities():
    from adbench.backbones import CLIP_CAPABILITIES, build_backbone

    clip = build_backbone("tiny-clip", pretrained=False)
    assert clip.capabilities == CLIP_CAPABILITIES and clip.has_text
    assert not build_backbone("tiny-dinov2", pretrained=False).has_text
