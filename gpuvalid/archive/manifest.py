"""The archive manifest: one row per entry from its header alone (no map decompression).

Columns: ``emdb_id, method, nz, ny, nx, voxel_size_A, contour, resolution_A, map_bytes, half_maps,
map_path, header_path, problem``.  The box comes from the header's ``map/dimensions`` or, when
absent, from the MRC header (the first 1024 bytes, inflated alone).  ``map_bytes`` is the size of
the file as stored (compressed).  Written as TSV, or Parquet when the name ends in ``.parquet``.

A manifest may also be a plain list of ids (one per line, or a TSV with only ``emdb_id``): batch
then resolves each id against a mirror or downloads it.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import GpuvalidError, InputError, one_line
from ..io.emdb import parse_header_xml
from .ids import layout, parse_id, short_repr
from .resolve import find_in_mirror, half_maps

FIELDS = ["emdb_id", "method", "nz", "ny", "nx", "voxel_size_A", "contour", "resolution_A", "map_bytes",
          "half_maps", "map_path", "header_path", "problem"]
INVALID_PREFIX = "invalid-"  # pseudo-entries for manifest lines that name no entry
NUMERIC = {"nz": int, "ny": int, "nx": int, "voxel_size_A": float, "contour": float, "resolution_A": float,
           "map_bytes": int, "half_maps": int}


def _int(text) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def box_from_xml(root: ET.Element) -> tuple[int, int, int] | None:
    """Return (nz, ny, nx) from the header's ``map/dimensions`` (col, row, sec), or None when incomplete."""
    dims = root.find(".//map/dimensions")
    if dims is None:
        return None
    c, r, s = (_int(dims.findtext(t)) for t in ("col", "row", "sec"))
    return (s, r, c) if None not in (c, r, s) else None  # z, y, x for the default axis order


def box_from_mrc(path: Path) -> tuple[int, int, int] | None:
    """(nz, ny, nx) in data order (sections, rows, columns) from the first 1024 bytes of the map."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(1024)
    except Exception:  # OSError, EOFError, zlib.error: a corrupt map has no box here
        return None
    if len(head) < 1024:
        return None
    for endian in "<>":
        nc, nr, ns = struct.unpack(endian + "3i", head[:12])
        if 0 < nc < 100000 and 0 < nr < 100000 and 0 < ns < 100000:
            return ns, nr, nc
    return None


def scan_entry(root: Path, emdb_id: str) -> dict:
    """Manifest row of one entry of the mirror at ``root``."""
    lay = layout(emdb_id)
    m, h = find_in_mirror(root, lay)
    row = dict.fromkeys(FIELDS)
    row.update(emdb_id=lay.emdb_id, map_path=str(m) if m else "", header_path=str(h) if h else "",
               half_maps=len(half_maps(root, lay)), problem="")
    problems = []
    box = None
    if h is None:
        problems.append("header missing")
    else:
        try:
            xml = ET.parse(h).getroot()
            hdr = parse_header_xml(xml)  # strips namespaces in place
            box = box_from_xml(xml)
            row.update(method=hdr.method, contour=hdr.contour, resolution_A=hdr.resolution)
            if hdr.voxel_size is not None:
                row["voxel_size_A"] = float(np.mean(hdr.voxel_size))
        except (ET.ParseError, OSError, ValueError, GpuvalidError) as exc:
            problems.append(f"header unreadable: {one_line(exc)}")
    if m is None:
        problems.append("map missing")
    else:
        try:
            row["map_bytes"] = m.stat().st_size
        except OSError as exc:
            problems.append(f"map unreadable: {exc.strerror or exc}")
        if box is None:
            box = box_from_mrc(m)
    if box is not None:
        row["nz"], row["ny"], row["nx"] = box
    row["problem"] = "; ".join(problems)
    return row


def list_entries(root: Path) -> list[str]:
    """Return the ids of the entries under ``root/structures`` (sorted by number).

    Raises
    ------
    InputError
        When ``root`` has no ``structures/`` folder.
    """
    base = Path(root) / "structures"
    if not base.is_dir():
        raise InputError(f"{root} does not look like an EMDB mirror (no structures/ folder)")
    ids = [parse_id(p.name) for p in base.iterdir() if p.is_dir()]
    return sorted((i for i in ids if i), key=lambda s: int(s.split("-")[1]))


def scan_archive(root: str | Path, ids: list[str] | None = None, on_entry=None) -> list[dict]:
    """Return the manifest rows of ``ids`` (default: every entry of the mirror at ``root``).

    ``on_entry(row)`` is called after each entry is scanned (progress).
    """
    root = Path(root)
    rows = []
    for eid in ids if ids is not None else list_entries(root):
        rows.append(scan_entry(root, eid))
        if on_entry is not None:
            on_entry(rows[-1])
    return rows


def write_manifest(rows: list[dict], path: str | Path) -> Path:
    """Write ``rows`` to ``path`` as TSV (through ``<name>.tmp``), or Parquet for a ``.parquet`` name; return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        write_parquet(rows, path, FIELDS)
        return path
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS, delimiter="\t", extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in FIELDS})
    tmp.replace(path)
    return path


