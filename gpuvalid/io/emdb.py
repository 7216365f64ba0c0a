"""EMDB entry metadata from its header XML (v3.0 schema; v1.9 names accepted too).

Reads the primary contour level, the author's resolution (the method's
``final_reconstruction/resolution``), the pixel spacing and the method.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError


@dataclass
class EmdbHeader:
    emdb_id: str | None
    contour: float | None
    resolution: float | None
    voxel_size: tuple[float, float, float] | None  # x, y, z Å
    method: str | None
    map_file: str | None


def _strip_ns(root: ET.Element) -> None:
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]


def _float(text) -> float | None:
    if text is None:
        return None
    try:
        v = float(str(text).strip())
    except ValueError:
        return None
    return v


def parse_header(path: str | Path) -> EmdbHeader:
    """Parse an EMDB header XML file; a missing or malformed file is an :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"EMDB header not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"EMDB header {path.name} is not valid XML: {exc}") from None
    return parse_header_xml(root)


def parse_header_text(text: str) -> EmdbHeader:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputError(f"EMDB header is not valid XML: {exc}") from None
    return parse_header_xml(root)


def parse_header_xml(root: ET.Element) -> EmdbHeader:
    _strip_ns(root)
    emdb_id = root.get("emdb_id") or root.get("accessCode")
    if emdb_id and not emdb_id.upper().startswith("EMD"):
        emdb_id = f"EMD-{emdb_id}"

    # contour: v3 map/contour_list/contour[@primary="true"]/level ; v1.9 map/contourLevel
    contour = None
    for c in root.iter("contour"):
        level = _float(c.findtext("level"))
        if level is None:
            continue
        if contour is None or str(c.get("primary", "")).lower() == "true":
            contour = level
            if str(c.get("primary", "")).lower() == "true":
                break
    if contour is None:
        contour = _float(root.findtext(".//map/contourLevel")) or _float(root.findtext(".//contourLevel"))

    resolution = None
    for path in (".//final_reconstruction/resolution", ".//resolution_by_author",
                 ".//resolutionByAuthor", ".//final_reconstruction/resolution_by_author"):
        resolution = _float(root.findtext(path))
        if resolution is not None:
            break

    vs = None
    ps = root.find(".//map/pixel_spacing")
    if ps is None:
        ps = root.find(".//map/pixelSpacing")
    if ps is not None:
        xyz = [_float(ps.findtext(a)) or _float(ps.findtext(f"pixel{a.upper()}")) for a in ("x", "y", "z")]
        if all(v is not None for v in xyz):
            vs = tuple(xyz)

    method = root.findtext(".//structure_determination/method") or root.findtext(".//processing/method")
    map_file = root.findtext(".//map/file")
    return EmdbHeader(emdb_id, contour, resolution, vs, method.strip() if method else None,
                      map_file.strip() if map_file else None)


_ID = re.compile(r"^(?:emd[-_]?)?(\d{4,})$", re.IGNORECASE)


def normalise_emdb_id(text: str) -> str | None:
    """'EMD-1234', 'emd_1234', '1234' → 'EMD-1234' (None when ``text`` is not an EMDB id)."""
    m = _ID.match(text.strip())
    if not m:
        return None
    return f"EMD-{int(m.group(1)):04d}"
