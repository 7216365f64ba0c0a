"""Minimal reader for atomic models (PDB fixed columns and mmCIF ``_atom_site`` loops, optionally gzip).

Only what simulation needs: coordinates (Å), element, residue identity, atom name.  Hydrogens,
waters and alternate locations other than the first are dropped; only the first model is read.
"""

from __future__ import annotations

import gzip
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# atomic numbers of the elements found in biological models (others fall back to carbon)
ATOMIC_NUMBER = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9, "NA": 11, "MG": 12, "P": 15, "S": 16, "CL": 17,
                 "K": 19, "CA": 20, "MN": 25, "FE": 26, "CO": 27, "NI": 28, "CU": 29, "ZN": 30, "SE": 34,
                 "BR": 35, "I": 53}
_WATER = {"HOH", "WAT", "DOD", "H2O", "TIP", "TIP3", "SOL"}


@dataclass
class Atoms:
    """Atoms of one model.

    ``xyz`` (n, 3) Å in x, y, z order; per-atom element, atomic number, atom name, residue key (chain,
    residue number, insertion code) and residue name.
    """

    xyz: np.ndarray
    element: np.ndarray
    z: np.ndarray
    name: np.ndarray
    res_key: np.ndarray
    res_name: np.ndarray

    def __len__(self) -> int:
        return len(self.xyz)

    def subset(self, keep: np.ndarray) -> "Atoms":
        """Return the atoms selected by ``keep`` (boolean mask or indices)."""
        return Atoms(self.xyz[keep], self.element[keep], self.z[keep], self.name[keep],
                     self.res_key[keep], self.res_name[keep])

    def transformed(self, rot: np.ndarray, shift=(0.0, 0.0, 0.0)) -> "Atoms":
        """Coordinates ``rot @ x + shift`` (proper rotations keep the hand)."""
        xyz = self.xyz @ np.asarray(rot, dtype=float).T + np.asarray(shift, dtype=float)
        return Atoms(xyz, self.element, self.z, self.name, self.res_key, self.res_name)


def _open_text(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("latin-1")


def _element_from_name(name: str) -> str:
    letters = "".join(c for c in name if c.isalpha()).upper()
    if not letters:
        return "C"
    if name[:1].isdigit() or len(name) < 4 or name[0] == " ":
        return letters[0]
    return letters[:2] if letters[:2] in ATOMIC_NUMBER and letters[0] not in "CNOSH" else letters[0]


def _parse_pdb(text: str):
    rows = []
    for line in text.splitlines():
        rec = line[:6]
        if rec.startswith("ENDMDL"):
            break
        if rec not in ("ATOM  ", "HETATM"):
            continue
        alt = line[16:17]
        if alt not in (" ", "A", "1", ""):
            continue
        try:
            x, y, zc = float(line[30:38]), float(line[38:46]), float(line[46:54])
        except ValueError:
            continue
        name = line[12:16]
        el = line[76:78].strip().upper() if len(line) >= 78 else ""
        if not el or not el.isalpha():
            el = _element_from_name(name)
        rows.append((x, y, zc, el, name.strip(), (line[21:22], line[22:26].strip(), line[26:27].strip()),
                     line[17:20].strip()))
    return rows


def _parse_cif(text: str):
    lines = text.splitlines()
    rows = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "loop_" and i + 1 < len(lines) and lines[i + 1].strip().startswith("_atom_site."):
            i += 1
            cols = []
            while i < len(lines) and lines[i].strip().startswith("_atom_site."):
                cols.append(lines[i].strip().split()[0][len("_atom_site."):])
                i += 1
            idx = {c: k for k, c in enumerate(cols)}

            def g(tok, *names, default="", idx=idx):
                for n in names:
                    if n in idx:
                        return tok[idx[n]]
                return default

            first_model = None
            while i < len(lines):
                s = lines[i].strip()
                if not s or s.startswith("#") or s.startswith("loop_") or s.startswith("_"):
                    break
                tok = shlex.split(s, posix=True) if '"' in s or "'" in s else s.split()
                i += 1
                if len(tok) < len(cols):
                    continue
                model = g(tok, "pdbx_PDB_model_num", default="1")
                first_model = first_model or model
                if model != first_model:
                    continue
                alt = g(tok, "label_alt_id", default=".")
                if alt not in (".", "?", "A", "1"):
                    continue
                el = g(tok, "type_symbol").upper()
                name = g(tok, "auth_atom_id", "label_atom_id")
                if not el.isalpha():
                    el = _element_from_name(name)
                ins = g(tok, "pdbx_PDB_ins_code", default="?")
                rows.append((float(g(tok, "Cartn_x")), float(g(tok, "Cartn_y")), float(g(tok, "Cartn_z")), el,
                             name, (g(tok, "auth_asym_id", "label_asym_id"), g(tok, "auth_seq_id", "label_seq_id"),
                                    "" if ins in ("?", ".") else ins),
                             g(tok, "auth_comp_id", "label_comp_id")))
            break
        i += 1
    return rows


def _first_copies(rows: list) -> list:
    """Each (residue, atom name) once: the first copy.

    Some files repeat atoms of alternate side-chain conformations without alternate-location labels (the
    DSSP test chains do); kept, they would put two or three times the density on those side chains.
    """
    seen, out = set(), []
    for r in rows:
        key = (r[5], r[4])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def read_atoms(path, keep_hydrogens: bool = False) -> Atoms:
    """Atoms of the first model in a PDB (``.pdb``/``.ent``) or mmCIF (``.cif``) file, ``.gz`` allowed.

    Raises
    ------
    ValueError
        When the file holds no atoms (after dropping waters and, unless ``keep_hydrogens``, hydrogens).
    """
    path = Path(path)
    text = _open_text(path)
    is_cif = ".cif" in path.name.lower() or text.lstrip().startswith("data_")
    rows = _parse_cif(text) if is_cif else _parse_pdb(text)
    rows = [r for r in rows if r[6] not in _WATER and (keep_hydrogens or r[3] not in ("H", "D"))]
    rows = _first_copies(rows)
    if not rows:
        raise ValueError(f"no atoms found in {path}")
    xyz = np.array([r[:3] for r in rows], dtype=float)
    el = np.array([r[3] for r in rows])
    z = np.array([ATOMIC_NUMBER.get(e, 6) for e in el], dtype=float)
    key = np.array(["|".join(r[5]) for r in rows])
    return Atoms(xyz, el, z, np.array([r[4] for r in rows]), key, np.array([r[6] for r in rows]))
