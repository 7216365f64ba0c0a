"""Reading MRC/CCP4 maps (also ``.gz``/``.bz2``) into float32 ``[z, y, x]`` arrays.

The 1024-byte header is read and checked *before* any data are read or allocated: the box
(``nx, ny, nz``), the mode, the extended-header length ``nsymbt`` and the data length are compared
with the file size (for compressed files the inflater stops at the length the header declares, so a
compression bomb costs no more memory than the map it claims to be).  The header layout is
mrcfile's (``mrcfile.dtypes.HEADER_DTYPE``, MRC2014).

The file's ``mapc/mapr/maps`` axis order is honoured (data are transposed to Z, Y, X), a stack of
volumes gives its first volume, the voxel size comes from the header (``cella / mx`` …, in X, Y, Z
order) and the origin from ``origin`` or, when that is zero, from ``nxstart`` … × voxel size.  The
density values are checked (NaN, ±Inf, magnitudes that overflow float32 arithmetic, a constant map)
before any analysis.  Every problem becomes an :class:`~gpuvalid.errors.InputError` with a
one-line message.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

MIN_BOX = 8  # voxels along any axis
MAX_AXIS = 1 << 16  # voxels along any axis (a larger value is a corrupt header)
DEFAULT_MAX_VOXELS = 1024 ** 3  # 4 GiB as float32; override with max_voxels / --max-voxels
HEADER_BYTES = 1024
MAX_ABS_VALUE = 1e12  # |density| above this overflows float32 sums of squares on large maps
MIN_ABS_VALUE = 1e-12  # a map whose largest |density| is below this underflows float32 squares
MODES = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}  # MRC2014 real modes → NumPy dtype (no byte order)
MODE_NAMES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
_CHUNK = 1 << 22


@dataclass
class MrcMap:
    """A map read by :func:`read_mrc`: float32 ``[z, y, x]`` data, voxel size and origin (Å, x, y, z order).

    ``axis_order`` is the file's ``mapc, mapr, maps``; ``notes`` lists what was assumed or fixed on reading.
    """

    data: np.ndarray                 # float32, [z, y, x]
    voxel_size: tuple[float, float, float]  # x, y, z in Å
    origin_A: tuple[float, float, float] | None  # x, y, z in Å (None: not finite in the header)
    axis_order: tuple[int, int, int]        # mapc, mapr, maps
    notes: list[str] = field(default_factory=list)


@dataclass
class MrcHeader:
    """The header fields gpuvalid uses, checked for consistency (see :func:`read_header`)."""

    nx: int
    ny: int
    nz: int
    mode: int
    dtype: np.dtype          # with byte order
    nsymbt: int
    ispg: int
    mxyz: tuple[int, int, int]
    cell: tuple[float, float, float]
    axis_order: tuple[int, int, int]
    origin: tuple[float, float, float]
    nstart: tuple[int, int, int]
    n_volumes: int           # > 1 for a volume stack
    sections: int            # sections read (nz, or mz for a stack)
    compression: str | None  # "gzip", "bzip2" or None
    notes: list[str] = field(default_factory=list)

    @property
    def data_offset(self) -> int:
        """Byte offset of the voxel data: the 1024-byte header plus the extended header."""
        return HEADER_BYTES + self.nsymbt

    @property
    def voxels(self) -> int:
        """Voxels that will be read (the first volume of a stack)."""
        return self.nx * self.ny * self.sections


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Return the SHA-256 hex digest of the file's bytes (as stored, compressed or not).

    Raises
    ------
    InputError
        When the file cannot be read.
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while True:
                b = fh.read(chunk)
                if not b:
                    break
                h.update(b)
    except OSError as exc:
        raise InputError(f"cannot read {_name(path)}: {_os_reason(exc)}") from None
    return h.hexdigest()


def _name(path) -> str:
    name = Path(path).name
    return name if len(name) <= 80 else name[:60] + "…" + name[-15:]


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _compression(path: Path) -> str | None:
    with open(path, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"BZh":
        return "bzip2"
    return None


def _open_stream(path: Path, compression: str | None):
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "bzip2":
        return bz2.open(path, "rb")
    return open(path, "rb")


def _read_exact(fh, buf: memoryview) -> int:
    """Fill ``buf`` from ``fh`` (stream or file); return the number of bytes read (less at end of file)."""
    got = 0
    n = len(buf)
    while got < n:
        k = fh.readinto(buf[got:min(n, got + _CHUNK)])
        if not k:
            break
        got += k
    return got


def _skip(fh, n: int) -> int:
    """Read and discard ``n`` bytes of a stream in small chunks; return how many were there."""
    if n <= 0:
        return 0
    scratch = bytearray(min(n, _CHUNK))
    mv = memoryview(scratch)
    got = 0
    while got < n:
        k = fh.readinto(mv[:min(len(scratch), n - got)])
        if not k:
            break
        got += k
    return got


def _parse_header(raw: bytes, path: Path) -> tuple[np.ndarray, str, list[str]]:
    """Return the header record and its byte order (from the machine stamp, else from plausible values)."""
    from mrcfile.dtypes import HEADER_DTYPE

    notes: list[str] = []
    st = raw[212:216]
    order = None
    if st[0] == 0x44 and st[1] in (0x44, 0x41):
        order = "<"
    elif st[0] == 0x11 and st[1] == 0x11:
        order = ">"
    candidates = [order] if order else []
    candidates += [o for o in ("<", ">") if o != order]
    for o in candidates:
        h = np.frombuffer(raw, dtype=HEADER_DTYPE.newbyteorder(o), count=1)[0]
        dims = [int(h["nx"]), int(h["ny"]), int(h["nz"])]
        if all(0 < d <= MAX_AXIS for d in dims) and int(h["mode"]) in set(MODES) | {3, 4, 101}:
            if o != order:
                notes.append("machine stamp " + (repr(bytes(st)) if order is None else f"says {order}-endian")
                             + f": read as {'little' if o == '<' else 'big'}-endian")
            break
    else:
        h = np.frombuffer(raw, dtype=HEADER_DTYPE.newbyteorder(order or "<"), count=1)[0]
        o = order or "<"
    if bytes(raw[208:212]) not in (b"MAP ", b"MAP\x00", b"MAP"):
        notes.append("header has no 'MAP ' identifier")
    return h, o, notes


def read_header(path: str | Path, max_voxels: int | None = None) -> MrcHeader:
    """Read and check the 1024-byte header of ``path`` against the file (no data are read).

    Refused: files shorter than a header, unknown or complex modes, box sizes ≤ 0 or above
    ``MAX_AXIS``, a negative or over-long extended header (``nsymbt``), data shorter than the header
    declares, more than ``max_voxels`` voxels (default :data:`DEFAULT_MAX_VOXELS`), a volume stack whose
    ``mz`` does not divide ``nz``.

    Raises
    ------
    InputError
        When the file is missing, unreadable or fails any of the checks above (also boxes smaller than
        ``MIN_BOX`` voxels along an axis, 2-D images, and modes 3, 4 and 101).
    """
    path = Path(path)
    try:
        if not path.exists():
            raise InputError(f"file not found: {path}")
        if not path.is_file():
            raise InputError(f"not a regular file: {path}")
        size = path.stat().st_size
        if size == 0:
            raise InputError(f"empty file: {_name(path)}")
        comp = _compression(path)
        with _open_stream(path, comp) as fh:
            raw = fh.read(HEADER_BYTES)
    except (OSError, zlib.error) as exc:  # permissions, name too long, corrupt compressed stream
        why = _os_reason(exc) if getattr(exc, "strerror", None) else " ".join(str(exc).split())
        raise InputError(f"cannot read {_name(path)}: {why}") from None
    except EOFError:
        raise InputError(f"cannot read {_name(path)}: the {comp} stream ends early") from None
    name = _name(path)
    if len(raw) < HEADER_BYTES:
        raise InputError(f"{name} is not an MRC/CCP4 map: {len(raw)} bytes, shorter than the "
                         f"{HEADER_BYTES}-byte header")
    h, order, notes = _parse_header(raw, path)
    nx, ny, nz, mode = int(h["nx"]), int(h["ny"]), int(h["nz"]), int(h["mode"])
    if not all(0 < d <= MAX_AXIS for d in (nx, ny, nz)):
        raise InputError(f"{name} is not a valid MRC/CCP4 map: header box nx, ny, nz = {nx}, {ny}, {nz} "
                         f"(each must be 1–{MAX_AXIS})")
    if mode in (3, 4):
        raise InputError(f"{name}: complex-valued MRC (mode {mode}) is not a density map")
    if mode == 101:
        raise InputError(f"{name}: MRC mode 101 (4-bit packed images) is not a density map")
    if mode not in MODES:
        raise InputError(f"{name}: unknown MRC data mode {mode} (density maps use modes 0, 1, 2, 6 or 12)")
    dtype = np.dtype(MODES[mode]).newbyteorder(order)
    nsymbt = int(h["nsymbt"])
    if nsymbt < 0:
        raise InputError(f"{name}: negative extended-header length (nsymbt = {nsymbt})")
    if comp is None and nsymbt > size - HEADER_BYTES:
        raise InputError(f"{name}: the extended header (nsymbt = {nsymbt} bytes) is longer than the file "
                         f"({size} bytes)")
    mxyz = (int(h["mx"]), int(h["my"]), int(h["mz"]))
    cell = tuple(float(c) for c in h["cella"].tolist())
    ispg = int(h["ispg"])
    n_volumes, sections = 1, nz
    if 401 <= ispg <= 630:
        mz = mxyz[2]
        if mz <= 0:
            raise InputError(f"{name}: volume stack (space group {ispg}) with mz = {mz}: the number of "
                             "sections per volume is unknown")
        if nz % mz:
            raise InputError(f"{name}: volume stack (space group {ispg}) with nz = {nz} not a multiple "
                             f"of mz = {mz}")
        n_volumes, sections = nz // mz, mz
        if n_volumes > 1:
            notes.append(f"stack of {n_volumes} volumes: using the first")
    elif ispg == 0 and nz > 1:
        if mxyz[2] == nz and cell[2] > 0:
            notes.append(f"the header's space group 0 marks an image stack, but mz = nz = {nz} and the cell "
                         "has a z length: read as a 3-D volume")
        else:
            notes.append(f"the header marks an image stack of {nz} 2-D images (space group 0, mz = {mxyz[2]}); "
                         "it is validated as a 3-D volume, which is meaningful only if the images are "
                         "consecutive sections of one map")
    if min(nx, ny, sections) < MIN_BOX:
        if min(nx, ny, sections) == 1:
            raise InputError(f"{name}: a 2-D image ({nx} × {ny} × {sections} voxels), not a 3-D map")
        raise InputError(f"{name}: box {nx} × {ny} × {sections} voxels is too small "
                         f"(every axis needs at least {MIN_BOX} voxels)")
    voxels = nx * ny * sections
    limit = DEFAULT_MAX_VOXELS if max_voxels is None else int(max_voxels)
    if voxels > limit:
        raise InputError(f"{name}: {nx} × {ny} × {sections} = {voxels:,} voxels exceeds the limit of "
                         f"{limit:,} voxels (pass --max-voxels to raise it)")
    data_bytes = nx * ny * nz * dtype.itemsize
    if comp is None:
        need = HEADER_BYTES + nsymbt + data_bytes
        if size < need:
            raise InputError(f"{name} is truncated or its header is wrong: {nx} × {ny} × {nz} voxels of "
                             f"{MODE_NAMES[mode]} need {need:,} bytes, the file has {size:,}")
        if size > need:
            notes.append(f"{size - need:,} bytes after the declared data are ignored")
    order_ = (int(h["mapc"]), int(h["mapr"]), int(h["maps"]))
    origin = tuple(float(v) for v in (h["origin"]["x"], h["origin"]["y"], h["origin"]["z"]))
    nstart = (int(h["nxstart"]), int(h["nystart"]), int(h["nzstart"]))
    return MrcHeader(nx, ny, nz, mode, dtype, nsymbt, ispg, mxyz, cell, order_, origin, nstart, n_volumes,
                     sections, comp, notes)


def _read_data(path: Path, hd: MrcHeader) -> np.ndarray:
    """Read the first volume's voxels as stored, shape (sections, rows, columns)."""
    n = hd.voxels
    nbytes = n * hd.dtype.itemsize
    name = _name(path)
    try:
        if hd.compression is None:
            with open(path, "rb") as fh:
                fh.seek(hd.data_offset)
                arr = np.fromfile(fh, dtype=hd.dtype, count=n)
            if arr.size != n:
                raise InputError(f"{name} is truncated: {arr.size:,} of {n:,} voxels")
        else:
            buf = np.empty(nbytes, dtype=np.uint8)
            with _open_stream(path, hd.compression) as fh:
                _skip(fh, HEADER_BYTES)
                if _skip(fh, hd.nsymbt) < hd.nsymbt:
                    raise InputError(f"{name}: the {hd.compression} stream ends inside the extended header "
                                     f"(nsymbt = {hd.nsymbt} bytes)")
                got = _read_exact(fh, memoryview(buf))
                extra = fh.read(1) if got == nbytes and hd.n_volumes == 1 else b""
            if extra:
                hd.notes.append(f"the {hd.compression} stream holds data after the declared map: ignored")
            if got < nbytes:
                raise InputError(f"{name} is truncated or its header is wrong: {hd.nx} × {hd.ny} × "
                                 f"{hd.sections} voxels of {MODE_NAMES[hd.mode]} need {nbytes:,} bytes of data, "
                                 f"the {hd.compression} stream holds {got:,}")
            arr = buf.view(hd.dtype)
    except (OSError, zlib.error) as exc:
        why = _os_reason(exc) if getattr(exc, "strerror", None) else " ".join(str(exc).split())
        raise InputError(f"cannot read {name}: {why}") from None
    except EOFError:
        raise InputError(f"cannot read {name}: the {hd.compression} stream ends early") from None
    except MemoryError:
        raise InputError(f"{name}: not enough memory for {n:,} voxels") from None
    return arr.reshape(hd.sections, hd.ny, hd.nx)


