"""Results store: one JSON record and one predictions file per job, written atomically.

Layout under the results directory (``--results``, default ``./adbench-results``)::

    records/<key>.json        metrics, resolved config, dataset/backbone identity, timings
    predictions/<key>.npz     image scores and labels, anomaly maps (float16) and masks, sample ids
    training/<key>.json       training logs of fitted methods (written by the training engine)
    claims/<key>.claim        a job being computed right now (host, pid, time; see :meth:`ResultsStore.claim`)
    quarantine/               unreadable records and predictions moved aside (recomputed on the next run)

One file per job (no shared database to lock); a killed run never leaves a half file because every
write goes to a temporary file in the same directory and is renamed into place. Records hold raw
predictions' key, so ``adbench rescore`` recomputes metrics without running any model.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import socket
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .claims import pid_alive, process_start
from .errors import AdbenchError
from .paths import DEFAULT_RESULTS_DIR
from .predictions import PREDICTION_KEYS, StoredPredictions, inconsistent_lengths, pack, unpack
from .record import REQUIRED_FIELDS, JobRecord, schema_problem
from .record_rows import SETTINGS_KEY, json_hashable, record_row
from .run_options import results_folder
from .store_index import INDEX_NAME, RecordIndex

#: Columns printed first by ``adbench results`` and the order rows are sorted in.
ID_COLUMNS = ("method", "variant", "dataset", "category", "protocol", "shots", "seed")
#: Sort order of job rows (``adbench run``/``results``, per-category CSV rows).
SORT_COLUMNS = ("method", "dataset", "category", "shots", "seed")


def _json_safe(obj: Any) -> Any:
    """Replace NaN/inf by None (JSON has no NaN) and numpy scalars by Python ones."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, Path):  # e.g. FitResult.path in a record's "fit"
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _umask() -> int:
    """The process umask (reading it means setting it; restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    The file gets the mode a plain ``open`` would (0666 minus the umask), not mkstemp's 0600, so a
    shared results directory stays readable by the team.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as pretty JSON (NaN written as null)."""
    atomic_write_bytes(path, json.dumps(_json_safe(obj), indent=2, sort_keys=True).encode())


#: A claim whose heartbeat is older than this is stale (its run died on another host).
DEFAULT_CLAIM_EXPIRY_S = 600.0


def parse_record(raw: bytes) -> dict[str, Any]:
    """A record from its bytes; ValueError (one line) unless it is a JSON object with the identity fields."""
    try:
        rec = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(rec, dict):
        raise ValueError(f"a JSON {type(rec).__name__}, not an object")
    missing = [f for f in REQUIRED_FIELDS if f not in rec]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    problem = schema_problem(rec)
    if problem:
        raise ValueError(problem)
    return rec


def predictions_problem(path: Path) -> str | None:
    """None when ``path`` is a predictions file that opens without pickles and has every key; else why not.

    Cheap: reads the zip directory, not the arrays.
    """
    if not path.exists():
        return "missing"
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = PREDICTION_KEYS - set(data.files)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        return f"unreadable ({exc.__class__.__name__})"
    return f"missing arrays {', '.join(sorted(missing))}" if missing else None


