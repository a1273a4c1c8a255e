"""The evaluation protocols: which data a method sees for each category.

* ``zero_shot``: the query images only (trained methods were fitted on another dataset).
* ``batch_zero_shot``: the whole unlabelled test split at once; each image is scored against the
  others (training-free methods such as PatchEAD, MuSc).
* ``few_shot``: k normal images sampled from the train split with a seed (k in {1, 2, 4}, 3 seeds).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch

from .data import Category, Sample, load_image, load_images
from .errors import AdbenchError
from .image_io import image_size
from .input_pipeline import image_batches
from .methods import Context, Method, Prediction
from .protocol_catalog import protocol_spec


def check_protocol(method_cls: type[Method], protocol: str) -> None:
    """Refuse a protocol the method does not declare, naming what it supports."""
    protocol_spec(protocol)  # an unknown name: one line naming the declared protocols
    if protocol not in method_cls.supports:
        raise AdbenchError(
            f"method '{method_cls.name}' does not support protocol '{protocol}' "
            f"(supports: {', '.join(sorted(method_cls.supports))})"
        )


def few_shot_references(category: Category, shots: int, seed: int) -> list[Sample]:
    """The k normal train images a few-shot job uses: the first k of the train split in an order
    seeded by category and seed (stable across runs, nested across k)."""
    if shots > len(category.train):
        raise AdbenchError(
            f"category '{category.name}' has {len(category.train)} train images; cannot take {shots} shots"
        )
    rng = random.Random(f"{category.name}:{seed}")
    order = rng.sample(list(category.train), len(category.train))
    return order[:shots]


def load_inputs(
    samples: Sequence[Sample], size: int, shape: Callable[[int, int], tuple[int, int] | None] | None = None
) -> torch.Tensor:
    """The samples' images at a method's input size: the square ``size``, or ``shape(width, height)``
    of the batch's first image where the method keeps the aspect ratio (``Method.input_shape``)."""
    target = shape(*image_size(samples[0].image_path)) if shape is not None and samples else None
    if target is None or tuple(target) == (size, size):
        return load_images(samples, size)
    return torch.stack([load_image(s.image_path, tuple(target)) for s in samples])


def _keeps_aspect(method: Method, samples: Sequence[Sample], size: int) -> bool:
    """Whether the method asks for a non-square input for these images (its ``input_shape``)."""
    if not samples:
        return False
    target = method.input_shape(*image_size(samples[0].image_path))
    return target is not None and tuple(target) != (size, size)


def predict_category(
    method: Method,
    images: torch.Tensor | Sequence[Sample],
    ctx: Context,
    batch_size: int = 16,
    size: int | None = None,
    device: torch.device | str | None = None,
) -> Prediction:
    """Run the method on a category's test images under ``ctx.protocol``.

    ``images`` is a tensor (N, 3, H, W), or the test samples themselves, which are then decoded at
    ``size`` in worker threads a few batches ahead and moved to ``device`` batch by batch (memory
    bounded by a few batches, not the split; :mod:`adbench.input_pipeline`).
    Batch zero-shot hands over the whole split in one call (the batch is its own reference set);
    the other protocols stream fixed-size batches.
    """
    if protocol_spec(ctx.protocol).whole_split:
        if not isinstance(images, torch.Tensor):
            images = load_images(images, int(size or method.image_size)).to(device or "cpu")
        return method.predict(images, ctx)
    if isinstance(images, torch.Tensor):
        batches = (images[i : i + batch_size] for i in range(0, len(images), batch_size))
    elif _keeps_aspect(method, images, int(size or method.image_size)):  # Method.input_shape: per batch
        batches = (
            load_inputs(images[i : i + batch_size], int(size or method.image_size), method.input_shape).to(
                device or "cpu"
            )
            for i in range(0, len(images), batch_size)
        )
    else:  # decoded in worker threads, the next batches while this one runs
        paths = [s.image_path for s in images]
        batches = image_batches(paths, int(size or method.image_size), batch_size, device)
    scores, maps = [], []
    for batch in batches:
        pred = method.predict(batch, ctx)
        scores.append(pred.scores.detach().float().cpu())
        if pred.maps is not None:
            m = pred.maps.detach().float().cpu()
            if maps and m.shape[-2:] != maps[0].shape[-2:]:  # batches of another aspect ratio
                m = torch.nn.functional.interpolate(m[:, None], size=maps[0].shape[-2:], mode="bilinear")[
                    :, 0
                ]
            maps.append(m)
    return Prediction(torch.cat(scores), torch.cat(maps) if maps else None)


def make_context(
    protocol: str,
    category: Category,
    image_size: int,
    shots: int,
    seed: int,
    shape: Callable[[int, int], tuple[int, int] | None] | None = None,
) -> Context:
    """The Context for one job, with few-shot references loaded at the method's input size (its
    ``input_shape`` when given)."""
    refs, ids = None, None
    if protocol_spec(protocol).references:
        samples = few_shot_references(category, shots, seed)
        refs, ids = load_inputs(samples, image_size, shape), [s.id for s in samples]
    return Context(
        protocol=protocol,
        category=category.name,
        seed=seed,
        references=refs,
        object_name=category.object_name,
        reference_ids=ids,
    )


def two_fold_split(categories: Sequence[str]) -> dict[str, list[str]]:
    """For training and testing on one dataset: each category is evaluated by a model fitted on
    the other fold (alternate categories in sorted order), so no model sees its target category."""
    ordered = sorted(categories)
    folds = [ordered[0::2], ordered[1::2]]
    return {c: folds[1] if c in folds[0] else folds[0] for c in ordered}