def check_values(data: np.ndarray, name: str) -> None:
    """Refuse NaN/±Inf voxels, magnitudes that overflow or underflow float32 arithmetic, a constant map.

    Uses min/max reductions (no temporary of the map's size unless a bad value is found).

    Raises
    ------
    InputError
        When a voxel is NaN or ±Inf, ``|value|`` exceeds ``MAX_ABS_VALUE``, the map is constant, or every
        ``|value|`` is below ``MIN_ABS_VALUE``.
    """
    lo, hi = float(np.min(data)), float(np.max(data))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = sum(int(np.count_nonzero(~np.isfinite(s))) for s in data)
        raise InputError(f"{name}: {bad:,} voxel(s) are NaN or Inf")
    amax = max(abs(lo), abs(hi))
    if amax > MAX_ABS_VALUE:
        raise InputError(f"{name}: density values up to {amax:.3g} overflow float32 arithmetic "
                         f"(|value| must stay below {MAX_ABS_VALUE:g}); rescale the map")
    if hi == lo:
        raise InputError(f"{name}: the map is constant ({hi:g})")
    if amax < MIN_ABS_VALUE:
        raise InputError(f"{name}: density values are all below {MIN_ABS_VALUE:g} in magnitude (largest "
                         f"{amax:.3g}), too small for float32 arithmetic; rescale the map")


