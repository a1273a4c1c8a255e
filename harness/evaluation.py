"""Named evaluation protocols: where pixel metrics are computed, how masks are resized, which sigma.

Published pixel numbers depend on these choices (a thin defect resized nearest vs bilinear at 336 px
changes its region count, and so AUPRO), so each run stores the protocol it used and every setting
it resolved to. Protocols are data; ``adbench list eval-protocols`` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .errors import AdbenchError

if TYPE_CHECKING:
    from .methods import Method

MASK_RESIZES = ("nearest", "bilinear")
PRECISIONS = ("bf16", "fp32")

#: ``eval_size`` values: the method's input size, each image's own size, or a square side in px.
EvalSize = Literal["input", "original"] | int


@dataclass(frozen=True)
class EvalProtocol:
    """A named bundle of evaluation settings; ``smoothing_sigma`` None keeps the method's own sigma."""

    name: str
    description: str
    eval_size: EvalSize = "input"
    mask_resize: Literal["nearest", "bilinear"] = "nearest"
    smoothing_sigma: float | None = None


EVAL_PROTOCOLS: dict[str, EvalProtocol] = {
    p.name: p
    for p in (
        EvalProtocol(
            "default",
            "maps and masks at the method's input size; masks resized nearest-neighbour; method's sigma",
        ),
        EvalProtocol(
            "anomalyclip",
            "AnomalyCLIP lineage: 518 px, masks resized bilinearly and thresholded > 0.5, Gaussian sigma 4",
            eval_size=518,
            mask_resize="bilinear",
            smoothing_sigma=4.0,
        ),
        EvalProtocol(
            "original",
            "masks at their own resolution (non-square kept), maps resized to each image; method's sigma",
            eval_size="original",
        ),
    )
}


@dataclass(frozen=True)
class Evaluation:
    """The settings one job is scored with, resolved from a protocol, overrides and the method."""

    protocol: str
    size: int | Literal["original"]
    mask_resize: str
    smoothing_sigma: float

    def record(self) -> dict[str, object]:
        """The record fields naming this evaluation."""
        return {
            "eval_protocol": self.protocol,
            "eval_size": self.size,
            "mask_resize": self.mask_resize,
            "smoothing_sigma": self.smoothing_sigma,
        }


def eval_protocol(name: str) -> EvalProtocol:
    """The protocol called ``name``; a one-line error listing the known ones otherwise."""
    try:
        return EVAL_PROTOCOLS[name]
    except KeyError:
        raise AdbenchError(
            f"--eval-protocol {name!r}: unknown; choose one of {', '.join(EVAL_PROTOCOLS)}"
        ) from None


def parse_eval_size(value: str | int | None) -> EvalSize | None:
    """``--eval-size``: ``input``, ``original`` or a positive integer (square side in px)."""
    if value is None or value in ("input", "original"):
        return value  # type: ignore[return-value]
    size = 0  # true is not 1 px, nor 1.5 one pixel
    if not isinstance(value, bool) and not (isinstance(value, float) and not value.is_integer()):
        try:
            size = int(value)
        except (TypeError, ValueError, OverflowError):
            size = 0
    if size < 1:
        raise AdbenchError(f"--eval-size {value!r}: expected input, original or a positive integer")
    return size


def resolve_evaluation(
    protocol: str,
    input_size: int,
    method_sigma: float,
    eval_size: EvalSize | None = None,
    mask_resize: str | None = None,
    method_smooths: bool = False,
) -> Evaluation:
    """The protocol's settings, with ``--eval-size`` / ``--mask-resize`` overriding it, for a method
    with ``input_size`` px inputs and its own ``method_sigma``. A method that smooths its own maps
    (``method_smooths``) keeps its sigma under every protocol: the maps are smoothed once."""
    p = eval_protocol(protocol)
    size = p.eval_size if eval_size is None else parse_eval_size(eval_size)
    if mask_resize is not None and mask_resize not in MASK_RESIZES:
        raise AdbenchError(f"--mask-resize {mask_resize!r}: choose one of {', '.join(MASK_RESIZES)}")
    return Evaluation(
        protocol=p.name,
        size=int(input_size) if size == "input" else size,  # type: ignore[arg-type]
        mask_resize=mask_resize or p.mask_resize,
        smoothing_sigma=float(
            method_sigma if p.smoothing_sigma is None or method_smooths else p.smoothing_sigma
        ),
    )


def engine_sigma(method_cls: type[Method], evaluation: Evaluation) -> float:
    """The Gaussian sigma the engine applies to a job's maps: the evaluation's, or none when the
    method already smoothed them (``Method.smooths_own_maps``; the record still states its sigma)."""
    return 0.0 if method_cls.smooths_own_maps else float(evaluation.smoothing_sigma)


def describe_protocols() -> str:
    """Text for ``adbench list eval-protocols``: one line per protocol with its settings."""
    rows = [
        (
            p.name,
            f"size {p.eval_size}; masks {p.mask_resize}; sigma "
            + ("method's" if p.smoothing_sigma is None else f"{p.smoothing_sigma:g}"),
            p.description,
        )
        for p in EVAL_PROTOCOLS.values()
    ]
    head = ("name", "settings", "description")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows])
