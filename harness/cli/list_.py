"""``adbench list KIND``: what installed plugins provide (torch-free)."""

from __future__ import annotations

import click

from ..listing import LIST_KINDS
from ..registry import get_registry


@click.command(name="list")
@click.argument("kind", type=click.Choice(list(LIST_KINDS)))
def list_(kind: str) -> None:
    """List the methods, datasets, backbones or report formats that installed plugins provide, or the
    named evaluation protocols."""
    from ..evaluation import describe_protocols
    from ..listing import describe_entries

    if kind == "eval-protocols":
        click.echo(describe_protocols())
        return
    registry = get_registry()
    click.echo(describe_entries(registry, kind))
    for line in registry.broken_lines():
        click.echo(f"warning: {line}", err=True)
