"""winclip: window geometry, harmonic aggregation, window embeddings and WinCLIP+ on the tiny CLIP."""

from __future__ import annotations

import pytest
import torch

from adbench.backbones import build_backbone
from adbench.methods import Context
from adbench.plugins.winclip import WinCLIP, WinCLIPConfig, harmonic_aggregation, sliding_windows


@pytest.mark.parametrize("size,count", [(2, 14 * 14), (3, 13 * 13)])
def test_window_count_at_240px_patch16(size, count):
    # 240 px / patch 16 = a 15 x 15 grid; a k x k window slid with stride 1 fits (15 - k + 1)^2 times
    assert sliding_windows((15, 15), size).shape == (count, size * size)


def test_window_contents_by_hand():
    wins = sliding_windows((15, 15), 2)
    assert wins[0].tolist() == [0, 1, 15, 16]  # top-left window
    assert wins[1].tolist() == [1, 2, 16, 17]  # one patch to the right
    assert wins[14].tolist() == [15, 16, 30, 31]  # second row of windows starts one patch down
    assert wins[-1].tolist() == [208, 209, 223, 224]  # bottom-right window
    mid = sliding_windows((15, 15), 3)
    assert mid[0].tolist() == [0, 1, 2, 15, 16, 17, 30, 31, 32]
    # windows covering each patch: a corner 1, an edge patch k, an inner patch k^2
    cover = torch.bincount(mid.flatten(), minlength=225).view(15, 15)
    assert (cover[0, 0], cover[0, 7], cover[7, 7]) == (1, 3, 9)


def test_window_larger_than_grid_is_a_clear_error():
    from adbench.errors import AdbenchError

    with pytest.raises(AdbenchError, match="window_sizes"):
        sliding_windows((4, 4), 5)


def test_harmonic_aggregation_matches_a_plain_loop():
    torch.manual_seed(0)
    grid = (6, 5)
    wins = sliding_windows(grid, 3)
    scores = torch.rand(2, len(wins)) + 0.05
    got = harmonic_aggregation(scores, wins, grid[0] * grid[1])
    for n in range(2):
        for p in range(grid[0] * grid[1]):
            inside = [scores[n, w].item() for w in range(len(wins)) if p in wins[w].tolist()]
            expected = len(inside) / sum(1 / s for s in inside)
            assert got[n, p].item() == pytest.approx(expected, rel=1e-5)


def test_harmonic_aggregation_is_dominated_by_low_scores():
    wins = sliding_windows((3, 3), 2)  # four windows all sharing the centre patch
    scores = torch.tensor([[0.9, 0.9, 0.9, 0.1]])
    centre = harmonic_aggregation(scores, wins, 9)[0, 4].item()
    assert centre == pytest.approx(4 / (3 / 0.9 + 1 / 0.1))
    assert centre < scores.mean().item()


def test_window_covering_the_grid_is_the_image_embedding():
    clip = build_backbone("tiny-clip")
    images = torch.rand(2, 3, 112, 112)
    tokens = clip.forward_tokens(images, [-1])
    whole = sliding_windows(tokens.grid, tokens.grid[0])  # one window: every patch in order
    torch.testing.assert_close(clip.encode_windows(images, whole)[:, 0], tokens.cls, rtol=1e-4, atol=1e-5)
    # a small window sees only its own patches: changing pixels elsewhere leaves it unchanged
    small = sliding_windows(tokens.grid, 2)[:1]
    edited = images.clone()
    edited[:, :, 56:, 56:] = 0
    torch.testing.assert_close(clip.encode_windows(images, small), clip.encode_windows(edited, small))


@pytest.fixture(scope="module")
def winclip():
    method = WinCLIP(WinCLIPConfig(backbone="tiny-clip", image_size=112))
    method.setup()
    return method


def test_zero_shot_scores_are_probabilities_and_maps_on_the_grid(winclip):
    pred = winclip.predict(torch.rand(3, 3, 112, 112), Context("zero_shot", "metal_nut"))
    assert pred.scores.shape == (3,) and pred.maps.shape == (3, 8, 8)
    assert ((pred.scores > 0) & (pred.scores < 1)).all() and ((pred.maps > 0) & (pred.maps < 1)).all()


def test_few_shot_on_its_own_references_halves_the_zero_shot_map(winclip):
    images = torch.rand(2, 3, 112, 112)
    zero = winclip.predict(images, Context("zero_shot", "bottle"))
    few = winclip.predict(images, Context("few_shot", "bottle", references=images))
    # every query window and patch is in the memory: the few-shot map is 0, so WinCLIP+ = (zero + 0) / 2
    torch.testing.assert_close(few.maps, zero.maps / 2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(few.scores, zero.scores / 2, rtol=1e-4, atol=1e-5)
    other = winclip.predict(images, Context("few_shot", "bottle", references=torch.rand(2, 3, 112, 112)))
    assert (other.maps > few.maps).all()
