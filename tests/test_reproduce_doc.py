"""Every command in ``docs/reproduce.md`` is one the CLI accepts: each ``adbench`` line is parsed by the
real click commands (options, arguments, choices), and files it names exist where they must."""

from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path

import click
import pytest

from adbench.cli import cli

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reproduce.md"
#: Setup lines the page may hold besides adbench commands (the CI's own install runs the same steps).
SETUP = ("python3.11 -m venv ", ". .venv/bin/activate", "pip install -e .", "export ADBENCH_")


def doc_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def parse(args: list[str]) -> click.Context:
    """Parse ``args`` down to the leaf command without running it (click's own validation)."""
    command: click.Command = cli
    ctx = command.make_context("adbench", list(args))
    while isinstance(command, click.Group):
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 9.0 folds it into args
            warnings.simplefilter("ignore", DeprecationWarning)
            rest = [*ctx.protected_args, *ctx.args]
        if not rest:
            break
        _, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(command.name, rest, parent=ctx)
    return ctx


def test_the_page_has_every_step() -> None:
    text = " ".join(doc_commands())
    for step in (
        "pip install",
        "--dry-run",
        "adbench datasets download",
        "adbench run --config suites/",
        "--published",
    ):
        assert step in text, step


@pytest.mark.parametrize("line", [c for c in doc_commands() if c.startswith("adbench ")])
def test_each_adbench_command_parses(line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    ctx = parse(shlex.split(line)[1:])
    assert not isinstance(ctx.command, click.Group), f"{line}: names no subcommand"
    config = ctx.params.get("config_file")
    assert config is None or Path(config).is_file(), f"{line}: no suite {config}"


def test_other_lines_are_setup_steps() -> None:
    others = [c for c in doc_commands() if not c.startswith("adbench ")]
    assert others and all(c.startswith(SETUP) for c in others), others


def test_a_wrong_option_would_fail() -> None:
    """The parse check is real: an unknown option or a missing argument is refused."""
    with pytest.raises(click.UsageError):
        parse(["datasets", "download", "mvtec", "--too", "x"])
    with pytest.raises(click.UsageError):
        parse(["report", "--paper"])
