"""Who holds a job's claim: the holder process's identity (pid and start time, so a reused pid is
not taken for the holder) and the notice a waiting run prints once."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import ResultsStore


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, Linux ``/proc``); None where unknown.

    Tells a live claim holder from an unrelated process that got the same pid (a restarted container
    reuses host name and pids)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class ClaimWaits:
    """Tells once per job, after a short wait, which claim it waits for (a silent wait can last
    the whole claim expiry, 10 minutes by default)."""

    def __init__(self, store: ResultsStore, after_s: float = 5.0) -> None:
        self.store = store
        self.after_s = min(after_s, store.claim_expiry_s / 4)
        self.since: dict[str, float] = {}
        self.told: set[str] = set()

    def note(self, key: str) -> str | None:
        """The notice for ``key`` the first time it has waited ``after_s``; else None."""
        first = self.since.setdefault(key, time.monotonic())
        if key in self.told or time.monotonic() - first < self.after_s:
            return None
        self.told.add(key)
        return self.store.claim_notice(key)