def write_parquet(rows: list[dict], path: Path, fields: list[str]) -> None:
    """Write the columns ``fields`` of ``rows`` to ``path`` as a Parquet table.

    Raises
    ------
    InputError
        When pyarrow is not installed.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("writing Parquet needs pyarrow (pip install pyarrow); use a .tsv/.csv name") from None
    table = pa.Table.from_pylist([{k: r.get(k) for k in fields} for r in rows])
    pq.write_table(table, path)


def _convert(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if k is None:
            continue
        v = None if v is None or (isinstance(v, str) and v.strip() == "") else v
        if v is not None and k in NUMERIC:
            try:
                v = NUMERIC[k](float(v)) if NUMERIC[k] is int else float(v)
            except (TypeError, ValueError, OverflowError):
                v = None
        out[k] = v
    return out


def invalid_row(where: str, raw, reason: str) -> dict:
    """Return the row of a manifest line that names no usable entry.

    Batch records it as a failed pseudo-entry ``invalid-<hash of the line>`` (a safe folder name, stable
    across reruns) instead of dropping it.
    """
    key = hashlib.sha1(repr(raw).encode("utf-8", "backslashreplace")).hexdigest()[:12]
    return {"emdb_id": f"{INVALID_PREFIX}{key}", "invalid": f"{where}: {reason}"}


def is_invalid(row: dict) -> bool:
    """Return True for a row made by :func:`invalid_row` (a manifest line that names no usable entry)."""
    return bool(row.get("invalid"))


def _text_lines(path: Path) -> list[tuple[int, str | None, bytes]]:
    """(line number, text or None when not UTF-8, raw bytes) of the non-blank, non-comment lines."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        raise InputError(f"manifest {path.name} is a binary file, not a TSV/CSV/Parquet manifest or an id list")
    out = []
    for n, raw in enumerate(data.splitlines(), 1):
        try:
            text = raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError:
            if raw.strip():
                out.append((n, None, raw))
            continue
        if text.strip() and not text.lstrip().startswith("#"):
            out.append((n, text, raw))
    return out


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a TSV/CSV/Parquet manifest or of a plain id list; ids are normalised to 'EMD-1234'.

    A text file is a table when its first line has an ``emdb_id`` column, else a list of ids (the
    first column of each line).  Lines that are not UTF-8 or name no EMDB id become invalid rows
    (see :func:`invalid_row`); duplicates are dropped.  A manifest with no valid id at all is an
    :class:`InputError`.

    Raises
    ------
    InputError
        When the file is missing, unreadable, binary or empty, a Parquet file cannot be read (no pyarrow, not
        Parquet, no ``emdb_id`` column), or no line names a valid EMDB id.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest not found: {path}" + (" (a folder)" if path.is_dir() else ""))
    rows: list[dict] = []
    try:
        if path.suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise InputError("reading a Parquet manifest needs pyarrow (pip install pyarrow)") from None
            try:
                table = pq.read_table(path)
            except Exception as exc:  # pyarrow raises its own ArrowInvalid / OSError types
                raise InputError(f"manifest {path.name} is not a readable Parquet file ({one_line(exc)})") from None
            if "emdb_id" not in table.column_names:
                raise InputError(f"manifest {path.name} has no emdb_id column")
            rows = [dict(r, _where=f"row {i + 1}") for i, r in enumerate(table.to_pylist())]
        else:
            lines = _text_lines(path)
            if not lines:
                raise InputError(f"manifest {path.name} is empty")
            first = lines[0][1] or ""
            delim = "\t" if "\t" in first else ","
            def cells(text: str) -> list[str]:
                try:
                    return [c.strip() for c in next(csv.reader([text], delimiter=delim), [])]
                except csv.Error:  # e.g. a field beyond the csv module's size limit
                    return [c.strip() for c in text.split(delim)]
            cols = cells(first)
            if "emdb_id" in (c.lower() for c in cols):
                cols = ["emdb_id" if c.lower() == "emdb_id" else c for c in cols]
                body = lines[1:]
            else:
                cols, body = None, lines
            for n, text, raw in body:
                where = f"{path.name} line {n}"
                if text is None:
                    rows.append(invalid_row(where, raw, f"not UTF-8 text ({short_repr(raw)})"))
                elif cols is None:
                    rows.append({"emdb_id": (cells(text) or [""])[0], "_where": where})
                else:
                    # a ragged line keeps the cells it has; cells beyond the header are dropped
                    rows.append(dict(zip(cols, cells(text), strict=False), _where=where))
    except OSError as exc:
        raise InputError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
    out, seen, n_valid = [], set(), 0
    for r in rows:
        if is_invalid(r):
            eid = r["emdb_id"]
        else:
            where = r.pop("_where", path.name)
            raw_id = r.get("emdb_id")
            r = _convert(r)
            eid = parse_id("" if raw_id is None else raw_id)
            if eid is None:
                r = invalid_row(where, raw_id, f"{short_repr(raw_id)} is not an EMDB id "
                                               "(expected EMD-1234, emd_1234 or 1234)")
                eid = r["emdb_id"]
            else:
                r["emdb_id"] = eid
                n_valid += 1
        if eid in seen:
            continue
        seen.add(eid)
        out.append(r)
    if n_valid == 0:
        bad = next((r["invalid"] for r in out if is_invalid(r)), f"{path.name} has no rows")
        raise InputError(f"manifest {path.name} names no valid EMDB entry ({bad})")
    return out


