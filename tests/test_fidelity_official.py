"""adbench's computations against independent re-derivations of each baseline's official computation.

Each re-derivation below was written for this test from reading the official repository at the
named commit (the code is not copied): random tensors go through both, and they must agree to about
1e-5. A change to a baseline that departs from its official code fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from adbench.methods import Context
from adbench.patch_nn import bank_knn_distances
from adbench.plugins.anomalyclip import AnomalyCLIP, AnomalyCLIPConfig
from adbench.plugins.anomalydino import foreground_mask, image_score
from adbench.plugins.aprilgan import APRILGAN, APRILGANConfig
from adbench.plugins.musc import interval_mean, mutual_scores, rscin
from adbench.plugins.prompt_ensemble import anomaly_probability

TOL = dict(rtol=1e-5, atol=1e-5)
GEN = torch.Generator().manual_seed(0)


def _rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GEN)


# --- AnomalyCLIP ----------------------------------------------------------------------------------
def _official_focal(prob: torch.Tensor, gt: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """loss.py FocalLoss (gamma 2, no alpha) on a (B, 2, H, W) probability map: one-hot targets clamped
    to [smooth, 1 - smooth], pt = <one_hot, p> + smooth, mean of -(1 - pt)^2 log pt."""
    p = prob.permute(0, 2, 3, 1).reshape(-1, prob.shape[1])
    one_hot = F.one_hot(gt.reshape(-1).long(), prob.shape[1]).float().clamp(smooth, 1 - smooth)
    pt = (one_hot * p).sum(1) + smooth
    return (-((1 - pt) ** 2) * pt.log()).mean()


def _official_dice(prob: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """loss.py BinaryDiceLoss: 1 - mean over images of (2 |P G| + 1) / (|P| + |G| + 1)."""
    n = gt.shape[0]
    p, g = prob.reshape(n, -1), gt.reshape(n, -1)
    return 1 - ((2 * (p * g).sum(1) + 1) / (p.sum(1) + g.sum(1) + 1)).sum() / n


def _anomalyclip_official(patch, cls, text, gt, label, size):
    """zqhang/AnomalyCLIP @ 9f83c7f: train.py's loss and test.py's map with features_list 6 12 18 24,
    whose four taps are all the layer-24 tensor (issue #64). ``patch`` (B, 1 + L, C) with the CLS first."""
    taps = [patch] * 4  # appended without a copy, then updated in place: four identical tensors
    image = cls / cls.norm(dim=-1, keepdim=True)
    image_loss = F.cross_entropy(image @ text.T / 0.07, label)
    loss, maps = 0, []
    for tap in taps:
        tap = tap / tap.norm(dim=-1, keepdim=True)
        sim = ((tap[:, :, None, :] * text[None, None]).sum(-1) / 0.07).softmax(-1)[
            :, 1:
        ]  # compute_similarity
        side = int(sim.shape[1] ** 0.5)
        sm = sim.reshape(sim.shape[0], side, side, -1).permute(0, 3, 1, 2)
        sm = F.interpolate(sm, size, mode="bilinear")  # get_similarity_map (align_corners False)
        loss = (
            loss + _official_focal(sm, gt) + _official_dice(sm[:, 1], gt) + _official_dice(sm[:, 0], 1 - gt)
        )
        maps.append((sm[:, 1] + 1 - sm[:, 0]) / 2)
    return loss + image_loss, torch.stack(maps).sum(0)


def test_anomalyclip_loss_and_map_match_the_published_run():
    b, side, c, size = 2, 4, 8, 16
    patch, cls = _rand(b, 1 + side * side, c), _rand(b, c)
    text = F.normalize(_rand(2, c), dim=-1)
    gt = torch.zeros(b, size, size)
    gt[1, 3:9, 5:12] = 1
    label = torch.tensor([0, 1])
    method = AnomalyCLIP(AnomalyCLIPConfig())  # the default: layer 24 (one tap), seg_weight 4
    method.taps = (24,)
    method.text_features = lambda: text  # the learnt prompts are not under test here
    feats = {"layer0": patch[:, 1:].reshape(b, side, side, c), "cls": cls}
    loss, _ = method.training_loss(feats, gt.to(torch.uint8), label)
    expected_loss, expected_map = _anomalyclip_official(patch, cls, text, gt, label, size)
    torch.testing.assert_close(loss, expected_loss, **TOL)
    pred = method.forward_head(feats)[0].sum(1)
    up = F.interpolate(pred[:, None], size, mode="bilinear")[:, 0]  # the engine's resize
    torch.testing.assert_close(4 * up, expected_map, **TOL)  # the same map up to the factor 4 (ranks equal)


# --- APRIL-GAN ------------------------------------------------------------------------------------
def _aprilgan(size: int, taps: int = 2, c_in: int = 6, c_out: int = 5) -> APRILGAN:
    method = APRILGAN(APRILGANConfig(image_size=size, feature_layers=(12, 24)[:taps]))
    method.learnable = torch.nn.ModuleList([torch.nn.Linear(c_in, c_out) for _ in range(taps)])
    method.taps = (12, 24)[:taps]
    method._memory = None
    return method


def _aprilgan_official_maps(tokens, linears, text_cols, size):
    """ByChelsea/VAND-APRIL-GAN @ f13b8a6 test.py: per layer, tokens through LinearLayer, normalised,
    100 * tokens @ text (C, 2), viewed (B, 2, H, H), bilinear (align_corners=True) to img_size, softmax
    over the 2 channels, channel 1; summed over layers."""
    maps = []
    for tok, fc in zip(tokens, linears):
        t = fc(tok)
        t = t / t.norm(dim=-1, keepdim=True)
        am = 100.0 * t @ text_cols
        b, n, _ = am.shape
        h = int(np.sqrt(n))
        am = F.interpolate(
            am.permute(0, 2, 1).view(b, 2, h, h), size=size, mode="bilinear", align_corners=True
        )
        maps.append(torch.softmax(am, dim=1))
    return maps


def test_aprilgan_maps_loss_and_few_shot_match_the_official_code():
    size, b, side = 20, 2, 4
    method = _aprilgan(size)
    tokens = [_rand(b, side * side, 6) for _ in range(2)]
    texts = {"screw": F.normalize(_rand(2, 5), dim=-1), "bottle": F.normalize(_rand(2, 5), dim=-1)}
    feats = {f"stage{i}": t.reshape(b, side, side, 6) for i, t in enumerate(tokens)}
    with torch.no_grad():
        official = _aprilgan_official_maps(tokens, method.learnable, texts["screw"].T, size)
        torch.testing.assert_close(
            method.stage_maps(feats, texts["screw"]).sum(1), sum(m[:, 1] for m in official), **TOL
        )
    # training: each image against its own class's prompts (train.py text_prompts[cls] per item)
    method.text = lambda name: texts[name]
    method.train_classes = ["screw", "bottle"]
    gt = torch.zeros(b, size, size)
    gt[0, 2:9, 4:15] = 1
    loss = method.training_loss(
        {**feats, "class_index": torch.tensor([0, 1])}, gt.to(torch.uint8), torch.ones(b)
    )
    expected = 0
    for i, name in enumerate(["screw", "bottle"]):
        one = _aprilgan_official_maps([t[i : i + 1] for t in tokens], method.learnable, texts[name].T, size)
        for m in one:  # per-image losses are means over pixels of equal-size images: average them
            expected = (
                expected + (_official_focal(m, gt[i : i + 1]) + _official_dice(m[:, 1], gt[i : i + 1])) / b
            )
    torch.testing.assert_close(loss, expected, **TOL)


def test_aprilgan_few_shot_memory_term_matches_the_official_code():
    """test.py few-shot: 1 - max cosine of each query token to the k-shot memory (sklearn pairwise
    cosine_similarity, min over the memory of 1 - cos), viewed (1, 1, H, H), bilinear align_corners=True
    to img_size, summed over layers and added to the zero-shot map."""
    size, side = 20, 4
    method = _aprilgan(size)
    text = F.normalize(_rand(2, 5), dim=-1)
    q = [_rand(1, side, side, 6) for _ in range(2)]
    r = [_rand(3, side, side, 6) for _ in range(2)]
    queries, refs = torch.zeros(1, 3, size, size), torch.zeros(3, 3, size, size)

    class FakeCLIP:  # tokens by the identity of the image batch
        def forward_tokens(self, images, taps):
            from adbench.backbones.base import Tokens

            grids = q if images is queries else r
            cls = torch.ones(len(images), 5)
            return Tokens(patches=dict(zip(taps, grids)), cls=cls)

    method.clip = FakeCLIP()
    method.text = lambda name: text
    zero = method.predict(queries, Context("zero_shot", "screw"))
    few = method.predict(queries, Context("few_shot", "screw", references=refs))
    extra = 0
    for qi, ri in zip(q, r):
        a = F.normalize(ri.reshape(-1, 6), dim=-1)
        bq = F.normalize(qi.reshape(-1, 6), dim=-1)
        dist = (1 - a @ bq.T).min(0).values.reshape(1, 1, side, side)
        extra = extra + F.interpolate(dist, size=size, mode="bilinear", align_corners=True)[0]
    torch.testing.assert_close(few.maps, zero.maps + extra, **TOL)


# --- CLIP -----------------------------------------------------------------------------------------
def test_clip_single_prompt_score_matches_the_appendix_baseline():
    """zqhang/AnomalyCLIP issue #25 / appendix: CLIP with two single prompts, softmax over 100 x cosine
    (CLIP's logit scale) of the normalised image feature with the two normalised text features."""
    feats, text = _rand(3, 8), _rand(2, 8)
    img = feats / feats.norm(dim=-1, keepdim=True)
    txt = text / text.norm(dim=-1, keepdim=True)
    expected = (100.0 * img @ txt.T).softmax(-1)[:, 1]
    torch.testing.assert_close(anomaly_probability(feats, text, 0.01), expected, **TOL)


# --- MuSc -----------------------------------------------------------------------------------------
def _musc_msm(z: torch.Tensor, low: float = 0.0, high: float = 0.3) -> torch.Tensor:
    """xrli-U/MuSc @ b76b93d models/modules/_MSM.py compute_scores_fast: per image i, each patch's min
    Euclidean distance to every other image's patches, then the mean of the sorted values in
    [int(low * (N-1)), int(high * (N-1)))."""
    n, p, c = z.shape
    out = []
    for i in range(n):
        ref = torch.cat([z[:i], z[i + 1 :]])
        d = torch.cdist(z[i : i + 1], ref.reshape(-1, c)).reshape(p, n - 1, p).min(-1).values
        k_max, k_min = int((n - 1) * high), int((n - 1) * low)
        vals = d.topk(k_max, largest=False, sorted=True).values
        vals = vals.topk(k_max - k_min, largest=True, sorted=True).values
        out.append(vals.mean(1))
    return torch.stack(out)


def _musc_rscin(scores: torch.Tensor, cls: torch.Tensor, ks: tuple[int, ...]) -> torch.Tensor:
    """models/modules/_RsCIN.py: min-max normalise, similarity = cls @ cls.T, for each k keep each row's
    k largest similarities, row-normalise, propagate the scores; mean over k."""
    s = (scores - scores.min()) / (scores.max() - scores.min())
    w = cls @ cls.T
    outs = []
    for k in ks:
        drop = w.topk(w.shape[0] - k, largest=False, sorted=True).indices
        wm = w.clone()
        for i in range(w.shape[0]):
            wm[i, drop[i]] = 0
        outs.append((wm / wm.sum(1, keepdim=True)) @ s)
    return torch.stack(outs, -1).mean(-1)


def test_musc_mutual_scoring_and_rscin_match_the_official_code():
    z = F.normalize(_rand(11, 9, 6), dim=-1)
    torch.testing.assert_close(mutual_scores(z, 0.0, 0.3), _musc_msm(z), **TOL)
    scores, cls = _rand(11).abs(), F.normalize(_rand(11, 4), dim=-1)
    ours = rscin(scores, cls, (1, 8, 9))
    official = _musc_rscin(scores, cls, (1, 8, 9))
    # adbench skips the min-max normalisation: the same affine map of every score
    lo, hi = scores.min(), scores.max()
    torch.testing.assert_close((ours - lo) / (hi - lo), official, **TOL)
    assert interval_mean(torch.tensor([[3.0, 1.0, 2.0, float("inf")]]), 0.0, 1.0).item() == pytest.approx(2.0)


# --- AnomalyDINO ----------------------------------------------------------------------------------
def test_anomalydino_scores_and_mask_match_the_official_code():
    """dammsi/AnomalyDINO @ b3435f0: faiss L2 on normalised features / 2 = 1 - cos to the nearest bank
    patch (src/detection.py), image score mean_top1p (src/post_eval.py), and the zero-shot mask of
    src/backbones.py: first PC > 10 (sign flipped when the centre keeps <= 35 %), then cv2.dilate and
    MORPH_CLOSE with a 3 x 3 kernel on the (P, 1) array: a size-3 operation along the flat index."""
    q, bank = _rand(40, 6), F.normalize(_rand(30, 6), dim=-1)
    qn = q / q.norm(dim=-1, keepdim=True)
    sq = torch.cdist(qn, bank).min(1).values ** 2  # faiss IndexFlatL2 returns squared distances
    torch.testing.assert_close(bank_knn_distances(qn, bank), sq / 2, **TOL)
    d = sq.numpy()
    top = np.mean(sorted(d, reverse=True)[: max(1, int(len(d) * 0.01))])
    assert image_score(torch.from_numpy(d)[None], 0.01).item() == pytest.approx(float(top), abs=1e-6)
    grid = (6, 7)
    inside = torch.zeros(grid, dtype=torch.bool)
    inside[1:5, 1:6] = True
    inside[5, 0] = True  # a lone patch at a row start: the flat dilation reaches the previous row's end
    tokens = torch.where(inside.reshape(-1, 1), torch.tensor([[30.0, 0.0]]), torch.tensor([[-5.0, 0.0]]))
    tokens = tokens + 0.01 * _rand(42, 2)
    from sklearn.decomposition import PCA

    first = PCA(n_components=1, svd_solver="randomized", random_state=0).fit_transform(
        tokens.double().numpy()
    )
    mask = first > 10
    centre = mask.reshape(grid)[1:4, 1:5]  # int(6 * 0.2):int(6 * 0.8), int(7 * 0.2):int(7 * 0.8)
    if centre.sum() <= centre.size * 0.35:
        mask = -first > 10
    col = np.ones((3, 1), bool)  # cv2's 3 x 3 kernel on a (P, 1) array acts along axis 0 only
    mask = ndimage.binary_dilation(mask, col)
    mask = ndimage.binary_erosion(ndimage.binary_dilation(mask, col), col, border_value=1)
    got = foreground_mask(tokens, grid, threshold=10).numpy()
    assert (got == mask[:, 0]).all() and got[4 * 7 + 6]  # row 4's last patch joins row 5's first


# --- WinCLIP --------------------------------------------------------------------------------------
def test_winclip_windows_and_harmonic_aggregation_match_anomalib():
    """WinCLIP has no official code; the reference reproduction is anomalib's
    src/anomalib/models/image/winclip/utils.py @ 00b5d1f: ``make_masks`` = the sliding windows as the
    columns of ``unfold`` over the index grid, and ``harmonic_aggregation`` = per patch, the number of
    windows containing it over the sum of their reciprocal scores (0 where a score is 0)."""
    from adbench.plugins.winclip import harmonic_aggregation, sliding_windows

    grid, k = (5, 6), 3
    index = torch.arange(30.0).reshape(1, 1, *grid)
    masks = F.unfold(index, kernel_size=k, stride=1)[0].int()  # (k * k, W)
    windows = sliding_windows(grid, k)
    assert torch.equal(windows.int(), masks.T)
    scores = _rand(2, masks.shape[1]).abs() + 0.1
    expected = torch.stack(
        [(masks == p).any(0).sum() / (1 / scores.T[(masks == p).any(0)]).sum(0) for p in range(30)]
    ).T
    torch.testing.assert_close(harmonic_aggregation(scores, windows, 30), expected, **TOL)
