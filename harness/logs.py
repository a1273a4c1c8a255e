"""Logging for a run: one line per event on the terminal, everything (full tracebacks) in a log file.

Standard :mod:`logging` under the ``adbench`` logger. ``-v``/``-q`` move the terminal level; the file
``<results>/logs/<UTC timestamp>.log`` always gets DEBUG and every failed job's full traceback, so the
terminal can stay at one line per failure.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

LOGGER = "adbench"
_FORMAT_FILE = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    """The message only, without the traceback a record may carry (that goes to the log file)."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        return text.splitlines()[0] if text else text


def terminal_level(verbosity: int) -> int:
    """``-q`` (-1) errors only, default warnings, ``-v`` info, ``-vv`` debug."""
    return {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
        max(-1, min(verbosity, 2)), logging.DEBUG
    )


def configure(verbosity: int = 0, results_dir: str | Path | None = None) -> Path | None:
    """Set up the ``adbench`` logger; with ``results_dir`` also open ``logs/<timestamp>.log`` there and
    return its path. Idempotent: earlier adbench handlers are replaced."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        if getattr(handler, "_adbench", False):
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    console = logging.StreamHandler()
    console.setLevel(terminal_level(verbosity))
    console.setFormatter(OneLineFormatter())
    console._adbench = True  # type: ignore[attr-defined]
    logger.addHandler(console)
    if results_dir is None:
        return None
    folder = Path(results_dir) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    path = folder / f"{stamp}-{os.getpid()}.log"
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(logging.Formatter(_FORMAT_FILE))
    file_handler._adbench = True  # type: ignore[attr-defined]
    logger.addHandler(file_handler)
    return path
