"""Local map-model resolution: an independent local reference for 0.e on real maps with a fitted model.

The fitted atomic model is turned into a density on the map's own grid (Gaussian atoms weighted by atomic
number, :mod:`gpuvalid.simulate.density`; model ``x, y, z`` Å → voxel ``(x − x0)/Ts`` with ``x0`` the
map's header origin).  Map and model density are both multiplied by a soft mask around the model
(:func:`soft_model_mask`), so unmodelled density does not lower the correlation.  Around each centre (a
grid of stride ``stride_A`` Å over the voxels to measure) a
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
apodisation).

A map-model FSC also measures how well the model sits in the map, so before it the model is refined as
rigid bodies, one per chain (:func:`refine_rigid_bodies`): each chain is rotated about its centroid and
translated to maximise the correlation of the map with the model density low-passed to R over the chain's
footprint (voxels within 3 Å of its atoms; the other chains' density included where it reaches), from a
grid of small rotations (±4° per axis) refined locally (bounded Powell, ±10°, ±5 Å per component, to
0.01° / 0.01 Å), two passes over the chains.  A deposited model refined into the map should barely move;
how far each chain moved and the correlations before and after are reported.  No flexible or per-domain
refinement: within a chain the model stays as deposited.  Nothing here uses the network of 0.e.  Host
NumPy/SciPy: this is a validation tool, not a section.
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
    """Density of ``atoms`` on the map grid ``shape``.

    The grid is ``[z, y, x]`` with voxel ``Ts`` = ``voxel_size`` Å and voxel 0 at ``origin_A`` = (x, y, z) Å.
    """
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
    """Soft mask around the model: voxels within ``max(3, 0.6·R)`` Å of an atom, blurred.

    The blur is a Gaussian of ``sigma_A`` Å.  Applied to map and model alike, it keeps density the model does
    not explain (neighbouring subunits, ligands, micelle) out of the windows, as a map-model FSC's mask does.
    """
    fp = model_footprint(atoms, shape, voxel_size, origin_A, max(3.0, 0.6 * resolution_A))
    return scipy.ndimage.gaussian_filter(fp.astype(np.float32), sigma_A / voxel_size)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two float64 vectors (NaN when either is constant)."""
    a = a - a.mean()
    b = b - b.mean()
    d = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > 0 else float("nan")


