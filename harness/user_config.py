"""The user's config file (``~/.config/adbench/config.toml`` or ``$ADBENCH_CONFIG``): per-dataset roots.

Example::

    [datasets.mvtec]
    root = "/data/mvtec_anomaly_detection"
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from .errors import AdbenchError


def config_path() -> Path:
    """``$ADBENCH_CONFIG`` or ``~/.config/adbench/config.toml`` (the file need not exist)."""
    return Path(
        os.environ.get("ADBENCH_CONFIG") or Path.home() / ".config" / "adbench" / "config.toml"
    ).expanduser()


def read_user_config() -> dict:
    """The parsed config file, ``{}`` when there is none; a syntax error is a one-line error naming the file."""
    path = config_path()
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AdbenchError(f"cannot read config file {path}: {exc}") from None


def dataset_root_setting(name: str) -> Path | None:
    """``[datasets.<name>] root`` from the config file (relative paths are relative to the file), or None."""
    datasets = read_user_config().get("datasets", {})
    if not isinstance(datasets, dict):
        raise AdbenchError(
            f"{config_path()}: datasets must be a table ([datasets.NAME] root = ...), got {datasets!r}"
        )
    section = datasets.get(name, {})
    root = section.get("root") if isinstance(section, dict) else None
    if root is None:
        return None
    if not isinstance(root, str):
        raise AdbenchError(f"{config_path()}: [datasets.{name}] root must be a string, got {root!r}")
    path = Path(root).expanduser()
    return path if path.is_absolute() else config_path().parent / path
