"""``adbench rescore``: recompute every record's metrics from its stored predictions."""

from __future__ import annotations

import sys

import click

from ..store import ResultsStore
from .options import results_option


@click.command()
@results_option
def rescore(results_dir: str) -> None:
    """Recompute all metrics from the stored predictions (after a metric fix); runs no model."""
    from ..scoring import rescore as do_rescore

    count, problems = do_rescore(ResultsStore(results_dir))
    click.echo(f"rescored {count} records")
    for line in problems:
        click.echo(f"error: {line}", err=True)
    if problems:
        sys.exit(1)
