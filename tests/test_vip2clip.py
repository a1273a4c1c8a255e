"""vip2clip: invariants of each module on plain tensors, and the plugin on the tiny random CLIP."""

from __future__ import annotations

import pytest
import torch

from adbench.errors import AdbenchError
from adbench.losses import dice_loss, focal_loss, normal_anomalous_map_loss
from adbench.methods import Context
from adbench.plugins.vip2clip import ViP2CLIP, ViP2CLIPConfig, smooth
from adbench.plugins.vip2clip_modules import (
    FGP,
    MetaNet,
    UTPAHead,
    alignment_logits,
    combine_maps,
    topk_descriptor,
)
from adbench.training import ensure_fitted
from tests.helpers import TinyDataset, write_tiny_dataset

CTX = Context("zero_shot", "x")


def tiny_method(**kw) -> ViP2CLIP:
    cfg = ViP2CLIPConfig(clip_backbone="tiny-clip", image_size=56, **kw)
    method = ViP2CLIP(cfg, "cpu")
    torch.manual_seed(0)  # the runner seeds before setup
    method.setup()
    return method


# --- modules on plain tensors ------------------------------------------------------------------
def test_topk_with_k_all_is_the_mean_and_k1_is_the_most_anomalous_patch():
    patches, anomaly = torch.randn(3, 20, 8), torch.rand(3, 20)
    torch.testing.assert_close(topk_descriptor(patches, anomaly, 20), patches.mean(1))
    torch.testing.assert_close(topk_descriptor(patches, anomaly, 500), patches.mean(1))  # clamped to L
    best = patches[torch.arange(3), anomaly.argmax(1)]
    torch.testing.assert_close(topk_descriptor(patches, anomaly, 1), best)


def test_topk_descriptor_ignores_the_least_anomalous_patches():
    patches, anomaly = torch.randn(1, 10, 4), torch.linspace(0, 1, 10)[None]
    changed = patches.clone()
    changed[0, :5] = 100.0  # the 5 least anomalous patches
    torch.testing.assert_close(topk_descriptor(patches, anomaly, 5), topk_descriptor(changed, anomaly, 5))


def test_fgp_shapes_attention_and_constant_patches():
    fgp = FGP(text_dim=12, patch_dim=20)
    text, patches = torch.randn(2, 2, 12), torch.randn(2, 30, 20)
    assert fgp(text, patches).shape == (2, 2, 20)
    a = fgp.attention(text, patches)
    assert a.shape == (2, 2, 30)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 2))
    # when every patch is the same token, attention cannot matter: G~ = W_o(W_v f) for both prompts
    same = torch.randn(2, 1, 20).expand(-1, 30, -1)
    want = fgp.o(fgp.v(same[:, :1])).expand(-1, 2, -1)
    torch.testing.assert_close(fgp(text, same), want)


def test_alignment_is_a_scaled_cosine():
    tokens, prompts = torch.randn(2, 5, 8), torch.randn(2, 2, 8)
    logits = alignment_logits(tokens, prompts, 0.5)
    assert logits.shape == (2, 5, 2)
    assert logits.abs().max() <= 2.0 + 1e-5  # |cos| <= 1, / 0.5
    torch.testing.assert_close(alignment_logits(3 * tokens, prompts, 0.5), logits)  # scale-free


def test_combined_map_lies_in_unit_interval_and_is_m_a_for_a_softmax_pair():
    normal, anomalous = torch.rand(2, 4, 9, 9), torch.rand(2, 4, 9, 9)
    m = combine_maps(normal, anomalous)
    assert m.shape == (2, 9, 9) and m.min() >= 0 and m.max() <= 1
    torch.testing.assert_close(combine_maps(1 - anomalous, anomalous), anomalous.mean(1))


