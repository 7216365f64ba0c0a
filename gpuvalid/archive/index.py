"""The results index: one SQLite row per entry, and the claims of entries being computed.

A row holds the entry's status, failure reason, timings, version and input hash.

Rows are keyed by ``emdb_id`` and written with an upsert, so reruns never duplicate them.  The index
is a cache of the per-entry ``status.json`` files and :func:`ResultsIndex.rebuild` recreates it from
the report folders.  Several processes on one machine may share it (rollback journal + busy
timeout); on network file systems give each SLURM task its own ``--index`` and rebuild afterwards.

Claims: before a batch process reads or computes an entry it claims it (table ``claims``: run id,
host, pid, lease expiry) in one ``BEGIN IMMEDIATE`` transaction, so two processes sharing the index
never compute the same entry.  A claim is taken over when its lease has expired (the owner renews it
every ``lease/4`` s while alive) or, on the same host, as soon as its process no longer exists: the
claims of a killed run are retaken on resume.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path

from ..errors import InputError, one_line
from .record import STATUS_FILE, TIMINGS, EntryRecord, read_record

CLAIM_LEASE_S = 120.0

COLUMNS = [
    ("emdb_id", "TEXT PRIMARY KEY"), ("status", "TEXT NOT NULL"), ("reason", "TEXT"),
    ("version", "TEXT"), ("input_sha256", "TEXT"), ("input_bytes", "INTEGER"),
    ("input_mtime_ns", "INTEGER"), ("map_path", "TEXT"), ("out_dir", "TEXT"), ("device", "TEXT"),
    ("host", "TEXT"), ("worker", "TEXT"), ("started", "REAL"), ("finished", "REAL"),
    ("score_passed", "INTEGER"), ("score_evaluable", "INTEGER"),
] + [(f"t_{k}", "REAL") for k in TIMINGS]


def pid_alive(pid: int) -> bool:
    """Return True when a process ``pid`` exists on this host (zombies count as gone)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    try:  # a zombie (killed, not yet reaped) holds its pid but computes nothing
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class ResultsIndex:
    """The SQLite index at ``path``.

    An unusable file (a folder, not SQLite, corrupt, unwritable) is an :class:`InputError`, or, with
    ``replace_corrupt``, is moved aside to ``<name>.corrupt-<time>`` and a new index created (it is a cache:
    :meth:`rebuild` refills it from the report folders).
    """

    def __init__(self, path: str | Path, replace_corrupt: bool = False):
        """Open the index at ``path``, creating it and its tables when missing.

        Raises
        ------
        InputError
            When ``path`` is a folder, its folder cannot be created, or it is not a usable SQLite database
            (a locked one always; a corrupt one unless ``replace_corrupt``).
        """
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(f"results index {self.path} is a folder, not a SQLite file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the folder of the results index {self.path}: "
                             f"{exc.strerror or exc}") from None
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if not replace_corrupt or "locked" in str(exc):
                raise InputError(f"results index {self.path} is not a usable SQLite database ({one_line(exc)}); "
                                 "delete it or rebuild it from the report folders with "
                                 "'gpuvalid summary OUT --rebuild-index'") from None
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            self._open()
            self.replaced = aside

    replaced: Path | None = None

    def _open(self) -> None:
        self.db = sqlite3.connect(str(self.path), timeout=60.0)
        try:
            self.db.execute("PRAGMA busy_timeout = 60000")
            cols = ", ".join(f"{n} {t}" for n, t in COLUMNS)
            self.db.execute(f"CREATE TABLE IF NOT EXISTS entries ({cols})")
            have = {r[1] for r in self.db.execute("PRAGMA table_info(entries)")}
            for n, t in COLUMNS:  # an index written by an older version: add the new columns
                if n not in have:
                    self.db.execute(f"ALTER TABLE entries ADD COLUMN {n} {t.replace(' PRIMARY KEY', '')}")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute("CREATE TABLE IF NOT EXISTS claims (emdb_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, "
                            "host TEXT, pid INTEGER, claimed REAL, expires REAL)")
            self.db.commit()
            self.db.execute("SELECT COUNT(*) FROM entries").fetchone()
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        """Close the database connection."""
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

    def _immediate(self, fn):
        """Run ``fn()`` inside ``BEGIN IMMEDIATE`` … ``COMMIT`` (the write lock is taken at once)."""
        def go():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                out = fn()
            except BaseException:
                self.db.rollback()
                raise
            self.db.commit()
            return out
        return self._retry(go)

    # ---- claims -------------------------------------------------------------------------------
    @staticmethod
    def claim_live(row: dict, now: float | None = None) -> bool:
        """Whether a claim row still belongs to a running process."""
        if (row.get("expires") or 0.0) < (time.time() if now is None else now):
            return False
        if row.get("host") == socket.gethostname() and row.get("pid") is not None:
            return pid_alive(row["pid"])
        return True

    def claim(self, emdb_id: str, run_id: str, lease_s: float = CLAIM_LEASE_S) -> dict | None:
        """Claim ``emdb_id`` for ``run_id``: None when claimed, else the live claim of another run."""
        def go():
            cur = self.db.execute("SELECT * FROM claims WHERE emdb_id = ?", (emdb_id,))
            r = cur.fetchone()
            if r is not None:
                row = dict(zip([c[0] for c in cur.description], r, strict=True))
                if row["run_id"] != run_id and self.claim_live(row):
                    return row
            now = time.time()
            self.db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?)",
                            (emdb_id, run_id, socket.gethostname(), os.getpid(), now, now + lease_s))
            return None
        return self._immediate(go)

    def release(self, emdb_id: str, run_id: str) -> None:
        """Drop the claim of ``run_id`` on ``emdb_id`` (a claim of another run stays)."""
        def go():
            with self.db:
                self.db.execute("DELETE FROM claims WHERE emdb_id = ? AND run_id = ?", (emdb_id, run_id))
        self._retry(go)

    def release_run(self, run_id: str) -> None:
        """Drop every claim of ``run_id``."""
        def go():
            with self.db:
                self.db.execute("DELETE FROM claims WHERE run_id = ?", (run_id,))
        self._retry(go)

    def renew(self, run_id: str, lease_s: float = CLAIM_LEASE_S) -> None:
        """Extend every claim of ``run_id`` to expire ``lease_s`` seconds from now."""
        def go():
            with self.db:
                self.db.execute("UPDATE claims SET expires = ? WHERE run_id = ?", (time.time() + lease_s, run_id))
        self._retry(go)

    def drop_dead_claims(self) -> int:
        """Delete the claims of runs that have ended (killed ones included); returns how many went."""
        def go():
            cur = self.db.execute("SELECT * FROM claims")
            names = [c[0] for c in cur.description]
            dead = [r[0] for r in cur.fetchall() if not self.claim_live(dict(zip(names, r, strict=True)))]
            self.db.executemany("DELETE FROM claims WHERE emdb_id = ?", [(d,) for d in dead])
            return len(dead)
        return self._immediate(go)

    def claims(self) -> list[dict]:
        """Return every claim (run id, host, pid, claimed and expiry times), sorted by id."""
        cur = self.db.execute("SELECT * FROM claims ORDER BY emdb_id")
        return [dict(zip([c[0] for c in cur.description], r, strict=True)) for r in cur.fetchall()]

    # ---- entries ------------------------------------------------------------------------------
    def upsert(self, rec: EntryRecord) -> None:
        """Insert or update the row of ``rec`` (keyed by ``emdb_id``); step timings (s) go to ``t_<step>``."""
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
        """Upsert every record of ``recs``; return how many were written."""
        n = 0
        for r in recs:
            self.upsert(r)
            n += 1
        return n

    def rows(self, status: str | None = None) -> list[dict]:
        """Return the entry rows sorted by id (only those with ``status`` when given)."""
        cur = self.db.execute("SELECT * FROM entries" + (" WHERE status = ?" if status else "")
                              + " ORDER BY emdb_id", (status,) if status else ())
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def get(self, emdb_id: str) -> dict | None:
        """Return the row of ``emdb_id``, or None when the index has none."""
        cur = self.db.execute("SELECT * FROM entries WHERE emdb_id = ?", (emdb_id,))
        r = cur.fetchone()
        return None if r is None else dict(zip([c[0] for c in cur.description], r, strict=True))

    def counts(self) -> dict[str, int]:
        """Return the number of entries per status."""
        return dict(self.db.execute("SELECT status, COUNT(*) FROM entries GROUP BY status").fetchall())

    def set_meta(self, key: str, value) -> None:
        """Store ``value`` as JSON under ``key`` in the ``meta`` table."""
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
