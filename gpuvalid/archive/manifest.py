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
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.emdb import normalise_emdb_id, parse_header_xml
from .ids import layout
from .resolve import find_in_mirror, half_maps

FIELDS = ["emdb_id", "method", "nz", "ny", "nx", "voxel_size_A", "contour", "resolution_A", "map_bytes",
          "half_maps", "map_path", "header_path", "problem"]
NUMERIC = {"nz": int, "ny": int, "nx": int, "voxel_size_A": float, "contour": float, "resolution_A": float,
           "map_bytes": int, "half_maps": int}


def _int(text) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def box_from_xml(root: ET.Element) -> tuple[int, int, int] | None:
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
    except (OSError, EOFError):
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
        except (ET.ParseError, OSError) as exc:
            problems.append(f"header unreadable: {' '.join(str(exc).split())}")
    if m is None:
        problems.append("map missing")
    else:
        row["map_bytes"] = m.stat().st_size
        if box is None:
            box = box_from_mrc(m)
    if box is not None:
        row["nz"], row["ny"], row["nx"] = box
    row["problem"] = "; ".join(problems)
    return row


def list_entries(root: Path) -> list[str]:
    """Ids of the entries under ``root/structures`` (sorted by number)."""
    base = Path(root) / "structures"
    if not base.is_dir():
        raise InputError(f"{root} does not look like an EMDB mirror (no structures/ folder)")
    ids = [normalise_emdb_id(p.name) for p in base.iterdir() if p.is_dir()]
    return sorted((i for i in ids if i), key=lambda s: int(s.split("-")[1]))


def scan_archive(root: str | Path, ids: list[str] | None = None, on_entry=None) -> list[dict]:
    root = Path(root)
    rows = []
    for eid in ids if ids is not None else list_entries(root):
        rows.append(scan_entry(root, eid))
        if on_entry is not None:
            on_entry(rows[-1])
    return rows


def write_manifest(rows: list[dict], path: str | Path) -> Path:
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
            except ValueError:
                v = None
        out[k] = v
    return out


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a TSV/CSV/Parquet manifest or of a plain id list; ids are normalised to 'EMD-1234'."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest not found: {path}")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError("reading a Parquet manifest needs pyarrow (pip install pyarrow)") from None
        rows = pq.read_table(path).to_pylist()
    else:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        if not lines:
            raise InputError(f"manifest {path} is empty")
        delim = "\t" if "\t" in lines[0] else ","
        first = lines[0].split(delim)[0].strip()
        if normalise_emdb_id(first) is not None:  # no header line: a list of ids
            rows = [{"emdb_id": ln.split(delim)[0].strip()} for ln in lines]
        else:
            rows = list(csv.DictReader(lines, delimiter=delim))
            if rows and "emdb_id" not in rows[0]:
                raise InputError(f"manifest {path} has no emdb_id column")
    out, seen = [], set()
    for r in rows:
        r = _convert(r)
        eid = normalise_emdb_id(str(r.get("emdb_id") or ""))
        if eid is None:
            raise InputError(f"manifest {path}: {r.get('emdb_id')!r} is not an EMDB id")
        if eid in seen:
            continue
        seen.add(eid)
        r["emdb_id"] = eid
        out.append(r)
    return out


def size_stats(rows: list[dict]) -> dict:
    """Size distribution of the archive (what bench/ uses to plan): counts, map bytes, box edges."""
    b = np.array([r["map_bytes"] for r in rows if r.get("map_bytes")], dtype=float)
    edge = np.array([max(r["nx"], r["ny"], r["nz"]) for r in rows if r.get("nx")], dtype=float)
    vox = np.array([r["nx"] * r["ny"] * r["nz"] for r in rows if r.get("nx")], dtype=float)
    q = [5, 25, 50, 75, 95, 100]
    n = len(rows)
    return {
        "entries": n,
        "with_contour_pct": 100.0 * sum(r.get("contour") is not None for r in rows) / max(n, 1),
        "with_half_maps_pct": 100.0 * sum(bool(r.get("half_maps")) for r in rows) / max(n, 1),
        "with_problem": sum(bool(r.get("problem")) for r in rows),
        "total_GB": float(b.sum() / 1e9) if b.size else 0.0,
        "map_MB_percentiles": dict(zip(q, (np.percentile(b, q) / 1e6).round(2).tolist())) if b.size else {},
        "box_edge_percentiles": dict(zip(q, np.percentile(edge, q).round(0).tolist())) if edge.size else {},
        "uncompressed_GB": float(vox.sum() * 4 / 1e9) if vox.size else 0.0,
    }
