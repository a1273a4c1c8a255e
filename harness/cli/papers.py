"""``adbench papers``: per seed paper, how many published numbers adbench can produce and a store has."""

from __future__ import annotations

from pathlib import Path

import click

from ..registry import get_registry
from ..store import ResultsStore


@click.command()
@click.option(
    "--results",
    "results_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Also count what this results store already reproduces.",
)
@click.option("--paper", default=None, help="Only papers whose file name contains this (any case).")
def papers(results_dir: str | None, paper: str | None) -> None:
    """Count each seed paper's published numbers that installed plugins can produce, and list the gaps."""
    from adbench.reports.coverage import coverage, format_coverage

    store = None
    if results_dir is not None:
        store = ResultsStore(results_dir).frame() if Path(results_dir).is_dir() else None
    registry = get_registry()
    click.echo(format_coverage(coverage(registry, store, paper), with_store=results_dir is not None))
    for line in registry.broken_lines():
        click.echo(f"warning: {line}", err=True)
