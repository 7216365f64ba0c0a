"""EMDB ids and the archive's file layout for one entry.

The EMDB archive (and its FTP/HTTPS mirror) stores entry ``EMD-1234`` as::

    structures/EMD-1234/map/emd_1234.map.gz
    structures/EMD-1234/header/emd-1234-v30.xml
    structures/EMD-1234/other/emd_1234_half_map_1.map.gz   (and _2)

Ids have 4 to 12 digits, zero-padded to 4 (``EMD-0001``); longer digit strings are not ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from ..errors import InputError
from ..io.emdb import normalise_emdb_id


@dataclass(frozen=True)
class EntryLayout:
    """Relative (POSIX) paths of one entry's files inside an archive root or base URL."""

    emdb_id: str  # 'EMD-1234'

    @property
    def number(self) -> str:
        """The entry number, '1234' for 'EMD-1234'."""
        return self.emdb_id.split("-", 1)[1]

    @property
    def dir(self) -> str:
        """The entry's folder, ``structures/EMD-1234``."""
        return f"structures/{self.emdb_id}"

    @property
    def map(self) -> str:
        """The stored (gzipped) map, ``structures/EMD-1234/map/emd_1234.map.gz``."""
        return f"{self.dir}/map/emd_{self.number}.map.gz"

    @property
    def map_uncompressed(self) -> str:
        """The map when stored uncompressed, ``structures/EMD-1234/map/emd_1234.map``."""
        return f"{self.dir}/map/emd_{self.number}.map"

    @property
    def header(self) -> str:
        """The v3.0 header XML, ``structures/EMD-1234/header/emd-1234-v30.xml``."""
        return f"{self.dir}/header/emd-{self.number}-v30.xml"

    @property
    def header_legacy(self) -> str:
        """The header XML under its older name, ``structures/EMD-1234/header/emd-1234.xml``."""
        return f"{self.dir}/header/emd-{self.number}.xml"

    @property
    def other_dir(self) -> str:
        """The folder of the other files (half maps), ``structures/EMD-1234/other``."""
        return f"{self.dir}/other"

    def half_map(self, i: int) -> str:
        """Return half map ``i`` (1 or 2), ``structures/EMD-1234/other/emd_1234_half_map_{i}.map.gz``."""
        return f"{self.other_dir}/emd_{self.number}_half_map_{i}.map.gz"

    def parts(self, rel: str) -> tuple[str, ...]:
        """Split the relative POSIX path ``rel`` into its components."""
        return PurePosixPath(rel).parts


MAX_DIGITS = 12  # EMDB ids have 4-5 digits today; a longer number is a typo or garbage


def short_repr(text, limit: int = 60) -> str:
    """``repr(text)`` cut to about ``limit`` characters (messages stay one readable line)."""
    r = repr(text)
    return r if len(r) <= limit else r[: limit - 5] + "…" + r[-4:]


def parse_id(text) -> str | None:
    """'EMD-1234', 'emd_1234' or '1234' → 'EMD-1234'; None for anything else (never raises)."""
    t = str(text).strip()
    if len(t) > MAX_DIGITS + 4 or sum(c.isdigit() for c in t) > MAX_DIGITS:
        return None
    try:
        return normalise_emdb_id(t)
    except ValueError:
        return None


def layout(text: str) -> EntryLayout:
    """Return the layout of an id written as 'EMD-1234', 'emd_1234' or '1234'.

    Raises
    ------
    InputError
        When ``text`` is not an EMDB id.
    """
    eid = parse_id(text)
    if eid is None:
        raise InputError(f"{short_repr(text)} is not an EMDB id (expected EMD-1234, emd_1234 or 1234)")
    return EntryLayout(eid)
