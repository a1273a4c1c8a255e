"""Loss functions shared by the trained methods: focal and dice on anomaly maps, image CE / BCE.

Maps are probabilities of "anomalous" in [0, 1] (after the method's softmax), masks are binary.
Focal and dice are short enough to write here (torchvision's ``sigmoid_focal_loss`` wants logits,
and the methods produce probabilities from a two-way softmax over text prompts).
"""

from __future__ import annotations

import lazy_loader as lazy

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free


_EPS = 1e-6


#: The official AnomalyCLIP / APRIL-GAN loss.py ``FocalLoss(smooth=1e-5)``: label smoothing of the focal term.
OFFICIAL_FOCAL_SMOOTH = 1e-5


def focal_loss(
    prob: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    alpha: float | None = None,
    smooth: float | None = None,
) -> torch.Tensor:
    """Binary focal loss (Lin et al. 2017) of probabilities ``prob`` against a 0/1 ``target`` of the same shape.

    ``alpha`` (weight of the positive class) is off by default, as in AnomalyCLIP's segmentation loss.
    ``smooth`` is the label smoothing of the FocalLoss the APRIL-GAN / AnomalyCLIP code uses (1e-5):
    one-hot targets clamped to [smooth, 1 - smooth] and pt = <target, p> + smooth; it bounds the loss of
    saturated wrong pixels (log 2e-5 instead of log 1e-6), which changes the loss by percents there.
    """
    target = target.to(prob.dtype)
    if smooth:
        t = torch.where(target > 0.5, 1 - smooth, smooth)
        pt = t * prob + (1 - t) * (1 - prob) + smooth
        loss = -((1 - pt) ** gamma) * torch.log(pt)
        if alpha is not None:
            loss = loss * torch.where(target > 0.5, alpha, 1 - alpha)
        return loss.mean()
    p = prob.clamp(_EPS, 1 - _EPS)
    pt = torch.where(target > 0.5, p, 1 - p)
    loss = -((1 - pt) ** gamma) * torch.log(pt)
    if alpha is not None:
        loss = loss * torch.where(target > 0.5, alpha, 1 - alpha)
    return loss.mean()


def dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft dice loss 1 - 2|P∩G| / (|P| + |G|), per image then averaged; ``prob`` and ``target`` are (N, H, W)."""
    target = target.to(prob.dtype)
    dims = tuple(range(1, prob.dim()))
    inter = (prob * target).sum(dims)
    total = prob.sum(dims) + target.sum(dims)
    return (1 - (2 * inter + smooth) / (total + smooth)).mean()


def segmentation_loss(prob: torch.Tensor, mask: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """Focal + ``dice_weight`` x dice on an anomaly probability map (N, H, W), resized to the mask when needed."""
    if prob.shape[-2:] != mask.shape[-2:]:
        prob = torch.nn.functional.interpolate(
            prob[:, None], size=mask.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0]
    return focal_loss(prob, mask) + dice_weight * dice_loss(prob, mask)


def image_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (N, 2) normal/anomalous logits against labels (N,) in {0, 1}."""
    return torch.nn.functional.cross_entropy(logits.float(), labels.long())


def image_bce(scores: torch.Tensor, labels: torch.Tensor, from_logits: bool = False) -> torch.Tensor:
    """Binary cross-entropy of anomaly scores (N,) against labels (N,): probabilities, or logits if told."""
    labels = labels.to(torch.float32)
    if from_logits:
        return torch.nn.functional.binary_cross_entropy_with_logits(scores.float(), labels)
    return torch.nn.functional.binary_cross_entropy(scores.float().clamp(_EPS, 1 - _EPS), labels)


def knowledge_margin_loss(
    knowledge: torch.Tensor, normal: torch.Tensor, abnormal: torch.Tensor
) -> torch.Tensor:
    """KAnoCLIP's KD loss max(0, d(w_k, w_a) - d(w_k, w_n)), d Euclidean on L2-normalised features.

    Each argument is (..., C) (e.g. one row per class); the hinge is averaged over the rows.
    """
    k, n, a = (torch.nn.functional.normalize(t.float(), dim=-1) for t in (knowledge, normal, abnormal))
    return torch.nn.functional.relu((k - a).norm(dim=-1) - (k - n).norm(dim=-1)).mean()


def normal_anomalous_map_loss(
    normal: torch.Tensor, anomalous: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """AnomalyCLIP-style local loss on a pair of maps (N, H, W): focal([M_n, M_a], mask) +
    dice(M_n, 1 - mask) + dice(M_a, mask); maps are resized to the mask when needed.

    The two-channel focal over the softmax pair equals the binary focal of M_a when M_n = 1 - M_a.
    """
    if anomalous.shape[-2:] != mask.shape[-2:]:
        pair = torch.stack([normal, anomalous], 1)
        pair = torch.nn.functional.interpolate(
            pair, size=mask.shape[-2:], mode="bilinear", align_corners=False
        )
        normal, anomalous = pair[:, 0], pair[:, 1]
    target = mask.to(anomalous.dtype)
    pt = torch.where(target > 0.5, anomalous, normal)  # probability given to the true class
    focal = focal_loss(pt, torch.ones_like(pt))
    return focal + dice_loss(normal, 1 - target) + dice_loss(anomalous, target)