class ResultsStore:
    """A directory of job records; the only thing reports read."""

    def __init__(
        self, root: str | Path = DEFAULT_RESULTS_DIR, claim_expiry_s: float = DEFAULT_CLAIM_EXPIRY_S
    ) -> None:
        self.root = results_folder(root)
        self.claim_expiry_s = claim_expiry_s
        self._warned: set[Path] = set()

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    @property
    def training_dir(self) -> Path:
        return self.root / "training"

    @property
    def claims_dir(self) -> Path:
        return self.root / "claims"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    def record_path(self, key: str) -> Path:
        return self.records_dir / f"{key}.json"

    def predictions_path(self, key: str) -> Path:
        return self.predictions_dir / f"{key}.npz"

    def check_writable(self) -> None:
        """One-line error unless records, predictions and claims can be written (checked before any work)."""
        for folder in (self.records_dir, self.predictions_dir, self.claims_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-test.")
                os.close(fd)
                os.unlink(tmp)
            except OSError as exc:
                raise AdbenchError(
                    f"results store {self.root} is not writable ({folder}: {exc.strerror or exc}); "
                    "choose another --results folder"
                ) from None

    # --- reading and repairing ----------------------------------------------------------------
    def quarantine(self, path: Path, why: str) -> None:
        """Move an unreadable file to ``quarantine/`` (its job counts as missing) and warn once with its path."""
        moved = ""
        try:
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            target = self.quarantine_dir / f"{path.name}.{int(time.time())}"
            os.replace(path, target)
            moved = f"; moved to {target}"
        except OSError:
            pass  # a read-only store: skip it all the same
        if path not in self._warned:
            self._warned.add(path)
            warnings.warn(
                f"unreadable {'record' if path.suffix == '.json' else 'predictions'} {path}: {why}{moved}; it will be recomputed",
                stacklevel=3,
            )

    def load_record_file(self, path: Path) -> dict[str, Any] | None:
        """The record at ``path``; None (after quarantining it) when it is unreadable or not a record."""
        try:
            rec = parse_record(path.read_bytes())
            if rec["key"] != path.stem:  # a backup, a sync-conflict copy, a hand-made copy
                raise ValueError(f"its key is {str(rec['key'])[:40]!r}, not its file name (a stray copy?)")
            return rec
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            self.quarantine(path, "a folder, not a record")
            return None
        except (OSError, ValueError) as exc:
            self.quarantine(path, str(exc))
            return None

    def has(self, key: str) -> bool:
        """True when the job is done: its record is a valid ``ok`` record and its predictions validate."""
        rec = self.load_record_file(self.record_path(key))
        if rec is None or rec.get("status") != "ok":
            return False
        problem = predictions_problem(self.predictions_path(key))
        if problem is None:
            return True
        if problem != "missing":
            self.quarantine(self.predictions_path(key), problem)
        return False

    def write_record(self, record: JobRecord | dict[str, Any]) -> Path:
        data = record.to_dict() if isinstance(record, JobRecord) else JobRecord.from_dict(record).to_dict()
        problem = schema_problem(_json_safe(data))
        if problem:  # the reader would quarantine it: say so where the wrong value is made
            warnings.warn(
                f"record {data['key']}: {problem}; a plugin filled a field of the wrong type", stacklevel=2
            )
        path = self.record_path(data["key"])
        atomic_write_json(path, data)
        self.index.update(path, data)
        return path

    def read_record(self, key: str) -> dict[str, Any]:
        rec = self.load_record_file(self.record_path(key))
        if rec is None:
            raise AdbenchError(f"no readable record for job {key} in {self.records_dir}")
        return rec

    def write_predictions(self, key: str, **arrays: np.ndarray) -> Path:
        """Save raw predictions (the runner passes maps as float16 to keep the store small)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path = self.predictions_path(key)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def read_predictions(self, key: str) -> dict[str, np.ndarray]:
        path = self.predictions_path(key)
        problem = predictions_problem(path)
        if problem == "missing":
            raise AdbenchError(f"no stored predictions for job {key} in {self.predictions_dir}")
        if problem is not None:
            raise AdbenchError(f"predictions {path}: {problem}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise AdbenchError(f"predictions {path}: unreadable ({exc.__class__.__name__}: {exc})") from None
        if problem := inconsistent_lengths(arrays):
            raise AdbenchError(f"predictions {path}: {problem}")
        return arrays

    def save_predictions(self, key: str, **values: Any) -> Path:
        """Write one job's predictions in the store's format (:func:`adbench.predictions.pack`)."""
        return self.write_predictions(key, **pack(**values))

    def load_predictions(self, key: str) -> StoredPredictions:
        """One job's predictions, maps and masks per image (:func:`adbench.predictions.unpack`)."""
        return unpack(self.read_predictions(key))

    def write_training_log(self, key: str, log: dict[str, Any]) -> Path:
        path = self.training_dir / f"{key}.json"
        atomic_write_json(path, log)
        return path

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """Every readable record, in file-name order; unreadable ones are quarantined with one warning each."""
        if not self.records_dir.exists():
            return
        for path in sorted(self.records_dir.glob("*.json")):
            rec = self.load_record_file(path)
            if rec is not None:
                yield rec

    # --- claims: one job computed once, even by concurrent runs ---------------------------------
    def claim_path(self, key: str) -> Path:
        return self.claims_dir / f"{key}.claim"

    def claim_is_stale(self, path: Path) -> bool:
        """A claim is stale when its process is dead on this host or its heartbeat is older than the expiry."""
        try:
            info = json.loads(path.read_text())
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        except (OSError, ValueError):  # empty or torn: its writer died, unless it is being written now
            with contextlib.suppress(OSError):
                return time.time() - path.stat().st_mtime > 5.0
            return True
        pid = info.get("pid") if isinstance(info, dict) else None
        if not isinstance(pid, int) or pid <= 0:
            return True
        if info.get("host") == socket.gethostname():
            if not pid_alive(pid):
                return True
            start, now = info.get("start"), process_start(pid)
            if isinstance(start, int) and now is not None and start != now:
                return True  # the pid now belongs to another process
        return age > self.claim_expiry_s

    def _try_create_claim(self, path: Path) -> bool:
        payload = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "start": process_start(os.getpid()),
                "time": time.time(),
            }
        ).encode()
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_umask())
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        return True

    def _break_stale(self, path: Path) -> None:
        """Remove a stale claim; renaming first means two runs breaking it at once cannot both win."""
        aside = path.with_name(f"{path.name}.stale.{os.getpid()}.{threading.get_ident()}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        if aside.is_dir():  # a folder where a claim file goes: no run holds it
            shutil.rmtree(aside, ignore_errors=True)
            return
        if not self.claim_is_stale(aside):  # someone re-claimed between our check and the rename
            with contextlib.suppress(FileExistsError, FileNotFoundError):
                os.link(aside, path)
        aside.unlink(missing_ok=True)

    def sweep_stale_claims(self) -> int:
        """Remove the stale claims of dead runs (a run killed after its last write leaves one); returns how many."""
        swept = 0
        for path in self.claims_dir.glob("*.claim") if self.claims_dir.exists() else []:
            if self.claim_is_stale(path):
                self._break_stale(path)
                swept += 1
        return swept

    @contextlib.contextmanager
    def hold(self, key: str, poll_s: float = 0.5) -> Iterator[None]:
        """Claim ``key``, waiting while another live process holds it (e.g. a fit being trained by
        another worker); released on exit. A holder that dies leaves a stale claim, which is taken over."""
        while True:
            with self.claim(key) as claimed:
                if claimed:
                    yield
                    return
            time.sleep(poll_s)

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[bool]:
        """Claim a job for this process: yields True when claimed (released on exit), False when another
        live run holds it. The claim file is created with O_EXCL and kept fresh by a heartbeat thread."""
        self.claims_dir.mkdir(parents=True, exist_ok=True)
        path = self.claim_path(key)
        claimed = self._try_create_claim(path)
        if not claimed and self.claim_is_stale(path):
            self._break_stale(path)
            claimed = self._try_create_claim(path)
        if not claimed:
            yield False
            return
        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(max(self.claim_expiry_s / 4, 0.05)):
                with contextlib.suppress(OSError):
                    os.utime(path)

        thread = threading.Thread(target=heartbeat, daemon=True)
        thread.start()
        try:
            yield True
        finally:
            stop.set()
            thread.join()
            path.unlink(missing_ok=True)

    def claim_notice(self, key: str) -> str:
        """What a job waiting for ``key``'s claim waits for, and how to break the claim."""
        path = self.claim_path(key)
        try:
            info = json.loads(path.read_text())
            age = time.time() - path.stat().st_mtime
            holder = f"pid {info.get('pid')} on {info.get('host')} (heartbeat {age:.0f} s ago)"
        except (OSError, ValueError, AttributeError):
            holder = "another process"
        return (
            f"waiting for {path}, held by {holder}; it is taken over when that process ends or after "
            f"{self.claim_expiry_s:.0f} s without a heartbeat; if it is no adbench run, delete the file"
        )

    def records(self) -> Iterator[JobRecord]:
        """Every readable record as the typed schema (any schema version)."""
        for data in self.iter_records():
            yield JobRecord.from_dict(data)

    @property
    def index(self) -> RecordIndex:
        """The SQLite cache of table rows (``index.sqlite``), reconciled with the records on each read."""
        return RecordIndex(self.records_dir, self.root / INDEX_NAME, record_row, load=self.load_record_file)

    def frame(self, include_failed: bool = False) -> pd.DataFrame:
        """One row per job (:func:`record_row`), sorted by method, dataset, category, shots, seed;
        ``frame.attrs["settings"]`` lists the setting columns. Read through the row index, so only new
        or changed records are parsed."""
        rows = []
        settings: dict[str, None] = {}
        for row in self.index.rows():
            names = row.pop(SETTINGS_KEY, [])
            if row.get("status") != "ok" and not include_failed:
                continue
            settings.update(dict.fromkeys(names))
            rows.append(row)
        frame = pd.DataFrame(rows)
        for column in frame.columns:  # JSON lists back to hashable tuples
            values = frame[column]
            if values.dtype == object and values.map(type).eq(list).any():
                frame[column] = values.map(json_hashable)
        if not frame.empty:
            frame = frame.sort_values(list(SORT_COLUMNS), kind="stable", ignore_index=True)
        frame.attrs["settings"] = list(settings)
        return frame