def correlation(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Pearson correlation of ``a`` and ``b`` over ``where`` (NaN for fewer than 3 voxels)."""
    x, y = a[where].astype(np.float64), b[where].astype(np.float64)
    return float("nan") if x.size < 3 else pearson(x, y)


def placement(V: np.ndarray, atoms: Atoms, voxel_size: float, origin_A, resolution_A: float) -> dict:
    """Check whether the model lines up with the map, with the header origin or with a zero origin.

    Correlation of the map with the model density low-passed to ``resolution_A`` over the model's footprint
    (3 Å around the atoms), with the header origin and with a zero origin; the better one is returned with
    both values and the fraction of atoms inside the box.
    """
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
    """Exhaustive rigid-body fit of ``atoms`` into ``V`` over the given rotations.

    For each rotation (about the model's centroid) the translation that maximises the cross-correlation of
    the map with the model density low-passed to ``resolution_A`` (FFT, whole voxels).  Returns
    ``(cross-correlation, rotation, translation Å)`` per rotation, best first; apply as
    ``atoms.transformed(rot, shift)``.
    """
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
    """Join several :class:`Atoms` into one, in order."""
    return Atoms(*[np.concatenate([getattr(a, f) for a in parts]) for f in
                   ("xyz", "element", "z", "name", "res_key", "res_name")])


def fit_copies(V: np.ndarray, atoms: Atoms, voxel_size: float, origin_A, resolution_A: float, rotations: list,
               n_copies: int, min_separation_A: float) -> tuple[Atoms, list]:
    """Place ``n_copies`` copies of ``atoms`` in ``V`` (e.g. the rings of an oligomer when the model is one ring).

    The copies are the best fits of :func:`fit_rigid` whose centroids are at least ``min_separation_A`` Å
    apart; returns the combined atoms and the fits used.
    """
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
    """Local resolution (Å) where the windowed map-model FSC first falls below ``threshold``.

    At the voxels of ``where`` (see the module docstring); ``M`` is the model density on the map's grid.
    """
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


# ------------------------------------------------------------------ local rigid-body refinement per chain
REFINE_GRID_DEG = 4.0       # rotation grid: every axis in {−4°, 0, +4°} (27 rotations) before local refinement
REFINE_MAX_ANGLE_DEG = 10.0  # bounds of the local search: rotation-vector components (°) ...
REFINE_MAX_SHIFT_A = 5.0     # ... and translation components (Å)
REFINE_CYCLES = 2            # passes over the bodies (each sees the others' latest positions)
REFINE_FOOTPRINT_A = 3.0     # the correlation is taken over the voxels within 3 Å of the body's atoms


def chain_labels(atoms: Atoms) -> np.ndarray:
    """Chain identifier of every atom (the first field of ``res_key``)."""
    return np.array([str(k).split("|", 1)[0] for k in atoms.res_key])


def rotation_from_vector(rotvec_deg) -> np.ndarray:
    """Rotation matrix of the rotation vector ``rotvec_deg`` (axis × angle, degrees; Rodrigues)."""
    v = np.radians(np.asarray(rotvec_deg, float))
    a = float(np.linalg.norm(v))
    if a < 1e-12:
        return np.eye(3)
    k = v / a
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(a) * K + (1.0 - np.cos(a)) * K @ K


def rotation_angle_deg(rot: np.ndarray) -> float:
    """Angle (°) of a rotation matrix."""
    return float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0))))


@dataclass
class RigidBodyFit:
    """One rigid body's local refinement.

    The correlation of the map with the model density low-passed to R over the body's 3 Å footprint before
    and after, the motion (rotation ``rot`` about the body's centroid ``centre_A``, then ``shift_A``), its
    size (angle °, centroid shift Å, RMS and largest atom displacement Å) and whether a parameter stopped at
    the search bound.
    """

    label: str
    n_atoms: int
    n_points: int
    cc_before: float
    cc_after: float
    rot: np.ndarray
    shift_A: np.ndarray
    centre_A: np.ndarray
    angle_deg: float
    centroid_shift_A: float
    rms_move_A: float
    max_move_A: float
    at_bound: bool

    def apply(self, xyz: np.ndarray) -> np.ndarray:
        """Move coordinates ``xyz`` (n, 3) Å by the fit: ``rot·(x − centre_A) + centre_A + shift_A``."""
        return (xyz - self.centre_A) @ self.rot.T + self.centre_A + self.shift_A


def refine_rigid_bodies(V: np.ndarray, atoms: Atoms, voxel_size: float, origin_A, resolution_A: float,
                        groups: np.ndarray | None = None, grid_deg: float = REFINE_GRID_DEG,
                        max_angle_deg: float = REFINE_MAX_ANGLE_DEG, max_shift_A: float = REFINE_MAX_SHIFT_A,
                        cycles: int = REFINE_CYCLES, n_starts: int = 3) -> tuple[Atoms, list[RigidBodyFit]]:
    """Refine ``atoms`` in the map ``V`` locally as rigid bodies, one per group (default: per chain).

    This is done before a map-model FSC so that it measures the map rather than a model left where a
    crystal structure or a neighbouring map put it.

    For each body, with every other atom held where it is: the map is sampled (cubic B-spline) at the
    points ``y = rot·(x − c) + c + t`` of the body's footprint voxels ``x`` (within 3 Å of its atoms; ``c``
    its centroid) and correlated (Pearson) with the model density low-passed to ``resolution_A`` there:
    the body's own density at ``x`` plus the other atoms' density at ``y``, so that density shared with a
    neighbour is neither claimed nor ignored.  Search: a grid of rotation vectors with every component in
    ``{−grid, 0, +grid}`` ° (translation 0), then a bounded Powell refinement of the 6 parameters
    (rotation vector in °, translation in Å; components within ``±max_angle_deg`` and ``±max_shift_A``) from
    the three best grid points; the best correlation wins, the start (no motion) included, so a body never
    ends worse than it began.  Bodies are refined one after the other (each sees the others' latest
    positions), ``cycles`` times.  Footprint voxels within 2 voxels of the map's edge are left out; the map
    is taken as 0 outside its box.  Returns the moved atoms and one :class:`RigidBodyFit` per body (the
    motion from the input, composed over cycles).
    """
    from scipy.optimize import minimize

    ts = float(voxel_size)
    org = np.asarray(origin_A, float)
    labels = chain_labels(atoms) if groups is None else np.asarray(groups).astype(str)
    order = list(dict.fromkeys(labels.tolist()))
    xyz0 = atoms.xyz.copy()
    xyz = atoms.xyz.copy()
    margin_A = max_shift_A + 2.5 * resolution_A + REFINE_FOOTPRINT_A + 5.0
    shape_map = np.array(V.shape)
    fits: dict = {}
    for _cycle in range(max(1, cycles)):
        for lab in order:
            sel = labels == lab
            body = atoms.subset(sel)
            body.xyz = xyz[sel]
            others = atoms.subset(~sel)
            others.xyz = xyz[~sel]
            c = body.xyz.mean(0)
            # sub-box on the map grid (x, y, z voxel indices) around the body plus the margin
            lo = np.floor((body.xyz.min(0) - margin_A - org) / ts).astype(int)
            hi = np.ceil((body.xyz.max(0) + margin_A - org) / ts).astype(int) + 1
            n = hi - lo
            n = n + (n % 2)
            sub_shape = (int(n[2]), int(n[1]), int(n[0]))
            sub_org = org + lo * ts
            Mb = lowpass(model_density(body, sub_shape, ts, sub_org), ts, resolution_A)
            if len(others):
                near = (others.xyz > sub_org - 2 * resolution_A).all(1) & \
                       (others.xyz < sub_org + n * ts + 2 * resolution_A).all(1)
                Mo = lowpass(model_density(others.subset(near), sub_shape, ts, sub_org), ts, resolution_A)
            else:
                Mo = np.zeros(sub_shape, np.float32)
            # map values on the sub-box grid (0 outside the map), both as cubic B-spline coefficients
            Vs = np.zeros(sub_shape, np.float32)
            a0 = np.maximum(lo[::-1], 0)
            a1 = np.minimum(lo[::-1] + np.array(sub_shape), shape_map)
            if (a1 > a0).all():
                Vs[tuple(slice(p - q, r - q) for p, q, r in zip(a0, lo[::-1], a1, strict=True))] = \
                    V[tuple(slice(p, r) for p, r in zip(a0, a1, strict=True))]
            Vc = scipy.ndimage.spline_filter(Vs, order=3, mode="nearest")
            Oc = scipy.ndimage.spline_filter(Mo, order=3, mode="nearest")
            fp = model_footprint(body, sub_shape, ts, sub_org, REFINE_FOOTPRINT_A)
            idx = np.argwhere(fp)                                    # z, y, x in the sub-box
            glob = idx + lo[::-1]
            inside = ((glob >= 2) & (glob <= shape_map - 3)).all(1)
            idx = idx[inside]
            m = Mb[tuple(idx.T)].astype(np.float64)
            pts = sub_org + idx[:, ::-1] * ts                        # x, y, z Å

            def cc_of(p, idx=idx, m=m, pts=pts, c=c, Vc=Vc, Oc=Oc, sub_org=sub_org):
                y = (pts - c) @ rotation_from_vector(p[:3]).T + c + p[3:]
                q = ((y - sub_org) / ts)[:, ::-1].T
                v = scipy.ndimage.map_coordinates(Vc, q, order=3, mode="nearest", prefilter=False)
                o = scipy.ndimage.map_coordinates(Oc, q, order=3, mode="nearest", prefilter=False)
                return pearson(v.astype(np.float64), m + o)

            if len(m) < 10:
                continue
            p0 = np.zeros(6)
            cc0 = cc_of(p0)
            g = [-grid_deg, 0.0, grid_deg]
            grid = [np.array([a, b, d, 0.0, 0.0, 0.0]) for a in g for b in g for d in g]
            scored = sorted(((cc_of(p), i) for i, p in enumerate(grid)), key=lambda s: -np.nan_to_num(s[0], nan=-2))
            bounds = [(-max_angle_deg, max_angle_deg)] * 3 + [(-max_shift_A, max_shift_A)] * 3
            best_p, best_cc = p0, cc0
            for _s, i in scored[:n_starts]:
                r = minimize(lambda p: -np.nan_to_num(cc_of(p), nan=-2.0), grid[i], method="Powell",
                             bounds=bounds, options={"xtol": 1e-2, "ftol": 1e-7, "maxfev": 3000})
                if -r.fun > best_cc:
                    best_p, best_cc = r.x, -float(r.fun)
            rot = rotation_from_vector(best_p[:3])
            xyz[sel] = (body.xyz - c) @ rot.T + c + best_p[3:]
            at_bound = bool(np.any(np.abs(best_p[:3]) >= 0.99 * max_angle_deg) or
                            np.any(np.abs(best_p[3:]) >= 0.99 * max_shift_A))
            prev = fits.get(lab)
            fits[lab] = dict(n_points=int(len(m)), cc_before=prev["cc_before"] if prev else cc0, cc_after=best_cc,
                             at_bound=at_bound or (prev["at_bound"] if prev else False))
    out = []
    for lab in order:
        if lab not in fits:
            continue
        sel = labels == lab
        a, b = xyz0[sel], xyz[sel]
        ca, cb = a.mean(0), b.mean(0)
        H = (a - ca).T @ (b - cb)                                   # Kabsch: the net motion a -> b
        U, _S, Wt = np.linalg.svd(H)
        D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Wt.T @ U.T))])
        rot = Wt.T @ D @ U.T
        d = np.linalg.norm(b - a, axis=1)
        f = fits[lab]
        out.append(RigidBodyFit(lab, int(sel.sum()), f["n_points"], float(f["cc_before"]), float(f["cc_after"]),
                                rot, cb - ca, ca, rotation_angle_deg(rot), float(np.linalg.norm(cb - ca)),
                                float(np.sqrt((d * d).mean())), float(d.max()), bool(f["at_bound"])))
    moved = Atoms(xyz, atoms.element, atoms.z, atoms.name, atoms.res_key, atoms.res_name)
    return moved, out
