"""Assemble a :class:`~gpuvalid.context.MapInput` from a map file, an optional EMDB header and the command line.

The command line wins over the header, the header over the MRC header.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .._checks import check_number, check_positive
from ..context import MapInput
from ..errors import InputError
from .emdb import parse_header
from .mrc import DEFAULT_MAX_VOXELS, read_mrc, sha256_file

ANISOTROPY_TOL = 1e-3  # relative spread of the three voxel sizes accepted as isotropic
VOXEL_RANGE_A = (0.01, 200.0)  # plausible voxel sizes (Å); outside it the header is corrupt
RESOLUTION_RANGE_A = (0.5, 1000.0)  # plausible reported resolutions (Å)


def _check_positive(name: str, value: float | None) -> float | None:
    """``value`` as a float (None stays None), refused with :class:`InputError` unless finite and > 0."""
    return None if value is None else check_positive(value, name, error=InputError)


def _check_range(name: str, value: float, bounds: tuple[float, float], hint: str) -> float:
    lo, hi = bounds
    if not (lo <= value <= hi):
        raise InputError(f"{name} {value:g} Å is outside the plausible range {lo:g}–{hi:g} Å{hint}")
    return value


def load_map_input(path: str | Path, *, threshold: float | None = None, resolution: float | None = None,
                   voxel_size: float | None = None, header: str | Path | None = None,
                   resample_anisotropic: bool = False, sha256: str | None = None,
                   max_voxels: int | None = None) -> MapInput:
    """Read and check a map and its metadata.

    Voxel size: ``voxel_size`` if given, else the EMDB header's pixel spacing, else the MRC header.
    Anisotropic voxels are refused unless ``resample_anisotropic`` (linear resampling to the finest
    spacing) or an explicit ``voxel_size`` is given.  ``sha256`` is the input hash when the caller already
    has it (e.g. of the compressed archive file); otherwise the file is hashed.  Voxel size and
    resolution must lie in :data:`VOXEL_RANGE_A` and :data:`RESOLUTION_RANGE_A`; the threshold may be
    any finite number (a threshold above the map maximum is reported by the mask sections).
    ``max_voxels`` caps the map size (default :data:`~gpuvalid.io.mrc.DEFAULT_MAX_VOXELS`).

    Raises
    ------
    InputError
        When ``max_voxels`` is not positive; the voxel size or resolution is not positive or outside its
        plausible range; the voxels are anisotropic without ``resample_anisotropic`` or ``voxel_size``, or
        resampling them would exceed the voxel limit; or the EMDB header or MRC file is unreadable.
    """
    path = Path(path)
    voxel_size = _check_positive("voxel size", voxel_size)
    resolution = _check_positive("resolution", resolution)
    if voxel_size is not None:
        _check_range("voxel size", voxel_size, VOXEL_RANGE_A, "")
    if resolution is not None:
        _check_range("resolution", resolution, RESOLUTION_RANGE_A, "")
    if max_voxels is not None and int(max_voxels) <= 0:
        raise InputError(f"--max-voxels must be a positive number, got {max_voxels!r}")
    if threshold is not None:
        threshold = check_number(threshold, "threshold", error=InputError)
    sources = {}
    hdr = parse_header(header) if header is not None else None

    m = read_mrc(path, max_voxels=max_voxels)
    notes = list(m.notes) + (list(hdr.notes) if hdr is not None else [])
    data = m.data
    file_vs = m.voxel_size

    if voxel_size is not None:
        ts = voxel_size
        sources["voxel_size"] = "command line"
        if max(file_vs) > 0 and any(abs(v - ts) / ts > 0.01 for v in file_vs):
            notes.append(f"voxel size {ts:g} Å from the command line replaces the file's "
                         f"{_fmt_vs(file_vs)} Å")
    else:
        vs = file_vs
        sources["voxel_size"] = "MRC header"
        if hdr is not None and hdr.voxel_size is not None:
            vs = hdr.voxel_size
            sources["voxel_size"] = "EMDB header"
            if max(file_vs) > 0 and any(b > 0 and abs(a - b) / b > 0.01 for a, b in zip(file_vs, vs, strict=True)):
                notes.append(f"EMDB header pixel spacing {_fmt_vs(vs)} Å differs from the MRC header "
                             f"{_fmt_vs(file_vs)} Å; using the EMDB header")
        bad = [v for v in vs if not (math.isfinite(v) and v > 0)]
        if bad:
            raise InputError(f"{path.name}: voxel size {_fmt_vs(vs)} Å in the "
                             f"{sources['voxel_size']} is not positive; pass --voxel-size")
        for v in vs:
            _check_range(f"{path.name}: voxel size in the {sources['voxel_size']}", v, VOXEL_RANGE_A,
                         "; pass --voxel-size")
        spread = (max(vs) - min(vs)) / min(vs)
        if spread > ANISOTROPY_TOL:
            if not resample_anisotropic:
                raise InputError(f"{path.name}: anisotropic voxels {_fmt_vs(vs)} Å (x,y,z); the analyses "
                                 "need isotropic sampling: pass --resample-anisotropic or --voxel-size")
            grown = float(np.prod([v / min(vs) for v in vs])) * data.size
            limit = DEFAULT_MAX_VOXELS if max_voxels is None else int(max_voxels)
            if grown > limit:
                raise InputError(f"{path.name}: resampling the anisotropic voxels {_fmt_vs(vs)} Å to "
                                 f"{min(vs):g} Å would give {grown:,.0f} voxels, above the limit of {limit:,} "
                                 "(pass --voxel-size or --max-voxels)")
            data, ts = _resample_isotropic(data, vs)
            notes.append(f"anisotropic voxels {_fmt_vs(vs)} Å resampled (trilinear) to {ts:g} Å")
        else:
            ts = float(np.mean(vs))

    if threshold is not None:
        sources["threshold"] = "command line"
    elif hdr is not None and hdr.contour is not None:
        threshold = hdr.contour
        sources["threshold"] = "EMDB header (primary contour)"
    if resolution is not None:
        sources["resolution"] = "command line"
    elif hdr is not None and hdr.resolution is not None:
        resolution = _check_positive("resolution in the EMDB header", hdr.resolution)
        _check_range("resolution in the EMDB header", resolution, RESOLUTION_RANGE_A, "; pass --resolution")
        sources["resolution"] = "EMDB header"
    if resolution is not None and resolution < 2 * ts * 0.999:
        notes.append(f"reported resolution {resolution:g} Å is finer than the Nyquist limit "
                     f"{2 * ts:g} Å of this sampling")

    return MapInput(path=path, data=data, voxel_size=float(ts), threshold=None if threshold is None
                    else float(threshold), resolution=resolution, sha256=sha256 or sha256_file(path),
                    origin_A=m.origin_A, header_voxel_size=file_vs, notes=notes, sources=sources)


def _resample_isotropic(data: np.ndarray, vs_xyz) -> tuple[np.ndarray, float]:
    from scipy import ndimage

    ts = float(min(vs_xyz))
    zoom = [vs_xyz[2] / ts, vs_xyz[1] / ts, vs_xyz[0] / ts]  # data is z, y, x
    return ndimage.zoom(data, zoom, order=1).astype(np.float32), ts


def _fmt_vs(vs) -> str:
    return "×".join(f"{v:.4g}" for v in vs)
