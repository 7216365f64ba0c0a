"""Resolve an EMDB id to its map and v3.0 header: a local archive mirror first, then (optionally) a download.

Mirror root: ``archive=`` or ``$GPUVALID_ARCHIVE``.  Downloads go to ``cache_dir=`` or
``$GPUVALID_CACHE`` or ``~/.cache/gpuvalid/emdb``, in the archive's own layout, so a download
cache is itself a valid mirror.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import GpuvalidError, InputError, one_line
from .download import Downloader, NotFound
from .ids import EntryLayout, layout, parse_id

MAX_HEADER_BYTES = 16 << 20  # EMDB headers are tens of kB


def header_check(emdb_id: str):
    """Return a download check for the header of ``emdb_id``.

    The check accepts an EMDB header XML (root ``emd``, or ``entry``) of ``emdb_id`` whose values the header
    reader accepts; anything else (an HTML error page, another entry's header) is refused with an
    :class:`InputError`.
    """
    def check(path: Path) -> None:
        import xml.etree.ElementTree as ET

        from ..io.emdb import parse_header_xml
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise InputError(f"{emdb_id}: downloaded header is not valid XML ({one_line(exc)})") from None
        tag = root.tag.split("}", 1)[-1] if isinstance(root.tag, str) else ""
        if tag not in ("emd", "entry"):
            raise InputError(f"{emdb_id}: downloaded header is not an EMDB header (root element <{tag}>)")
        try:
            hdr = parse_header_xml(root)
        except GpuvalidError as exc:
            raise InputError(f"{emdb_id}: downloaded header refused ({one_line(exc)})") from None
        if hdr.emdb_id and parse_id(hdr.emdb_id) not in (None, emdb_id):
            raise InputError(f"{emdb_id}: the server sent the header of {hdr.emdb_id}")
    return check

ENV_ARCHIVE = "GPUVALID_ARCHIVE"
ENV_CACHE = "GPUVALID_CACHE"


def archive_root(archive: str | Path | None = None) -> Path | None:
    """Return the mirror root: ``archive``, else ``$GPUVALID_ARCHIVE``, else None (``~`` expanded)."""
    a = archive if archive not in (None, "") else os.environ.get(ENV_ARCHIVE)
    return Path(a).expanduser() if a else None


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Return the download cache: ``cache_dir``, else ``$GPUVALID_CACHE``, else ``~/.cache/gpuvalid/emdb``."""
    c = cache_dir or os.environ.get(ENV_CACHE)
    return Path(c).expanduser() if c else Path.home() / ".cache" / "gpuvalid" / "emdb"


def find_in_mirror(root: Path, lay: EntryLayout) -> tuple[Path | None, Path | None]:
    """(map, header) present under ``root`` (either may be None)."""
    m = next((root / p for p in (lay.map, lay.map_uncompressed) if (root / p).is_file()), None)
    h = next((root / p for p in (lay.header, lay.header_legacy) if (root / p).is_file()), None)
    return m, h


def half_maps(root: Path, lay: EntryLayout) -> list[Path]:
    """Return the entry's half maps present under ``root`` (none, one or both)."""
    return [root / lay.half_map(i) for i in (1, 2) if (root / lay.half_map(i)).is_file()]


def fetch_half_maps(dl: Downloader, cache: Path, lay: EntryLayout) -> list[Path]:
    """Download the entry's two half maps into the cache (Level 1 runs when both exist); return those fetched.

    An entry without them (not found) has none, and a half that fails to download leaves the entry at
    Level 0.
    """
    got = []
    for i in (1, 2):
        try:
            got.append(dl.fetch(lay.half_map(i), cache / lay.half_map(i)))
        except NotFound:
            return got
        except Exception:  # a half that cannot be fetched: Level 0 still runs
            (cache / lay.half_map(i)).unlink(missing_ok=True)
            return got
    return got


def resolve_entry(emdb_id: str, archive: str | Path | None = None, download: bool = False,
                  base_url: str | None = None, cache_dir: str | Path | None = None,
                  downloader: Downloader | None = None) -> tuple[Path, Path | None]:
    """(map path, header path or None) for ``emdb_id``; an :class:`InputError` says why not.

    Raises
    ------
    InputError
        When the id is not an EMDB id, the mirror is not a folder, the entry is not in the mirror (without
        ``download``), or the map is not on the server or cannot be downloaded.
    """
    lay = layout(emdb_id)
    root = archive_root(archive)
    if root is not None:
        if not root.is_dir():
            raise InputError(f"archive mirror {root} is not a folder")
        m, h = find_in_mirror(root, lay)
        if m is not None:
            return m, h
    if download:
        cache = cache_root(cache_dir)
        m, h = find_in_mirror(cache, lay)
        if m is not None and h is not None:
            return m, h
        dl = downloader or Downloader(base_url)
        if h is None:
            try:
                h = dl.fetch(lay.header, cache / lay.header, max_bytes=MAX_HEADER_BYTES,
                             check=header_check(lay.emdb_id))
            except NotFound:
                h = None  # the map can still be validated with command-line metadata
        if m is None:
            try:
                m = dl.fetch(lay.map, cache / lay.map)
            except NotFound:
                raise InputError(f"{lay.emdb_id}: no map at {dl.url(lay.map)}") from None
            fetch_half_maps(dl, cache, lay)
        return m, h
    if root is None:
        raise InputError(f"{lay.emdb_id}: no archive mirror given (pass --archive DIR or set "
                         f"{ENV_ARCHIVE}), or use --download")
    raise InputError(f"{lay.emdb_id}: not in the archive mirror {root} (looked for {lay.map}); "
                     "use --download to fetch it")
