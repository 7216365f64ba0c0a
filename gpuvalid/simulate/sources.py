"""The atomic models used for training and testing, where they come from, and the split by structure.

Sources (coordinates of PDB entries; PDB data are CC0):
- ``shared``: the models in the project's ``shared/data/models`` folder (TEMPy test files, DAQ and CryoREAD
  examples), found through ``$GPUVALID_DATA`` or ``../shared/data`` beside the repository;
- ``mdat``: ``MDAnalysisTests==2.11.0`` (PyPI sdist, GPL-2.0+ test suite; we read only the PDB coordinates
  in ``MDAnalysisTests/data``, mostly the DSSP reference chains);
- ``pdbfixer``: ``pdbfixer==1.12.0`` (PyPI sdist, MIT; ``pdbfixer/tests/data``).

:func:`fetch` downloads the two sdists with ``pip download`` (the ordinary PyPI client) into a cache folder
(``$GPUVALID_STRUCTURES`` or ``~/.cache/gpuvalid/structures``) and extracts only the structure files.
The split is by *group* (one protein family per group: the two actin models and the two adenylate kinase
models share a group), so no structure is in two splits.  ``3j6b_chain9`` (the model of the real-map check
on EMD-2566) and the actin group (the model of EMD-5168) are fixed in the test split.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

MDAT = "mdanalysistests==2.11.0"
PDBFIXER = "pdbfixer==1.12.0"

_DSSP = ("1ahsA 1bvyF 1dx5I 1eteA 1h4aX 1i8nA 1lpbA 1mr1D 1or4A 1pdoA 1v7mV 1y1lA 2a2lA 2cayA 2cviA 2fvvA "
         "2gu3A 2i39A 2j49A 2qdlA 2va0A 2xcjA 2xdgA 2xr6A 3a4rA 3aqgA 3e8mA 3ejfA 3fhkA 3gfsA 3gknA 3gwiA "
         "3hklA 3ieyB 3ii2A 3k7pA 3l4rA 3lqcA 3nbkA 3nngA 3ny7A 3nzmA 3on9A 3pivA 3q4oA 3so6A 3t5gB 3vjzA "
         "4dkcA 4gcnA").split()


@dataclass(frozen=True)
class Structure:
    """One atomic model of the catalogue: its id, source, file inside the source and split group."""

    name: str        # short id
    source: str      # shared | mdat | pdbfixer
    member: str      # path inside the source (folder or sdist)
    group: str       # split unit (protein family)
    protein: bool = True


def catalogue() -> list[Structure]:
    """Every structure gpuvalid's training can use (before the split)."""
    s = [Structure("1a5t", "shared", "models/1a5t.pdb", "1a5t"),
         Structure("1akea", "shared", "models/1akea.pdb", "adk"),
         Structure("1ggg", "shared", "models/1ggg.pdb", "1ggg"),
         Structure("1j6z", "shared", "models/1j6z.pdb", "actin"),
         Structure("3mfp", "shared", "models/3mfp.pdb", "actin"),
         Structure("3j6b_chain9", "shared", "models/3j6b_chain9.pdb", "3j6b_chain9"),
         Structure("6v5b_drna", "shared", "models/6v5b_drna.pdb", "6v5b", protein=False),
         Structure("5fuu", "shared", "models/pdb5fuu.ent", "5fuu")]
    d = "mdanalysistests-2.11.0/MDAnalysisTests/data/"
    for n, m, g in [("19hc", "19hc.pdb.gz", "19hc"), ("1a28", "1a28.pdb.gz", "1a28"), ("1hvr", "1hvr.pdb", "1hvr"),
                    ("1osm", "1osm.pdb.gz", "1osm"), ("4e43", "4E43.pdb", "4e43"),
                    ("adk_open", "adk_open.pdb", "adk"), ("2zmm", "merge/2zmm/protein.pdb", "2zmm"),
                    ("1bd2", "mmcif/1BD2.cif.gz", "1bd2"), ("3kpr", "mmcif/3KPR.cif.gz", "3kpr"),
                    ("3pwp", "mmcif/3PWP.cif.gz", "3pwp"), ("5pti", "mmcif/5PTI.cif.gz", "5pti")]:
        s.append(Structure(n, "mdat", d + m, g))
    s += [Structure(c, "mdat", d + f"dssp/{c}.pdb.gz", c[:4].lower()) for c in _DSSP]
    s += [Structure("1bhl", "pdbfixer", "pdbfixer-1.12.0/pdbfixer/tests/data/1BHL.pdb", "1bhl"),
          Structure("4jsv", "pdbfixer", "pdbfixer-1.12.0/pdbfixer/tests/data/4JSV.pdb", "4jsv")]
    return s


FIXED_TEST = {"3j6b_chain9", "actin"}


def split_of(group: str, val_frac: float = 0.15, test_frac: float = 0.15) -> str:
    """'train', 'val' or 'test' for a group: fixed test groups, otherwise a hash of the group name."""
    if group in FIXED_TEST:
        return "test"
    u = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) / 16**8
    return "test" if u < test_frac else ("val" if u < test_frac + val_frac else "train")


def splits(structures: list[Structure] | None = None) -> dict[str, list[Structure]]:
    """Structures (default: the whole :func:`catalogue`) sorted into 'train', 'val' and 'test' by group."""
    out: dict[str, list[Structure]] = {"train": [], "val": [], "test": []}
    for s in structures or catalogue():
        out[split_of(s.group)].append(s)
    return out


def cache_dir() -> Path:
    """Folder of the downloaded structures: ``$GPUVALID_STRUCTURES`` or ``~/.cache/gpuvalid/structures``."""
    return Path(os.environ.get("GPUVALID_STRUCTURES", Path.home() / ".cache" / "gpuvalid" / "structures"))


def shared_data_dir() -> Path | None:
    """Return the shared data folder holding ``models/`` (``$GPUVALID_DATA``, else ``../shared/data``), or None."""
    env = os.environ.get("GPUVALID_DATA")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    for c in cands:
        if (c / "models").is_dir():
            return c
    return None


def fetch(quiet: bool = True) -> Path:
    """Download (once) the PyPI sdists that ship structures and extract their structure files."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    for spec in (MDAT, PDBFIXER):
        name, ver = spec.split("==")
        marker = root / f".{name}-{ver}.done"
        if marker.exists():
            continue
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", spec, "-d", str(root)]
        subprocess.run(cmd, check=True, capture_output=quiet)
        tgz = next(root.glob(f"{name}-{ver}.tar.gz"))
        wanted = {s.member for s in catalogue() if s.source in ("mdat", "pdbfixer")}
        with tarfile.open(tgz) as tf:
            tf.extractall(root, members=[m for m in tf.getmembers() if m.name in wanted], filter="data")
        tgz.unlink()
        marker.touch()
    return root


def path_of(s: Structure) -> Path | None:
    """File of a structure, or None when its source is not available here."""
    if s.source == "shared":
        d = shared_data_dir()
        p = d / s.member if d else None
    else:
        p = cache_dir() / s.member
    return p if p is not None and p.is_file() else None
