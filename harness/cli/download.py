"""``adbench datasets download`` and ``adbench datasets list``: parse options, call
:mod:`adbench.download`, print. Registered on the ``datasets`` group in :mod:`adbench.cli`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import AdbenchError
from ..registry import get_registry


def _confirm_licences(datasets: list[type], accept: bool) -> None:
    """Ask once per non-commercial licence unless ``--accept-licence``; refusing is a one-line error."""
    for cls in datasets:
        licences = sorted({s.licence for s in cls.sources if s.non_commercial})
        if not licences or accept:
            continue
        question = (
            f"{cls.title or cls.name} is licensed {', '.join(licences)} (non-commercial use only). Accept?"
        )
        try:
            ok = click.confirm(question, default=False, err=True)
        except click.exceptions.Abort:
            ok = False
        if not ok:
            raise AdbenchError(
                f"dataset '{cls.name}': licence {', '.join(licences)} not accepted; pass --accept-licence "
                "to accept it without a prompt"
            )


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--to", "to", required=True, type=click.Path(file_okay=False), help="Folder to put NAME/ in.")
@click.option("--url", "urls", multiple=True, help="Mirror URL, one per archive of the dataset, in order.")
@click.option(
    "--sha256",
    "sha256s",
    multiple=True,
    help="Expected SHA-256, one per archive (overrides the shipped one).",
)
@click.option(
    "--from", "files", multiple=True, type=click.Path(dir_okay=False),
    help="An archive fetched by hand (Kaggle, Google Drive, a form), one per archive: verify and unpack it.",
)  # fmt: skip
@click.option("--accept-licence", is_flag=True, help="Accept non-commercial licences without asking.")
@click.option("--keep-archives", is_flag=True, help="Keep the downloaded archives after unpacking.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def download(
    names: tuple[str, ...],
    to: str,
    urls: tuple[str, ...],
    sha256s: tuple[str, ...],
    files: tuple[str, ...],
    accept_licence: bool,
    keep_archives: bool,
    no_progress: bool,
) -> None:
    """Download, verify and unpack datasets into TO/NAME, then check them as ``datasets check`` does."""
    from ..dataset_tools import check_dataset
    from ..download import download_dataset, plan

    if len(names) > 1 and (urls or sha256s or files):
        raise AdbenchError("--url, --sha256 and --from apply to one dataset: give a single NAME")
    registry = get_registry()
    datasets = [registry.dataset(n) for n in names]
    plans = [plan(cls, urls, sha256s, files) for cls in datasets]
    _confirm_licences([cls for cls, p in zip(datasets, plans) if any(a.url for a in p)], accept_licence)
    failed = False
    for cls, archives in zip(datasets, plans):
        final = download_dataset(
            cls, Path(to).expanduser(), archives, click.echo, not no_progress, keep_archives
        )
        report = check_dataset(cls(final))
        click.echo(report.format())
        if report.errors:
            failed = True
            continue
        click.echo(f"{cls.name}: ready at {final} (use --root {final}, or set ADBENCH_DATA={final.parent})")
    if failed:
        sys.exit(1)


@click.command(name="list")
@click.option("--sources", is_flag=True, help="Each archive: licence, size, SHA-256 and URL.")
def list_datasets(sources: bool) -> None:
    """The installed datasets; with --sources, where each one's files come from and under which licence."""
    from ..listing import describe_entries
    from ..sources import describe_sources

    registry = get_registry()
    if sources:
        click.echo(describe_sources([e.obj for e in registry.entries("dataset")]))
    else:
        click.echo(describe_entries(registry, "datasets"))
