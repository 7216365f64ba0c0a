"""Monogenic (non-learned) local resolution, after the MonoRes idea (Vilas et al., Structure 2018).

For shell frequencies ``f`` (Å⁻¹) from ``1/low_A`` up to Nyquist ``1/(2·Ts)``, the local amplitude
``A_f(x)`` of the map in a Gaussian shell (the spiral-amplitude engine, :class:`gpuvalid.spiral.SpiralEngine`)
is compared with the noise level ``q_f`` = the 0.95 quantile of ``A_f`` over background voxels (outside the
mask, inside the inscribed sphere, and at least ``1/(π·w)`` Å from the mask: a Gaussian shell of width ``w``
Å⁻¹ has a spatial envelope of σ = 1/(2π·w) Å, so the molecule's own amplitude leaks that far into the
solvent and would otherwise raise the noise level; the margin is halved until enough voxels remain).
Sweeping from low to high frequency, a voxel's local resolution is
``1/f`` at the highest frequency reached while its amplitude stays above the noise level; one shell below
the noise is tolerated (two consecutive ones end the sweep), which keeps single noisy shells from stopping
it early.  Voxels never above the noise get ``low_A``.

The estimate is only as good as its noise reference, so it refuses (:class:`NotMeasurable`, with the
reason) rather than return a number that cannot mean anything:

- an empty mask, or fewer than ``MIN_BACKGROUND`` background voxels;
- a flat reference: ≥ ``MAX_FLAT_FRACTION`` of the reference voxels hold one and the same value (a deposit
  masked or zeroed outside the molecule: there is no noise to measure, and the amplitude there is only the
  molecule's own leakage through the shell filter, so every voxel would reach the grid limit 2·Ts);
- a reference holding density above the contour: ≥ ``MAX_ABOVE_CONTOUR`` = 5 % of its voxels ≥ t (parts of
  the molecule left out of the hard mask), so its 0.95 quantile is the molecule's amplitude, not noise,
  and pushes voxels to the ``low_A`` cap;
- a noise level of zero or not finite at a shell;
- a result where ≥ ``MAX_AT_BOUND`` of the mask voxels sit at the cap ``low_A`` or at the grid limit
  2·Ts (a bound, not a measurement).

Works on any backend (NumPy or CuPy arrays); returns a host map in Å, NaN outside the mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import NotMeasurable
from .masks import background_sphere_index, distance_to_mask
from .spiral import SpiralEngine, quantile_at

if TYPE_CHECKING:
    from .backend import Backend

NOISE_QUANTILE = 0.95
LOW_A = 20.0
N_SHELLS = 30
MIN_BACKGROUND = 200
MAX_FLAT_FRACTION = 0.25
MAX_ABOVE_CONTOUR = 0.05
MAX_AT_BOUND = 0.5


class TwoFailureSweep:
    """Per-voxel state of a MonoRes sweep (0.e, 1.e, each direction of 1.f).

    It holds the resolution of each voxel's last pass; a voxel leaves after two consecutive failures.
    ``value`` starts at ``cap`` (never passed).

    Kept in one byte per voxel while the sweep holds at most :data:`NARROW_STEPS` steps (1.f holds one sweep
    per direction, 47 of them; its steps are at most about 30): the low six bits hold the number of the last
    step passed plus one (0: none; its resolution from a host list), the top two bits the consecutive misses
    (0, 1 or 2; the voxel is alive while fewer than 2).  A longer sweep widens to two bytes (fourteen bits and
    two, up to :data:`MAX_STEPS` steps).  ``value``, ``alive``, ``passed`` and ``step`` are computed from the
    state on demand.
    """

    NARROW_STEPS = 63          # steps a one-byte state can number (six bits, 0 for "none")
    MAX_STEPS = 2 ** 14 - 1    # steps a two-byte state can number

    def __init__(self, xp, n: int, cap: float):
        self.xp = xp
        self.cap = float(cap)
        self.state = xp.zeros(n, dtype=xp.uint8)
        self._d: list[float] = []        # resolution (Å) of each update

    def _layout(self) -> tuple[int, int]:
        """``(bits of the step field, one miss)`` of the current state's dtype."""
        return (6, 64) if self.state.dtype == np.uint8 else (14, 2 ** 14)

    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(self.state.size)

    @property
    def alive(self):
        """Boolean per voxel: still in the sweep (fewer than two consecutive failures)."""
        _bits, miss = self._layout()
        return self.state < 2 * miss

    @property
    def passed(self):
        """Boolean per voxel: passed at least one step."""
        bits, _miss = self._layout()
        return (self.state & ((1 << bits) - 1)) != 0

    @property
    def step(self):
        """Number of each voxel's last passed step (int16, −1: none)."""
        bits, _miss = self._layout()
        return (self.state & ((1 << bits) - 1)).astype(self.xp.int16) - self.xp.int16(1)

    @step.setter
    def step(self, step) -> None:
        """Set the last passed steps (−1: none), every voxel alive with no miss."""
        xp = self.xp
        step = xp.asarray(step)
        wide = bool(step.size) and int(step.max()) + 1 > self.NARROW_STEPS
        self.state = (step + 1).astype(xp.uint16 if wide else xp.uint8)

    @property
    def value(self):
        """Resolution (Å, float32) of each voxel's last pass, ``cap`` where it never passed."""
        return self.value_at(slice(None))

    def value_at(self, sl: slice):
        """:attr:`value` of the voxels ``sl`` only."""
        xp = self.xp
        bits, _miss = self._layout()
        table = xp.asarray(np.asarray([self.cap] + self._d, dtype=np.float32))    # index 0: never passed
        return table[(self.state[sl] & ((1 << bits) - 1)).astype(xp.int32)]        # a signed index, as NumPy's

    def _widen(self) -> None:
        """Move the state to two bytes per voxel (the step field's six bits are full)."""
        xp = self.xp
        s = self.state.astype(xp.uint16)
        self.state = (s & xp.uint16(63)) | ((s >> xp.uint16(6)) << xp.uint16(14))

    def update(self, passes, d: float) -> None:
        """Record one step at resolution ``d`` (Å): ``passes`` (boolean per voxel) says which voxels passed it.

        A live voxel that passes takes ``d`` as its value and its miss count is reset; one that fails counts a
        miss (two consecutive misses end its sweep).  Voxels already out are not changed.

        Raises
        ------
        ValueError
            When the sweep already holds :data:`MAX_STEPS` steps (the step field would overflow).
        """
        xp = self.xp
        k = len(self._d) + 1               # the field's value for this step
        if k > self.MAX_STEPS:
            raise ValueError(f"a sweep of more than {self.MAX_STEPS} steps")
        if k > self.NARROW_STEPS and self.state.dtype == np.uint8:
            self._widen()
        _bits, miss = self._layout()
        dt = self.state.dtype.type
        alive = self.state < dt(2 * miss)
        hit = alive & passes
        alive &= ~passes                   # the misses: alive and not passing
        counted = self.state + alive.astype(self.state.dtype) * dt(miss)
        del alive
        self.state = xp.where(hit, dt(k), counted)
        self._d.append(float(np.float32(d)))


