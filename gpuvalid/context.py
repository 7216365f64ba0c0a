"""The per-map state shared by all sections: map on the device, metadata, masks (computed once)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import masks
from ._checks import check_number, check_positive, check_volume
from .errors import NotMeasurable
from .lazy import cached

if TYPE_CHECKING:
    from .backend import Backend

MIN_MASK_VOXELS = 64  # voxels at or above the contour needed before any mask-based number means something


@dataclass
class RunOptions:
    """What to write besides the numbers."""

    figure_dir: Path | None = None   # write PNG figures here (None: no figures)
    map_dir: Path | None = None      # write derived maps (MRC) here when requested
    views: bool = True               # render 3-D views when a renderer is available
    local_fsc_step: int | None = None  # 1.c: FSC every k-th voxel, interpolated (None: automatic)
    local_fsc_engine: str = "kernel"   # 1.c on a device: "kernel" (raw CUDA kernels) or "cufft" (benchmarks)


class MapContext:
    r"""One map on one backend.

    ``V`` is the map (float32, ``[z, y, x]``) on the device; ``voxel_size`` Ts in Å; ``threshold`` the
    contour level t (or None); ``resolution`` R in Å (or None).  Masks and the resized map are
    computed lazily and cached (:class:`gpuvalid.lazy.cached`), so every section shares them.

    What the sections leave for the report: ``local_maps`` (section id → the local map for the colour views:
    ``values`` on the host, None when no figures or maps are written, ``lo``, ``hi``, ``label``) and
    ``figure_errors`` (tracebacks of figures that could not be drawn, ``"<section id>:\n<traceback>"``; the
    pipeline writes them to ``errors.log``).  ``cache`` is for what one section keeps for another (e.g. a host
    copy of a mask).

    Raises
    ------
    ValueError
        When the map is not a non-empty 3-D array of finite values, the voxel size or the resolution is not a
        finite positive number, or the threshold is not finite (the loaders refuse such user data first, with
        :class:`~gpuvalid.errors.InputError`; here it means a caller's bug).
    """

    def __init__(self, be: Backend, volume: np.ndarray, voxel_size: float, threshold: float | None,
                 resolution: float | None, options: RunOptions | None = None, name: str = "map"):
        self.be = be
        self.host = np.ascontiguousarray(volume, dtype=np.float32)
        self.vmin, self.vmax = check_volume(self.host, f"map {name}")
        self.voxel_size = check_positive(voxel_size, "voxel size (Å)")
        self.threshold = None if threshold is None else check_number(threshold, "contour threshold")
        self.resolution = None if resolution is None else check_positive(resolution, "resolution (Å)")
        self.options = options or RunOptions()
        self.name = name
        self._lazy: dict = {}             # values of the @cached properties
        self.cache: dict = {}             # what one section keeps for another
        self.local_maps: dict = {}
        self.figure_errors: list[str] = []

    @property
    def shape(self) -> tuple:
        """Box ``(nz, ny, nx)`` in voxels."""
        return self.host.shape

    @cached
    def V(self):
        """The map on the backend's device (float32 ``[z, y, x]``), copied there on first use."""
        return self.be.asarray(self.host)

    # ---- threshold checks --------------------------------------------------------------------
    @property
    def threshold_too_high(self) -> bool:
        """True when a contour level is given and is at or above the map maximum (the raw mask is empty)."""
        return self.threshold is not None and self.threshold >= self.vmax

    def require_mask(self) -> None:
        """Check that a usable contour threshold exists (the mask sections call this first).

        Raises
        ------
        NotMeasurable
            When no threshold was given, it is at or above the map maximum (empty mask), or so high that
            fewer than ``MIN_MASK_VOXELS`` voxels reach it (a handful of voxels does not define a molecule).
        """
        if self.threshold is None:
            raise NotMeasurable("no contour threshold was given (use --threshold or an EMDB header)")
        if self.threshold_too_high:
            raise NotMeasurable(f"threshold too high: the contour level {self.threshold:g} is at or above "
                                f"the map maximum {self.vmax:g}, so the mask is empty")
        n = self.raw_mask_voxels
        if n < MIN_MASK_VOXELS:
            raise NotMeasurable(f"threshold too high: only {n} voxel(s) reach the contour level "
                                f"{self.threshold:g}; at least {MIN_MASK_VOXELS} are needed to define the molecule")

    @cached
    def raw_mask_voxels(self) -> int:
        """Count the voxels at or above the contour level."""
        return int(self.be.scalar(self.be.xp.count_nonzero(self.raw_mask)))

    def require_resolution(self) -> None:
        """Check that a resolution R was given (sections that need R call this first).

        Raises
        ------
        NotMeasurable
            When no resolution was given.
        """
        if self.resolution is None:
            raise NotMeasurable("no resolution was given (use --resolution or an EMDB header)")

    # ---- masks ---------------------------------------------------------------------------------
    @cached
    def raw_mask(self):
        """Voxels at or above the contour level, ``V ≥ t`` (boolean, on the device).

        Raises
        ------
        NotMeasurable
            When no threshold was given.
        """
        self._need_threshold()
        return masks.raw_mask(self.be, self.V, self.threshold)

    @cached
    def hard_mask(self):
        """Components with ≥ 10 % of the largest one's voxels, dilated by 2 Å (see :mod:`gpuvalid.masks`).

        Raises
        ------
        NotMeasurable
            When no threshold was given.
        """
        self._need_threshold()
        hard, sizes = masks.hard_mask(self.be, self.V, self.threshold, self.voxel_size, with_sizes=True)
        self._lazy["hard_mask_component_sizes"] = [int(v) for v in sizes]
        return hard

    @cached
    def hard_mask_component_sizes(self) -> list[int]:
        """Voxel counts (raw mask) of the components kept in the hard mask, descending."""
        _ = self.hard_mask
        return self._lazy["hard_mask_component_sizes"]

    @cached
    def hard_mask_largest_only(self):
        """Hard mask of the reference service: the largest component only (quirk Q6), for ``vrs_compat``.

        Raises
        ------
        NotMeasurable
            When no threshold was given.
        """
        self._need_threshold()
        if len(self.hard_mask_component_sizes) <= 1:
            return self.hard_mask
        return masks.hard_mask_largest_only(self.be, self.V, self.threshold, self.voxel_size)

    @cached
    def hard_mask_box(self) -> tuple | None:
        """Slices (z, y, x) of the hard mask's bounding box (None: empty mask)."""
        return masks.bounding_box(self.be, self.hard_mask)

    @cached
    def soft_mask(self):
        """Hard mask convolved with a Gaussian of σ = 2 voxels (values in [0, 1]); see :mod:`gpuvalid.masks`."""
        return masks.soft_mask(self.be, self.hard_mask, box=self.hard_mask_box)

    def _need_threshold(self):
        if self.threshold is None:
            raise NotMeasurable("no contour threshold was given (use --threshold or an EMDB header)")

    # ---- resized map for the local analyses --------------------------------------------------
    @cached
    def resized(self) -> "MapContext":
        """Context of the map Fourier-resampled to Ts' = R/2, with its own masks (same threshold).

        Raises
        ------
        NotMeasurable
            When no resolution was given.
        """
        self.require_resolution()
        Vr, ts = masks.resize_for_resolution(self.be, self.V, self.voxel_size, self.resolution)
        ctx = MapContext(self.be, self.be.to_host(Vr), ts, self.threshold, self.resolution,
                         self.options, name=self.name + " (resized)")
        ctx.V = Vr  # keep the device copy
        return ctx

    # ---- the same map on the CPU (a section that does not fit the device runs there) ---------------
    @cached
    def cpu_twin(self) -> "MapContext":
        """Context of the same map on the CPU backend, made once per map.

        It shares ``cache``, ``local_maps`` and ``figure_errors`` (host objects the sections and the report
        read) with this context.
        """
        from .backend import get_backend

        twin = MapContext(get_backend("cpu"), self.host, self.voxel_size, self.threshold, self.resolution,
                          self.options, name=self.name)
        twin.cache, twin.local_maps, twin.figure_errors = self.cache, self.local_maps, self.figure_errors
        return twin

    def on_cpu(self) -> "MapContext":
        """Return this context when it is on the CPU already, else :attr:`cpu_twin`."""
        return self.cpu_twin if self.be.is_gpu else self

    #: the cached values only the Level 0 sections read (Level 1 reads the hard and the soft mask): the map on the
    #: device, the contour mask, the reference's largest-component mask and the resized map's context (dropped
    #: with :func:`gpuvalid.lazy.forget`; a later use computes them again, ``V`` copied from the host)
    LEVEL0_ONLY = ("V", "raw_mask", "hard_mask_largest_only", "resized")

    def release(self) -> None:
        """Drop every cached value and what the sections left for the report.

        Device arrays included: batch mode calls this between maps.
        """
        self._lazy.clear()
        self.cache.clear()
        self.local_maps.clear()
        self.figure_errors.clear()


@dataclass
class MapInput:
    """A map ready for validation with its provenance (what the report's input section shows)."""

    path: Path
    data: np.ndarray                   # float32 [z, y, x]
    voxel_size: float                  # Å (isotropic after input handling)
    threshold: float | None
    resolution: float | None
    sha256: str
    origin_A: tuple = (0.0, 0.0, 0.0)  # x, y, z
    header_voxel_size: tuple = ()      # x, y, z as in the file
    notes: list[str] = field(default_factory=list)
    sources: dict = field(default_factory=dict)  # where t / R / Ts came from
