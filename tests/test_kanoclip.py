"""kanoclip: module shapes and invariants on plain tensors, the knowledge base and provider hook,
and the plugin trained on the tiny random CLIP (same code paths as ViT-L/14@336)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from adbench import hookimpl
from adbench.datasets.synthetic import CATEGORIES as SYNTHETIC_CATEGORIES
from adbench.jobs import RunSpec
from adbench.knowledge import KnowledgeProvider, choose_provider, describe, knowledge_hash
from adbench.losses import dice_loss, focal_loss, knowledge_margin_loss
from adbench.methods import Context
from adbench.plugins.kanoclip import KAnoCLIP, KAnoCLIPConfig
from adbench.plugins.kanoclip_knowledge import SHIPPED, shipped_descriptions, shipped_knowledge
from adbench.plugins.kanoclip_modules import (
    BiCMCI,
    BiCMCIStage,
    ConvAdapter,
    DeformableSelfAttention,
    KnowledgePromptLearner,
    combine_maps,
    global_probability,
)
from adbench.registry import Registry, get_registry, set_registry
from adbench.runner import Runner
from adbench.store import ResultsStore
from adbench.training import ensure_fitted, train

from .helpers import TinyDataset, write_tiny_dataset


# --- knowledge base -------------------------------------------------------------------------------
def test_knowledge_base_covers_every_category_of_every_registered_dataset():
    kb = shipped_knowledge()["classes"]
    missing = []
    for entry in get_registry().entries("dataset"):
        ds = entry.obj
        expected = ds.published_counts.get("categories")
        names = list(SYNTHETIC_CATEGORIES) if ds.name == "synthetic" else list(ds.object_names)
        if expected is not None:
            assert len(ds.object_names) == expected, (
                f"{ds.name}: object_names lists {len(ds.object_names)} of {expected}"
            )
        missing += [f"{ds.name}/{c} ({ds.object_name(c)})" for c in names if ds.object_name(c) not in kb]
    assert not missing, f"no knowledge-base entry for: {', '.join(missing)}"
    assert all(len(v) == 5 and len(set(v)) == 5 for v in kb.values())  # n = 5 distinct descriptions


def test_object_names_are_human_readable():
    from adbench.datasets.btad import BTAD
    from adbench.datasets.visa import VisA

    assert VisA.object_name("pcb1") == "printed circuit board"
    assert VisA.object_name("macaroni2") == "macaroni"
    assert BTAD.object_name("01") == "industrial product"
    assert TinyDataset.object_name("metal_thing") == "metal thing"  # default: underscores -> spaces


def test_unknown_objects_get_generic_descriptions_naming_them():
    known = shipped_descriptions("pill")
    assert known == shipped_knowledge()["classes"]["pill"]
    generic = shipped_descriptions("garden gnome")
    assert len(generic) == 5 and all("garden gnome" in s and "{" not in s for s in generic)


# --- provider hook ----------------------------------------------------------------------------------
CALLS: list[str] = []


def fixed_text(object_name: str) -> list[str]:
    """A test provider: a plain function returning fixed text."""
    CALLS.append(object_name)
    return [f"a {object_name} with a bright square stain", f"a {object_name} with a scratch"]


class FixedProviderPlugin:
    @hookimpl
    def adbench_knowledge_providers(self):
        return [KnowledgeProvider("fixed-test", fixed_text, version="t1")]


def test_choose_provider_prefers_plugged_ones_and_names_unknowns():
    plugged = KnowledgeProvider("fixed-test", fixed_text)
    assert choose_provider([SHIPPED]) is SHIPPED
    assert choose_provider([SHIPPED, plugged]) is plugged
    assert choose_provider([SHIPPED, plugged], "shipped") is SHIPPED
    with pytest.raises(Exception, match="knowledge provider 'nope' is not registered; known: shipped"):
        choose_provider([SHIPPED], "nope")


def test_provider_answers_are_cached_on_disk_and_hashed():
    provider = KnowledgeProvider("fixed-cache-test", fixed_text, version="c1")
    CALLS.clear()
    first = describe(provider, "widget")
    assert describe(provider, "widget") == first and CALLS == ["widget"]  # second answer from disk
    other = KnowledgeProvider("fixed-cache-test", lambda name: ["something else"], version="c2")
    assert knowledge_hash(provider, ["widget"]) != knowledge_hash(other, ["widget"])
    assert knowledge_hash(SHIPPED, ["pill", "screw"]) == knowledge_hash(SHIPPED, ["screw", "pill", "pill"])


def _plan_keys(tmp_path, registry: Registry) -> list[str]:
    spec = RunSpec(
        methods=["kanoclip"],
        datasets=["tiny"],
        roots={"tiny": str(tmp_path / "data")},
        train_on=["tiny"],
        demo=True,
        progress=False,
    )
    return [job.key for job in Runner(spec, ResultsStore(tmp_path / "results"), registry).plan()]


class TinyPlugin:
    @hookimpl
    def adbench_datasets(self):
        return [TinyDataset]


def test_plugged_provider_changes_job_key_and_prompts_and_removal_restores_them(tmp_path):
    import adbench.plugins.backbones as backbones
    import adbench.plugins.kanoclip as kanoclip
    import adbench.plugins.kanoclip_knowledge as knowledge

    write_tiny_dataset(tmp_path / "data")
    shipped_only = Registry(autoload=False, plugins=[TinyPlugin(), backbones, kanoclip, knowledge])
    plugged = Registry(
        autoload=False, plugins=[TinyPlugin(), backbones, kanoclip, knowledge, FixedProviderPlugin()]
    )
    previous = get_registry()
    method = KAnoCLIP(KAnoCLIPConfig(backbone="tiny-clip"), "cpu")
    try:
        set_registry(shipped_only)
        keys_shipped, sentences_shipped = (
            _plan_keys(tmp_path, shipped_only),
            method.knowledge_sentences("pill"),
        )
        set_registry(plugged)
        keys_plugged, sentences_plugged = _plan_keys(tmp_path, plugged), method.knowledge_sentences("pill")
        set_registry(shipped_only)
        keys_again, sentences_again = _plan_keys(tmp_path, shipped_only), method.knowledge_sentences("pill")
    finally:
        set_registry(previous)
    assert sentences_shipped == shipped_knowledge()["classes"]["pill"]
    assert sentences_plugged == fixed_text("pill")
    assert set(keys_plugged).isdisjoint(keys_shipped)
    assert keys_again == keys_shipped and sentences_again == sentences_shipped


# --- modules ------------------------------------------------------------------------------------------
def test_knowledge_margin_loss():
    k = torch.tensor([[1.0, 0.0]])
    near, far = torch.tensor([[2.0, 0.1]]), torch.tensor([[0.0, 3.0]])
    assert knowledge_margin_loss(k, normal=far, abnormal=near) == 0  # knowledge already nearer to abnormal
    want = math.sqrt(2) - float((F.normalize(near, dim=-1) - k).norm())
    assert knowledge_margin_loss(k, normal=near, abnormal=far).item() == pytest.approx(want, abs=1e-6)


def test_prompt_learner_builds_one_prompt_per_word_and_class():
    learner = KnowledgePromptLearner(
        dim=8, n_ctx=3, normal_words=("normal", "perfect"), abnormal_words=("bad",)
    )
    texts = learner.texts(["pill", "metal nut"])
    assert texts[0] == "X X X normal pill." and texts[2] == "X X X bad pill." and len(texts) == 6
    vocab = {}

    def tokenize(ts):  # one token per word, SOS first, EOT (the largest id) last, padded to 10
        rows = []
        for t in ts:
            ids = [1] + [vocab.setdefault(w, 2 + len(vocab)) for w in t.split()] + [99]
            rows.append(ids + [0] * (10 - len(ids)))
        return torch.tensor(rows)

    table = torch.randn(100, 8)
    seen = {}

    def encode(emb, eot):
        seen["emb"], seen["eot"] = emb, eot
        return emb.sum(1)

    out = learner(["pill", "metal nut"], tokenize, lambda t: table[t], encode)
    assert out.shape == (2, 2, 8)
    emb = seen["emb"]
    assert torch.equal(emb[0, 1:4], learner.ctx[0]) and torch.equal(emb[2, 1:4], learner.ctx[1])
    assert torch.equal(emb[3, 1:4], learner.ctx[0])  # class 2's normal prompt shares the normal prefix
    out.sum().backward()
    assert learner.ctx.grad is not None and learner.ctx.grad.abs().sum() > 0


def deformable_reference(attn: DeformableSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Plain-loop deformable attention: bilinear sampling by hand (border clamp), per-head softmax."""
    n, h, w, c = x.shape
    pos = attn.sample_points(x)  # normalised (x, y)
    d = c // attn.heads
    out = torch.zeros(n, h * w, c)
    for b in range(n):
        samples = []
        for i in range(pos.shape[1]):
            for j in range(pos.shape[2]):
                px = min(max((float(pos[b, i, j, 0]) + 1) / 2 * (w - 1), 0.0), w - 1)
                py = min(max((float(pos[b, i, j, 1]) + 1) / 2 * (h - 1), 0.0), h - 1)
                x0, y0 = int(math.floor(px)), int(math.floor(py))
                x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
                fx, fy = px - x0, py - y0
                value = (
                    x[b, y0, x0] * (1 - fx) * (1 - fy)
                    + x[b, y0, x1] * fx * (1 - fy)
                    + x[b, y1, x0] * (1 - fx) * fy
                    + x[b, y1, x1] * fx * fy
                )
                samples.append(value)
        kv = attn.kv(torch.stack(samples))
        k, v = kv[:, :c], kv[:, c:]
        q = attn.q(x[b].reshape(h * w, c))
        for head in range(attn.heads):
            sl = slice(head * d, (head + 1) * d)
            for p in range(h * w):
                weights = torch.softmax(k[:, sl] @ q[p, sl] / math.sqrt(d), dim=0)
                out[b, p, sl] = weights @ v[:, sl]
    return attn.out(out).reshape(n, h, w, c)


