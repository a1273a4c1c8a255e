"""Option types and shared options of the ``adbench`` commands (parsing only)."""

from __future__ import annotations

import re

import click

from ..jobs import DEVICE_CHOICES, DEVICE_PATTERN
from ..paths import DEFAULT_RESULTS_DIR


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _roots(values: tuple[str, ...], datasets: list[str]) -> dict[str, str]:
    """``--root PATH`` (one dataset) or ``--root NAME=PATH`` (any dataset the plan touches)."""
    from ..run_options import parse_roots

    return parse_roots(values, datasets)


class IntList(click.ParamType):
    """Comma-separated integers, each at least ``minimum`` (``--shots 1,2,4``, ``--seeds 0,1``)."""

    name = "ints"

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        if isinstance(value, tuple):
            return value
        try:
            items = tuple(int(v) for v in _csv(str(value)) or ())
        except ValueError:
            self.fail(f"{value!r}: expected comma-separated integers", param, ctx)
        if not items or min(items) < self.minimum:
            self.fail(f"{value!r}: every value must be an integer >= {self.minimum}", param, ctx)
        return items


def _device(ctx: click.Context, param: click.Parameter, value: str) -> str:

    if not re.fullmatch(DEVICE_PATTERN, value):
        raise click.BadParameter(f"{value!r}: expected {DEVICE_CHOICES}", ctx, param)
    return value


results_option = click.option(
    "--results",
    "results_dir",
    default=DEFAULT_RESULTS_DIR,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Results store directory.",
)
