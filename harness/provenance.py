"""Where a number came from: versions, commit, hardware and command line, stored in every record.

Collected once per run (cheap: no model is touched) and copied into each record under ``provenance``,
so a table can always be traced back to the code, libraries and machine that produced it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import __version__

#: Libraries whose versions can change numbers (the record keeps each one's installed version).
LIBRARIES = ("torch", "torchvision", "open_clip_torch", "timm", "numpy", "scipy", "scikit-learn", "pillow")


def library_versions() -> dict[str, str | None]:
    """Installed version of each library in :data:`LIBRARIES` (None when absent)."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.cache
def git_commit() -> str | None:
    """Commit of the adbench checkout when installed from one (editable install), else None;
    ``+dirty`` marks uncommitted changes."""
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+dirty" if dirty else "")) or None


def accelerator() -> dict[str, Any]:
    """CUDA/cuDNN versions and GPU names, when torch is already imported (never imports it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {"cuda": None, "cudnn": None, "gpus": []}
    cuda_ok = torch.cuda.is_available()
    return {
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda_ok else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda_ok else [],
    }


def collect(command: list[str] | None = None, suite: dict[str, Any] | None = None) -> dict[str, Any]:
    """The provenance block of a run: adbench version and commit, library versions, python, accelerator,
    host, the command line and the resolved suite (what ``adbench run --dump-config`` prints)."""
    acc = accelerator()
    return {
        "adbench": __version__,
        "git_commit": git_commit(),
        "libraries": library_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": acc["cuda"],
        "cudnn": acc["cudnn"],
        "gpus": acc["gpus"],
        "gpu_count": len(acc["gpus"]),
        "hostname": socket.gethostname(),
        "command": list(command if command is not None else sys.argv),
        "suite": suite,
    }
