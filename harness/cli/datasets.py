"""``adbench datasets check|export-meta|download|list``: validate a dataset folder, export its
meta.json, download and list declared sources (``cli/download.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..registry import get_registry
from .download import download, list_datasets


@click.group()
def datasets() -> None:
    """Download, list and check dataset folders; export them as meta.json."""


@datasets.command()
@click.argument("name")
@click.option("--root", default=None, type=click.Path(), help="Dataset root folder.")
def check(name: str, root: str | None) -> None:
    """Validate a dataset folder and compare its counts with the published ones."""
    from ..dataset_tools import check_dataset

    report_ = check_dataset(get_registry().dataset(name)(root))
    click.echo(report_.format())
    if report_.errors:
        sys.exit(1)


@datasets.command(name="export-meta")
@click.argument("name")
@click.option("--root", default=None, type=click.Path(), help="Dataset root folder.")
@click.option(
    "--out", default=None, type=click.Path(dir_okay=False), help="Output file (default ROOT/meta.json)."
)
def export_meta(name: str, root: str | None, out: str | None) -> None:
    """Write a meta.json that AnomalyCLIP and AdaCLIP can read."""
    from ..dataset_tools import export_meta as do_export

    dataset = get_registry().dataset(name)(root)
    click.echo(str(do_export(dataset, Path(out) if out else None)))


datasets.add_command(download)
datasets.add_command(list_datasets)
