"""What a run (or one worker's share of it) did: jobs done, skipped, failed, written.

Its own module, importing nothing of the harness, so executors and worker pools build and merge
summaries without importing the job model back (no import circle).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunSummary:
    """Counts and one-line failures of a run; workers' summaries are merged into the driver's."""

    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    #: Keys of the records this run wrote (the driver tells observers about workers' records).
    written: list[str] = field(default_factory=list)
    #: Observer (tracker) failures of this run, one line each with a count: the run went on without them.
    notices: list[str] = field(default_factory=list)

    def merge(self, other: RunSummary) -> None:
        """Add another worker's counts."""
        self.done += other.done
        self.skipped += other.skipped
        self.failed += other.failed
        self.written += other.written