def test_utpa_head_probabilities_and_logits():
    head = UTPAHead(text_dim=12, patch_dim=20, fgp=True, top_k=7, temperature=0.07)
    probs, logits = head(torch.randn(3, 2, 12), [torch.randn(3, 25, 20) for _ in range(4)])
    assert probs.shape == (3, 4, 2, 25) and logits.shape == (3, 4, 2)
    torch.testing.assert_close(probs.sum(2), torch.ones(3, 4, 25))
    no_fgp = UTPAHead(text_dim=12, patch_dim=12, fgp=False, top_k=7, temperature=0.07)
    text = torch.randn(1, 2, 12)  # one static pair serves every image
    assert no_fgp(text, [torch.randn(3, 25, 12)])[0].shape == (3, 1, 2, 25)
    assert no_fgp.global_logits(text, torch.randn(3, 12)).shape == (3, 2)


def test_map_loss_prefers_the_right_maps_and_matches_binary_terms():
    mask = torch.zeros(2, 16, 16)
    mask[:, 4:9, 4:9] = 1
    good = 0.05 + 0.9 * mask
    assert normal_anomalous_map_loss(1 - good, good, mask) < normal_anomalous_map_loss(good, 1 - good, mask)
    a = torch.rand(2, 16, 16)
    want = focal_loss(a, mask) + dice_loss(1 - a, 1 - mask) + dice_loss(a, mask)
    torch.testing.assert_close(normal_anomalous_map_loss(1 - a, a, mask), want)
    # maps on a coarser grid are upsampled to the mask
    assert torch.isfinite(normal_anomalous_map_loss(torch.rand(2, 4, 4), torch.rand(2, 4, 4), mask))


def test_smoothing_keeps_range_and_constant_maps():
    maps = torch.rand(2, 40, 40)
    out = smooth(maps, 4.0)
    assert out.shape == maps.shape and out.min() >= maps.min() and out.max() <= maps.max()
    assert out.std() < maps.std()
    torch.testing.assert_close(smooth(torch.full((1, 10, 10), 0.3), 4.0), torch.full((1, 10, 10), 0.3))
    assert torch.equal(smooth(maps, 0.0), maps)


# --- the plugin on the tiny random CLIP (same code paths as ViT-L/14@336) ----------------------------
def test_ica_with_a_zero_meta_net_equals_static_prompts():
    method = tiny_method()
    meta = method.learnable["prompts"].meta
    assert isinstance(meta, MetaNet)
    cls = torch.randn(3, 64)
    conditioned = method.text_features(cls)
    assert conditioned.shape == (3, 2, 64)
    assert not torch.allclose(conditioned[0], conditioned[1])  # each image gets its own prompts
    torch.nn.init.zeros_(meta.net[2].weight)
    torch.nn.init.zeros_(meta.net[2].bias)
    static = method.learnable["prompts"](method.clip.encode_text_embeddings, None)
    assert static.shape == (1, 2, 64)
    torch.testing.assert_close(method.text_features(cls), static.expand(3, -1, -1))


def test_prompt_layout_keeps_the_state_words_and_fills_the_slots():
    method = tiny_method()
    prompts = method.learnable["prompts"]
    x = prompts.embeddings()
    assert x.shape[:2] == (1, 2) and x.shape[2] == prompts.length
    tokens = method.clip.tokenize(["X X X X X X X good X X X.", "X X X X X X X damaged X X X."])
    words = method.clip.token_embedding(tokens)[:, : prompts.length]
    fixed = torch.ones(2, prompts.length, dtype=torch.bool)
    fixed[torch.arange(2)[:, None], prompts.front_idx] = False
    fixed[torch.arange(2)[:, None], prompts.back_idx] = False
    assert int((~fixed).sum()) == 2 * 10
    torch.testing.assert_close(x[0][fixed], words[fixed])
    torch.testing.assert_close(x[0, 0, prompts.back_idx[0]], x[0, 1, prompts.back_idx[1]])  # z shared
    torch.testing.assert_close(x[0, 0, prompts.front_idx[0]], prompts.front[0])


