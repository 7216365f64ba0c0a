"""Atomic file writes for report folders: a temporary file in the same folder, renamed over the target.

Every file gets the permissions an ordinary ``open(path, "w")`` would give (``0666 & ~umask``, i.e.
0644 under the usual umask), so ``report.md`` and ``results.json`` are alike.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def umask() -> int:
    """Return the process's file-creation mask, read without changing it where /proc allows.

    ``os.umask`` has to set it to read it, which races with other threads creating files.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # pragma: no cover - not Linux
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Permissions of a newly created ordinary file (0644 with the usual umask 022)."""
    return 0o666 & ~umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename) with the default permissions."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))
