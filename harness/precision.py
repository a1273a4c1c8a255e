"""The one precision policy every stage of a job follows (backbone forward, head, similarity, training).

``--precision`` resolves to an effective precision per job (:func:`effective_precision`); the runner
enters :func:`precision_scope` around the whole job and each stage enters :func:`autocast`, which reads
the scope. ``fp32`` enters an explicitly *disabled* autocast: an inner enabled autocast would win over
an outer disabled one, so a stage that enabled bf16 on its own would make an fp32 record untrue.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch

#: What a record's ``precision`` says: bf16 autocast, or full fp32 throughout.
BF16, FP32 = "bf16-autocast", "fp32"
_ACTIVE: ContextVar[str | None] = ContextVar("adbench_precision", default=None)
#: Device types torch.autocast accepts (``enabled=False`` included); others run as they are.
_AUTOCAST_DEVICES = ("cuda", "cpu", "xpu", "mps")


def effective_precision(requested: str, device: torch.device | str) -> str:
    """What a job runs in for ``--precision`` ``requested``: bf16 autocast on CUDA unless ``fp32`` is
    asked for; other devices run fp32 (CPU bf16 is slower than fp32 there and changes the numbers)."""
    return FP32 if requested == "fp32" or torch.device(device).type != "cuda" else BF16


def active_precision(device: torch.device | str) -> str:
    """The precision of the enclosing :func:`precision_scope`; outside one, the ``bf16`` default."""
    precision = _ACTIVE.get()
    return precision if precision is not None else effective_precision("bf16", device)


@contextlib.contextmanager
def precision_scope(precision: str) -> Iterator[None]:
    """Run the enclosed stages in ``precision`` (``bf16-autocast`` or ``fp32``) on any device."""
    if precision not in (BF16, FP32):
        raise ValueError(f"precision {precision!r}: expected {BF16} or {FP32}")
    token = _ACTIVE.set(precision)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def autocast(device: torch.device | str) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on ``device`` when the active precision is bf16, else autocast explicitly off
    (so fp32 holds inside an outer enabled autocast too)."""
    device = torch.device(device)
    enabled = active_precision(device) == BF16
    if device.type not in _AUTOCAST_DEVICES:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
