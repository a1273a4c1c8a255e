"""anomalydino: score against brute-force k-NN, rotations, masking, references embedded once."""

import pytest
import torch
import torch.nn.functional as F

from adbench.errors import AdbenchError
from adbench.methods import Context
from adbench.plugins.anomalydino import (
    AnomalyDINO,
    AnomalyDINOConfig,
    foreground_mask,
    image_score,
    rotated_references,
)
from tests.test_patchead import PixelPatches, _batch_with_defect


def _method(**kw) -> AnomalyDINO:
    kw.setdefault("rotation", False)
    m = AnomalyDINO(AnomalyDINOConfig(backbone="pixels", image_size=64, **kw))
    m.encoder = PixelPatches()
    return m


@pytest.mark.parametrize("neighbours", [1, 3])
def test_score_equals_brute_force_knn(neighbours):
    imgs = _batch_with_defect()
    refs, queries = imgs[:3], imgs[3:6]
    method = _method(neighbours=neighbours, masking="off", max_chunk_elements=50)
    pred = method.predict(queries, Context("few_shot", "c", references=refs))
    bank = F.normalize(method.embed(refs)[0].flatten(0, 1), dim=-1)  # (3 * 64, C)
    q = F.normalize(method.embed(queries)[0], dim=-1)
    for n in range(3):
        dists = []
        for p in range(64):
            d = sorted(1 - float(q[n, p] @ bank[m]) for m in range(len(bank)))
            dists.append(sum(d[:neighbours]) / neighbours)
        top = sorted(dists, reverse=True)[:1]  # int(1 % of 64) = 0 -> the maximum
        assert pred.maps[n].flatten().tolist() == pytest.approx(dists, abs=1e-5)
        assert pred.scores[n].item() == pytest.approx(sum(top) / len(top), abs=1e-5)


def test_image_score_rounds_down_like_the_authors():
    s = torch.arange(1024.0)[None]
    assert image_score(s, 0.01).item() == pytest.approx(sum(range(1014, 1024)) / 10)  # 10 patches, not 11


def test_few_shot_finds_planted_defect_and_embeds_references_once():
    imgs = _batch_with_defect()
    method, refs = _method(rotation=True), imgs[[0, 1]]
    ctx = Context("few_shot", "c", references=refs)
    scores = torch.cat([method.predict(imgs[s : s + 2], ctx).scores for s in range(2, 8, 2)])
    assert scores.argmax().item() == 0  # image 2 carries the defect
    assert method.encoder.passes == 2 + 3  # 16 rotated references in batches of 8, then 3 query batches
    assert len(method.memory_bank(refs)) == 2 * 8 * 64  # 8 rotations of 2 references, 64 patches each


def test_rotations_turn_about_the_centre():
    img = torch.zeros(1, 3, 9, 9)
    img[..., 4, 8] = 1.0  # right of the centre
    rot = rotated_references(img, (0, 90, 180))
    assert rot.shape == (3, 3, 9, 9)
    assert torch.equal(rot[0], img[0])
    assert rot[2, 0, 4, 0] == pytest.approx(1.0)  # 180 degrees: now left of the centre
    assert rot[1, 0, 4, 8] == pytest.approx(0.0)


def test_foreground_mask_keeps_the_object_and_flips_sign_when_centre_is_background():
    grid = (10, 10)
    inside = torch.zeros(10, 10, dtype=torch.bool)
    inside[3:7, 3:7] = True
    tokens = torch.where(inside.reshape(-1, 1), torch.tensor([[30.0, 0.0]]), torch.tensor([[-5.0, 0.0]]))
    tokens = tokens + 0.01 * torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    mask = foreground_mask(tokens, grid, threshold=10, morphology="grid").reshape(grid)
    assert mask[inside].all() and mask[4:6, 4:6].all()
    assert not mask[0, 0] and not mask[9, 9]  # far background stays out (dilation adds one ring)
    assert mask.sum() == 6 * 6  # the 4x4 object dilated by one patch, closing adds nothing
    # the code's morphology acts on the flattened (P, 1) array: one patch more on each side of a row
    flat = foreground_mask(tokens, grid, threshold=10).reshape(grid)
    assert flat[inside].all() and flat.sum() == 4 * 6 and flat[3:7, 2].all() and not flat[2, 3]


def test_masking_zeroes_background_patches_for_masked_categories():
    imgs = torch.zeros(4, 3, 128, 128)
    imgs[:, :, 32:96, 32:96] = 1.0  # a bright object (patches 4..11 of 16) on a dark background
    imgs[3, :, 40:48, 40:48] = 0.3  # a defect on the object of image 3
    ctx = Context("few_shot", "capsule", references=imgs[:2])
    plain = _method(masking="off").predict(imgs[2:4], ctx)
    masked = _method(masking="on", mask_threshold=5.0).predict(imgs[2:4], ctx)
    tokens, grid = _method().embed(imgs[2:4])
    keep = torch.stack([foreground_mask(t, grid, 5.0) for t in tokens]).view_as(plain.maps)
    assert keep[0].sum() == 80 and keep[0, 4:12, 3:13].all()  # the object, dilated along rows
    assert torch.equal(masked.maps, plain.maps * keep)
    assert _method().masks_category("capsule") and not _method().masks_category("carpet")


def test_an_empty_mask_keeps_every_patch():
    tokens = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    assert foreground_mask(tokens, (4, 4), threshold=1e9).all()


def test_needs_references():
    with pytest.raises(AdbenchError, match="needs reference images"):
        _method().predict(torch.rand(2, 3, 64, 64), Context("few_shot", "c"))