def read_mrc(path: str | Path, max_voxels: int | None = None) -> MrcMap:
    """Read ``path`` (header checked first, see :func:`read_header`) and check what the analyses rely on."""
    path = Path(path)
    hd = read_header(path, max_voxels)
    name = _name(path)
    raw = _read_data(path, hd)
    notes = [f"MRC header: {n}" for n in hd.notes]

    order = hd.axis_order
    if sorted(order) != [1, 2, 3]:
        notes.append(f"invalid axis order mapc/mapr/maps={order}: assuming 1,2,3")
        order = (1, 2, 3)
    # data axes are (sections, rows, columns) = labels (maps, mapr, mapc); want (Z, Y, X) = (3, 2, 1)
    labels = [order[2], order[1], order[0]]
    perm = [labels.index(3), labels.index(2), labels.index(1)]
    if perm != [0, 1, 2]:
        notes.append(f"axis order mapc/mapr/maps = {order[0]},{order[1]},{order[2]}: transposed to Z,Y,X")
    if raw.dtype == np.dtype("<f4") or raw.dtype == np.dtype("=f4"):
        data = np.ascontiguousarray(raw.transpose(perm))
    else:
        data = np.empty([raw.shape[p] for p in perm], dtype=np.float32)
        data[...] = raw.transpose(perm)
    del raw

    check_values(data, name)

    # voxel size along X, Y, Z: cell length / sampling (0 when the header has no usable value)
    voxel = tuple(_div(c, m) for c, m in zip(hd.cell, hd.mxyz, strict=True))
    origin: tuple[float, float, float] | None = hd.origin
    if not all(math.isfinite(o) for o in origin):
        notes.append("the MRC header origin is not a finite number: it is not reported")
        origin = None
    elif origin == (0.0, 0.0, 0.0) and any(hd.nstart):
        # nxstart/nystart/nzstart are along columns/rows/sections
        by_axis = {order[0]: hd.nstart[0], order[1]: hd.nstart[1], order[2]: hd.nstart[2]}
        origin = tuple(by_axis[a] * voxel[a - 1] for a in (1, 2, 3))
        if not all(math.isfinite(o) for o in origin):
            origin = None
    return MrcMap(data, voxel, None if origin is None else tuple(float(o) for o in origin), order, notes)


def _div(c: float, m: int) -> float:
    if m <= 0 or not math.isfinite(c):
        return 0.0
    return float(c) / m


def write_mrc(path: str | Path, data, voxel_size: float, origin_A=(0.0, 0.0, 0.0)) -> Path:
    """Write a float32 ``[z, y, x]`` map with its voxel size and origin."""
    import mrcfile

    path = Path(path)
    with mrcfile.new(str(path), overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
        mrc.voxel_size = float(voxel_size)
        mrc.header.origin = tuple(float(o) for o in (origin_A if origin_A is not None else (0.0, 0.0, 0.0)))
    return path


def _one_line(msg) -> str:
    return " ".join(str(msg).split())


__all__ = ["MrcMap", "MrcHeader", "read_header", "read_mrc", "write_mrc", "check_values", "sha256_file",
           "DEFAULT_MAX_VOXELS"]
