"""The ``adbench`` command line: one small module per subcommand, each only parsing options and
calling the harness; this module holds the group and the console entry point (``adbench.cli:main``)."""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import AdbenchError
from .compare import compare
from .datasets import datasets
from .info import info
from .leaderboard import leaderboard
from .list_ import list_
from .papers import papers
from .report import report
from .rescore import rescore
from .results import results
from .run import run

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="adbench (adbench-zsad)")
@click.option("-v", "--verbose", count=True, help="More log output on the terminal (-vv: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on the terminal.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """adbench: benchmark zero-shot anomaly detection methods on equal terms."""
    from ..logs import configure

    ctx.obj = {"verbosity": -1 if quiet else verbose}
    configure(ctx.obj["verbosity"])


for _command in (run, results, rescore, report, compare, leaderboard, papers, list_, info, datasets):
    cli.add_command(_command)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    import warnings

    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # bad option values: one line, like every other user error
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except AdbenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # a file system that says no (read-only, full, a file where a folder goes)
        click.echo(f"error: {exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), err=True)
        sys.exit(2)
    except SystemExit:
        raise


if __name__ == "__main__":
    main()
