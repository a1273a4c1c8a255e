"""The SQLite row index is a cache: reads through it always equal a fresh parse of the JSON records."""

from __future__ import annotations

import json
import os

from adbench.store import ResultsStore, record_row


def _record(i: int, auroc: float = 0.5) -> dict:
    return {
        "key": f"k{i:04d}",
        "method": "m",
        "dataset": "d",
        "category": f"c{i}",
        "protocol": "zero_shot",
        "status": "ok",
        "metrics": {"image_auroc": auroc},
        "method_config": {"layers": [1, 2]},
        "notes": ["n"],
    }


def _fresh(store: ResultsStore) -> list[dict]:
    return [record_row(json.loads(p.read_text())) for p in sorted(store.records_dir.glob("*.json"))]


def test_index_follows_writes_edits_deletions_and_rebuilds(tmp_path):
    store = ResultsStore(tmp_path)
    for i in range(5):
        store.write_record(_record(i))
    frame = store.frame()
    assert (tmp_path / "index.sqlite").exists() and len(frame) == 5
    assert frame.loc[0, "config.layers"] == (1, 2) and frame.loc[0, "notes"] == ("n",)

    # an edit behind the store's back (new size and mtime) and a deletion are picked up
    path = store.record_path("k0001")
    path.write_text(json.dumps(_record(1, auroc=0.875)))
    os.utime(path, ns=(1, 1))
    store.record_path("k0002").unlink()
    frame = store.frame()
    assert list(frame["key"]) == ["k0000", "k0001", "k0003", "k0004"]
    assert frame.set_index("key").loc["k0001", "image_auroc"] == 0.875
    assert [r["image_auroc"] for r in _fresh(store)] == list(frame["image_auroc"])

    # a corrupt index is never trusted: reads fall back to the records, and it is rebuilt
    (tmp_path / "index.sqlite").write_bytes(b"not a database")
    for name in ("index.sqlite-wal", "index.sqlite-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    assert list(store.frame()["key"]) == ["k0000", "k0001", "k0003", "k0004"]
    import sqlite3

    with sqlite3.connect(tmp_path / "index.sqlite") as con:
        assert con.execute("SELECT count(*) FROM rows").fetchone()[0] == 4


def test_rows_are_cached_and_not_reparsed(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)
    for i in range(3):
        store.write_record(_record(i))
    store.frame()
    from adbench import store_index

    calls = []
    original = store_index.RecordIndex._row_of
    monkeypatch.setattr(
        store_index.RecordIndex, "_row_of", lambda self, n: calls.append(n) or original(self, n)
    )
    assert len(store.frame()) == 3 and calls == []
    store.write_record(_record(7))
    assert len(store.frame()) == 4 and calls == []  # write_record upserted its own row
