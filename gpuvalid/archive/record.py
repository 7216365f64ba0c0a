"""The outcome of one entry, kept in its report folder as ``status.json`` (written atomically, last).

The folder is the source of truth: the SQLite index is a cache rebuildable from these files.
Resume rule: an entry is finished when ``status.json`` exists with this gpuvalid version and the
same input hash (SHA-256 of the map file as stored in the archive, i.e. the ``.gz``).  To avoid
re-hashing 61,000 maps on every resume, the record also keeps the file's size and mtime: when both
match, the recorded hash is trusted.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

STATUS_FILE = "status.json"
DONE, FAILED, SKIPPED = "done", "failed", "skipped"
TIMINGS = ("read", "decompress", "load", "compute", "write", "total")


@dataclass
class EntryRecord:
    """The content of ``status.json``: status, reason, version, input fingerprint, where and when, score, timings."""

    emdb_id: str
    status: str                      # done | failed (skipped is never written)
    reason: str | None = None        # one line, for failures
    version: str = ""
    input_sha256: str | None = None
    input_bytes: int | None = None
    input_mtime_ns: int | None = None
    map_path: str | None = None
    out_dir: str | None = None
    device: str | None = None
    host: str = field(default_factory=socket.gethostname)
    worker: str | None = None
    started: float | None = None     # Unix time
    finished: float | None = None
    score_passed: int | None = None
    score_evaluable: int | None = None
    seconds: dict = field(default_factory=dict)  # read, decompress, load, compute, write, total

    def to_json(self) -> dict:
        """Return the record as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "EntryRecord":
        """Make a record from a dict read from ``status.json`` (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def write_record(out_dir: Path, rec: EntryRecord) -> Path:
    """Write ``rec`` atomically to ``out_dir/status.json`` (creating the folder); return its path."""
    from ..report.files import atomic_write_text  # the one atomic writer (0644); kept out of import time

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    p = out_dir / STATUS_FILE
    atomic_write_text(p, json.dumps(rec.to_json(), indent=1, sort_keys=True))
    return p


def read_record(out_dir: Path) -> EntryRecord | None:
    """Return the record in ``out_dir/status.json``, or None when missing or malformed (the entry is redone)."""
    p = Path(out_dir) / STATUS_FILE
    try:
        d = json.loads(p.read_text())
        rec = EntryRecord.from_json(d) if isinstance(d, dict) else None
    except (OSError, ValueError, TypeError):  # missing, half-written or hand-edited: redo the entry
        return None
    if rec is None or not isinstance(rec.emdb_id, str) or not isinstance(rec.status, str):
        return None
    return rec


def file_fingerprint(path: Path) -> tuple[int, int] | None:
    """Return (size in bytes, mtime in ns) of ``path``, or None when it cannot be read."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns
