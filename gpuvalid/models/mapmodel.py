"""Local map-model resolution: an independent local reference for 0.e on real maps with a fitted model.

The fitted atomic model is turned into a density on the map's own grid (Gaussian atoms weighted by atomic
number, :mod:`gpuvalid.simulate.density`; model ``x, y, z`` Å → voxel ``(x − x0)/Ts`` with ``x0`` the
map's header origin).  Map and model density are both multiplied by a soft mask around the model
(:func:`soft_model_mask`), so unmodelled density does not lower the correlation.  Around each centre (a grid of stride ``stride_A`` Å over the voxels to measure) a
cube of ``window_A`` Å of the map and of the model density, both under the same soft spherical window
(cosine edge), gives a Fourier shell correlation in shells of width ``1/window_A`` Å⁻¹; the local
resolution is ``1/f`` where that FSC first falls below 0.5 (linear interpolation between shells).  A
map-model FSC of 0.5 corresponds to a half-map FSC of 0.143 (Rosenthal & Henderson 2003: C_ref =
sqrt(2·FSC/(1 + FSC))), the criterion behind a reported resolution R, so the reference and R mean the same
thing.  Values are interpolated (trilinearly) from the centres to the voxels.

Bounds are reported, never passed off as measurements: a window whose FSC stays ≥ 0.5 up to the
window's Nyquist gets ``2·Ts`` and is flagged ``at_nyquist``; one whose FSC is below 0.5 already at its
first shell gets ``window_A`` and is flagged ``below_first_shell``.  The FSC is scale-free per shell, so
the map's sharpening or B-factor and the model's atom widths do not move it (up to the window's
apodisation).  Host NumPy/SciPy: this is a validation tool, not a section.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.ndimage

from gpuvalid.simulate.density import atom_density
from gpuvalid.simulate.filters import lowpass
from gpuvalid.simulate.structure import Atoms

FSC_THRESHOLD = 0.5
MIN_WINDOW_A = 20.0
WINDOW_PER_R = 6.0
EDGE_VOX = 3


def model_density(atoms: Atoms, shape: tuple, voxel_size: float, origin_A=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Density of ``atoms`` on the map grid ``shape`` (``[z, y, x]``, voxel ``Ts`` Å, voxel 0 at
    ``origin_A`` = (x, y, z) Å)."""
    V, _ = atom_density(atoms, voxel_size, shape=tuple(shape), origin_A=np.asarray(origin_A, float))
    return V


def model_footprint(atoms: Atoms, shape: tuple, voxel_size: float, origin_A, radius_A: float = 3.0) -> np.ndarray:
    """Voxels within ``radius_A`` Å of an atom (bool ``[z, y, x]``)."""
    p = np.rint((atoms.xyz - np.asarray(origin_A, float)) / voxel_size).astype(int)[:, ::-1]  # z, y, x
    ok = ((p >= 0) & (p < np.array(shape))).all(1)
    hit = np.zeros(shape, bool)
    hit[tuple(p[ok].T)] = True
    return scipy.ndimage.distance_transform_edt(~hit, sampling=voxel_size) <= radius_A


def soft_model_mask(atoms: Atoms, shape: tuple, voxel_size: float, origin_A, resolution_A: float,
                    sigma_A: float = 2.0) -> np.ndarray:
    """Soft mask around the model: voxels within ``max(3, 0.6·R)`` Å of an atom, blurred by a Gaussian of
    ``sigma_A`` Å.  Applied to map and model alike, it keeps density the model does not explain
    (neighbouring subunits, ligands, micelle) out of the windows, as a map-model FSC's mask does."""
    fp = model_footprint(atoms, shape, voxel_size, origin_A, max(3.0, 0.6 * resolution_A))
    return scipy.ndimage.gaussian_filter(fp.astype(np.float32), sigma_A / voxel_size)


