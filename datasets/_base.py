"""Shared base of the real-dataset plugins: root resolution, cached scans, one-line errors, check support.

A subclass implements :meth:`NativeDataset.discover` (category names; raises on a wrong root) and
:meth:`NativeDataset.scan` (one category and every problem found in it). Loading a category raises
its first error; ``adbench datasets check`` shows them all.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from adbench.data import Category, Dataset
from adbench.dataset_tools import Issue
from adbench.errors import AdbenchError
from adbench.paths import data_root
from adbench.user_config import config_path, dataset_root_setting

from ._scan import describe_found


class NativeDataset(Dataset):
    """A dataset read from the folder the user unpacked, in its published layout."""

    #: Where to get it (for ``docs/datasets.md``).
    source: ClassVar[str] = ""
    #: The expected folder layout, one line (used in wrong-root errors and the docs table).
    layout: ClassVar[str] = ""

    def __init__(self, root: str | Path | None = None) -> None:
        super().__init__(root)
        self._names: list[str] | None = None
        self._scans: dict[str, tuple[Category, list[Issue]]] = {}

    @classmethod
    def default_root(cls) -> Path | None:
        """``$ADBENCH_DATA/<name>`` if it exists, else ``[datasets.<name>] root`` of the config file."""
        env = data_root(cls.name)
        if env is not None and env.is_dir():
            return env
        return dataset_root_setting(cls.name) or env

    @property
    def data_dir(self) -> Path:
        """The folder holding the files the samples point to (a prepared copy for KSDD)."""
        return self.require_root()

    def require_root(self) -> Path:
        """The root folder, or a one-line error saying how to set it."""
        how = (
            f"pass --root PATH, set $ADBENCH_DATA (looks in $ADBENCH_DATA/{self.name}) or add "
            f'[datasets.{self.name}] root = "PATH" to {config_path()}'
        )
        if self.root is None:
            raise AdbenchError(f"dataset '{self.name}': no root folder given; {how}")
        if not self.root.is_dir():
            raise AdbenchError(f"dataset '{self.name}': root {self.root} is not a folder; {how}")
        return self.root

    def wrong_root(self, expected: str, hint: str = "") -> AdbenchError:
        """A one-line error: what the layout should be, what the root holds, then ``hint``."""
        return AdbenchError(
            f"dataset '{self.name}': {self.root} does not look like {self.title or self.name}: "
            f"expected {expected}; found {describe_found(self.root)}{hint}"
        )

    @abstractmethod
    def discover(self) -> list[str]:
        """Category names found under the root (raise :meth:`wrong_root` when the layout is not there)."""

    @abstractmethod
    def scan(self, name: str) -> tuple[Category, list[Issue]]:
        """One category and the problems found in it (missing masks, extra masks, empty splits)."""

    def categories(self) -> list[str]:
        if self._names is None:
            self.require_root()
            self._names = self.discover()
        return list(self._names)

    def inspect_category(self, name: str) -> tuple[Category, list[Issue]]:
        """The category and every problem found in it (used by ``adbench datasets check``)."""
        self.check_category_name(name)
        if name not in self._scans:
            category, issues = self.scan(name)
            self._scans[name] = (category, self.escaping_paths(category) + issues)
        return self._scans[name]

    def escaping_paths(self, category: Category) -> list[Issue]:
        """An error for each file that resolves outside the data folder (a symlink leading out), as
        ``meta`` refuses paths that escape its root: a dataset reads only what lies under its root."""
        base = os.path.realpath(self.data_dir)
        folders: dict[str, str] = {}  # real path per folder: one resolution per folder, not per file

        def real(path: Path) -> str:
            if os.path.islink(path):
                return os.path.realpath(path)
            folder = os.path.dirname(path)
            if folder not in folders:
                folders[folder] = os.path.realpath(folder)
            return os.path.join(folders[folder], os.path.basename(path))

        issues = []
        for s in [*category.train, *category.test]:
            for p in (s.image_path, s.mask_path):
                if p is not None and os.path.commonpath([base, target := real(p)]) != base:
                    issues.append(
                        Issue("error", "layout", f"{p} leads outside the root {base} (to {target}); refused")
                    )
        return issues

    def load_category(self, name: str) -> Category:
        """Train and test samples of one category; its first error (if any) as a one-line AdbenchError."""
        category, issues = self.inspect_category(name)
        errors = [i.message for i in issues if i.level == "error"]
        if errors:
            more = (
                f" (and {len(errors) - 1} more problem(s); run 'adbench datasets check {self.name}')"
                if len(errors) > 1
                else ""
            )
            raise AdbenchError(f"dataset '{self.name}': {errors[0]}{more}")
        return category


D = TypeVar("D", bound=Dataset)


def declare(base: type[D], cls_name: str, doc: str, **constants: Any) -> type[D]:
    """A dataset class that differs from ``base`` only in constants, written as one row of data (timm's
    ``_cfg`` / open_clip's ``_pcfg`` style) instead of a class body; it lives in ``base``'s module."""
    namespace = {"__module__": base.__module__, "__qualname__": cls_name, "__doc__": doc, **constants}
    return type(cls_name, (base,), namespace)