def test_deformable_attention_matches_a_plain_loop_reference():
    torch.manual_seed(0)
    attn = DeformableSelfAttention(dim=8, heads=2, stride=2, offset_range=1.5)
    torch.nn.init.normal_(attn.offset[-1].weight, std=0.5)  # real offsets, off the reference grid
    x = torch.randn(2, 5, 6, 8)
    pos = attn.sample_points(x)
    assert pos.shape == (2, 2, 3, 2)
    assert not torch.allclose(pos, attn.sample_points(torch.zeros_like(x)))  # offsets depend on the input
    with torch.no_grad():
        got, want = attn(x), deformable_reference(attn, x)
    assert got.shape == x.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_deformable_offsets_start_on_the_reference_grid():
    attn = DeformableSelfAttention(dim=8, heads=2, stride=2)
    pos = attn.sample_points(torch.randn(1, 4, 4, 8))
    assert torch.allclose(pos[0, :, :, 0], torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]))
    assert torch.allclose(pos[0, :, :, 1], torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))


def test_bicmci_maps_are_probabilities_and_untrained_stages_are_the_identity():
    torch.manual_seed(0)
    patches = [torch.randn(2, 4, 4, 16) for _ in range(4)]
    text = torch.randn(2, 2, 16)
    stage = BiCMCIStage(16, heads=4)
    v, t = stage(patches[0], text)
    assert torch.equal(v, patches[0]) and torch.equal(t, text)
    on, off = BiCMCI(16, stages=4, heads=4), BiCMCI(16, stages=4, enabled=False)
    assert len(off.stages) == 0 and sum(p.numel() for p in off.parameters()) == 0
    m_n, m_a = on(patches, text)
    assert m_n.shape == m_a.shape == (2, 4, 4)
    assert ((m_a >= 0) & (m_a <= 1)).all() and torch.allclose(m_n + m_a, torch.ones_like(m_a))
    torch.testing.assert_close(off(patches, text)[1], m_a)  # identity stages = the plain maps
    m = combine_maps(m_n, m_a)
    assert ((m >= 0) & (m <= 1)).all()
    with pytest.raises(ValueError, match="expects 4 stages"):
        on(patches[:3], text)