def shell_frequencies(voxel_size: float, shape: tuple, low_A: float = LOW_A, n: int = N_SHELLS):
    """Return the frequencies (Å⁻¹) linearly spaced from ``1/low_A`` to Nyquist, and the Gaussian shell width.

    The width is the larger of the step and 1.5/(N·Ts) (a shell must hold several Fourier voxels).
    """
    f_hi = 0.5 / voxel_size
    f_lo = min(1.0 / low_A, 0.5 * f_hi)
    f = np.linspace(f_lo, f_hi, n)
    width = max(float(f[1] - f[0]), 1.5 / (min(shape) * voxel_size))
    return f, width


def noise_region(be: Backend, mask, voxel_size: float, margin_A: float):
    """Return the flat indices of the background voxels used for the noise level, and their margin (Å).

    They are the inscribed-sphere background farther than ``margin_A`` from the mask; the margin is halved
    (down to 0) until at least ``MIN_BACKGROUND`` voxels remain.

    Raises
    ------
    NotMeasurable
        When the inscribed-sphere background itself holds fewer than ``MIN_BACKGROUND`` voxels.
    """
    bg = background_sphere_index(be, mask)
    if int(bg.size) < MIN_BACKGROUND:
        raise NotMeasurable(f"only {int(bg.size)} background voxels outside the mask: too few to estimate the "
                            "noise level of the monogenic local resolution")
    margin = float(margin_A)
    dist = distance_to_mask(be, mask, voxel_size, margin).reshape(-1)[bg]   # exact up to the margin, inf beyond
    while margin > 0.5 * voxel_size:
        far = bg[dist >= margin]
        if int(far.size) >= MIN_BACKGROUND:
            return far, margin
        margin *= 0.5
    return bg, 0.0


