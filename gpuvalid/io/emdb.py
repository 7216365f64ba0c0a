"""EMDB entry metadata from its header XML (v3.0 schema; v1.9 names accepted too).

Reads the primary contour level, the author's resolution (the method's
``final_reconstruction/resolution``), the pixel spacing and the method.
"""

from __future__ import annotations

import math
import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError


@dataclass
class EmdbHeader:
    """What gpuvalid reads from an EMDB header: id, primary contour, resolution (Å), voxel size (Å), method.

    Each field is None when the header does not give it; ``notes`` lists the unit conversions applied.
    """

    emdb_id: str | None
    contour: float | None
    resolution: float | None
    voxel_size: tuple[float, float, float] | None  # x, y, z Å
    method: str | None
    map_file: str | None
    notes: list[str] = field(default_factory=list)  # unit conversions applied


MAX_HEADER_BYTES = 20 << 20  # an EMDB header XML is a few kB; refuse anything this large
# Unicode has two Å: the letter U+00C5 and the ANGSTROM SIGN U+212B; units are NFKC-normalised first, which
# maps the sign to the letter.
_ANGSTROM = {"Å", "å", "a", "ang", "angstrom", "angstroms", "ångström", "angstrom(s)"}
_TO_ANGSTROM = {"nm": 10.0, "nanometer": 10.0, "nanometers": 10.0, "nanometre": 10.0, "pm": 0.01}


def _strip_ns(root: ET.Element) -> None:
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]


def _float(text, what: str = "value") -> float | None:
    """Parse a finite number from the XML text; missing/empty text is ``None``, anything else an InputError."""
    if text is None or not str(text).strip():
        return None
    t = str(text).strip()
    try:
        v = float(t)
    except ValueError:
        raise InputError(f"EMDB header: {what} {t[:40]!r} is not a number") from None
    if not math.isfinite(v):
        raise InputError(f"EMDB header: {what} {t[:40]!r} is not a finite number")
    return v


def _length(el: ET.Element | None, what: str, notes: list[str]) -> float | None:
    """Read a length in Å from an element with an optional ``units`` attribute (nm/pm converted)."""
    if el is None:
        return None
    v = _float(el.text, what)
    if v is None:
        return None
    units = unicodedata.normalize("NFKC", el.get("units") or "").strip()
    u = units.lower()
    if not u or units in _ANGSTROM or u in _ANGSTROM:
        return v
    if u in _TO_ANGSTROM:
        a = v * _TO_ANGSTROM[u]
        notes.append(f"EMDB header {what} {v:g} {units} converted to {a:g} Å")
        return a
    raise InputError(f"EMDB header: {what} has unknown units {units[:20]!r} (expected Å or nm)")


def _refuse_entities(text: str | bytes, where: str) -> None:
    head = text if isinstance(text, str) else text.decode("utf-8", "replace")
    if "<!ENTITY" in head.upper() or "<!DOCTYPE" in head.upper():
        raise InputError(f"EMDB header {where}: DOCTYPE/ENTITY declarations are not accepted")


def parse_header(path: str | Path) -> EmdbHeader:
    """Parse an EMDB header XML file; a missing or malformed file is an :class:`InputError`.

    Raises
    ------
    InputError
        When the file is missing, unreadable, larger than :data:`MAX_HEADER_BYTES`, declares a DOCTYPE or
        entities, is not valid XML, or holds a non-numeric value or unknown length units.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise InputError(f"EMDB header not found: {path}")
        if path.stat().st_size > MAX_HEADER_BYTES:
            raise InputError(f"EMDB header {path.name} is larger than {MAX_HEADER_BYTES >> 20} MB")
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read EMDB header {path.name}: {exc.strerror or type(exc).__name__}") from None
    _refuse_entities(raw, path.name)
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise InputError(f"EMDB header {path.name} is not valid XML: {exc}") from None
    return parse_header_xml(root)


def parse_header_text(text: str) -> EmdbHeader:
    """Parse an EMDB header given as XML text (as :func:`parse_header`).

    Raises
    ------
    InputError
        When the text declares a DOCTYPE or entities, is not valid XML, or holds a non-numeric value or
        unknown length units.
    """
    _refuse_entities(text, "text")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputError(f"EMDB header is not valid XML: {exc}") from None
    return parse_header_xml(root)


def parse_header_xml(root: ET.Element) -> EmdbHeader:
    """Read the header fields from a parsed XML tree (v3.0 names, v1.9 names as a fallback).

    The contour is the primary one (else the first); lengths are converted to Å.  Namespaces are stripped
    from ``root`` in place.
    """
    _strip_ns(root)
    emdb_id = root.get("emdb_id") or root.get("accessCode")
    if emdb_id and not emdb_id.upper().startswith("EMD"):
        emdb_id = f"EMD-{emdb_id}"

    # contour: v3 map/contour_list/contour[@primary="true"]/level ; v1.9 map/contourLevel
    notes: list[str] = []
    contour = None
    for c in root.iter("contour"):
        level = _float(c.findtext("level"), "contour level")
        if level is None:
            continue
        if contour is None or str(c.get("primary", "")).lower() == "true":
            contour = level
            if str(c.get("primary", "")).lower() == "true":
                break
    if contour is None:
        contour = _float(root.findtext(".//map/contourLevel"), "contour level")
        if contour is None:
            contour = _float(root.findtext(".//contourLevel"), "contour level")

    resolution = None
    for path in (".//final_reconstruction/resolution", ".//resolution_by_author",
                 ".//resolutionByAuthor", ".//final_reconstruction/resolution_by_author"):
        resolution = _length(root.find(path), "resolution", notes)
        if resolution is not None:
            break

    vs = None
    ps = root.find(".//map/pixel_spacing")
    if ps is None:
        ps = root.find(".//map/pixelSpacing")
    if ps is not None:
        xyz = []
        for a in ("x", "y", "z"):
            el = ps.find(a)
            if el is None or not (el.text or "").strip():
                el = ps.find(f"pixel{a.upper()}")
            xyz.append(_length(el, f"pixel spacing {a}", notes))
        if all(v is not None for v in xyz):
            vs = tuple(xyz)

    method = root.findtext(".//structure_determination/method") or root.findtext(".//processing/method")
    map_file = root.findtext(".//map/file")
    return EmdbHeader(emdb_id, contour, resolution, vs, method.strip() if method else None,
                      map_file.strip() if map_file else None, notes)


_ID = re.compile(r"^(?:emd[-_]?)?(\d{4,})$", re.IGNORECASE)


def normalise_emdb_id(text: str) -> str | None:
    """'EMD-1234', 'emd_1234', '1234' → 'EMD-1234' (None when ``text`` is not an EMDB id)."""
    m = _ID.match(text.strip())
    if not m:
        return None
    return f"EMD-{int(m.group(1)):04d}"
