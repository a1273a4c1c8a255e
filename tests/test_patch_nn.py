"""The shared nearest-neighbour core against brute force: groups, chunks, exclusion, metrics, k-NN bank."""

import pytest
import torch
import torch.nn.functional as F

from adbench.patch_nn import bank_knn_distances, nearest_cosine_distance, per_reference_distances


def _unit(*shape):
    return F.normalize(torch.randn(*shape), dim=-1)


def _brute(q, refs, metric):
    """(P, R) nearest distance by plain loops."""
    out = torch.empty(len(q), len(refs))
    for p in range(len(q)):
        for r in range(len(refs)):
            if metric == "cosine":
                out[p, r] = min(1 - float(q[p] @ refs[r, j]) for j in range(refs.shape[1]))
            else:
                out[p, r] = min(float((q[p] - refs[r, j]).norm()) for j in range(refs.shape[1]))
    return out


def test_distances_equal_brute_force_with_groups_and_chunks():
    torch.manual_seed(0)
    q, refs = _unit(7, 5), _unit(4, 6, 5)
    groups = torch.tensor([0, 1, 1, 2])
    per_ref = _brute(q, refs, "cosine")
    expected = torch.stack([per_ref[:, 0], per_ref[:, 1:3].amin(1), per_ref[:, 3]], dim=1)
    got = per_reference_distances(q, refs, groups=groups, num_groups=3)
    chunked = per_reference_distances(q, refs, groups=groups, num_groups=3, max_elements=6)  # 1 row x 1 image
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(chunked, got)
    mean = per_reference_distances(q, refs, groups=groups, num_groups=3, group_reduce="mean")
    assert torch.allclose(mean[:, 1], per_ref[:, 1:3].mean(1), atol=1e-5)


@pytest.mark.parametrize("max_elements", [1, 13, 2**25])
def test_euclidean_metric_and_exclusion_match_brute_force(max_elements):
    torch.manual_seed(1)
    q, refs = torch.randn(5, 4), torch.randn(6, 3, 4)  # not normalised: a true L2 distance
    got = per_reference_distances(q, refs, metric="euclidean", exclude=2, max_elements=max_elements)
    expected = _brute(q, refs, "euclidean")
    expected[:, 2] = float("inf")
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("k,max_elements", [(1, 2**25), (3, 2**25), (3, 4), (2, 1)])
def test_bank_knn_matches_brute_force(k, max_elements):
    torch.manual_seed(2)
    q, bank = _unit(9, 8), _unit(23, 8)
    got = bank_knn_distances(q, bank, k=k, max_elements=max_elements)
    full = 1 - q @ bank.T
    expected = full.sort(dim=1).values[:, :k].mean(1)
    assert torch.allclose(got, expected, atol=1e-5)


def test_nearest_cosine_distance_matches_brute_force():
    q, mem = torch.randn(2, 5, 8), torch.randn(30, 8)
    got = nearest_cosine_distance(q, mem, max_elements=40)  # forces several chunks
    cos = torch.nn.functional.cosine_similarity(q[..., None, :], mem, dim=-1)
    torch.testing.assert_close(got, 1 - cos.amax(-1), rtol=1e-5, atol=1e-6)