def test_bicmci_stage_once_trained_mixes_the_modalities():
    torch.manual_seed(0)
    stage = BiCMCIStage(16, heads=4)
    for lin in (stage.out_v, stage.out_t, stage.visual_sa.out, stage.text_sa.out_proj):
        torch.nn.init.normal_(lin.weight, std=0.2)
    patches, text = torch.randn(1, 4, 4, 16), torch.randn(1, 2, 16)
    v, t = stage(patches, text)
    v2, _ = stage(patches, text + torch.randn_like(text))  # (a constant shift would vanish in the LayerNorm)
    _, t2 = stage(patches + torch.randn_like(patches), text)
    assert not torch.allclose(v, v2)  # text-to-visual: patches depend on the text
    assert not torch.allclose(t, t2)  # visual-to-text: text depends on the patches


def test_conv_adapter_starts_as_identity_and_global_probability():
    adapter = ConvAdapter(16, reduction=4, residual=True)
    f = torch.randn(3, 16)
    assert torch.equal(adapter(f), f)
    assert adapter.down.out_channels == 4 and adapter.depthwise.groups == 4
    text = torch.stack([torch.eye(16)[0], torch.eye(16)[1]])[None].expand(2, -1, -1)
    p = global_probability(torch.stack([torch.eye(16)[0], torch.eye(16)[1]]), text)
    assert p[0] < 0.01 and p[1] > 0.99


