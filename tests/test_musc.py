"""musc: LNAMD against a plain loop, mutual scoring against brute force, RsCIN, a planted defect."""

import pytest
import torch
import torch.nn.functional as F

from adbench.errors import AdbenchError
from adbench.methods import Context
from adbench.plugins.musc import MuSc, MuScConfig, interval_mean, lnamd, mutual_scores, rscin
from tests.test_patchead import PixelPatches, _batch_with_defect


@pytest.mark.parametrize("r", [1, 3, 5])
def test_lnamd_equals_a_plain_loop(r):
    torch.manual_seed(0)
    tokens = torch.randn(2, 5, 6, 4)  # (N, h, w, C)
    got = lnamd(tokens, r)
    expected = torch.empty(2, 5 * 6, 4)
    for n in range(2):
        t = tokens[n]
        normed = (t - t.mean()) / torch.sqrt(t.var(unbiased=False) + 1e-5)  # LayerNorm over (h, w, C)
        for i in range(5):
            for j in range(6):
                acc = torch.zeros(4)
                for di in range(-(r // 2), r // 2 + 1):
                    for dj in range(-(r // 2), r // 2 + 1):
                        if 0 <= i + di < 5 and 0 <= j + dj < 6:
                            acc += normed[i + di, j + dj]
                expected[n, i * 6 + j] = acc / (r * r)  # zero padding counts
    assert torch.allclose(got, F.normalize(expected, dim=-1), atol=1e-5)


def test_mutual_scoring_equals_brute_force():
    torch.manual_seed(1)
    feats = F.normalize(torch.randn(6, 4, 3), dim=-1)  # 6 images, 4 patches
    got = mutual_scores(feats, 0.0, 0.5, max_elements=5)  # chunked
    n = len(feats)
    for i in range(n):
        for p in range(4):
            nearest = sorted(
                min(float((feats[i, p] - feats[j, q]).norm()) for q in range(4)) for j in range(n) if j != i
            )
            keep = nearest[: int(0.5 * (n - 1))]  # lowest 50 % of the 5 other images: 2
            assert got[i, p].item() == pytest.approx(sum(keep) / len(keep), abs=1e-5)


def test_interval_mean_bounds():
    dist = torch.tensor([[0.4, 0.1, float("inf"), 0.3, 0.2]])  # 4 valid references
    assert interval_mean(dist, 0.0, 0.5).item() == pytest.approx(0.15)  # positions [0, 2)
    assert interval_mean(dist, 0.25, 1.0).item() == pytest.approx(0.3)  # positions [1, 4)
    assert interval_mean(dist, 0.0, 0.1).item() == pytest.approx(0.1)  # at least one image


def test_rscin_without_edges_leaves_scores_unchanged():
    torch.manual_seed(2)
    scores, feats = torch.rand(7), F.normalize(torch.randn(7, 5), dim=-1)
    assert torch.equal(rscin(scores, feats, (1,)), scores.float())  # self loops only
    assert torch.equal(rscin(scores, feats, ()), scores)
    assert torch.equal(rscin(scores, feats, (0, 2)), scores)


def test_rscin_averages_over_the_most_similar_images():
    feats = torch.tensor([[1.0, 0.0], [0.96, 0.28], [0.0, 1.0]])  # 0 and 1 are close, 2 apart
    scores = torch.tensor([1.0, 0.0, 5.0])
    got = rscin(scores, feats, (2,))
    w01 = 0.96
    assert got[0].item() == pytest.approx((1.0 * 1.0 + w01 * 0.0) / (1.0 + w01))
    assert got[2].item() == pytest.approx((0.28 * 0.0 + 1.0 * 5.0) / 1.28)


def _method(**kw) -> MuSc:
    m = MuSc(MuScConfig(backbone="pixels", image_size=64, layers=(1,), **kw))
    m.encoder = PixelPatches()
    m.taps = (1,)
    return m


def test_batch_zero_shot_finds_planted_defect():
    imgs = _batch_with_defect()
    pred = _method(rscin_k=(1,)).predict(imgs, Context("batch_zero_shot", "c"))
    assert pred.scores.argmax().item() == 2
    assert pred.maps.shape == (8, 8, 8)
    assert pred.maps[2].flatten().argmax().item() == 2 * 8 + 5


def test_bad_input_is_a_one_line_error():
    with pytest.raises(AdbenchError, match="at least 2 test images"):
        _method().predict(torch.rand(1, 3, 64, 64), Context("batch_zero_shot", "c"))
    with pytest.raises(AdbenchError, match="aggregation_degrees must be odd"):
        _method(aggregation_degrees=(2,)).predict(torch.rand(3, 3, 64, 64), Context("batch_zero_shot", "c"))
    with pytest.raises(AdbenchError, match="does not support protocol 'few_shot'"):
        _method().predict(torch.rand(3, 3, 64, 64), Context("few_shot", "c"))
