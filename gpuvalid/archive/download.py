"""Fetch archive files over HTTP(S): retries with back-off, size and checksum checks, a polite rate limit.

Every file is streamed to ``<dest>.part`` and renamed into place only after its checks pass, so a
file present in the cache is always complete.  Checks: the byte count equals ``Content-Length``
(and ``expected_size`` when given), the SHA-256 equals ``expected_sha256`` when given, and a
``.gz`` file is inflated on the fly so its CRC-32 and length trailer are verified (EMDB does not
publish per-file checksums; the gzip trailer is the archive's own checksum).  ``max_bytes`` caps the
transfer and ``check(part_path)`` validates the content (e.g. that a header is an EMDB header of the
right entry) before the file is renamed into the cache; a file failing either is not retried and
never cached.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

from .. import __version__
from ..errors import InputError

DEFAULT_BASE_URL = "https://ftp.ebi.ac.uk/pub/databases/emdb/"
ENV_BASE_URL = "GPUVALID_EMDB_URL"
ENV_INTERVAL = "GPUVALID_DOWNLOAD_INTERVAL"  # seconds between requests (default 1)
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
CHUNK = 1 << 20


class NotFound(InputError):
    """The server answered 404 for this file."""


def base_url(url: str | None = None) -> str:
    """Return the download base URL: ``url``, else ``$GPUVALID_EMDB_URL``, else the EMDB public archive.

    The URL returned always ends with ``/``.
    """
    u = url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    return u if u.endswith("/") else u + "/"


class RateLimiter:
    """At most one request start per ``interval`` seconds in this process (all threads)."""

    def __init__(self, interval: float):
        self.interval = float(interval)
        self._lock = threading.Lock()
        self._last = 0.0

    def wait(self) -> None:
        """Block until ``interval`` seconds have passed since the last request start, then mark a new one."""
        with self._lock:
            now = time.monotonic()
            delay = self._last + self.interval - now
            if delay > 0:
                time.sleep(delay)
            self._last = time.monotonic()


_LIMITER = RateLimiter(float(os.environ.get(ENV_INTERVAL, "1.0")))


class Downloader:
    """Download files relative to a base URL into a local folder with the same layout."""

    def __init__(self, base: str | None = None, *, retries: int = 4, backoff_s: float = 2.0,
                 timeout_s: float = 60.0, limiter: RateLimiter | None = None):
        self.base = base_url(base)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.timeout_s = float(timeout_s)
        self.limiter = limiter or _LIMITER

    def url(self, rel: str) -> str:
        """Return the full URL of ``rel``, a path relative to the base URL."""
        return urllib.parse.urljoin(self.base, rel)

    def fetch(self, rel: str, dest: Path, *, expected_size: int | None = None,
              expected_sha256: str | None = None, max_bytes: int | None = None, check=None) -> Path:
        """Download ``rel`` to ``dest`` unless already there, with retries and checks; return ``dest``.

        Raises
        ------
        NotFound
            When the server answers 404 (not retried).
        InputError
            When every attempt failed, or the content is refused (``max_bytes``, ``check``; not retried).
        """
        dest = Path(dest)
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        url = self.url(rel)
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            self.limiter.wait()
            try:
                self._fetch_once(url, dest, expected_size, expected_sha256, max_bytes, check)
                return dest
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise NotFound(f"not found on the server: {url}") from None
                last = f"HTTP {exc.code} {exc.reason}"
                if exc.code not in RETRY_STATUS:
                    break
                ra = exc.headers.get("Retry-After") if exc.headers else None
                if ra and ra.isdigit():
                    time.sleep(min(float(ra), 120.0))
            except (urllib.error.URLError, http.client.HTTPException, OSError, _CheckFailed) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"
        raise InputError(f"download of {url} failed after {attempt + 1} attempt(s): {last}")

    def _fetch_once(self, url: str, dest: Path, expected_size, expected_sha256, max_bytes=None,
                    check=None) -> None:
        part = dest.with_name(dest.name + ".part")
        req = urllib.request.Request(url, headers={"User-Agent": f"gpuvalid/{__version__} (archive mode)"})
        h = hashlib.sha256()
        inflater = zlib.decompressobj(wbits=31) if dest.name.endswith(".gz") else None
        n = 0
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp, open(part, "wb") as out:
                length = resp.headers.get("Content-Length")
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    n += len(chunk)
                    if max_bytes is not None and n > max_bytes:
                        raise InputError(f"refused {url}: larger than {max_bytes} bytes")
                    out.write(chunk)
                    h.update(chunk)
                    if inflater is not None:
                        try:
                            while chunk:  # discard the output: only the CRC/length check matters
                                inflater.decompress(chunk, CHUNK)
                                chunk = inflater.unconsumed_tail
                        except zlib.error as exc:
                            raise _CheckFailed(f"corrupt gzip stream ({exc})") from None
            if length is not None and int(length) != n:
                raise _CheckFailed(f"got {n} bytes, Content-Length said {length}")
            if expected_size is not None and int(expected_size) != n:
                raise _CheckFailed(f"got {n} bytes, expected {expected_size}")
            if expected_sha256 is not None and h.hexdigest() != expected_sha256.lower():
                raise _CheckFailed("SHA-256 mismatch")
            if inflater is not None and not inflater.eof:
                raise _CheckFailed("truncated gzip stream (no CRC trailer)")
            if check is not None:
                check(part)  # raises InputError: not cached, not retried
            os.replace(part, dest)
        finally:
            if part.exists():
                part.unlink()


class _CheckFailed(Exception):
    """A transfer arrived but failed a size/checksum check (retried)."""
