"""The results index: one SQLite row per entry (status, failure reason, timings, version, input hash).

Rows are keyed by ``emdb_id`` and written with an upsert, so reruns never duplicate them.  The index
is a cache of the per-entry ``status.json`` files and :func:`ResultsIndex.rebuild` recreates it from
the report folders.  Several processes on one machine may share it (rollback journal + busy
timeout); on network file systems give each SLURM task its own ``--index`` and rebuild afterwards.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from .record import STATUS_FILE, TIMINGS, EntryRecord, read_record

COLUMNS = [
    ("emdb_id", "TEXT PRIMARY KEY"), ("status", "TEXT NOT NULL"), ("reason", "TEXT"),
    ("version", "TEXT"), ("input_sha256", "TEXT"), ("input_bytes", "INTEGER"),
    ("input_mtime_ns", "INTEGER"), ("map_path", "TEXT"), ("out_dir", "TEXT"), ("device", "TEXT"),
    ("host", "TEXT"), ("worker", "TEXT"), ("started", "REAL"), ("finished", "REAL"),
    ("score_passed", "INTEGER"), ("score_evaluable", "INTEGER"),
] + [(f"t_{k}", "REAL") for k in TIMINGS]


class ResultsIndex:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=60.0)
        self.db.execute("PRAGMA busy_timeout = 60000")
        cols = ", ".join(f"{n} {t}" for n, t in COLUMNS)
        self.db.execute(f"CREATE TABLE IF NOT EXISTS entries ({cols})")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _retry(self, fn, *args):
        for attempt in range(20):
            try:
                return fn(*args)
            except sqlite3.OperationalError as exc:  # "database is locked" beyond the busy timeout
                if "locked" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.5)

    def upsert(self, rec: EntryRecord) -> None:
        d = rec.to_json()
        row = {n: d.get(n) for n, _ in COLUMNS if not n.startswith("t_")}
        row.update({f"t_{k}": (rec.seconds or {}).get(k) for k in TIMINGS})
        names = list(row)
        sql = (f"INSERT INTO entries ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
               f"ON CONFLICT(emdb_id) DO UPDATE SET "
               + ", ".join(f"{n}=excluded.{n}" for n in names if n != "emdb_id"))

        def go():
            with self.db:
                self.db.execute(sql, [row[n] for n in names])
        self._retry(go)

    def upsert_many(self, recs) -> int:
        n = 0
        for r in recs:
            self.upsert(r)
            n += 1
        return n

    def rows(self, status: str | None = None) -> list[dict]:
        cur = self.db.execute("SELECT * FROM entries" + (" WHERE status = ?" if status else "")
                              + " ORDER BY emdb_id", (status,) if status else ())
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def get(self, emdb_id: str) -> dict | None:
        cur = self.db.execute("SELECT * FROM entries WHERE emdb_id = ?", (emdb_id,))
        r = cur.fetchone()
        return None if r is None else dict(zip([c[0] for c in cur.description], r))

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM entries GROUP BY status").fetchall())

    def set_meta(self, key: str, value) -> None:
        def go():
            with self.db:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))
        self._retry(go)

    def rebuild(self, out_root: str | Path, clear: bool = True) -> int:
        """Recreate the rows from ``out_root/*/status.json``; returns the number of entries found."""
        out_root = Path(out_root)
        if clear:
            with self.db:
                self.db.execute("DELETE FROM entries")
        recs = [r for r in (read_record(p.parent) for p in sorted(out_root.glob(f"*/{STATUS_FILE}")))
                if r is not None]
        return self.upsert_many(recs)