# --- the plugin on the tiny random CLIP ------------------------------------------------------------
def tiny(**kw) -> KAnoCLIP:
    torch.manual_seed(0)
    method = KAnoCLIP(KAnoCLIPConfig(backbone="tiny-clip", image_size=56, heads=4, **kw), "cpu")
    method.setup()
    return method


def test_requirements_and_ablation_switches():
    assert KAnoCLIP.backbone_requirements(KAnoCLIPConfig())["backbone"] == {"text", "projection", "vv"}
    assert "vv" not in KAnoCLIP.backbone_requirements(KAnoCLIPConfig(clip_vv=False))["backbone"]
    full, bare = tiny(), tiny(knpl=False, clip_vv=False, bi_cmci=False, conv_adapter=False)
    assert full.stages == (1, 2, 3, 4) and full.vv_blocks == 1 and bare.vv_blocks == 0
    assert set(full.learnable) == {"prompts", "bicmci", "adapter"}
    assert set(bare.learnable) == {"prompts", "bicmci"}
    x = torch.rand(1, 3, 56, 56)
    vv, qk = full.frozen_features(x)["stage3"], bare.frozen_features(x)["stage3"]
    assert not torch.allclose(vv, qk)  # CLIP-VV patch tokens differ from the Q-K path's
    assert KAnoCLIP.key_material(KAnoCLIPConfig(knpl=False), ["pill"]) == {}
    assert set(KAnoCLIP.key_material(KAnoCLIPConfig(), ["pill"])) == {"knowledge"}


def test_predict_shapes_and_scores_in_unit_range():
    method = tiny()
    pred = method.predict(
        torch.rand(2, 3, 56, 56), Context("zero_shot", "metal_nut", object_name="metal nut")
    )
    assert pred.maps.shape == (2, 56, 56) and pred.scores.shape == (2,)
    assert ((pred.scores >= 0) & (pred.scores <= 1)).all()


def test_training_loss_parts_gradients_and_falling_loss():
    method = tiny(epochs=6, lr=3e-3)
    cats = [("tiny", c) for c in _tiny_categories()]
    extras = method.auxiliary_targets([c for _, c in cats])
    assert method.train_classes == ["alpha", "beta"]
    assert extras["class_index"].tolist() == [0] * 8 + [1] * 8
    torch.manual_seed(1)
    images, masks = torch.rand(16, 3, 56, 56), torch.zeros(16, 56, 56, dtype=torch.uint8)
    masks[8:, 10:30, 10:30] = 1
    labels = (masks.flatten(1).amax(1) > 0).long()
    feats = method.frozen_features(images[:4]) | {"class_index": extras["class_index"][:4]}
    loss, parts = method.training_loss(feats, masks[:4], labels[:4])
    assert set(parts) == {"global", "local", "kd"}
    # the local part is the paper's formula written out: focal(M_a, G) + dice(M_n, 1 - G) + dice(M_a, G) on upsampled maps
    with torch.no_grad():
        m_n, m_a, _ = method.forward_head(
            feats, method.text_features(method.train_classes)[feats["class_index"]]
        )
        up = F.interpolate(torch.stack([m_n, m_a], 1), size=(56, 56), mode="bilinear")
        gt = masks[:4].float()
        written_out = focal_loss(up[:, 1], gt) + dice_loss(up[:, 0], 1 - gt) + dice_loss(up[:, 1], gt)
    assert parts["local"] == pytest.approx(float(written_out), rel=1e-5)
    loss.backward()
    assert method.learnable["prompts"].ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in method.clip.parameters())
    method.learnable.zero_grad()
    log = train(method, None, masks, labels, images=images, extras=extras, progress=False)
    assert len(log.losses) == 6 and log.losses[-1] < log.losses[0]


_CATS = {}


