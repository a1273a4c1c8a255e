"""``adbench leaderboard STORE...``: one static, self-contained site from several results stores."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("stores", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option(
    "--out", default="adbench-site", show_default=True, type=click.Path(file_okay=False), help="Site folder."
)
def leaderboard(stores: tuple[str, ...], out: str) -> None:
    """Merge results stores into one static, self-contained leaderboard site (conflicts flagged)."""
    from ..reports.leaderboard import build_site
    from ..run_options import output_folder

    summary = build_site([Path(s) for s in stores], output_folder(out, "--out"))
    click.echo(
        f"{summary['jobs']} jobs ({summary['duplicates']} duplicates merged, {summary['conflicts']} conflicts) "
        f"-> {Path(out) / 'index.html'} ({summary['pages']} pages)"
    )
