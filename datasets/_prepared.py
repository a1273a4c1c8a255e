"""Preprocessed copies of raw datasets (KSDD thirds, DAGM split), built once into the adbench cache, atomically.

The cache key is a fingerprint of the raw files (relative paths and sizes) plus the variant name, so a
changed raw copy or a changed recipe gets a fresh folder. The folder is built in a sibling temp
folder and renamed when complete: an interrupted build leaves nothing half-written behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from adbench.errors import AdbenchError
from adbench.paths import cache_dir

MARKER = ".prepared.json"


def raw_fingerprint(root: Path, files: Iterable[Path]) -> str:
    """Hash of the relative paths and sizes of the raw files the preparation reads."""
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(f"{p.relative_to(root).as_posix()}|{p.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def prepared_dir(kind: str, variant: str, key: str, build: Callable[[Path], dict]) -> Path:
    """``<home>/prepared/<kind>/<variant>-<key>``, built by ``build(tmp_folder) -> summary`` on first use."""
    base = cache_dir("prepared", kind)
    final = base / f"{variant}-{key}"
    if (final / MARKER).is_file():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=base))
    tmp.chmod(0o755)  # mkdtemp makes it private; the finished folder should read like any cache folder
    try:
        summary = build(tmp)
        (tmp / MARKER).write_text(
            json.dumps({"variant": variant, "raw_fingerprint": key, **summary}, indent=1)
        )
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MARKER).is_file():  # not a lost race with a concurrent build: a real failure
                raise AdbenchError(f"cannot create prepared folder {final}; remove it and retry") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_marker(folder: Path) -> dict:
    """The summary written next to a prepared folder's files."""
    return json.loads((folder / MARKER).read_text())
