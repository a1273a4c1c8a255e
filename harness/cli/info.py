"""``adbench info METHOD``: a method's settings, resolved config and parameter counts."""

from __future__ import annotations

import click

from ..config import parse_set_options
from ..registry import get_registry


@click.command()
@click.argument("method")
@click.option("--set", "sets", multiple=True, metavar="METHOD.FIELD=VALUE")
def info(method: str, sets: tuple[str, ...]) -> None:
    """Describe a method: settings, resolved config and parameter counts at full size."""
    from ..info import describe_method

    click.echo(describe_method(method, get_registry(), parse_set_options(sets).get(method, {})))
