"""A complete third-party adbench method plugin: deviation from the batch median, per pixel.

Install it with an entry point in the ``adbench`` group (see README), then run
``adbench run --methods median_dev``. This file is the README's example and is tested as is.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from adbench import hookimpl
from adbench.config import setting
from adbench.methods import Context, Method, MethodConfig, Prediction


@dataclass
class MedianDevConfig(MethodConfig):
    image_size: int = setting(128, ge=14)  # input size the harness resizes images to
    blur: int = setting(5, ge=1)  # box-filter size applied to the deviation map


class MedianDeviation(Method):
    """Anomaly map = colour distance of each pixel from the median image of the references."""

    name = "median_dev"
    description = "Example plugin: per-pixel deviation from the median reference image"
    config_cls = MedianDevConfig
    supports = frozenset({"batch_zero_shot", "few_shot"})
    default_protocol = "batch_zero_shot"
    backbone_fields = ()  # uses no backbone

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        refs = images if ctx.references is None else ctx.references.to(images.device)
        median = refs.median(dim=0).values
        maps = (images - median).norm(dim=1, keepdim=True)
        maps = F.avg_pool2d(maps, self.config.blur, stride=1, padding=self.config.blur // 2)[:, 0]
        return Prediction(scores=maps.flatten(1).amax(dim=1), maps=maps)


@hookimpl
def adbench_methods():
    return [MedianDeviation]
