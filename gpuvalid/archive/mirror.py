"""Build a small archive-layout mirror from local map files (tests, benchmarks, demos).

Headers are minimal EMDB v3.0 XML documents carrying exactly what gpuvalid reads: method,
``final_reconstruction/resolution``, ``map/dimensions``, ``map/pixel_spacing`` and the primary
contour level.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from xml.sax.saxutils import escape

from .ids import layout


def header_xml(emdb_id: str, *, box_zyx=None, voxel_size=None, contour=None, resolution=None,
               method: str = "singleParticle", map_file: str | None = None) -> str:
    """Return a minimal v3.0 header; ``voxel_size`` is one number or (x, y, z) in Å."""
    lay = layout(emdb_id)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<emd emdb_id="{lay.emdb_id}" version="3.0.0.0">',
           "  <structure_determination_list><structure_determination>",
           f"    <method>{escape(method)}</method>"]
    if resolution is not None:
        out += ["    <singleparticle_processing><final_reconstruction>",
                f'      <resolution res_type="BY AUTHOR" units="Å">{float(resolution):g}</resolution>',
                "    </final_reconstruction></singleparticle_processing>"]
    out += ["  </structure_determination></structure_determination_list>",
            '  <map format="CCP4">',
            f"    <file>{escape(map_file or Path(lay.map).name)}</file>"]
    if box_zyx is not None:
        nz, ny, nx = (int(v) for v in box_zyx)
        out.append(f"    <dimensions><col>{nx}</col><row>{ny}</row><sec>{nz}</sec></dimensions>")
    if voxel_size is not None:
        vx, vy, vz = (voxel_size,) * 3 if isinstance(voxel_size, (int, float)) else voxel_size
        out.append(f'    <pixel_spacing><x units="Å">{vx:g}</x><y units="Å">{vy:g}</y>'
                   f'<z units="Å">{vz:g}</z></pixel_spacing>')
    if contour is not None:
        out += ["    <contour_list>",
                f'      <contour primary="true"><level>{float(contour):g}</level><source>AUTHOR</source></contour>',
                "    </contour_list>"]
    out += ["  </map>", "</emd>", ""]
    return "\n".join(out)


def add_entry(root: Path, emdb_id: str, map_file: Path, *, header: bool = True, half_maps: bool = False,
              compresslevel: int = 6, **meta) -> tuple[Path, Path | None]:
    """Copy ``map_file`` gzip-compressed into ``root`` under ``emdb_id``'s layout, with a header.

    A ``.gz`` ``map_file`` is read through gzip, so the entry holds the map compressed once.  Returns the
    paths of the map and of the header (None without one).
    """
    lay = layout(emdb_id)
    m = root / lay.map
    m.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if str(map_file).endswith(".gz") else open
    with opener(map_file, "rb") as src, gzip.open(m, "wb", compresslevel=compresslevel) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    h = None
    if header:
        h = root / lay.header
        h.parent.mkdir(parents=True, exist_ok=True)
        h.write_text(header_xml(lay.emdb_id, **meta), encoding="utf-8")
    if half_maps:
        for i in (1, 2):
            p = root / lay.half_map(i)
            p.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(m, p)
    return m, h


def shared_entries(data_dir: str | Path) -> list[dict]:
    """Return the entries of ``shared/data/MANIFEST.tsv`` usable in a mirror.

    Each has file, emdb_id, isotropic voxel size (Å), contour and resolution (Å) (None when '-').
    """
    import csv

    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return None
    data_dir = Path(data_dir)
    out = []
    with open(data_dir / "MANIFEST.tsv", newline="") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            vs = num(r.get("voxel_A"))
            eid = (r.get("emdb_id") or "").split()[0]
            if vs is None or not eid.startswith("EMD-") or not (data_dir / r["file"]).is_file():
                continue
            out.append({"file": data_dir / r["file"], "emdb_id": eid, "voxel_size": vs,
                        "contour": num(r.get("contour")), "resolution": num(r.get("resolution_A"))})
    return out
