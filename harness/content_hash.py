"""Content digests of data and weight files, cached so an unchanged 10 GB dataset costs one directory walk.

A digest is BLAKE2b over the whole file (hashlib's fastest secure hash; no extra dependency). The cache
is an SQLite table in the adbench home keyed by the resolved path and validated by (size, mtime_ns,
ctime_ns, inode): any rewrite of the file, even one that keeps its size and restores its mtime, changes
ctime and forces a rehash. SQLite (stdlib) gives atomic, concurrent-safe updates across parallel runs;
when the cache cannot be opened (read-only home) digests are still computed, just not remembered.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from .paths import adbench_home

_CHUNK = 1 << 20
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
    "ctime_ns INTEGER, inode INTEGER, digest TEXT)"
)


def hash_file(path: str | Path) -> str:
    """BLAKE2b-128 hex digest of a file's full content (no cache)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cache_path() -> Path:
    """Where the digest cache lives: ``<adbench home>/content-hashes.sqlite``."""
    return adbench_home() / "content-hashes.sqlite"


def _connect() -> sqlite3.Connection | None:
    try:
        path = cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_SCHEMA)
        return conn
    except (sqlite3.Error, OSError):
        return None


def file_digests(paths: Iterable[str | Path]) -> dict[Path, str]:
    """Content digest of each file, from the cache when its stat matches, else hashed and cached.

    Raises OSError (FileNotFoundError ...) for a file that cannot be read, like ``open`` would.
    """
    unique = list(dict.fromkeys(Path(p) for p in paths))
    keys = {path: os.path.abspath(path) for path in unique}  # no syscalls; stat validates the entry
    conn = _connect()
    out: dict[Path, str] = {}
    fresh: list[tuple[str, int, int, int, int, str]] = []
    try:
        cached: dict[str, tuple] = {}
        if conn is not None:
            values = list(keys.values())
            for i in range(0, len(values), 500):  # one query per 500 files, not one per file
                chunk = values[i : i + 500]
                rows = conn.execute(
                    "SELECT path, size, mtime_ns, ctime_ns, inode, digest FROM digests "
                    f"WHERE path IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                cached.update((row[0], row[1:]) for row in rows)
        for path in unique:
            st = os.stat(path)
            ident = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            row = cached.get(keys[path])
            if row is not None and tuple(row[:4]) == ident:
                out[path] = row[4]
                continue
            out[path] = hash_file(path)
            fresh.append((keys[path], *ident, out[path]))
        if conn is not None and fresh:
            try:
                with conn:
                    conn.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?)", fresh)
            except sqlite3.Error:
                pass  # a busy or read-only cache only costs a rehash next time
    finally:
        if conn is not None:
            conn.close()
    return out


def file_digest(path: str | Path) -> str:
    """Cached content digest of one file."""
    return file_digests([path])[Path(path)]