def _tiny_categories():
    if not _CATS:
        import tempfile
        from pathlib import Path

        root = Path(tempfile.mkdtemp(prefix="kano-tiny-"))
        write_tiny_dataset(root, categories=("alpha", "beta"), n_normal=4, n_anom=4, size=32)
        ds = TinyDataset(root)
        _CATS["cats"] = [ds.load_category(c) for c in ds.categories()]
    return _CATS["cats"]


def test_fit_is_saved_reused_and_gives_identical_scores():
    aux = [("tiny", c) for c in _tiny_categories()]
    trained = tiny(epochs=2)
    fit = ensure_fitted(trained, aux, aux_fingerprint="fp-kano", seed=0, progress=False)
    assert not fit.reused and len(fit.losses) == 2
    log = json.loads(fit.path.with_suffix(".json").read_text())
    assert set(log["loss_parts"][0]) == {"global", "local", "kd"}
    images, ctx = torch.rand(2, 3, 56, 56), Context("zero_shot", "gamma")
    fresh = tiny(epochs=2)
    before = fresh.predict(images, ctx)
    again = ensure_fitted(fresh, aux, aux_fingerprint="fp-kano", seed=0, progress=False)
    assert again.reused and again.key == fit.key
    after, want = fresh.predict(images, ctx), trained.predict(images, ctx)
    assert not torch.equal(before.scores, want.scores)
    assert torch.equal(after.scores, want.scores) and torch.equal(after.maps, want.maps)


def test_info_prints_parameter_counts_and_the_knowledge_base():
    from adbench.info import describe_method

    text = describe_method("kanoclip", overrides={"backbone": "tiny-clip", "heads": "4"})
    kb = shipped_knowledge()
    assert (
        f"knowledge base: kanoclip_knowledge_v1.json version {kb['version']}, {len(kb['classes'])} objects, "
        f"{5 * len(kb['classes'])} descriptions" in text
    )
    assert "knowledge provider (knowledge=auto): shipped" in text
    trainable = sum(p.numel() for p in tiny().learnable.parameters() if p.requires_grad)
    assert f"trainable: {trainable / 1e6:.1f} M ({trainable:,})" in text


# --- fidelity II (issue 20) -----------------------------------------------------------------------------
def test_clip_vv_patches_the_last_six_blocks_as_clip_surgery():
    # xmed-lab/CLIP_Surgery 9f5be11: "apply architecture surgery on the last 6 blocks", range(1, 7)
    assert KAnoCLIPConfig().vv_blocks == len(range(1, 7)) == 6
    full = tiny()  # 4 tiny blocks: 6 of 24 scales to the last block only
    x = torch.rand(1, 3, 56, 56)
    tokens = full.clip.forward_tokens(x, full.stages, project=True, vv_blocks=full.vv_blocks)
    assert sorted(tokens.vv) == [4]
    feats = full.frozen_features(x)
    for i, stage in enumerate(full.stages[:-1]):  # before the surgery: the one (Q-K) stream
        torch.testing.assert_close(feats[f"stage{i}"], tokens.patches[stage])
    torch.testing.assert_close(feats["stage3"], tokens.vv[4])
    assert not torch.allclose(feats["stage3"], tokens.patches[4])
    dpam = tiny(vv_blocks=24)  # the earlier reading: every stage on the V-V path
    assert dpam.vv_blocks == 4
    assert not torch.allclose(dpam.frozen_features(x)["stage0"], tokens.patches[1])


def test_conv_adapter_is_eq_11_without_a_residual_by_default():
    assert KAnoCLIPConfig().adapter_residual is False
    torch.manual_seed(0)
    adapter = ConvAdapter(16, reduction=4)
    f = torch.randn(3, 16)
    x = adapter.norm(f)[..., None]
    branch = adapter.up(torch.relu(adapter.depthwise(adapter.down(x))))[..., 0]
    torch.testing.assert_close(adapter(f), branch)  # Î_G = ReLU(LN(I_G) W_down) W_up
    assert not torch.allclose(adapter(f), f + branch)
    assert "adapter" in tiny().learnable and tiny().learnable["adapter"].residual is False
    assert tiny(adapter_residual=True).learnable["adapter"].residual is True


def test_optimiser_is_anomalyclips_schedule_as_the_docstring_says():
    cfg = KAnoCLIPConfig()
    assert (cfg.optimizer, cfg.lr, cfg.betas, cfg.batch_size, cfg.epochs) == (
        "adam",
        1e-3,
        (0.5, 0.999),
        8,
        15,
    )
