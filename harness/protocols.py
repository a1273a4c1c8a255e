"""The evaluation protocols: which data a method sees for each category.

* ``zero_shot``: the query images only (trained methods were fitted on another dataset).
* ``batch_zero_shot``: the whole unlabelled test split at once; each image is scored against the
  others (training-free methods such as PatchEAD, MuSc).
* ``few_shot``: k normal images sampled from the train split with a seed (k in {1, 2, 4}, 3 seeds).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from .data import Category, Sample, load_images
from .errors import AdbenchError
from .methods import PROTOCOLS, Context, Method, Prediction

DEFAULT_SHOTS = (1, 2, 4)
DEFAULT_FEW_SHOT_SEEDS = (0, 1, 2)


def check_protocol(method_cls: type[Method], protocol: str) -> None:
    """Refuse a protocol the method does not declare, naming what it supports."""
    if protocol not in PROTOCOLS:
        raise AdbenchError(f"--protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if protocol not in method_cls.supports:
        raise AdbenchError(
            f"method '{method_cls.name}' does not support protocol '{protocol}' "
            f"(supports: {', '.join(sorted(method_cls.supports))})"
        )


def few_shot_references(category: Category, shots: int, seed: int) -> list[Sample]:
    """The k normal train images a few-shot job uses: a seeded sample, stable across runs."""
    if shots > len(category.train):
        raise AdbenchError(
            f"category '{category.name}' has {len(category.train)} train images; cannot take {shots} shots"
        )
    rng = random.Random(f"{category.name}:{shots}:{seed}")
    return rng.sample(list(category.train), shots)


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
    ``size`` and moved to ``device`` one batch at a time (memory bounded by the batch, not the split).
    Batch zero-shot hands over the whole split in one call (the batch is its own reference set);
    the other protocols stream fixed-size batches.
    """
    if ctx.protocol == "batch_zero_shot":
        if not isinstance(images, torch.Tensor):
            images = load_images(images, int(size or method.image_size)).to(device or "cpu")
        return method.predict(images, ctx)
    scores, maps = [], []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        if not isinstance(batch, torch.Tensor):
            batch = load_images(batch, int(size or method.image_size)).to(device or "cpu")
        pred = method.predict(batch, ctx)
        scores.append(pred.scores.detach().float().cpu())
        if pred.maps is not None:
            maps.append(pred.maps.detach().float().cpu())
    return Prediction(torch.cat(scores), torch.cat(maps) if maps else None)


def make_context(protocol: str, category: Category, image_size: int, shots: int, seed: int) -> Context:
    """The Context for one job, with few-shot references loaded at the method's input size."""
    refs = None
    if protocol == "few_shot":
        refs = load_images(few_shot_references(category, shots, seed), image_size)
    return Context(
        protocol=protocol,
        category=category.name,
        seed=seed,
        references=refs,
        object_name=category.object_name,
    )


def two_fold_split(categories: Sequence[str]) -> dict[str, list[str]]:
    """For training and testing on one dataset: each category is evaluated by a model fitted on
    the other fold (alternate categories in sorted order), so no model sees its target category."""
    ordered = sorted(categories)
    folds = [ordered[0::2], ordered[1::2]]
    return {c: folds[1] if c in folds[0] else folds[0] for c in ordered}


#: Datasets whose default auxiliary data is themselves, split in two folds (no download needed).
SELF_TRAINED = {"synthetic"}


def auxiliary_names(target: str, train_on: Sequence[str] | None, method_cls: type | None = None) -> list[str]:
    """The auxiliary datasets of ``target``: a ``TARGET=AUX+AUX`` entry of ``train_on`` names them for
    one target (e.g. MVFA-AD's leave-one-out over the medical sets), the plain entries for every
    other target; without either, the method's own pairing (a ``default_auxiliary(target)``
    classmethod returning names, or None) and else :func:`default_auxiliary`."""
    per_target = dict(item.split("=", 1) for item in train_on or () if "=" in item)
    if target in per_target:
        return [a.strip() for a in per_target[target].split("+") if a.strip()]
    plain = [item for item in train_on or () if "=" not in item]
    own = getattr(method_cls, "default_auxiliary", None)
    return plain or (own(target) if own else None) or default_auxiliary(target)


def default_auxiliary(target: str) -> list[str]:
    """The papers' auxiliary dataset: MVTec AD for every target, VisA for MVTec AD itself; the
    built-in dataset trains on its own other fold so that a run works with nothing downloaded."""
    if target in SELF_TRAINED:
        return [target]
    return ["visa"] if target == "mvtec" else ["mvtec"]
