"""Connecting to Ray for ``--executor ray``: one-line errors within seconds, paths fixed on the driver.

``ray.init`` waits minutes for a HOST:PORT that does not answer and raises tracebacks for ``auto``
with no cluster, a malformed address or ``ray://`` without the client package; tasks run in the
Ray workers' working directory, so a relative ``--results`` or root would land (or fail) there.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AdbenchError

if TYPE_CHECKING:
    from .jobs import RunSpec

#: Seconds to wait for a HOST:PORT address to accept a connection.
CONNECT_TIMEOUT_S = 3.0


def check_reachable(address: str) -> None:
    """A one-line error unless ``HOST:PORT`` accepts a TCP connection (``auto`` and ``ray://`` pass)."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise AdbenchError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise AdbenchError(
            f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
            "is the head running (ray start --head)?"
        ) from None


def connect(ray: Any, address: str | None) -> None:
    """``ray.init`` for the driver, every failure one line naming ``--address``."""
    if address is not None:
        check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except Exception as exc:  # ConnectionError, ValueError, missing ray[client]: all the user's to fix
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = f"--address {address}" if address else "--executor ray"
        raise AdbenchError(f"{where}: cannot start or reach Ray ({first})") from None


def absolute_paths(run_spec: RunSpec, store_root: str) -> tuple[RunSpec, str]:
    """The spec's dataset roots and the store as absolute paths of the driver's working folder."""
    roots = {name: str(Path(root).expanduser().resolve()) for name, root in run_spec.roots.items()}
    return dataclasses.replace(run_spec, roots=roots), str(Path(store_root).expanduser().resolve())