def check_noise_reference(be: Backend, V, bg, threshold: float | None = None) -> dict:
    """Check that the background voxels ``bg`` (flat indices into ``V``) can serve as a noise reference.

    Returns their statistics (count, the fraction holding the most common value, the fraction at or above the
    contour ``threshold`` when given).

    Raises
    ------
    NotMeasurable
        When the reference is flat (the map was masked or zeroed outside the molecule) or holds density at or
        above the contour ``threshold`` (parts of the molecule outside the hard mask).
    """
    xp = be.xp
    b = V.reshape(-1)[bg]
    n = int(b.size)
    vals, counts = xp.unique(b, return_counts=True)
    k = int(be.to_host(xp.argmax(counts)))
    flat = float(be.to_host(counts[k])) / max(n, 1)
    mode = float(be.to_host(vals[k]))
    info = {"background_voxels": n, "flat_fraction": flat, "flat_value": mode}
    if flat >= MAX_FLAT_FRACTION:
        raise NotMeasurable(
            f"its noise reference is degenerate: {100 * flat:.0f} % of the {n} background voxels used for the "
            f"noise level hold the same value ({mode:g}), i.e. the map was masked or zeroed outside the molecule, "
            "so there is no noise to compare the local amplitudes with")
    if threshold is not None:
        above = float(be.to_host(xp.count_nonzero(b >= threshold))) / max(n, 1)
        info["above_contour_fraction"] = above
        if above >= MAX_ABOVE_CONTOUR:
            raise NotMeasurable(
                f"its noise reference is not noise: {100 * above:.1f} % of the {n} background voxels are at or "
                f"above the contour level {threshold:g} (parts of the molecule outside the hard mask)")
    return info


def monogenic_local_resolution(be: Backend, V, voxel_size: float, mask, low_A: float = LOW_A, n_shells: int = N_SHELLS,
                               quantile: float = NOISE_QUANTILE, return_info: bool = False,
                               threshold: float | None = None):
    """Local resolution (Å) at the ``mask`` voxels of ``V`` (host float32, NaN elsewhere).

    ``V`` and ``mask`` may be host or device arrays of ``be``; ``threshold`` (the contour level) enables
    the above-contour check of the noise reference.  With ``return_info`` also returns a dict with the
    list of ``(f0, noise level)`` per shell (``shells``), the reference statistics and the fractions of
    mask voxels at the two bounds.

    Raises
    ------
    NotMeasurable
        When the mask is empty, the noise reference cannot be used (too few background voxels, flat, or
        above the contour), a shell's noise level is not positive, or half the mask voxels or more sit at a
        bound of the sweep (the cap or the grid limit: a bound, not a measurement).
    """
    xp = be.xp
    V = be.asarray(V, dtype=xp.float32)
    mask = be.asarray(mask).astype(bool, copy=False)      # the caller's mask itself when it is boolean already
    if int(be.scalar(xp.count_nonzero(mask))) == 0:
        raise NotMeasurable("the mask is empty: there is no voxel to estimate a local resolution at")
    freqs, width = shell_frequencies(voxel_size, V.shape, low_A, n_shells)
    bg, margin = noise_region(be, mask, voxel_size, 1.0 / (np.pi * width))
    info = check_noise_reference(be, V, bg, threshold)
    info["margin_A"] = margin
    eng = SpiralEngine(be, V, voxel_size)
    # the sweep's state is kept at the mask voxels only (flat indices ``at``): the amplitude maps are needed
    # over the whole box for the noise level, the comparisons only where a resolution is reported
    at = be.mask_indices(mask)                          # int32 below 2³¹ voxels
    sweep = TwoFailureSweep(xp, int(at.size), float(1.0 / freqs[0]))
    shells = []
    for f0, A in eng.amplitudes(freqs, width):
        A = A.reshape(-1)
        noise = quantile_at(be, A, bg, quantile)       # the project's one quantile (CPU: one copy, partitioned)
        if not np.isfinite(noise) or noise <= 0.0:
            raise NotMeasurable(f"its noise level is {noise:g} at {1 / f0:.2f} Å (a degenerate noise reference)")
        shells.append((float(f0), noise))
        sweep.update(A[at] > noise, 1.0 / f0)
        del A           # not held while the engine computes the next batch of shells (4 B per voxel)
        if not bool(be.to_host(sweep.alive.any())):
            break
    out = np.full(int(np.prod(V.shape)), np.nan, dtype=np.float32)
    out[be.to_host(at)] = be.to_host(sweep.value)
    out = out.reshape(V.shape)
    inside = out[np.isfinite(out)]
    n = max(inside.size, 1)
    finest = float(1.0 / freqs[-1])
    info["at_cap_fraction"] = float(np.count_nonzero(inside >= float(1.0 / freqs[0]) - 1e-4)) / n
    info["at_grid_limit_fraction"] = float(np.count_nonzero(inside <= finest + 1e-4)) / n
    info["shells"] = shells
    if info["at_cap_fraction"] >= MAX_AT_BOUND:
        raise NotMeasurable(
            f"{100 * info['at_cap_fraction']:.0f} % of the voxels never rise above the noise level, so they sit at "
            f"the {float(1 / freqs[0]):g} Å cap of the sweep (a bound, not a measurement: the noise reference "
            "holds signal)")
    if info["at_grid_limit_fraction"] >= MAX_AT_BOUND:
        raise NotMeasurable(
            f"{100 * info['at_grid_limit_fraction']:.0f} % of the voxels stay above the noise level up to the grid "
            f"limit {finest:.2f} Å (2 × the voxel size: a bound, not a measurement; the noise reference is too low)")
    return (out, info) if return_info else out
