"""File names derived from data (dataset, category, provider, method names) made safe.

Every file name the harness builds from a name it did not choose itself (a ``meta.json`` class, a
plugin's provider name) goes through :func:`safe_name`, and every such path through :func:`safe_path`,
so ``../``, absolute paths, NUL bytes and newlines can neither leave the output root nor break a
LaTeX ``\\includegraphics`` or a Markdown link.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .errors import AdbenchError

#: Characters kept as they are; anything else becomes '-'. The set is safe in every file system,
#: in LaTeX's \includegraphics (underscores are fine there) and in a Markdown link.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: Longest name kept whole (file systems allow 255 bytes; a suffix and a hash must still fit).
MAX_LENGTH = 100


def safe_name(name: object) -> str:
    """``name`` as one file-name component: unsafe runs become '-', no leading dot, never empty.

    A name that had to change gets a short hash of the original, so two names that differ only in
    unsafe characters (``a/b`` and ``a-b``) never share a file.
    """
    text = str(name)
    safe = _UNSAFE.sub("-", text).strip(".-")[:MAX_LENGTH] or "unnamed"
    if safe != text:
        safe += "-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return safe


def safe_path(root: str | Path, *names: object, suffix: str = "") -> Path:
    """``root/<safe name>/.../<safe name><suffix>``, checked to stay under ``root``."""
    if not names:
        raise ValueError("safe_path needs at least one name")
    parts = [safe_name(n) for n in names]
    path = Path(root).joinpath(*parts[:-1], parts[-1] + suffix)
    base = Path(root).resolve()
    if not path.resolve().is_relative_to(base):  # a symlinked folder inside the root
        raise AdbenchError(f"{path}: leads outside {base}; refusing to write there")
    return path
