"""``adbench results``: one row per job with a column per metric (table, CSV or JSON)."""

from __future__ import annotations

import click

from ..store import ResultsStore
from .options import results_option

RANDOM_BANNER = (
    "NOTE: backbones with randomly initialised weights were used ({names}): "
    "these numbers are not comparable to published results."
)


def print_results(store: ResultsStore, fmt: str) -> None:
    df = store.frame()
    if df.empty:
        click.echo(f"no results in {store.root}")
        return
    if df["random_weights"].any():
        names = sorted(df.loc[df["random_weights"], "method"].unique())
        # csv/json stay machine-readable on stdout; the warning goes to stderr there
        click.echo(RANDOM_BANNER.format(names="methods: " + ", ".join(names)), err=fmt != "table")
    if fmt == "csv":
        click.echo(df.to_csv(index=False), nl=False)
    elif fmt == "json":  # whole records (provenance, definitions, timings), in the table's row order
        import json

        records = {rec.key: rec.to_dict() for rec in store.records() if rec.ok}
        click.echo(json.dumps([records[k] for k in df["key"] if k in records], indent=2, default=str))
    else:
        import pandas as pd

        from ..metrics import METRICS
        from ..store import ID_COLUMNS

        columns = [c for c in (*ID_COLUMNS, *METRICS, "images_per_s") if c in df.columns]
        with pd.option_context("display.max_rows", 500, "display.max_columns", 50, "display.width", 250):
            click.echo(df[columns].round(4).to_string(index=False, na_rep="—"))


@click.command()
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@results_option
def results(fmt: str, results_dir: str) -> None:
    """Print one row per job with a column per metric."""
    print_results(ResultsStore(results_dir), fmt)