def correlation(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Pearson correlation of ``a`` and ``b`` over ``where``."""
    x, y = a[where].astype(np.float64), b[where].astype(np.float64)
    if x.size < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def placement(V: np.ndarray, atoms: Atoms, voxel_size: float, origin_A, resolution_A: float) -> dict:
    """Does the model line up with the map?  Correlation of the map with the model density low-passed to
    ``resolution_A`` over the model's footprint (3 Å around the atoms), with the header origin and with a
    zero origin; the better one is returned with both values and the fraction of atoms inside the box."""
    out = {}
    for key, org in (("header_origin", np.asarray(origin_A, float)), ("zero_origin", np.zeros(3))):
        M = lowpass(model_density(atoms, V.shape, voxel_size, org), voxel_size, resolution_A)
        fp = model_footprint(atoms, V.shape, voxel_size, org)
        p = (atoms.xyz - org) / voxel_size
        inside = float(np.mean(((p >= 0) & (p <= np.array(V.shape[::-1]) - 1)).all(1)))
        out[key] = {"origin_A": [float(v) for v in org], "cc": correlation(V, M, fp) if fp.any() else float("nan"),
                    "atoms_inside_fraction": inside}
    best = max(out, key=lambda k: -1.0 if not np.isfinite(out[k]["cc"]) else out[k]["cc"])
    return {"best": best, **out}


def rotation_z(deg: float, flip: bool = False) -> np.ndarray:
    """Rotation by ``deg`` about z, after a 180° turn about x when ``flip`` (turns a ring upside down)."""
    t = np.radians(deg)
    Rz = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    return Rz @ (np.diag([1.0, -1.0, -1.0]) if flip else np.eye(3))


def fit_rigid(V: np.ndarray, atoms: Atoms, voxel_size: float, origin_A, resolution_A: float,
              rotations: list) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Exhaustive rigid-body fit: for each rotation (about the model's centroid) the translation that
    maximises the cross-correlation of the map with the model density low-passed to ``resolution_A``
    (FFT, whole voxels).  Returns ``(cross-correlation, rotation, translation Å)`` per rotation, best first;
    apply as ``atoms.transformed(rot, shift)``."""
    c = atoms.xyz.mean(0)
    FV = np.conj(scipy.fft.rfftn(V - V.mean()))
    centre = np.asarray(origin_A, float) + (np.array(V.shape[::-1]) - 1) / 2.0 * voxel_size
    out = []
    for rot in rotations:
        shift0 = centre - rot @ c                      # model centroid at the box centre
        M = lowpass(model_density(atoms.transformed(rot, shift0), V.shape, voxel_size, origin_A), voxel_size,
                    resolution_A)
        cc = scipy.fft.irfftn(scipy.fft.rfftn(M) * FV, s=V.shape)
        k = np.array(np.unravel_index(int(np.argmax(cc)), V.shape))
        lag = np.where(k < np.array(V.shape) // 2, k, k - np.array(V.shape))   # z, y, x voxels
        out.append((float(cc.max()), rot, shift0 - lag[::-1] * voxel_size))
    return sorted(out, key=lambda r: -r[0])


def concatenate(parts: list) -> Atoms:
    return Atoms(*[np.concatenate([getattr(a, f) for a in parts]) for f in
                   ("xyz", "element", "z", "name", "res_key", "res_name")])


def fit_copies(V: np.ndarray, atoms: Atoms, voxel_size: float, origin_A, resolution_A: float, rotations: list,
               n_copies: int, min_separation_A: float) -> tuple[Atoms, list]:
    """``n_copies`` placements of ``atoms`` (e.g. the rings of an oligomer when the model is one ring):
    the best fits of :func:`fit_rigid` whose centroids are at least ``min_separation_A`` Å apart; returns
    the combined atoms and the fits used."""
    fits, used = fit_rigid(V, atoms, voxel_size, origin_A, resolution_A, rotations), []
    c = atoms.xyz.mean(0)
    for cc, rot, shift in fits:
        cen = rot @ c + shift
        if all(np.linalg.norm(cen - u[3]) >= min_separation_A for u in used):
            used.append((cc, rot, shift, cen))
        if len(used) == n_copies:
            break
    return concatenate([atoms.transformed(r, s) for _cc, r, s, _c in used]), used


def window_size_A(resolution_A: float) -> float:
    """Window edge (Å): ``max(20, 6·R)``, so the 0.5 crossing near 1/R falls about 6 shells out."""
    return max(MIN_WINDOW_A, WINDOW_PER_R * resolution_A)


def _soft_sphere(n: int, edge: int = EDGE_VOX) -> np.ndarray:
    c = (n - 1) / 2.0
    g = np.arange(n) - c
    r = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
    r0 = n / 2.0 - edge
    w = np.clip((r0 + edge - r) / edge, 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * w)).astype(np.float32)


@dataclass
class LocalFSC:
    """Per-voxel local map-model resolution (Å, NaN outside ``where``) and its flags."""

    resolution: np.ndarray
    at_nyquist: np.ndarray       # bool, FSC ≥ 0.5 up to the window's Nyquist (value = 2·Ts, a bound)
    below_first_shell: np.ndarray  # bool, FSC < 0.5 at the first shell (value = window, a bound)
    window_A: float
    stride_vox: int
    n_centres: int


def local_fsc_resolution(V: np.ndarray, M: np.ndarray, voxel_size: float, where: np.ndarray, window_A: float,
                         stride_A: float = 4.0, threshold: float = FSC_THRESHOLD, batch: int = 256) -> LocalFSC:
    """Local resolution (Å) where the windowed map-model FSC first falls below ``threshold``, at the voxels
    of ``where`` (see the module docstring)."""
    n = max(8, 2 * int(round(window_A / voxel_size / 2)))
    h = n // 2
    stride = max(1, int(round(stride_A / voxel_size)))
    win = _soft_sphere(n)
    shape = np.array(V.shape)
    # centres: a stride grid over the box, kept where a `where` voxel is within one stride
    near = scipy.ndimage.binary_dilation(where, iterations=stride)
    grids = [np.arange(stride // 2, s, stride) for s in shape]
    cz, cy, cx = np.meshgrid(*grids, indexing="ij")
    cent = np.stack([cz, cy, cx], -1).reshape(-1, 3)
    cent = cent[near[tuple(cent.T)]]
    Vp = np.pad(V.astype(np.float32), h)
    Mp = np.pad(M.astype(np.float32), h)
    f = np.fft.fftfreq(n)
    kk = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2) * n
    shell = np.rint(kk).astype(int).ravel()
    nsh = h  # shells 1..h (h = window Nyquist)
    valid = (shell >= 1) & (shell <= nsh)
    sh = shell[valid] - 1
    wsum = float(win.sum())
    res_c = np.empty(len(cent), np.float32)
    nyq_c = np.zeros(len(cent), bool)
    low_c = np.zeros(len(cent), bool)
    for b0 in range(0, len(cent), batch):
        cb = cent[b0:b0 + batch]
        A = np.stack([Vp[z:z + n, y:y + n, x:x + n] for z, y, x in cb])
        B = np.stack([Mp[z:z + n, y:y + n, x:x + n] for z, y, x in cb])
        for X in (A, B):   # remove the windowed mean, then apply the window
            mu = (X * win).sum((1, 2, 3), keepdims=True) / wsum
            X -= mu
            X *= win
        FA = scipy.fft.fftn(A, axes=(1, 2, 3)).reshape(len(cb), -1)[:, valid]
        FB = scipy.fft.fftn(B, axes=(1, 2, 3)).reshape(len(cb), -1)[:, valid]
        num = np.zeros((len(cb), nsh))
        da = np.zeros((len(cb), nsh))
        db = np.zeros((len(cb), nsh))
        for i in range(len(cb)):
            num[i] = np.bincount(sh, (FA[i] * np.conj(FB[i])).real, nsh)
            da[i] = np.bincount(sh, np.abs(FA[i]) ** 2, nsh)
            db[i] = np.bincount(sh, np.abs(FB[i]) ** 2, nsh)
        fsc = num / np.sqrt(np.maximum(da * db, 1e-30))
        for i in range(len(cb)):
            below = np.flatnonzero(fsc[i] < threshold)
            j = b0 + i
            if below.size == 0:
                res_c[j], nyq_c[j] = 2.0 * voxel_size, True
            elif below[0] == 0:
                res_c[j], low_c[j] = n * voxel_size, True
            else:
                k = below[0]           # shells k (index k-1 ≥ thr) and k+1 (index k < thr), 1-based
                f1, f2 = fsc[i, k - 1], fsc[i, k]
                kc = k + (f1 - threshold) / max(f1 - f2, 1e-12)
                res_c[j] = n * voxel_size / kc
    # centres -> voxels: trilinear interpolation on the stride grid (empty grid points: nearest centre)
    gshape = tuple(len(g) for g in grids)
    idx = tuple(((cent - stride // 2) // stride).T)
    out = []
    for vals in (res_c, nyq_c.astype(np.float32), low_c.astype(np.float32)):
        G = np.full(gshape, np.nan, np.float32)
        G[idx] = vals
        have = np.isfinite(G)
        if not have.all():
            _, near_idx = scipy.ndimage.distance_transform_edt(~have, return_indices=True)
            G = G[tuple(near_idx)]
        pts = (np.argwhere(where) - stride // 2) / stride
        m = np.full(V.shape, np.nan, np.float32)
        m[where] = scipy.ndimage.map_coordinates(G, pts.T, order=1, mode="nearest")
        out.append(m)
    res, nyq, low = out
    return LocalFSC(res, np.nan_to_num(nyq) >= 0.5, np.nan_to_num(low) >= 0.5, n * voxel_size, stride, len(cent))
