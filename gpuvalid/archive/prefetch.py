"""Read and decompress maps ahead of the compute, in worker processes.

Inflating a ``.map.gz`` costs about 1 s of CPU per 130 MB with zlib, so batch runs do it in a pool
of processes while the GPU (or the compute workers) process earlier entries.  A prefetch worker
reads the stored file once, hashes those bytes (SHA-256 of the file as stored: the input hash),
inflates them with ``isal.igzip`` when installed (2-4× faster than zlib) or ``zlib``, and writes the
plain MRC into the run's spool folder (under ``/dev/shm`` when present, i.e. RAM; see :mod:`.spool`)
from which the compute process reads it; this keeps hundreds of MB out of inter-process pipes.  Plain
``.map`` files are only read and hashed.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

try:  # a faster inflater where installed
    from isal import igzip as _igzip, isal_zlib as _zlib_stream
except ImportError:  # pragma: no cover - depends on the environment
    _igzip = None
    _zlib_stream = zlib

CHUNK = 1 << 22              # inflated bytes per step of the streaming inflater
SLACK = 1 << 20              # bytes tolerated beyond the size the MRC header declares
MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2, 101: 0.5}

INFLATER = "isal" if _igzip is not None else "zlib"


@dataclass
class Prefetched:
    """A map read (and inflated) ahead: ``data_path`` is what the loader opens."""

    emdb_id: str
    map_path: str
    data_path: str | None = None        # spool file (inflated) or the map itself
    spooled: bool = False               # data_path is a temporary file to delete after use
    sha256: str | None = None
    input_bytes: int | None = None
    input_mtime_ns: int | None = None
    unchanged: bool = False             # the hash equals the one given as ``known_sha256``
    error: str | None = None
    seconds: dict = field(default_factory=dict)  # read, decompress
    pid: int = field(default_factory=os.getpid)

    def cleanup(self) -> None:
        """Delete ``data_path`` when it is a spool file (never raises)."""
        if self.spooled and self.data_path:
            try:
                os.unlink(self.data_path)
            except OSError:
                pass


def default_spool_dir() -> Path:
    """Where maps are inflated outside a batch run (batch runs use a per-run folder, :mod:`.spool`)."""
    from .spool import default_base
    return default_base()


def inflate(data: bytes) -> bytes:
    """Decompress a (possibly multi-member) gzip stream.

    Raises
    ------
    EOFError
        When the stream ends before its end-of-stream marker (a truncated file).
    """
    if _igzip is not None:
        return _igzip.decompress(data)
    d = zlib.decompressobj(wbits=31)
    parts = [d.decompress(data)]
    while d.eof and d.unused_data:  # further gzip members
        rest = d.unused_data
        d = zlib.decompressobj(wbits=31)
        parts.append(d.decompress(rest))
    if not d.eof:
        raise EOFError("compressed file ended before the end-of-stream marker was reached")
    return b"".join(parts)


def declared_bytes(head: bytes) -> int | None:
    """Return the file size (bytes) an MRC header (its first 1024 bytes) declares.

    The size is 1024 + extended header + voxels × mode size; None when the header is not plausible in either
    byte order.
    """
    if len(head) < 1024:
        return None
    for e in "<>":
        nx, ny, nz, mode = struct.unpack(e + "4i", head[:16])
        nsymbt = struct.unpack(e + "i", head[92:96])[0]
        if min(nx, ny, nz) > 0 and mode in MODE_BYTES and nsymbt >= 0:
            return 1024 + nsymbt + int(math.ceil(nx * ny * nz * MODE_BYTES[mode]))
    return None


class InflateLimit(Exception):
    """The gzip stream inflates to more than its MRC header declares (a gzip bomb or a lying header)."""


def inflate_to(raw: bytes, fh, limit_slack: int = SLACK) -> int:
    """Inflate the (possibly multi-member) gzip stream ``raw`` into the file ``fh``; return the bytes written.

    The output is written ``CHUNK`` bytes at a time (memory: one chunk), stopping with :class:`InflateLimit`
    once it exceeds what the MRC header in its first 1024 bytes declares by more than ``limit_slack``
    (16 MiB + slack when that header is not plausible: the loader then names the header's problem).

    Raises
    ------
    InflateLimit
        When the output exceeds the declared size by more than ``limit_slack``.
    EOFError
        When the stream ends before its end-of-stream marker (a truncated file).
    """
    d = _zlib_stream.decompressobj(wbits=31)
    buf: bytes = raw
    total, limit = 0, None
    while True:
        out = d.decompress(buf, CHUNK)
        if out:
            if limit is None and total + len(out) >= 1024:
                head = out[:1024] if total == 0 else None
                if head is None:  # the header straddles chunks (tiny chunks only): do not limit
                    limit = float("inf")
                else:
                    dec = declared_bytes(head)
                    limit = (dec if dec is not None else 1024 + (16 << 20)) + limit_slack
            total += len(out)
            if limit is not None and total > limit:
                raise InflateLimit(f"the gzip stream inflates to more than the {int(limit - limit_slack):,} bytes "
                                   "its MRC header declares (a gzip bomb or a wrong header)")
            fh.write(out)
        buf = d.unconsumed_tail
        if d.eof:
            rest = d.unused_data
            if not rest.strip(b"\0"):  # end, or zero padding after the last member
                return total
            d = _zlib_stream.decompressobj(wbits=31)  # another gzip member
            buf = rest
            continue
        if not buf and not out:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")


def prefetch(emdb_id: str, map_path: str, spool_dir: str | None = None,
             known_sha256: str | None = None) -> Prefetched:
    """Read, hash and (for ``.gz``) inflate ``map_path`` into ``spool_dir``.

    When the hash equals ``known_sha256`` the map is not inflated (the entry is already done).
    Never raises: problems are returned in ``error`` as one line.
    """
    pf = Prefetched(emdb_id, str(map_path))
    p = Path(map_path)
    try:
        t0 = time.perf_counter()
        st = p.stat()
        raw = p.read_bytes()
        pf.sha256 = hashlib.sha256(raw).hexdigest()
        pf.input_bytes, pf.input_mtime_ns = st.st_size, st.st_mtime_ns
        pf.seconds["read"] = time.perf_counter() - t0
    except OSError as exc:
        pf.error = f"cannot read {p.name}: {exc.strerror or exc}"
        return pf
    if known_sha256 is not None and pf.sha256 == known_sha256:
        pf.unchanged = True
        return pf
    if not p.name.endswith(".gz"):
        pf.data_path = str(p)
        pf.seconds["decompress"] = 0.0
        return pf
    t0 = time.perf_counter()
    tmp = None
    try:
        spool = Path(spool_dir) if spool_dir else default_spool_dir()
        spool.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{emdb_id}-", suffix=".mrc", dir=spool)
        with os.fdopen(fd, "wb") as fh:
            inflate_to(raw, fh)
    except OSError as exc:
        pf.error = f"cannot write the inflated map to the spool folder: {exc.strerror or exc}"
    except InflateLimit as exc:
        pf.error = f"map file {p.name} refused: {exc}"
    except Exception as exc:  # zlib.error, isal errors, EOFError …
        pf.error = f"corrupt map file {p.name}: gzip data cannot be inflated ({' '.join(str(exc).split())})"
    if pf.error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        return pf
    del raw
    pf.data_path, pf.spooled = tmp, True
    pf.seconds["decompress"] = time.perf_counter() - t0
    return pf