@pytest.mark.parametrize("size", [56, 70])
def test_predict_scores_and_maps(size):
    pred = tiny_method().predict(torch.rand(2, 3, size, size), CTX)
    assert pred.scores.shape == (2,) and pred.maps.shape == (2, size, size)
    assert ((pred.scores >= 0) & (pred.scores <= 1)).all()
    assert pred.maps.min() >= 0 and pred.maps.max() <= 1


def test_gradients_reach_every_learnable_part_and_never_the_backbone():
    method = tiny_method()
    feats = method.frozen_features(torch.rand(2, 3, 56, 56))
    assert set(feats) == {"layer0", "layer1", "layer2", "layer3", "cls"}
    mask = torch.zeros(2, 56, 56, dtype=torch.uint8)
    mask[1, 10:30, 10:30] = 1
    loss, parts = method.training_loss(feats, mask, torch.tensor([0, 1]))
    loss.backward()
    assert set(parts) == {"global", "local"}
    for name, p in method.learnable.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in method.clip.parameters())


def test_ablation_switches_change_the_modules():
    full = tiny_method()
    names = set(full.learnable_state())
    assert any(k.startswith("prompts.meta.") for k in names) and any(k.startswith("head.fgp.") for k in names)
    assert not any(k.startswith("prompts.meta.") for k in tiny_method(ica=False).learnable_state())
    assert not any(k.startswith("head.fgp.") for k in tiny_method(fgp=False).learnable_state())
    feats = full.frozen_features(torch.rand(2, 3, 56, 56))
    assert full.forward_head(feats)[1].shape == (2, 4, 2)  # UTPA: one image logit pair per layer
    dual = tiny_method(utpa=False)
    assert dual.forward_head(dual.frozen_features(torch.rand(2, 3, 56, 56)))[1].shape == (2, 1, 2)


def test_top_k_changes_scores_only_through_the_descriptor():
    images = torch.rand(2, 3, 56, 56)
    a, b = tiny_method(top_k=1).predict(images, CTX), tiny_method(top_k=16).predict(images, CTX)
    torch.testing.assert_close(a.maps, b.maps)
    assert not torch.allclose(a.scores, b.scores)


def test_backbone_requirements_and_bad_settings():
    assert ViP2CLIP.backbone_requirements(ViP2CLIPConfig()) == {
        "clip_backbone": frozenset({"text", "projection", "vv"})
    }
    assert "vv" not in ViP2CLIP.backbone_requirements(ViP2CLIPConfig(vv_blocks=0))["clip_backbone"]
    with pytest.raises(AdbenchError, match="n_conditioned"):
        tiny_method(n_conditioned=11)
    assert tiny_method().taps == (1, 2, 3, 4)  # 6/12/18/24 of 24 blocks on the 4-block tiny CLIP


