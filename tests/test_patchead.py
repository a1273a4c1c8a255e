"""patchead: cross-patch scoring against brute force, reference rules, protocols on planted defects."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adbench.backbones.base import Backbone, Tokens
from adbench.errors import AdbenchError
from adbench.methods import Context
from adbench.patch_nn import per_reference_distances
from adbench.plugins.patchead import (
    GROUP_REDUCE,
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


# --- fidelity to the paper (issue 8) --------------------------------------------------------------------
def test_alignment_variants_are_averaged_as_the_paper_says():
    # one reference sample with three variants (original, aligned, aligned rotated 180 deg) whose nearest
    # patches are at cosine distances 0.2, 0.5 and 1.1 from the query patch: Sec. 4.2 averages them
    e = torch.eye(3)
    q = e[:1]
    variants = torch.stack(
        [0.8 * e[0] + 0.6 * e[1], 0.5 * e[0] + (0.75**0.5) * e[1], -0.1 * e[0] + (0.99**0.5) * e[2]]
    )
    refs = variants[:, None, :]  # three one-patch images
    groups = torch.zeros(3, dtype=torch.long)

    def merged(how: str) -> float:
        reduce = GROUP_REDUCE[how]
        return per_reference_distances(q, refs, groups=groups, num_groups=1, group_reduce=reduce).item()

    assert merged("mean") == pytest.approx((0.2 + 0.5 + 1.1) / 3)
    assert merged("min") == pytest.approx(0.2)
    assert PatchEADConfig().alignment_merge == "mean"


def test_alignment_merge_reaches_the_scores():
    imgs = _batch_with_defect(4)
    mean = _method(align=True).predict(imgs, Context("batch_zero_shot", "c"))
    low = _method(align=True, alignment_merge="min").predict(imgs, Context("batch_zero_shot", "c"))
    assert (low.maps <= mean.maps + 1e-6).all() and not torch.allclose(low.maps, mean.maps)


@pytest.mark.parametrize(
    "dataset,align,mask",
    [
        ("mvtec", True, True),
        ("visa", True, True),
        ("dtd_synthetic", True, True),
        ("mpdd", False, True),
        ("btad", False, True),
    ],
)
def test_plus_applies_the_paper_preset_of_each_dataset(dataset, align, mask):
    cfg = PatchEAD.config_for_dataset(PatchEADConfig(plus=True), dataset)
    assert (cfg.align, cfg.foreground_mask) == (align, mask)
    assert PatchEAD.published_name(cfg) == "PatchEAD+ (DINOv2)"
    plain = PatchEADConfig(align=False)
    assert PatchEAD.config_for_dataset(plain, dataset) is plain  # without plus nothing changes


def test_plus_run_plans_each_dataset_with_its_preset(tmp_path):
    from adbench.jobs import RunSpec
    from adbench.runner import Runner
    from adbench.store import ResultsStore

    spec = RunSpec(
        methods=["patchead"],
        datasets=["synthetic"],
        overrides={"patchead": {"plus": ["true"], "backbone": ["tiny-dinov2"]}},
    )
    jobs = Runner(spec, ResultsStore(tmp_path)).plan()
    assert jobs and all(j.config.align and j.config.foreground_mask for j in jobs)
    assert all(j.config.plus for j in jobs)
    # one report column whatever each dataset's preset: the label is the config asked for
    assert {j.variant for j in jobs} == {"backbone=tiny-dinov2,plus=True"}


def test_few_shot_nearest_takes_the_nearest_reference():
    # per-reference distances 0.1 and 0.9 for one patch: "all" averages (paper's Eq. 3), "nearest" keeps 0.1
    dist = torch.tensor([[0.1, 0.9]])
    assert aggregate_references(dist, 2, "closest").item() == pytest.approx(0.5)
    assert aggregate_references(dist, 1, "closest").item() == pytest.approx(0.1)
    imgs = _batch_with_defect()
    refs = imgs[[0, 1]].clone()
    refs[1] = torch.rot90(refs[1], 1, dims=(1, 2))  # a badly posed second reference
    ctx = Context("few_shot", "c", references=refs)
    every = _method(few_shot_references="all").predict(imgs[3:5], ctx)
    nearest = _method().predict(imgs[3:5], ctx)
    assert PatchEADConfig().few_shot_references == "nearest"  # Fig. 4: scores improve with more shots
    assert (nearest.maps <= every.maps + 1e-6).all() and nearest.maps.mean() < every.maps.mean()


def test_smoothing_sigma_is_a_recorded_config_value():
    assert PatchEADConfig().smoothing_sigma == 4.0
    assert PatchEAD.map_sigma(PatchEADConfig(smoothing_sigma=0.0)) == 0.0


def test_only_real_dinov2_configs_pair_with_the_published_numbers():
    assert PatchEAD.published_name(PatchEADConfig()) == "PatchEAD"
    assert PatchEAD.published_name(PatchEADConfig(plus=True)) == "PatchEAD+ (DINOv2)"
    for backbone in ("efficientnet-lite0", "tiny-dinov2", "clip-vitb16"):
        assert PatchEAD.published_name(PatchEADConfig(backbone=backbone)) is None


# --- fidelity II (issue 20) -----------------------------------------------------------------------------
def _posed_screws(size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """One built-in synthetic screw (a category drawn in any orientation) turned by 0/90/180/270 deg,
    and between them (index 2) the same screw with a planted defect, turned by 90 deg; resized to
    ``size``; with the defect's mask in that image's own pose."""
    from adbench.datasets import synthetic as syn

    normal, _ = syn.render_normal("screw", syn._rng(0, "screw", 3))
    broken, mask = syn.render_anomalous("screw", "scratch", syn._rng(0, "screw", 3))
    empty = np.zeros(mask.shape, bool)
    posed = [
        (normal, empty, 0),
        (normal, empty, 1),
        (broken, mask, 1),
        (normal, empty, 2),
        (normal, empty, 3),
    ]
    imgs = [
        torch.rot90(torch.from_numpy(i.copy()).permute(2, 0, 1).float() / 255, k, (1, 2)) for i, _, k in posed
    ]
    masks = [torch.rot90(torch.from_numpy(m.copy()).float(), k, (0, 1)) for _, m, k in posed]
    imgs = F.interpolate(torch.stack(imgs), size=size, mode="area")
    return imgs, F.interpolate(torch.stack(masks)[:, None], size=size, mode="area")[:, 0]


def test_alignment_scores_each_query_in_the_pose_of_its_references():
    imgs, masks = _posed_screws()
    ctx = Context("batch_zero_shot", "screw")
    normals = [0, 1, 3, 4]
    # best-matching view: once query and references share one pose, the copies of the normal screw
    # match each other almost exactly (the earlier code left queries 1..n unaligned: no view matched)
    best = _method(align=True, alignment_merge="min").predict(imgs, ctx)
    assert (best.scores[normals] < 0.05).all() and best.scores[2] > 2 * best.scores[normals].max()
    # the map comes back in the query's own pose: its peak lies on the defect as the query shows it
    grid = best.maps.shape[-1]
    cell = F.adaptive_max_pool2d(masks[2][None], grid)[0].flatten()
    assert cell[best.maps[2].argmax()] > 0


def test_more_shots_never_raise_a_patch_score_under_the_default_rule():
    # Fig. 4: image AUROC rises with the number of shots; with nested reference sets the default
    # (nearest) rule can only lower each patch's score, the mean over references ("all") need not
    imgs = _batch_with_defect()
    refs = imgs[[0, 1]].clone()
    refs[1] = torch.rot90(refs[1], 1, dims=(1, 2))
    one, two = (Context("few_shot", "c", references=refs[:k]) for k in (1, 2))
    default = _method()
    assert (default.predict(imgs[3:6], two).maps <= default.predict(imgs[3:6], one).maps + 1e-6).all()
    mean = _method(few_shot_references="all")
    assert (mean.predict(imgs[3:6], two).maps > mean.predict(imgs[3:6], one).maps + 1e-3).any()
