"""Half maps: reading and checking them, and the per-run state the Level 1 sections share.

:func:`load_halves` reads the two half maps and refuses, with a one-line reason
(:class:`~gpuvalid.errors.InputError`), what the spec refuses: a missing half, halves of different boxes
or voxel sizes, halves whose box differs from the primary map's, identical halves (FSC ≡ 1: not
independent) and a constant half.  :class:`Level1Context` holds the halves on the device and computes,
once, what several sections need: the shell geometry, the transforms of the unmasked and the masked
halves, their FSC sums and their direction-binned sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, NotMeasurable
from ..lazy import cached, forget
from . import shells

VOXEL_TOL = 0.01  # relative voxel-size difference accepted between the halves and the primary map
HIST_KEY = "local_resolution_hists"   # cache: section id → (label, local resolutions), for the overlay figure


@dataclass
class HalfMaps:
    """The two half maps as read (float32 ``[z, y, x]``) and their provenance."""

    paths: tuple
    data: tuple
    sha256: tuple
    header_voxel_size: tuple   # (x, y, z) per half, 0 where the header has none
    notes: list = field(default_factory=list)

    def info(self) -> dict:
        """Return the ``half_maps`` block of ``results.json``."""
        return {"files": [Path(p).name for p in self.paths], "sha256": list(self.sha256),
                "header_voxel_size_A": [list(v) for v in self.header_voxel_size], "notes": list(self.notes)}


def _vs_text(vs) -> str:
    return " × ".join(f"{v:.4g}" for v in vs)


def load_halves(paths, primary_shape: tuple, voxel_size: float) -> HalfMaps:
    """Read and check the two half maps against the primary map (box ``primary_shape``, voxel ``voxel_size`` Å).

    Raises
    ------
    InputError
        With a one-line reason when the halves cannot be used: not two files, unreadable, a box or voxel size
        other than the primary map's, different voxel sizes, or identical halves (not independent).
    """
    from ..io.mrc import read_mrc, sha256_file

    paths = [p for p in (paths or []) if p is not None]
    if len(paths) == 0:
        raise InputError("no half maps were given")
    if len(paths) == 1:
        raise InputError(f"only one half map was given ({Path(paths[0]).name}); Level 1 needs both halves")
    if len(paths) > 2:
        raise InputError(f"{len(paths)} half maps were given; Level 1 needs exactly two")
    data, vss, shas, notes = [], [], [], []
    for i, p in enumerate(paths, 1):
        p = Path(p)
        if not p.is_file():
            raise InputError(f"half map {i} not found: {p}")
        m = read_mrc(p)   # refuses NaN/Inf and constant maps with a one-line reason
        data.append(m.data)
        vss.append(tuple(float(v) for v in m.voxel_size))
        shas.append(sha256_file(p))
    a, b = data
    if a.shape != b.shape:
        raise InputError(f"the half maps have different boxes ({_box(a.shape)} and {_box(b.shape)} voxels)")
    if tuple(a.shape) != tuple(primary_shape):
        raise InputError(f"the half maps' box ({_box(a.shape)} voxels) differs from the primary map's "
                         f"({_box(primary_shape)} voxels)")
    for i, vs in enumerate(vss, 1):
        if max(vs) <= 0:
            notes.append(f"half map {i} has no voxel size in its header: the primary map's {voxel_size:g} Å is used")
            continue
        if any(abs(v - voxel_size) / voxel_size > VOXEL_TOL for v in vs):
            raise InputError(f"half map {i} has voxel size {_vs_text(vs)} Å but the primary map has "
                             f"{voxel_size:.4g} Å")
    if max(vss[0]) > 0 and max(vss[1]) > 0 and any(abs(u - v) / max(u, v) > VOXEL_TOL
                                                   for u, v in zip(*vss, strict=True)):
        raise InputError(f"the half maps have different voxel sizes ({_vs_text(vss[0])} and {_vs_text(vss[1])} Å)")
    if np.array_equal(a, b):
        raise InputError("the two half maps are identical (FSC ≡ 1): they are not independent reconstructions")
    d = float(np.std(a.astype(np.float64) - b))
    s = max(float(np.std(a, dtype=np.float64)), float(np.std(b, dtype=np.float64)))
    if d <= 1e-6 * s:
        raise InputError(f"the two half maps are identical to float precision (σ(h1 − h2) = {d:.3g}, "
                         f"σ(h1) = {s:.3g}): they are not independent reconstructions")
    return HalfMaps(tuple(Path(p) for p in paths), (a, b), tuple(shas), tuple(vss), notes)


def _box(shape) -> str:
    nz, ny, nx = shape
    return f"{nx} × {ny} × {nz}"


class Level1Context:
    """What the Level 1 sections share: the primary map's context ``ctx0`` (masks, R, options) and the halves.

    Transforms and sums are computed on first use and cached; ``release()`` drops the device arrays.
    """

    def __init__(self, ctx0, halves: HalfMaps, seed: int = 3):
        self.ctx0 = ctx0
        self.be = ctx0.be
        self.halves = halves
        self.voxel_size = ctx0.voxel_size
        self.resolution = ctx0.resolution
        self.options = ctx0.options
        self.seed = int(seed)
        self._lazy: dict = {}       # values of the @cached properties
        self.cache: dict = {}       # what one section keeps for another (1.e's engine, the histograms)
        self.estimates: dict = {}   # section id -> (label, Å) for the resolution-estimates sentence
        #: False once the sections still to run read the halves only through the half-map engine (1.e, 1.f):
        #: then the engine drops the device halves when it has been built (:func:`monores_half.half_engine`)
        self.keep_halves = True

    @property
    def shape(self) -> tuple:
        """Box ``(nz, ny, nx)`` of the halves (the primary map's) in voxels."""
        return self.halves.data[0].shape

    @cached
    def h1(self):
        """Half map 1 on the device (float32 ``[z, y, x]``)."""
        return self.be.asarray(self.halves.data[0], dtype=self.be.xp.float32)

    @cached
    def h2(self):
        """Half map 2 on the device (float32 ``[z, y, x]``)."""
        return self.be.asarray(self.halves.data[1], dtype=self.be.xp.float32)

    @cached
    def geo(self) -> shells.HalfSpectrum:
        """Frequency geometry of the half spectrum (shell index, |f| in Å⁻¹) shared by the Fourier sections."""
        return shells.HalfSpectrum(self.be, self.shape, self.voxel_size)

    @cached
    def F1(self):
        """Half spectrum (``rfftn``, complex64) of half map 1."""
        return self.be.rfftn(self.h1).astype(self.be.xp.complex64, copy=False)

    @cached
    def F2(self):
        """Half spectrum (``rfftn``, complex64) of half map 2."""
        return self.be.rfftn(self.h2).astype(self.be.xp.complex64, copy=False)

    # ---- the mask used by the masked analyses ------------------------------------------------------------
    @cached
    def mask_info(self) -> tuple:
        """``(mask, description, is_soft_mask)``: the mask of the masked analyses.

        The Level 0 soft mask of the primary map; when it cannot be made (no contour threshold, empty mask) a
        sphere of radius ``N/2 − 4`` voxels with a Gaussian edge (σ = 2 voxels), the reference's 1.b mask.
        """
        try:
            self.ctx0.require_mask()
            m = self.ctx0.soft_mask
            if float(self.be.to_host(m.sum())) <= 0:
                raise NotMeasurable("the soft mask is empty")
            # the Level 0 mask itself when it is float32 already (no section writes into it): no copy
            return m.astype(self.be.xp.float32, copy=False), "the Level 0 soft mask of the primary map", True
        except NotMeasurable as exc:
            return (self.sphere_mask(), f"a spherical mask of radius N/2 − 4 voxels with a Gaussian edge (σ = 2 "
                    f"voxels), because the soft mask is not available ({exc})", False)

    def sphere_mask(self):
        """Return the fallback mask: 1 within ``N/2 − 4`` voxels of the box centre, a Gaussian edge of σ = 2."""
        xp = self.be.xp
        nz, ny, nx = self.shape
        rad = min(self.shape) / 2.0 - 4.0
        z = xp.arange(nz, dtype=xp.float32)[:, None, None] - nz // 2
        y = xp.arange(ny, dtype=xp.float32)[None, :, None] - ny // 2
        x = xp.arange(nx, dtype=xp.float32)[None, None, :] - nx // 2
        r = xp.sqrt(z * z + y * y + x * x)
        return xp.where(r <= rad, xp.float32(1.0), xp.exp(-((r - rad) ** 2) / (2 * 2.0 ** 2))).astype(xp.float32,
                                                                                                  copy=False)

    @property
    def mask(self):
        """The mask of the masked analyses (float32, values in [0, 1]); see :attr:`mask_info`."""
        return self.mask_info[0]

    @cached
    def M1(self):
        """Half spectrum of the masked half map 1, ``rfftn(h1 · mask)``."""
        return self.be.rfftn(self.h1 * self.mask).astype(self.be.xp.complex64, copy=False)

    @cached
    def M2(self):
        """Half spectrum of the masked half map 2, ``rfftn(h2 · mask)``."""
        return self.be.rfftn(self.h2 * self.mask).astype(self.be.xp.complex64, copy=False)

    @cached
    def fsc_unmasked(self) -> shells.FscTerms:
        """Per-shell FSC sums of the unmasked halves."""
        return shells.fsc_terms(self.geo, self.F1, self.F2)

    @cached
    def fsc_masked(self) -> shells.FscTerms:
        """Per-shell FSC sums of the masked halves."""
        return shells.fsc_terms(self.geo, self.M1, self.M2)

    @cached
    def binned_masked(self) -> np.ndarray:
        """``(cross, p1, p2)`` sums of the masked halves per (shell, direction bin): ``[3, nshell, nbins]``."""
        bins = self.direction_bins
        F1, F2 = self.M1, self.M2
        # one per-coefficient array at a time (2 bytes per voxel each), weighted in place
        return np.concatenate([bins.sums(shells.cross_power(F1, F2)), bins.sums(shells.power(F1)),
                               bins.sums(shells.power(F2))])

    @cached
    def direction_bins(self) -> shells.DirectionBins:
        """Direction bins of the half spectrum (the directional FSC's cones)."""
        return shells.DirectionBins(self.geo)

    @property
    def freq(self) -> np.ndarray:
        """Shell frequencies in Å⁻¹."""
        return self.geo.freq

    def nyquist_A(self) -> float:
        """Return the Nyquist resolution 2·Ts in Å."""
        return 2.0 * self.voxel_size

    @cached
    def cpu_twin(self) -> "Level1Context":
        """Context of the halves on the CPU, with the primary map's CPU context, made once.

        The resolution estimates and the local-resolution histograms (host objects the report reads) are
        shared with this one.
        """
        twin = Level1Context(self.ctx0.on_cpu(), self.halves, seed=self.seed)
        twin.estimates = self.estimates
        twin.cache[HIST_KEY] = self.cache.setdefault(HIST_KEY, {})
        return twin

    def on_cpu(self) -> "Level1Context":
        """Return this context when it is on the CPU already, else :attr:`cpu_twin`."""
        return self.cpu_twin if self.be.is_gpu else self

    #: the cached values only the global Fourier sections (1.a, 1.b, 1.g, 1.h) use: the halves' spectra, masked
    #: and unmasked (4 B per voxel each), the frequency geometry, the direction bins and the mask of the masked
    #: analyses (the Level 0 soft mask itself, or a sphere made for them)
    SPECTRA = ("F1", "F2", "M1", "M2", "geo", "direction_bins", "binned_masked", "mask_info")

    def drop_spectra(self) -> None:
        """Drop :data:`SPECTRA`, here and in the CPU twin if it was made.

        About 20-24 bytes per voxel of device (or host) memory that the local-resolution sections do not use; a
        later use computes them again.
        """
        forget(self, self.SPECTRA)
        twin = self._lazy.get("cpu_twin")
        if twin is not None:
            forget(twin, self.SPECTRA)

    def shed_level0(self) -> None:
        """Let go what the primary map's context holds for its Level 0 sections only.

        :data:`~gpuvalid.context.MapContext.LEVEL0_ONLY`: the map, its contour mask, the largest-component mask
        and the resized map (about 6 bytes per voxel on the device).
        """
        c = self.ctx0
        if c.threshold is not None and not c.threshold_too_high:
            _ = c.raw_mask_voxels     # the count require_mask reads, kept (a number): the raw mask is not made again
        forget(c, c.LEVEL0_ONLY)

    def drop_unmasked_spectra(self) -> None:
        """Drop the cached spectra of the unmasked halves (8 bytes per voxel; only 1.a reads them).

        Their per-shell FSC sums (:attr:`fsc_unmasked`) stay; a later use of ``F1``/``F2`` transforms again.
        """
        forget(self, ("F1", "F2"))

    def drop_halves(self) -> None:
        """Drop the cached device halves (8 bytes per voxel; a later use copies them from the host again)."""
        forget(self, ("h1", "h2"))

    def release(self) -> None:
        """Drop every cached value (the halves and their transforms on the device) and the sections' cache."""
        self._lazy.clear()
        self.cache.clear()


def resolution_of(freq: float | None) -> float | None:
    """1/f in Å (None for no crossing or a non-positive frequency)."""
    if freq is None or not math.isfinite(freq) or freq <= 0:
        return None
    return 1.0 / freq
