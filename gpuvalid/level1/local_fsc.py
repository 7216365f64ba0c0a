"""1.c Local resolution by local FSC (Blocres-like).

At every selected voxel ``c`` (soft mask ≥ 0.5, at least ``BOX/2`` voxels from every face) the two half
maps are cut to ``BOX³ = 20³`` boxes centred on ``c`` (voxels ``c − 10 … c + 9``).  Each box is tapered
toward its own mean with a separable Hann window ``w(i) = ½ − ½·cos(2π(i + ½)/20)`` and padded to ``40³``
with that mean (equivalently: ``(b − mean)·w`` zero-padded; the mean only changes the DC term).  The FSC
of the two padded boxes is computed in shells ``k = round(|f|·40)`` (``f`` in cycles/voxel, shells
``1/(40·Ts)`` Å⁻¹ wide, Hermitian weights on the ``rfftn`` half grid) out to the corner of the box
(``k ≤ 20·√3``).  The local resolution is ``1/f`` at the *first* crossing of 0.5 (interpolated linearly
between the two shells around it, shells 0 and 1 ignored), clamped to ``[2·Ts/√3, 200 Å]``: a voxel whose
FSC is already below 0.5 at shell 1 gets 200 Å, one that never falls below 0.5 gets ``2·Ts/√3``.

The reference (Bsoft ``blocres``) takes the *last* crossing and floors at ``max(2 Å, 2·Ts/√3)``; both
come from the same FSC curves (``vrs_compat``).

Two engines compute the same shell sums.  ``"fft"`` (the CPU, and ``engine="cufft"`` on a device): all
boxes of a chunk are extracted with one gather and transformed with one batched ``rfftn`` (on the CPU
axis by axis over the lines that hold data; on a device one cuFFT plan over many padded boxes); the shell
sums are one matrix product with a ``[coefficients × shells]`` weight matrix.  ``"kernel"`` (the default
on a device): the two raw kernels of ``kernels/local_fsc.cu`` never form a padded box: one block per box
removes the mean, tapers, and transforms each z-plane (x, then y), the second transforms along z and
reduces straight to the shell sums, so a box costs 269 kB of device traffic instead of several MB.  The
FSC curves and their crossings are computed on the backend's device, a group of boxes at a time.  Chunks
are sized to the map and to a memory budget: on a device ``L1_BOX_GRID`` bytes per voxel of the map (at least
``L1_KERNEL_MIN_CHUNK`` boxes, at most ``L1_KERNEL_MAX_CHUNK``; for cuFFT at most ``MAX_CHUNK_BOXES``: a few
hundred 40³ boxes already fill its batched FFT) and at most a quarter of what is free.  On the CPU an
optional ``step`` computes the FSC on a lattice of every ``step``-th voxel (those within ``step`` voxels of
the selection) and fills the selected voxels by trilinear interpolation of that lattice (missing lattice
points take the nearest computed value).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

from ..errors import NotMeasurable
from ..memory import (
    L1_BOX_BYTES as BYTES_PER_BOX,
    L1_FSC_GROUP_ROWS as GROUP_ROWS,
    L1_KERNEL_BOX_BYTES as KERNEL_BOX_BYTES,
    L1_KERNEL_MAX_CHUNK as KERNEL_MAX_CHUNK,
    L1_KERNEL_MIN_CHUNK as KERNEL_MIN_CHUNK,
    L1_MAX_CHUNK_BOXES as MAX_CHUNK_BOXES,
    L1_MIN_CHUNK_BOXES as MIN_CHUNK_BOXES,
    available_bytes,
    l1_box_chunk,
)
from .shells import fsc_ratio

if TYPE_CHECKING:
    from ..backend import Backend

BOX = 20
PAD = 40
CUTOFF = 0.5
LO_CAP_A = 200.0
VRS_FLOOR_A = 2.0
MASK_LEVEL = 0.5
CPU_BUDGET = 256 * 2**20
CPU_MAX_BOXES = 12_000             # automatic CPU step: the smallest step that keeps the boxes under this
KERNELS = "local_fsc.cu"           # the raw-kernel engine (kernels/local_fsc.cu)
PLANES_THREADS = 256               # lfsc_planes' block (its LPLANES_THREADS: a power of two)
SHELLS_THREADS = 96                # lfsc_shells' block (its LSHELLS_THREADS): 840 (ky, kx) columns, 8–9 per thread
ENGINES = ("kernel", "cufft")      # device engines; the CPU always uses the FFT engine


def hann_box(n: int = BOX) -> np.ndarray:
    """Separable Hann window ``w(z)·w(y)·w(x)``, ``w(i) = ½ − ½·cos(2π(i + ½)/n)`` (float32)."""
    i = np.arange(n, dtype=np.float64)
    w = 0.5 - 0.5 * np.cos(2.0 * math.pi * (i + 0.5) / n)
    return (w[:, None, None] * w[None, :, None] * w[None, None, :]).astype(np.float32)


def shell_matrix(pad: int = PAD) -> tuple[np.ndarray, int]:
    """Return the Hermitian weights per shell of the ``rfftn`` half grid of a ``pad³`` box, and the shell count.

    A ``[pad·pad·(pad//2+1), nshell]`` float32 matrix, shells ``k = round(|f|·pad)`` = 0 … ``floor(pad·√3/2)``
    (the box corner).
    """
    fz = np.fft.fftfreq(pad)[:, None, None]
    fy = np.fft.fftfreq(pad)[None, :, None]
    fx = np.fft.rfftfreq(pad)[None, None, :]
    k = np.rint(np.sqrt(fz * fz + fy * fy + fx * fx) * pad).astype(np.int64)
    nsh = shell_matrix_size(pad)
    wx = np.full(pad // 2 + 1, 2.0)
    wx[0] = 1.0
    if pad % 2 == 0:
        wx[-1] = 1.0
    w = np.broadcast_to(wx[None, None, :], k.shape).ravel()
    k = k.ravel()
    S = np.zeros((k.size, nsh), dtype=np.float32)
    ok = k < nsh
    S[np.flatnonzero(ok), k[ok]] = w[ok]
    return S, nsh


def crossings(fsc, freq, cutoff: float = CUTOFF, xp=np):
    """Find the first and last 0.5 crossings of each row of ``fsc`` ``[n, nshell]``.

    ``freq`` is in Å⁻¹ per shell; ``xp`` is the array module of both (NumPy, or CuPy for device arrays).

    Returns ``(first_f, last_f, code)``: the interpolated crossing frequencies (Å⁻¹; ``last_f`` NaN when
    no shell goes from ≥ cutoff to < cutoff) and per row a code for the first crossing: 0 crossed, 1
    already below at shell 1 (no information beyond the first shells), 2 never below.
    Shells 0 and 1 are ignored as crossing points (the first crossing is searched from shell 2).
    """
    n, ns = fsc.shape
    y = xp.nan_to_num(fsc, nan=-1.0)
    below = y < cutoff
    below[:, :2] = False
    has = below.any(axis=1)
    # argmax of int8 rows (the first True): CuPy's argmax is not documented for bool
    i_first = xp.where(has, xp.argmax(below.astype(xp.int8), axis=1), ns - 1)
    trans = (y[:, :-1] >= cutoff) & (y[:, 1:] < cutoff)        # trans[:, j]: ≥ cutoff at j, < at j + 1
    trans[:, :1] = False                                          # crossing shell j + 1 ≥ 2
    has_t = trans.any(axis=1)
    i_last = xp.where(has_t, (ns - 2) - xp.argmax(trans[:, ::-1].astype(xp.int8), axis=1) + 1, ns - 1)

    def interp(i):
        i = xp.clip(i, 1, ns - 1)
        r = xp.arange(n)
        y0, y1 = y[r, i - 1], y[r, i]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = xp.where(y0 != y1, (y0 - cutoff) / (y0 - y1), 0.0)
        t = xp.clip(t, 0.0, 1.0)
        return freq[i - 1] + t * (freq[i] - freq[i - 1])

    first = interp(i_first)
    last = interp(i_last)
    code = xp.zeros(n, dtype=xp.int8)
    code[has & (y[:, 1] < cutoff) & (i_first == 2)] = 1
    code[~has] = 2
    last = xp.where(has_t, last, xp.nan)
    return first, last, code


def _selected(be: Backend, soft_mask, shape, step: int):
    """Return the flat indices of the box centres.

    The lattice ``c ≡ BOX/2 (mod step)`` inside the faces' margin, within ``step − 1`` voxels (chessboard) of a
    voxel with soft mask ≥ 0.5 (all such voxels when step = 1).
    """
    xp = be.xp
    sel = soft_mask >= MASK_LEVEL
    if step > 1:
        sel = be.ndimage.maximum_filter(sel.astype(xp.uint8), size=2 * step - 1) > 0
    half = BOX // 2
    _clear_margin(sel, half)
    lat = xp.zeros(shape, dtype=bool)
    lat[half::step, half::step, half::step] = True
    sel &= lat
    del lat
    return xp.flatnonzero(sel.ravel())


def _clear_margin(mask, half: int) -> None:
    """Set ``mask`` False (in place) outside ``half ≤ i ≤ n − half`` along every axis: no box there fits the map."""
    for axis, n in enumerate(mask.shape):
        lo = [slice(None)] * mask.ndim
        hi = [slice(None)] * mask.ndim
        lo[axis], hi[axis] = slice(0, half), slice(n - half + 1, None)
        mask[tuple(lo)] = False
        mask[tuple(hi)] = False


def auto_step(n_voxels: int, is_gpu: bool, max_boxes: int = CPU_MAX_BOXES) -> int:
    """1 on the GPU; on the CPU the smallest step with about ``n_voxels/step³ ≤ max_boxes``."""
    if is_gpu or n_voxels <= max_boxes:
        return 1
    return int(math.ceil((n_voxels / max_boxes) ** (1.0 / 3.0)))


def local_fsc(be: Backend, h1, h2, soft_mask, voxel_size: float, step: int | None = None,
              budget_bytes: int | None = None, compat: bool = True, engine: str = "kernel") -> dict:
    """Local-FSC resolution map (Å) of two half maps.

    ``h1``, ``h2``, ``soft_mask``: host or device arrays ``[z, y, x]`` of one shape; ``voxel_size`` Ts in Å;
    ``step``: lattice spacing in voxels (None: automatic, see :func:`auto_step`); ``engine``: on a device
    ``"kernel"`` (raw kernels) or ``"cufft"`` (batched cuFFT); the CPU always runs its FFT engine ("fft").
    Returns a dict with
    ``map`` (host float32, NaN outside the selected voxels), ``vrs_map`` (the reference's last-crossing
    rule and 2 Å floor, or None), ``selected`` (host bool), ``step``, ``boxes`` (FSCs computed),
    ``below_first_fraction`` and ``never_below_fraction`` (voxels at the 200 Å cap / the 2·Ts/√3 floor),
    ``seconds``, ``engine``.

    Raises
    ------
    NotMeasurable
        When no voxel can be selected (the box is smaller than 21 voxels, or the soft mask has no voxel
        ≥ 0.5 at least 10 voxels from every face).
    ValueError
        For an unknown ``engine``.
    """
    t0 = time.perf_counter()
    xp = be.xp
    shape = tuple(int(s) for s in np.shape(h1))
    if min(shape) < BOX + 1:
        raise NotMeasurable(f"the box ({min(shape)} voxels) is smaller than the {BOX}³ local-FSC box")
    h1 = be.asarray(h1, dtype=xp.float32)
    h2 = be.asarray(h2, dtype=xp.float32)
    sm = be.asarray(soft_mask, dtype=xp.float32)
    target = (sm >= MASK_LEVEL)
    half = BOX // 2
    _clear_margin(target, half)
    n_target = int(be.to_host(xp.count_nonzero(target)))
    if n_target == 0:
        raise NotMeasurable(f"no voxel of the soft mask ≥ {MASK_LEVEL:g} lies at least {half} voxels from the "
                            "box faces")
    if step is None:
        step = auto_step(n_target, be.is_gpu)
    step = max(1, int(step))
    centres = _selected(be, sm, shape, step) if step > 1 else xp.flatnonzero(target.ravel())
    tgt_host = be.to_host(target).astype(bool)     # the selection is read on the host only from here on
    del target, sm
    nb = int(centres.size)
    nsh = shell_matrix_size()
    freq = np.arange(nsh) / (PAD * voxel_size)
    floor_A = 2.0 * voxel_size / math.sqrt(3.0)
    vfloor = max(VRS_FLOOR_A, floor_A)
    kv = int(min(nsh - 1, math.floor(2 + PAD * voxel_size / vfloor)))   # the reference's last shell
    if engine not in ENGINES:
        raise ValueError(f"unknown local-FSC engine {engine!r} (one of {', '.join(ENGINES)})")
    engine = engine if be.is_gpu else "fft"
    box_bytes = KERNEL_BOX_BYTES if engine == "kernel" else BYTES_PER_BOX
    if budget_bytes is None:   # the map's share, within a quarter of what the device (or $GPUVALID_DEVICE_BUDGET) leaves
        avail = available_bytes(be)
        floor, most = ((KERNEL_MIN_CHUNK, KERNEL_MAX_CHUNK) if engine == "kernel" else
                       (MIN_CHUNK_BOXES, MAX_CHUNK_BOXES))
        want = l1_box_chunk(math.prod(shape), box_bytes, floor, most)
        budget_bytes = CPU_BUDGET if avail is None else max(MIN_CHUNK_BOXES * box_bytes,
                                                            min(avail // 4, want * box_bytes))
    chunk = int(max(8, min(nb, budget_bytes // box_bytes)))
    rows = (_kernel_rows(be, h1, h2, centres, shape, chunk) if engine == "kernel" else
            _fft_rows(be, h1, h2, centres, shape, chunk))
    # crossings where the FSCs are (the device's arrays on a GPU: no host round trip per group)
    first = xp.empty(nb, dtype=xp.float64)
    last = xp.full(nb, xp.nan, dtype=xp.float64)
    code = xp.empty(nb, dtype=xp.int8)
    vcode = xp.zeros(nb, dtype=xp.int8)
    freq_x = be.asarray(freq)
    for s, e, fsc in rows:
        first[s:e], _, code[s:e] = crossings(fsc, freq_x, xp=xp)
        if compat:
            _, last[s:e], vcode[s:e] = crossings(fsc[:, :kv + 1], freq_x[:kv + 1], xp=xp)
        del fsc
    first, last, code, vcode = (be.to_host(a) for a in (first, last, code, vcode))
    with np.errstate(divide="ignore"):
        res = np.where(code == 0, 1.0 / np.maximum(first, 1e-12), 0.0)
    res = np.where(code == 1, LO_CAP_A, res)
    res = np.where(code == 2, floor_A, res)
    res = np.clip(res, floor_A, LO_CAP_A)
    vres = None
    if compat:
        with np.errstate(divide="ignore", invalid="ignore"):
            vres = np.where(np.isfinite(last), 1.0 / np.maximum(np.nan_to_num(last), 1e-12),
                            np.where(vcode == 2, vfloor, LO_CAP_A))
        vres = np.clip(vres, vfloor, LO_CAP_A)
    cen_host = be.to_host(centres)
    out = {"step": step, "boxes": nb, "selected": tgt_host, "engine": engine,
           "below_first_fraction": float(np.mean(code == 1)) if nb else 0.0,
           "never_below_fraction": float(np.mean(code == 2)) if nb else 0.0}
    out["map"] = _fill(res, cen_host, shape, step, tgt_host)
    out["vrs_map"] = _fill(vres, cen_host, shape, step, tgt_host) if vres is not None else None
    out["seconds"] = time.perf_counter() - t0
    return out


def _fft_rows(be: Backend, h1, h2, centres, shape, chunk):
    """Yield the local FSCs of the FFT engine, one chunk at a time.

    Each item is ``(s, e, fsc)`` for the boxes ``s … e − 1`` (``fsc`` float64 ``[e − s, nshell]`` on the
    backend's device).
    """
    xp = be.xp
    half = BOX // 2
    nb = int(centres.size)
    S = be.asarray(shell_matrix(PAD)[0])
    win = be.asarray(hann_box(BOX))
    off = xp.arange(-half, BOX - half)
    cz, cy, cx = (xp.asarray(a) for a in xp.unravel_index(centres, shape))
    for s in range(0, nb, chunk):
        e = min(nb, s + chunk)
        iz = cz[s:e, None, None, None] + off[None, :, None, None]
        iy = cy[s:e, None, None, None] + off[None, None, :, None]
        ix = cx[s:e, None, None, None] + off[None, None, None, :]
        F = []
        for h in (h1, h2):
            b = h[iz, iy, ix]
            b -= b.mean(axis=(1, 2, 3), keepdims=True)
            b *= win
            F.append(_box_spectra(be, b).reshape(e - s, -1))
            del b
        F1, F2 = F
        del F
        # Hermitian-weighted shell sums of Re(F1·F2*), |F1|², |F2|², one matrix product each; one product
        # array (and its temporary) alive at a time
        sums = [_shell_sums(F1, F2, S), _shell_sums(F1, F1, S)]
        del F1
        sums.append(_shell_sums(F2, F2, S))
        del F2
        yield s, e, fsc_ratio(*(a.astype(xp.float64) for a in sums), xp=xp)


def _kernel_rows(be: Backend, h1, h2, centres, shape, chunk):
    """Yield the local FSCs of the raw-kernel engine (a device), a group of boxes at a time.

    Each item is ``(s, e, fsc)`` for a group of up to ``GROUP_ROWS`` boxes, whose shell sums ``lfsc_planes``
    and ``lfsc_shells`` compute a chunk at a time.
    """
    xp = be.xp
    nb = int(centres.size)
    nsh = shell_matrix_size()
    k_planes = be.kernel(KERNELS, "lfsc_planes")
    k_shells = be.kernel(KERNELS, "lfsc_shells")
    h1, h2 = xp.ascontiguousarray(h1), xp.ascontiguousarray(h2)
    centres = xp.ascontiguousarray(centres.astype(xp.int64, copy=False))
    win = be.asarray(hann_box(BOX).ravel())
    dims = tuple(np.int32(n) for n in shape)
    group = max(chunk, GROUP_ROWS)
    Y = xp.empty((chunk, 2, BOX, PAD, PAD // 2 + 1), dtype=xp.complex64)
    sums = xp.empty((min(nb, group), 3, nsh), dtype=xp.float64)
    for g0 in range(0, nb, group):
        g1 = min(nb, g0 + group)
        for s in range(g0, g1, chunk):
            e = min(g1, s + chunk)
            n = np.int32(e - s)
            k_planes((int(n),), (PLANES_THREADS,), (h1, h2, centres[s:e], n, *dims, win, Y))
            k_shells((int(n),), (SHELLS_THREADS,), (Y, n, sums[s - g0:e - g0]))
        part = sums[:g1 - g0]
        yield g0, g1, fsc_ratio(part[:, 0], part[:, 1], part[:, 2], xp=xp)
    del Y, sums


def shell_matrix_size(pad: int = PAD) -> int:
    """Return the number of shells ``k = round(|f|·pad)`` up to the box corner: ``floor(pad·√3/2) + 1``."""
    return int(math.floor(pad * math.sqrt(3.0) / 2.0)) + 1


def _shell_sums(Fa, Fb, S):
    """Return ``Re(Fa·Fb*) @ S`` for rows of spectra ``Fa``, ``Fb``.

    The product is formed in place: the same numbers as ``(Fa.real·Fb.real + Fa.imag·Fb.imag) @ S``.
    """
    p = Fa.real * Fb.real
    p += Fa.imag * Fb.imag
    return p @ S


def _box_spectra(be: Backend, b):
    """Return the ``rfftn`` of a stack of ``BOX³`` boxes zero-padded to ``PAD³`` (axes 1–3).

    GPU: one batched 3-D transform.  CPU: axis by axis, transforming only the lines that hold data (a 20³ box
    in a 40³ grid: about half the work of the full padded transform).
    """
    if be.is_gpu:
        return be.rfftn(b, s=(PAD, PAD, PAD), axes=(1, 2, 3))
    F = be.rfftn(b, s=(PAD,), axes=(3,))
    F = be.fftn(F, s=(PAD,), axes=(2,))
    return be.fftn(F, s=(PAD,), axes=(1,))


def _fill(vals: np.ndarray, centres: np.ndarray, shape: tuple, step: int, target: np.ndarray) -> np.ndarray:
    """Return the host map of ``vals``: at the box centres (step 1) or interpolated from the lattice (step > 1).

    NaN outside ``target``.
    """
    out = np.full(shape, np.nan, dtype=np.float32)
    if step == 1:
        out.reshape(-1)[centres] = vals
        return out
    import scipy.ndimage as ndi

    half = BOX // 2
    idx = np.stack(np.unravel_index(centres, shape), axis=1)
    lat = (idx - half) // step
    gshape = tuple(int((n - 1 - half) // step + 1) for n in shape)
    G = np.zeros(gshape, dtype=np.float32)
    have = np.zeros(gshape, dtype=bool)
    G[tuple(lat.T)] = vals
    have[tuple(lat.T)] = True
    if not have.all():
        _, near = ndi.distance_transform_edt(~have, return_indices=True)
        G = G[tuple(near)]
    tz, ty, tx = np.nonzero(target)
    coords = np.stack([(tz - half) / step, (ty - half) / step, (tx - half) / step])
    out[tz, ty, tx] = ndi.map_coordinates(G, coords, order=1, mode="nearest")
    return out


# ---- section 1.c --------------------------------------------------------------------------------------------

SID, TITLE = "1.c", "Local resolution (local FSC)"

EXPLANATION = (
    "The FSC between the half maps inside a small box (20³ voxels, tapered with a Hann window and padded to "
    "40³) centred on each voxel of the soft mask gives a resolution per voxel: where the local FSC falls "
    "below 0.5 (Cardone, Heymann & Steven 2013, the Blocres method). Well-ordered regions reach finer "
    "resolutions than flexible or poorly aligned ones. With 20-voxel boxes the local FSC is smeared over "
    "about 2/20 cycles/voxel by the taper, so it reads somewhat finer than the band limit of the density.")


def run(ctx1):
    """Compute section 1.c, the local resolution by local FSC (first 0.5 crossing in 20³ boxes).

    Results: the step and number of boxes, the engine, the fractions of boxes at the 200 Å cap and the
    ``2·Ts/√3`` floor (Å), and the local-resolution percentiles and map written by ``finish_local``;
    ``vrs_compat`` holds the percentiles with the reference's last-crossing rule and 2 Å floor.
    """
    from ..analyses.base import SectionResult
    from .localres_common import CRITERIA, finish_local

    ctx0 = ctx1.ctx0
    ctx0.require_mask()
    be = ctx1.be
    Ts = ctx1.voxel_size
    step = getattr(ctx1.options, "local_fsc_step", None)
    out = local_fsc(be, ctx1.h1, ctx1.h2, ctx0.soft_mask, Ts, step=step,
                    engine=getattr(ctx1.options, "local_fsc_engine", "kernel"))
    res = SectionResult(SID, TITLE, explanation=EXPLANATION, criteria=CRITERIA)
    floor_A = 2 * Ts / math.sqrt(3)
    n_sel = int(out["selected"].sum())
    why = (f"as requested with --local-fsc-step {step}" if step is not None else
           f"the CPU's automatic step, at most about {CPU_MAX_BOXES} boxes; a GPU computes every voxel")
    how = (f"the FSC was computed at all {out['boxes']} voxels (step 1"
           + (f", {why})" if step is not None else ")") if out["step"] == 1 else
           f"the FSC was computed on a lattice with a spacing of {out['step']} voxels along each axis ({out['boxes']} "
           f"boxes; {why}) and the {n_sel} voxels were filled by trilinear interpolation of that lattice")
    res.blocks.append(
        f"Voxels: soft mask ≥ {MASK_LEVEL:g} and at least {BOX // 2} voxels from the faces ({n_sel} voxels); {how}. "
        f"Resolution: first crossing of FSC = {CUTOFF:g} (shells 1/(40·Ts) = {1 / (PAD * Ts):.4f} Å⁻¹), "
        f"clamped to [{floor_A:.2f}, {LO_CAP_A:g}] Å. "
        f"{100 * out['never_below_fraction']:.1f} % of the boxes never fall below 0.5 (set to {floor_A:.2f} Å) and "
        f"{100 * out['below_first_fraction']:.1f} % are below 0.5 from the first shells (set to {LO_CAP_A:g} Å).")
    res.values.update({"step": out["step"], "step_requested": step, "boxes": out["boxes"], "box": BOX,
                       "padded_box": PAD, "engine": out["engine"],
                       "never_below_fraction": out["never_below_fraction"],
                       "below_first_fraction": out["below_first_fraction"], "floor_A": floor_A})
    p = finish_local(ctx1, res, out["map"], "local FSC", "l1_localfsc", "1.c local FSC median")
    vm = out.get("vrs_map")
    if vm is not None:
        v = vm[np.isfinite(vm)]
        pv = [float(x) for x in np.percentile(v, [2.5, 25, 50, 75, 97.5])]
        R = ctx1.resolution
        res.vrs_compat = {"percentiles_A": pv,
                          "resolution_percentile": None if R is None else 100.0 * float(np.mean(v < R)),
                          "rule": "last crossing of 0.5, floor max(2 Å, 2·Ts/√3)"}
    res.differences = [
        "The reference (Bsoft blocres) takes the last crossing of 0.5 (optimistic when noise brings the FSC back "
        "above 0.5) and floors every value at 2 Å; gpuvalid takes the first crossing and floors at 2·Ts/√3. "
        + ("" if vm is None else "With the reference's rules the percentiles would be "
           + ", ".join(f"{x:.2f}" for x in res.vrs_compat["percentiles_A"]) + " Å (`vrs_compat`)."),
        "Shells are binned to the nearest shell (the reference spreads each coefficient linearly over two "
        "shells) and half 2 is not rescaled to half 1's mean and standard deviation (the FSC does not depend "
        "on it); the taper is a separable Hann window.",
    ]
    if out["step"] > 1:
        res.differences.append(f"The FSC is computed every {out['step']} voxels and interpolated; the "
                               "reference computes every voxel (hours on a CPU).")
    res.summary = (f"Local FSC: median local resolution {p[2]:.2f} Å (2.5–97.5 %: {p[0]:.2f}–{p[4]:.2f} Å)"
                   + ("." if not res.warnings else f"; {res.warnings[0]}."))
    return res