@pytest.fixture(scope="module")
def tiny_aux(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-vip2clip")
    write_tiny_dataset(root, categories=("alpha", "beta"), n_normal=4, n_anom=4, size=32)
    ds = TinyDataset(root)
    return [("tiny", ds.load_category(c)) for c in ds.categories()]


def test_fit_loss_falls_and_save_load_gives_identical_scores(tiny_aux):
    def make() -> ViP2CLIP:
        return tiny_method(epochs=6, batch_size=4, lr=5e-3)

    trained = make()
    fit = ensure_fitted(trained, tiny_aux, aux_fingerprint="fp-vip2clip", seed=0, progress=False)
    assert not fit.reused and fit.losses[-1] < fit.losses[0]
    images = torch.rand(2, 3, 56, 56)
    fresh = make()
    before = fresh.predict(images, CTX)
    again = ensure_fitted(fresh, tiny_aux, aux_fingerprint="fp-vip2clip", seed=0, progress=False)
    assert again.reused and again.losses == fit.losses
    after, want = fresh.predict(images, CTX), trained.predict(images, CTX)
    assert not torch.equal(before.scores, want.scores)
    assert torch.equal(after.scores, want.scores) and torch.equal(after.maps, want.maps)


# --- published numbers: a reproduced vip2clip column pairs with the paper's ----------------------------
def test_reproduced_records_pair_with_the_papers_columns(tmp_path):
    import numpy as np

    from adbench.reports import published, render_report
    from adbench.store import ResultsStore
    from tests.test_reports import REGISTRY, expected_dataset_mean, html_row, html_table, make_record

    assert ViP2CLIP.published_name(ViP2CLIPConfig()) in set(published.load_published()["method"])
    rng = np.random.default_rng(0)
    records = [
        make_record("vip2clip", "", d, c, rng, config={"utpa": True})
        for d in ("mvtec", "visa")
        for c in ("c1", "c2")
    ]
    store = ResultsStore(tmp_path / "store")
    for rec in records:
        store.write_record(rec)
    render_report(store, tmp_path / "out", ["html"], published=True, registry=REGISTRY)
    html = (tmp_path / "out" / "report.html").read_text()
    for label, dataset, paper_value in (("MVTec AD", "mvtec", 91.2), ("VisA", "visa", 88.5)):
        ours, theirs, diff = html_row(html_table(html, "metric-image_auroc"), label)[:3]
        mean = expected_dataset_mean(records, "vip2clip", "", dataset, "image_auroc")
        assert ours.startswith(f"{mean:.1f}") and theirs.startswith(f"{paper_value:.1f}")
        assert diff == f"{round(mean, 1) - paper_value:+.1f}".replace("-", "−")

    render_report(
        ResultsStore(tmp_path / "none"), tmp_path / "pub", ["html"], mode="published", paper="vip2clip"
    )
    table = html_table((tmp_path / "pub" / "report.html").read_text(), "pub-vip2-clip-tables-1-2-image_auroc")
    assert "91.2" in html_row(table, "MVTec AD")[-1]  # ViP2-CLIP is the last column of its Table 1


def test_without_clip_weights_the_run_stops_before_any_work(tmp_path, monkeypatch, capsys):
    from adbench.cli import main

    monkeypatch.setenv("ADBENCH_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("ADBENCH_OFFLINE", "1")
    results = tmp_path / "results"
    monkeypatch.setattr("sys.argv", ["adbench", "run", "--methods", "vip2clip", "--results", str(results)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no weights for backbone 'clip-vitl14-336'" in err
    assert not any(results.rglob("*.json"))  # nothing was fitted or recorded


# --- fidelity II (issue 20) -----------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_local_loss_is_summed_over_layers_as_eq_9(reduction):
    method = tiny_method(local_reduction=reduction)
    feats = method.frozen_features(torch.rand(2, 3, 56, 56))
    masks = torch.zeros(2, 56, 56, dtype=torch.uint8)
    masks[1, 8:30, 12:40] = 1
    loss, parts = method.training_loss(feats, masks, torch.tensor([0, 1]))
    probs, _, grid = method.forward_head(feats)
    maps = probs.unflatten(-1, grid)
    per_layer = [normal_anomalous_map_loss(maps[:, i, 0], maps[:, i, 1], masks) for i in range(4)]
    expected = sum(per_layer) / (4 if reduction == "mean" else 1)
    torch.testing.assert_close(torch.tensor(parts["local"]), expected.detach())
    torch.testing.assert_close(loss, torch.tensor(parts["global"]) + expected, check_dtype=False)


def test_training_defaults_follow_the_official_code():
    # kim0806/ViP2-CLIP bafac88 train.py: --epoch 10, --image_size 518, torch.optim.Adam without betas
    cfg = ViP2CLIPConfig()
    assert (cfg.epochs, cfg.image_size, cfg.betas, cfg.lr, cfg.batch_size) == (10, 518, (0.9, 0.999), 1e-3, 8)
    assert cfg.local_reduction == "sum"
