"""Training-time augmentation the training engine applies for methods that declare it.

APRIL-GAN's MVTec fit replaces a sample, with probability ``aug_rate`` (0.2) each time it is drawn,
by a 2 x 2 mosaic of four random test images of the same category (official ``dataset.py``,
``MVTecDataset.combine_img``). Mosaics are new images, so their frozen features are extracted when
drawn; the other samples keep their cached features.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def mosaic(images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Four images (4, 3, S, S) and masks (4, S, S) tiled row by row into one image (3, S, S) and its
    mask (S, S) uint8: the 2S canvas is resized back to S (images bicubic, masks bilinear then > 0.5,
    as the official transforms; the code tiles the originals, here the already resized inputs)."""
    size = images.shape[-1]
    top, bottom = torch.cat([images[0], images[1]], dim=-1), torch.cat([images[2], images[3]], dim=-1)
    canvas = torch.cat([top, bottom], dim=-2)[None].float()
    image = F.interpolate(canvas, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    m = masks.float()
    mask_canvas = torch.cat([torch.cat([m[0], m[1]], -1), torch.cat([m[2], m[3]], -1)], -2)[None, None]
    mask = F.interpolate(mask_canvas, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return image[0].clamp(0, 1).to(images.dtype), (mask[0, 0] > 0.5).to(torch.uint8)


def mosaic_batch(
    idx: torch.Tensor,
    groups: torch.Tensor,
    rate: float,
    generator: torch.Generator,
    load: Callable[[torch.Tensor], torch.Tensor],
    all_masks: torch.Tensor,
    extract: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    feats: dict[str, torch.Tensor],
    batch_masks: torch.Tensor,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Replace each sample of the batch ``idx`` with probability ``rate`` by a mosaic of four samples of
    its group (category): their images come from ``load(indices)``, features from ``extract``."""
    chosen = (torch.rand(len(idx), generator=generator) < rate).nonzero().flatten()
    if len(chosen) == 0:
        return feats, batch_masks
    images, masks = [], []
    for pos in chosen.tolist():
        members = (groups == groups[idx[pos]]).nonzero().flatten()
        pick = members[torch.randint(len(members), (4,), generator=generator)]
        image, mask = mosaic(load(pick), all_masks[pick])
        images.append(image)
        masks.append(mask)
    new = extract(torch.stack(images))
    feats = {k: v.clone() for k, v in feats.items()}
    for key, value in new.items():
        feats[key][chosen.to(feats[key].device)] = value.to(feats[key].device, feats[key].dtype)
    batch_masks = batch_masks.clone()
    batch_masks[chosen] = torch.stack(masks).to(batch_masks.device)
    return feats, batch_masks
