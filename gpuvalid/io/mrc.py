"""Reading MRC/CCP4 maps (also ``.gz``/``.bz2``) into float32 ``[z, y, x]`` arrays.

The file's ``mapc/mapr/maps`` axis order is honoured (data are transposed to Z, Y, X), a stack of
volumes gives its first volume, the voxel size comes from the header (``cella / mx`` …, in X, Y, Z
order) and the origin from ``origin`` or, when that is zero, from ``nxstart`` … × voxel size.
Every problem becomes an :class:`~gpuvalid.errors.InputError` with a one-line message.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

MIN_BOX = 8  # voxels along any axis


@dataclass
class MrcMap:
    data: np.ndarray                 # float32, [z, y, x]
    voxel_size: tuple[float, float, float]  # x, y, z in Å
    origin_A: tuple[float, float, float]    # x, y, z in Å
    axis_order: tuple[int, int, int]        # mapc, mapr, maps
    notes: list[str] = field(default_factory=list)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of the file's bytes (as stored, compressed or not)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def read_mrc(path: str | Path) -> MrcMap:
    """Read ``path`` permissively and check what the analyses rely on."""
    import mrcfile

    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"empty file: {path}")
    notes: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with mrcfile.open(str(path), mode="r", permissive=True) as mrc:
                header = mrc.header
                raw = None if mrc.data is None else np.array(mrc.data)
                vs = mrc.voxel_size
                voxel = (float(vs.x), float(vs.y), float(vs.z))
                order = (int(header.mapc), int(header.mapr), int(header.maps))
                origin = (float(header.origin.x), float(header.origin.y), float(header.origin.z))
                nstart = (int(header.nxstart), int(header.nystart), int(header.nzstart))
                mode = int(header.mode)
    except (OSError, EOFError, ValueError, TypeError, MemoryError) as exc:
        raise InputError(f"cannot read {path.name} as MRC/CCP4: {_one_line(exc)}") from None
    problems = [_one_line(w.message) for w in caught]
    if raw is None:
        why = problems[0] if problems else "no data block"
        raise InputError(f"cannot read {path.name} as MRC/CCP4: {why}")
    notes += [f"MRC header: {p}" for p in problems]

    if mode in (3, 4):
        raise InputError(f"{path.name}: complex-valued MRC (mode {mode}) is not a density map")
    if raw.ndim == 4:
        notes.append(f"stack of {raw.shape[0]} volumes: using the first")
        raw = raw[0]
    if raw.ndim != 3:
        raise InputError(f"{path.name}: a {raw.ndim}-D image, not a 3-D map")

    if sorted(order) != [1, 2, 3]:
        notes.append(f"invalid axis order mapc/mapr/maps={order}: assuming 1,2,3")
        order = (1, 2, 3)
    # data axes are (sections, rows, columns) = labels (maps, mapr, mapc); want (Z, Y, X) = (3, 2, 1)
    labels = [order[2], order[1], order[0]]
    perm = [labels.index(3), labels.index(2), labels.index(1)]
    if perm != [0, 1, 2]:
        notes.append(f"axis order mapc/mapr/maps = {order[0]},{order[1]},{order[2]}: transposed to Z,Y,X")
    data = np.ascontiguousarray(raw.transpose(perm), dtype=np.float32)

    if min(data.shape) < MIN_BOX:
        raise InputError(f"{path.name}: box {data.shape[::-1]} (x,y,z) is too small "
                         f"(every axis needs at least {MIN_BOX} voxels)")
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise InputError(f"{path.name}: {bad} voxel(s) are NaN or Inf")
    if float(data.max()) == float(data.min()):
        raise InputError(f"{path.name}: the map is constant ({float(data.max()):g})")

    if origin == (0.0, 0.0, 0.0) and any(nstart):
        # nxstart/nystart/nzstart are along columns/rows/sections
        by_axis = {order[0]: nstart[0], order[1]: nstart[1], order[2]: nstart[2]}
        origin = tuple(by_axis[a] * voxel[a - 1] for a in (1, 2, 3))
    return MrcMap(data, voxel, tuple(float(o) for o in origin), order, notes)


def write_mrc(path: str | Path, data, voxel_size: float, origin_A=(0.0, 0.0, 0.0)) -> Path:
    """Write a float32 ``[z, y, x]`` map with its voxel size and origin."""
    import mrcfile

    path = Path(path)
    with mrcfile.new(str(path), overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
        mrc.voxel_size = float(voxel_size)
        mrc.header.origin = tuple(float(o) for o in origin_A)
    return path


def _one_line(msg) -> str:
    return " ".join(str(msg).split())
