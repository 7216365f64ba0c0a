"""Mirror of every shared map (EMDB archive layout + minimal v3.0 headers) and its manifest: the input of the
committed dashboard (reports/dashboard). Usage: python bench/shared_mirror.py DIR/mirror (writes DIR/manifest.tsv)."""
import sys
from pathlib import Path
from gpuvalid.archive.mirror import add_entry, shared_entries
from gpuvalid.archive.manifest import scan_archive, write_manifest

data = Path("/work/shared/data"); root = Path(sys.argv[1]); root.mkdir(parents=True, exist_ok=True)
ents = shared_entries(data)
ents.append({"file": data / "emd_3001.map", "emdb_id": "EMD-3001", "voxel_size": None,
             "contour": None, "resolution": None})
for e in ents:
    f = Path(e["file"])
    add_entry(root, e["emdb_id"], f, voxel_size=e["voxel_size"], contour=e["contour"], resolution=e["resolution"])
    print(e["emdb_id"], f.name, e["voxel_size"], e["contour"], e["resolution"])
write_manifest(scan_archive(root), root.parent / "manifest.tsv")