def size_stats(rows: list[dict]) -> dict:
    """Size distribution of the archive (what bench/ uses to plan): counts, map bytes, box edges."""
    b = np.array([r["map_bytes"] for r in rows if r.get("map_bytes")], dtype=float)
    edge = np.array([max(r["nx"], r["ny"], r["nz"]) for r in rows if r.get("nx")], dtype=float)
    vox = np.array([r["nx"] * r["ny"] * r["nz"] for r in rows if r.get("nx")], dtype=float)
    q = [5, 25, 50, 75, 95, 100]
    n = len(rows)
    mb = dict(zip(q, (np.percentile(b, q) / 1e6).round(2).tolist(), strict=True)) if b.size else {}
    edges = dict(zip(q, np.percentile(edge, q).round(0).tolist(), strict=True)) if edge.size else {}
    return {
        "entries": n,
        "with_contour_pct": 100.0 * sum(r.get("contour") is not None for r in rows) / max(n, 1),
        "with_half_maps_pct": 100.0 * sum(bool(r.get("half_maps")) for r in rows) / max(n, 1),
        "with_problem": sum(bool(r.get("problem")) for r in rows),
        "total_GB": float(b.sum() / 1e9) if b.size else 0.0,
        "map_MB_percentiles": mb,
        "box_edge_percentiles": edges,
        "uncompressed_GB": float(vox.sum() * 4 / 1e9) if vox.size else 0.0,
    }
