"""Device memory budget: estimate what each section needs, measure what it used, fall back to the CPU.

Estimates
---------
:func:`estimate_bytes` gives the device bytes a section allocates on top of what is already held, as
``a·N + b·N₁ + c·N_R + d``: ``N`` voxels of the input map, ``N₁`` voxels of the 1 Å working grid
(``round(n·Ts/1 Å)`` per axis: 5.3× ``N`` for a 1.742 Å map), ``N_R`` voxels of the map resampled to R/2,
``d`` fixed (cuFFT plans, kernels).
The factors :data:`BYTES_PER_VOXEL` are upper bounds read off the code (float32 volumes 4 B, complex64
spectra 8 B, int32 labels, float64 reductions), checked against host peaks measured with
``tracemalloc`` on the CPU path and to be refined with the device peaks that ``bench/bench_e2e.py``
measures on a GPU.

Budget
------
:func:`available_bytes`: on a GPU backend, the device's free memory (free plus CuPy's cached free blocks)
less :data:`RESERVE_BYTES`; ``$GPUVALID_DEVICE_BUDGET`` (e.g. ``8GiB``, ``512MiB``, ``3e9``) caps the
device at that many bytes in all (what this run already holds counts against it).  ``None`` on the CPU.

Fallback
--------
:func:`run_within_budget` runs one section: when its estimate exceeds the budget, or when the device
runs out of memory anyway, the section runs on the CPU backend instead and its result says so
(``values["device"]`` and a line in the report).  Never an out-of-memory crash, never a lost entry.

Host memory
-----------
On the CPU the same form with the host factors :data:`HOST_BYTES_PER_VOXEL` (:func:`estimate_host_bytes`):
the CPU path's own peaks, measured as resident-memory growth by ``bench/host_peaks.py``, are lower than
the device's for some sections and higher for others.  :func:`host_available_bytes` is the memory the
kernel reports as available (``MemAvailable``), less what a cgroup limit (a Slurm job, a container)
leaves; ``$GPUVALID_HOST_BUDGET`` caps this process at that many bytes in all.  A section whose host
estimate exceeds it is "could not be measured" with both numbers, before it starts: a laptop given a
768³ map gets a report with that line, not a process killed by the kernel.

Several processes
-----------------
While a section runs, its estimate is claimed in the machine's ledger (:mod:`gpuvalid.ledger`): the
compute workers of a batch, batch shards on one node and ``gpuvalid run`` started side by side see what
the others are about to allocate, and a section that would not fit beside them waits for them first.

Measurement
-----------
:class:`PeakMeter` records the device high-water mark while a section runs: the peak of CuPy's memory
pool in use (an allocator hook sees every allocation) plus torch's peak allocated bytes on the same
device; ``None`` on the CPU.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
from typing import TYPE_CHECKING

from . import ledger
from .backend import FFT_SLAB_ELEMENTS, FFT_SLABS_ABOVE
from .masks import resampled_shape
from .resample import WORK_VOXEL_A, grid_shape

if TYPE_CHECKING:
    from .backend import Backend

__all__ = ["BYTES_PER_VOXEL", "HOST_BYTES_PER_VOXEL", "estimate_bytes", "estimate_host_bytes", "estimate_run",
           "working_voxels", "available_bytes", "host_available_bytes", "resized_voxels", "parse_bytes", "gib",
           "PeakMeter", "run_within_budget", "is_device_oom", "check_settings"]

GIB = 2 ** 30
NETWORK_BATCH_MIN_BYTES = 256 * 2 ** 20   # 0.e's smallest batch of tiles' activations (models.infer)
#: a device section estimated at this or more drops CuPy's cached cuFFT plans when it ends (each plan holds a
#: work area up to its transform's size in the pool); below it the plans stay, so the next section of a
#: small map does not plan its transforms again
RELEASE_PLANS_ABOVE = 2 * GIB
L1_PERM_CHUNK = 40_000_000     # 1.b: at most this many permuted coefficients per device launch, at least
L1_PERM_MIN = 2 ** 20          # this many (or one permutation), else one per L1_PERM_VOXELS voxels of the map
L1_PERM_VOXELS = 8             # (l1_perm_chunk, used by gpuvalid.level1.fdr): 6 B per voxel
L1_PERM_BYTES = 48             # 1.b: device bytes per permuted coefficient (float32 key and its copy, int64
                               # index and segment key, the sort's buffers; then the gather and product)
L1_BOX_BYTES = 3_000_000       # 1.c: upper bound per box of a chunk: gathered box, its padded copy, two half
                               # spectra (269 kB each), one product and its temporary, cuFFT work area
L1_MAX_CHUNK_BOXES = 256       # 1.c, cuFFT engine: the largest chunk (16.4 M voxels per batched FFT)
L1_KERNEL_BOX_BYTES = 269_640  # 1.c, raw-kernel engine: per box of a chunk, the two halves' plane transforms
                               # (2 × 20 × 40 × 21 complex64) and its three float64 shell sums (35 shells)
L1_KERNEL_MAX_CHUNK = 4096     # 1.c, raw-kernel engine: the largest chunk (about six waves of resident blocks
                               # on an H100; 1.1 GB of plane transforms)
L1_KERNEL_MIN_CHUNK = 1024     # 1.c, raw-kernel engine: the smallest chunk the map's size sets (about 1.5 waves
                               # of 660 resident blocks on an H100 or H200: 132 SMs × 5; 276 MB)
L1_MIN_CHUNK_BOXES = 64        # 1.c: the smallest chunk of either engine, when the device has little room left
L1_BOX_GRID = 8                # 1.c: a chunk's boxes cost at most this many bytes per voxel of the map above the
                               # engine's floor (l1_box_chunk)
L1_FSC_GROUP_ROWS = 32_768     # 1.c: boxes whose shell sums are kept on the device before one pass of the
                               # FSC and its crossings
L1_FSC_ROW_BYTES = 3_000       # 1.c: per box of such a group: its shell sums (840 B), the FSC and the
                               # crossings' temporaries (35-shell float64 and bool rows)
L1_DIR_SUMMARY_CHUNK = 2 ** 17  # 1.f: at most this many voxels per pass of the per-voxel summaries over the
L1_DIR_SUMMARY_MIN = 2 ** 13    # directions, at least this many, else as many as cost L1_DIR_SUMMARY_GRID bytes
L1_DIR_SUMMARY_GRID = 8         # per voxel of the map (l1_dir_summary_chunk)
L1_DIR_SUMMARY_BYTES = 48       # 1.f: device bytes per (direction, voxel) of such a pass: the resolutions, the
                                # percentiles' sorted copy, the tie keys (uint32 hash steps, int64) and masks
#: device bytes per voxel a section allocates at its peak, per grid: "input" (the map), "work" (0.e/0.h's 1 Å
#: working grid), "resized" (the map resampled to R/2 for 0.f/0.g).  Host peaks measured with tracemalloc on
#: the CPU path (EMD-5168 and EMD-3488, 100³) × about 1.25 for CuPy's heavier temporaries, checked as upper
#: bounds (and growth rates) of the device peaks by tests/test_memory_estimates.py (on the CuPy stand-in:
#: 0.a–0.h add 5–31 B per input voxel, 0.e 16.5 B per working-grid voxel); the GPU peaks measured by
#: bench/bench_e2e.py replace them.  0.e: the monogenic estimate on the input grid, then the network's
#: preparation on the working grid (the resampling's half spectrum and new map + cuFFT's work area, ≈ 16 B;
#: the local RMS: the map and two buffers, 12 B; the normalised map holding the output, its padded copy, the
#: mask and the tile cover, ≈ 11 B; the stand-in counts 14.2 B at 256³) and
#: the smallest batch of tiles' activations (a larger batch takes at most a quarter of what is free).
BYTES_PER_VOXEL = {
    "0.a": {"input": 64},                  # labels int32, kept/dilated masks, float64 centre-of-mass weights
    "0.b": {"input": 64},                  # labels int32, component bincount, V ≥ t per mass step
    "0.c": {"input": 56},                  # soft mask float32, background values float64, outlier map
    "0.d": {"input": 48},                  # rfftn spectrum, shell index int64, sharpened map, cuFFT work area
    # 0.e runs its two estimates one after the other: the monogenic one on the input grid, then the network's
    # preparation on the 1 Å working grid (the map's own few bytes per voxel stay): the peak is the larger phase
    "0.e": {"phases": ({"input": 96}, {"input": 8, "work": 32, "fixed": NETWORK_BATCH_MIN_BYTES})},
    "0.f": {"input": 40, "resized": 96},   # Fourier resampling (complex64 on the input grid), spiral engine
    "0.g": {"input": 32, "resized": 96},   # Fourier resampling when 0.f has not cached it, spiral engine
    "0.h": {"work": 56},                   # twist features: Gaussian derivatives on the 1 Å working grid
    # Level 1 (the half maps, 8 B, are already held).  Upper bounds of the device peaks measured on the CuPy
    # stand-in (tests/test_memory_estimates.py, simulated halves at 48³ and 64³: each section on a fresh Level 1
    # context, so that it builds the cached spectra it needs) plus what the stand-in cannot see: cuFFT's work
    # area (about the largest complex transform alive: 4 B per map voxel for an rfftn grid, 8 B for a full
    # complex grid), CuPy's copy of a C2R input and the int64 scan of a nonzero() over the whole grid.
    # "mask": bytes per hard-mask voxel (the whole box when the mask is unknown); "fixed": bytes whatever the
    # size (a chunk's floor: 1.b's permutations and 1.f's summaries go in chunks that grow with the map up to a
    # cap, l1_perm_chunk and l1_dir_summary_chunk, counted in "input" above their floors).  Stand-in peaks at
    # 64³ (B per map voxel; mask 27 % of the box): 1.a 26, 1.b 100 with the permutation chunk's floor, 1.c 10 +
    # 32 per selected voxel + the box chunk, 1.d 21, 1.e 32, 1.f 59 with its per-voxel summaries' pass (8,192
    # voxels), 1.g 25, 1.h 34 (2026-11-28).  Before the one-at-a-time shell sums, the slabbed direction bins,
    # |f| made on use and int32 voxel indices: 1.a 42, 1.d 25, 1.e 36, 1.f 63, 1.g 42, 1.h 49; before the half
    # spectra (2026-11-27): 1.e 67, 1.f 109 + the pass; before 1.f's sweep state in 1 B per direction and its
    # pass grown with the map: 1.f 331 in all (the pass held every mask voxel below 2¹⁷).
    # 1.a: the cached spectra of the halves and of the masked halves (rfftn, 4 B each), the mask copy, the shell
    # geometry (int32 shell; the weight is a broadcast row) and the FSC/DPR/SSNR sums' half-grid temporaries (one
    # per-coefficient term at a time)
    "1.a": {"input": 44},
    # 1.b: the masked spectra and geometry if not cached, the shell order (int32, after int64 argsort's
    # output) and the spectra gathered in it, the sphere-masked spectra of the second test (freed once gathered);
    # the permutation chunk (l1_perm_chunk: one coefficient
    # per L1_PERM_VOXELS voxels, at least L1_PERM_MIN, at most L1_PERM_CHUNK) of random keys, their argsort
    # (index, segment keys and sort buffers) and the gathered products
    "1.b": {"input": 64 + L1_PERM_BYTES // L1_PERM_VOXELS, "fixed": L1_PERM_MIN * L1_PERM_BYTES},
    # 1.c: selection masks and nonzero's scan (step > 1: the lattice and its maximum filter), per selected
    # voxel (soft mask ≥ 0.5 ≈ the hard mask) the centre (int64), its (z, y, x) for the cuFFT engine (24 B) and
    # the crossings (two float64, two int8); the boxes go in chunks of L1_BOX_GRID bytes per voxel of the map
    # (l1_box_chunk) above the engine's floor: the raw-kernel engine's (the default on a device)
    # L1_KERNEL_MIN_CHUNK × L1_KERNEL_BOX_BYTES (276 MB) plus a group of L1_FSC_GROUP_ROWS FSCs and their
    # crossings (98 MB), more than the cuFFT engine's L1_MIN_CHUNK_BOXES × L1_BOX_BYTES (stand-in: 0.83 MB per
    # box, + its padded copy and cuFFT's work area on a device: ≈ 1.4 MB)
    "1.c": {"input": 20 + L1_BOX_GRID, "mask": 52,
            "fixed": max(L1_KERNEL_MIN_CHUNK * L1_KERNEL_BOX_BYTES + L1_FSC_GROUP_ROWS * L1_FSC_ROW_BYTES,
                         L1_MIN_CHUNK_BOXES * L1_BOX_BYTES)},
    # 1.d: the whitened half spectra (rfftn, filtered in place: 8 B), the shell index and filter, then per
    # kernel the high-passed spectrum, the padded kernel, its spectrum (conjugated and multiplied in place)
    # and the inverse (+ C2R input copy and work area); per mask voxel the index (int32), the gathered
    # correlations and the statistic (the former scale's freed)
    "1.d": {"input": 32, "mask": 20},
    # 1.e: the engine (the rfftn half spectra of the half sum and difference 8 B, 1/|f| on the half grid 2 B;
    # |f| made on use), per step the high-pass (2 B), the filtered half spectrum (4 B), one Riesz factor (2 B) and
    # its product (4 B) turned into a real component by an in-place inverse (4 B) with cuFFT's work area
    # (4 B), the amplitude (4 B), the amplitude low-pass (rfftn grid); per mask voxel the index, the sweep
    # (1 B), its update, the gathered amplitudes and the quantile's sort
    "1.e": {"input": 40, "mask": 36},
    # 1.f: the engine (10 B), the 47 cones as their half-grid coefficients (int32 index, 2-4 % of the half grid
    # each: ≈ 3 B; |f| and u·d made from it at each use), the half-grid work array (4 B, made per amplitude), the
    # two real components (8 B) with cuFFT's work area (4 B), the amplitude's low-pass (≈ 10 B); per mask voxel
    # the 47 sweeps (1 B each), what 1.e needs and a direction's median (its values and their sort, 16 B); one
    # pass of the per-voxel summaries over the directions (47 × L1_DIR_SUMMARY_BYTES per mask voxel,
    # l1_dir_summary_chunk voxels at a time: at most L1_DIR_SUMMARY_GRID B per voxel of the map, or its floor of
    # L1_DIR_SUMMARY_MIN voxels)
    "1.f": {"input": 44 + L1_DIR_SUMMARY_GRID, "mask": 47 * 1 + 56,
            "fixed": L1_DIR_SUMMARY_MIN * 47 * L1_DIR_SUMMARY_BYTES},
    # 1.g, 1.h: the masked spectra and geometry if not cached, the direction bins (int32 index; the unit
    # vectors, cube-map face and cell in z slabs of an eighth of the half grid), the cross and power terms one
    # at a time; fixed: the direction-binned float64 sums, two of (N/2 + 1) shells × 6,912 cells (57 MB at
    # N = 1024)
    "1.g": {"input": 44, "fixed": 2 ** 26},
    "1.h": {"input": 44, "fixed": 2 ** 26},
}
FIXED_BYTES = 256 * 2 ** 20    # cuFFT plans, compiled kernels, small arrays
#: 0.e on the CPU: one tile's activations per torch thread (edge models.infer.TILE plus the receptive
#: field's halo, times models.infer.activation_bytes_per_voxel: 79 MiB for the shipped network)
HOST_TILE_BYTES = 80 * 2 ** 20
HOST_FIXED_BYTES = 256 * 2 ** 20   # the CPU path's small arrays, FFT plans and thread buffers
#: importing torch and running the network's first tile (192 + 54 MiB measured with the CPU wheel): counted by
#: the sections that use torch ("torch" in their entry) while it is not loaded yet
HOST_TORCH_BYTES = 288 * 2 ** 20
#: host bytes per voxel of the CPU path at its peak, in the form of BYTES_PER_VOXEL ("per_thread": bytes per
#: CPU thread).  Upper bounds, about 1.2-1.5 times the resident-memory growth per voxel that bench/host_peaks.py
#: measured between box sizes (bench/RESULTS.md, "Host memory of the CPU path": EMD-5168 and EMD-3488 in
#: 192³-288³ noise, 1OEL halves 96³-224³).  0.e: its monogenic phase about 17-24 B per input voxel (the
#: spiral engine holds the half spectrum and one packed spectrum, and makes its factors per slab), its network
#: phase about 6-9 B per working-grid voxel (the resampled map, its half spectrum while it is made, the mask;
#: the network's input by slabs); 0.f, 0.g: the engine on the map at R/2; 1.c, 1.d: mostly fixed (their boxes
#: and kernels go in chunks); 1.e, 1.f: the half spectra and their complex-to-real transforms, 37 and 40 B per
#: voxel of growth from 160³ to 224³ (72 and 84 B per voxel at 224³ when they held the full spectra)
HOST_BYTES_PER_VOXEL = {
    "0.a": {"input": 8},
    "0.b": {"input": 4},
    "0.c": {"input": 28},
    "0.d": {"input": 32},
    "0.e": {"phases": ({"input": 32}, {"input": 8, "work": 10, "per_thread": HOST_TILE_BYTES}),
            "torch": HOST_TORCH_BYTES},
    "0.f": {"input": 16, "resized": 18},
    "0.g": {"input": 12, "resized": 18},
    "0.h": {"work": 40},
    "1.a": {"input": 56},
    "1.b": {"input": 44},
    "1.c": {"input": 24, "fixed": 96 * 2 ** 20},
    "1.d": {"input": 84},
    "1.e": {"input": 48},
    "1.f": {"input": 64},
    "1.g": {"input": 72},
    "1.h": {"input": 84},
}
ENV_HOST_BUDGET = "GPUVALID_HOST_BUDGET"
#: of a "work" factor, the cuFFT work area of the working grid's transform (up to a complex64 grid, 8 B), which a
#: grid of FFT_SLABS_ABOVE voxels or more does not have: it is transformed by slabs, whose contiguous copy and
#: plan work area take at most SLAB_FFT_BYTES
CUFFT_AREA_PER_WORK_VOXEL = 8
SLAB_FFT_BYTES = 3 * 8 * FFT_SLAB_ELEMENTS
RESERVE_BYTES = 512 * 2 ** 20  # left free on the device (CUDA context growth, torch workspace)
ENV_BUDGET = "GPUVALID_DEVICE_BUDGET"


def l1_perm_chunk(grid_voxels: int) -> int:
    """Return how many permuted coefficients 1.b draws per device launch for a map of ``grid_voxels`` voxels.

    One per :data:`L1_PERM_VOXELS` voxels (:data:`L1_PERM_BYTES` each: 6 B per voxel of the map), at least
    :data:`L1_PERM_MIN` and at most :data:`L1_PERM_CHUNK`: the chunk grows with the map instead of holding
    1.9 GB whatever its size.
    """
    return int(min(L1_PERM_CHUNK, max(L1_PERM_MIN, int(grid_voxels) // L1_PERM_VOXELS)))


def l1_box_chunk(grid_voxels: int, box_bytes: int, least: int, most: int) -> int:
    """Return how many 1.c boxes of ``box_bytes`` device bytes each go in one chunk, for a map of ``grid_voxels``.

    As many as cost :data:`L1_BOX_GRID` bytes per voxel of the map, at least ``least`` (the engine's floor,
    below which a launch no longer fills the device) and at most ``most``: a 384³ map's raw-kernel chunk is
    453 MB (1,679 boxes) instead of 1.1 GB whatever the map's size.
    """
    fit = int(grid_voxels) * L1_BOX_GRID // max(int(box_bytes), 1)
    return int(min(most, max(least, fit)))


def l1_dir_summary_chunk(grid_voxels: int, ndir: int = 47) -> int:
    """Return how many voxels 1.f summarises over its ``ndir`` directions per pass, for a map of ``grid_voxels``.

    As many as cost :data:`L1_DIR_SUMMARY_GRID` bytes per voxel of the map (:data:`L1_DIR_SUMMARY_BYTES` per
    direction and voxel), at least :data:`L1_DIR_SUMMARY_MIN` and at most :data:`L1_DIR_SUMMARY_CHUNK`.
    """
    fit = int(grid_voxels) * L1_DIR_SUMMARY_GRID // (max(int(ndir), 1) * L1_DIR_SUMMARY_BYTES)
    return int(min(L1_DIR_SUMMARY_CHUNK, max(L1_DIR_SUMMARY_MIN, fit)))


def gib(n: float | None) -> str:
    """``'1.25 GiB'`` (or ``'?'``)."""
    return "?" if n is None else f"{n / GIB:.2f} GiB"


def working_voxels(shape: tuple, voxel_size: float, work_voxel: float = WORK_VOXEL_A) -> int:
    """Return the voxels of the 1 Å working grid of a map of ``shape`` at ``voxel_size`` Å.

    The grid is :func:`gpuvalid.resample.grid_shape`, the box 0.e and 0.h resample to.
    """
    return int(math.prod(grid_shape(shape, voxel_size, work_voxel)))


def resized_voxels(shape: tuple, voxel_size: float, resolution: float | None) -> int:
    """Voxels of the map resampled to R/2 (the input's when R is unknown or R/2 ≤ Ts)."""
    if resolution is None or resolution / 2.0 <= voxel_size:
        return int(math.prod(int(n) for n in shape))
    return int(math.prod(resampled_shape(shape, voxel_size, resolution / 2.0)))


def estimate_bytes(sid: str, shape: tuple, voxel_size: float, resolution: float | None = None,
                   mask_voxels: int | None = None) -> int:
    """Return the device bytes section ``sid`` needs at its peak.

    The map is of ``shape`` (``[z, y, x]``) at ``voxel_size`` Å with resolution ``resolution`` Å (None: not
    given); ``mask_voxels``: voxels of the hard mask (None: the whole box, for the sections that keep
    per-mask-voxel arrays).
    """
    per = BYTES_PER_VOXEL.get(sid, {"input": 64})
    phases = per.get("phases", (per,))  # sequential phases free their arrays: the peak is the largest one
    return int(FIXED_BYTES + max(_phase_bytes(ph, shape, voxel_size, resolution, mask_voxels) for ph in phases))


def estimate_host_bytes(sid: str, shape: tuple, voxel_size: float, resolution: float | None = None,
                        mask_voxels: int | None = None) -> int:
    """Return the host bytes section ``sid`` adds at its peak on the CPU path.

    Arguments as :func:`estimate_bytes`; the factors are :data:`HOST_BYTES_PER_VOXEL`, with one CPU thread's
    share for every usable core and, for a section that uses torch before this process has loaded it,
    :data:`HOST_TORCH_BYTES`.
    """
    per = HOST_BYTES_PER_VOXEL.get(sid, {"input": 64})
    phases = per.get("phases", (per,))
    threads = _cpu_threads()
    torch = per.get("torch", 0) if "torch" not in sys.modules else 0    # its import, once per process
    return int(HOST_FIXED_BYTES + torch + max(ph.get("per_thread", 0) * threads
                                              + _phase_bytes(ph, shape, voxel_size, resolution, mask_voxels,
                                                             host=True)
                                              for ph in phases))


def _cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _phase_bytes(per: dict, shape: tuple, voxel_size: float, resolution: float | None,
                 mask_voxels: int | None = None, host: bool = False) -> int:
    total = per.get("fixed", 0)
    n_mask = math.prod(int(n) for n in shape) if mask_voxels is None else int(mask_voxels)
    if per.get("mask"):
        total += per["mask"] * n_mask
    if per.get("input"):
        total += per["input"] * math.prod(int(n) for n in shape)
    if per.get("work"):
        nw = working_voxels(shape, voxel_size)
        if nw >= FFT_SLABS_ABOVE and not host:   # device slabs (Backend._fftn_slabs): no grid-sized cuFFT
            total += (per["work"] - CUFFT_AREA_PER_WORK_VOXEL) * nw + SLAB_FFT_BYTES   # work area
        else:
            total += per["work"] * nw
    if per.get("resized"):
        total += per["resized"] * resized_voxels(shape, voxel_size, resolution)
    return total


def estimate_run(shape: tuple, voxel_size: float, resolution: float | None = None) -> dict[str, int]:
    """:func:`estimate_bytes` of every section."""
    return {sid: estimate_bytes(sid, shape, voxel_size, resolution) for sid in BYTES_PER_VOXEL}


def parse_bytes(text: str, name: str = ENV_BUDGET) -> int:
    """Parse a size such as ``'8GiB'``, ``'512 MiB'``, ``'2GB'``, ``'3e9'`` into bytes.

    Raises
    ------
    ValueError
        When ``text`` is not a number with an optional k/M/G/T (binary with ``i``) unit.
    """
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([kKmMgGtT]?)(i?)[bB]?\s*", str(text))
    if not m:
        raise ValueError(f"{name}: cannot read {text!r} as a size (e.g. 8GiB, 512MiB, 3e9)")
    value, unit, binary = float(m.group(1)), m.group(2).upper(), m.group(3)
    if not unit:
        return int(value)
    return int(value * (1024 if binary else 1000) ** " KMGT".index(unit))


def check_settings() -> None:
    """Read ``$GPUVALID_DEVICE_BUDGET`` and ``$GPUVALID_HOST_BUDGET`` once, before a run starts.

    Raises
    ------
    InputError
        When one is set to something that is not a size: one line for the user, not an error in every
        section.
    """
    from .errors import InputError

    for name in (ENV_BUDGET, ENV_HOST_BUDGET):
        if os.environ.get(name):
            try:
                parse_bytes(os.environ[name], name)
            except ValueError as exc:
                raise InputError(str(exc)) from None


def _pool(be: Backend):
    """CuPy's default memory pool of a CuPy backend (None otherwise)."""
    get = getattr(be.xp, "get_default_memory_pool", None)
    return get() if (be.is_gpu and get is not None) else None


def used_bytes(be: Backend) -> int:
    """Device bytes this process holds in CuPy arrays (0 when unknown)."""
    pool = _pool(be)
    return int(pool.used_bytes()) if pool is not None else 0


def available_bytes(be: Backend, others: int = 0) -> int | None:
    """Device bytes a section may still allocate (None on the CPU: no budget).

    ``others``: what other gpuvalid processes still have to allocate on the device (:mod:`.ledger`); it
    comes off the device's free memory, not off this process's own ``$GPUVALID_DEVICE_BUDGET``.
    """
    if not be.is_gpu:
        return None
    env = os.environ.get(ENV_BUDGET)
    free = be.free_memory_bytes()
    if env:
        cap = parse_bytes(env) - used_bytes(be)
        return max(0, cap if free is None else min(cap, int(free) - others))
    return None if free is None else max(0, int(free) - RESERVE_BYTES - others)


def rss_bytes() -> int:
    """Resident host memory of this process (Linux; elsewhere its peak so far, or 0 where unknown)."""
    rss = ledger.rss_of("self")
    if rss is not None:
        return rss
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak) * (1 if sys.platform == "darwin" else 1024)   # bytes on macOS, KiB elsewhere
    except (ImportError, OSError, ValueError):
        return 0


def host_available_bytes(others: int = 0) -> int | None:
    """Host bytes a CPU section may still allocate (None where the system does not say).

    ``MemAvailable`` of ``/proc/meminfo``, or less when this process's cgroup (a Slurm job, a container)
    has a lower limit: its limit less its use, page cache not counted (the kernel reclaims it).  Where the
    system does not report available memory (macOS), the machine's physical memory less what this process
    holds: only a section that could not fit the whole machine is refused.  ``$GPUVALID_HOST_BUDGET`` caps
    the process at that many bytes in all (its resident memory counts).  ``others``: what other gpuvalid
    processes still have to allocate (:mod:`.ledger`); it comes off the machine's and the cgroup's room, not
    off this process's own budget.
    """
    avail = _meminfo_available()
    if avail is None and (phys := _physical_bytes()) is not None:
        avail = phys - rss_bytes()
    room = [v - others for v in (avail, _cgroup_room()) if v is not None]
    env = os.environ.get(ENV_HOST_BUDGET)
    if env:
        room.append(parse_bytes(env, ENV_HOST_BUDGET) - rss_bytes())
    return max(0, min(room)) if room else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _physical_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _cgroup_room(proc: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """Limit less use (page cache excluded) of this process's memory cgroup, v2 or v1; None without one.

    ``proc``: the process's cgroup list; ``root``: where the hierarchies are mounted.
    """
    try:
        with open(proc) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        hid, ctrl, path = (line.split(":", 2) + ["", ""])[:3]
        if hid == "0" and ctrl == "":                       # v2: one unified hierarchy
            dirs = [f"{root}{path}".rstrip("/"), root]
            names = ("memory.max", "memory.current", "memory.stat", "file ")
        elif "memory" in ctrl.split(","):                   # v1: the memory controller's own tree
            dirs = [f"{root}/memory{path}".rstrip("/"), f"{root}/memory"]
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat", "total_cache ")
        else:
            continue
        for d in dirs:
            limit, used = _read_int(f"{d}/{names[0]}"), _read_int(f"{d}/{names[1]}")
            if limit is None or used is None or limit >= 2 ** 60:   # no limit ("max", or v1's huge number)
                continue
            cache = 0
            try:
                with open(f"{d}/{names[2]}") as f:
                    cache = next((int(x.split()[1]) for x in f if x.startswith(names[3])), 0)
            except (OSError, ValueError, IndexError):
                pass
            return limit - max(0, used - cache)
    return None


def is_device_oom(exc: BaseException) -> bool:
    """Return True for a device allocation failure (CuPy, cuFFT, torch), not for a host MemoryError."""
    name = type(exc).__name__
    text = str(exc)
    return ("OutOfMemory" in name or "CUFFT_ALLOC_FAILED" in text
            or ("out of memory" in text.lower() and ("cuda" in text.lower() or "CUDA" in name)))


class PeakMeter:
    """Device high-water mark (bytes) of the code inside ``with PeakMeter(be) as m:`` → ``m.peak``.

    ``peak`` is the largest CuPy pool use seen at any allocation plus torch's peak allocated bytes on the
    device, and ``added`` that peak less what was held on entry.  Both are None on the CPU.
    """

    def __init__(self, be: Backend):
        self.be = be
        self.peak: int | None = None
        self.added: int | None = None
        self._pool = _pool(be)
        self._base = 0
        self._torch = None

    def __enter__(self) -> "PeakMeter":
        if self._pool is None:
            return self
        cp = self.be.xp
        self._base = int(self._pool.used_bytes())
        self._seen = self._base
        pool = self._pool

        def malloc(size):
            mem = pool.malloc(size)
            u = pool.used_bytes()
            if u > self._seen:
                self._seen = u
            return mem

        cp.cuda.set_allocator(malloc)
        torch = sys.modules.get("torch")  # only when a section already imported it
        if torch is not None and self.be.device_id is not None:
            try:
                if torch.cuda.is_initialized():
                    torch.cuda.reset_peak_memory_stats(self.be.device_id)
                    self._torch = torch
            except Exception:
                self._torch = None
        return self

    def __exit__(self, *exc) -> bool:
        if self._pool is None:
            return False
        cp = self.be.xp
        cp.cuda.set_allocator(self._pool.malloc)
        peak = int(self._seen)
        torch = self._torch or sys.modules.get("torch")
        if torch is not None and self.be.device_id is not None:
            try:
                if torch.cuda.is_initialized():
                    peak += int(torch.cuda.max_memory_allocated(self.be.device_id))
            except Exception:
                pass
        self.peak = peak
        self.added = max(0, peak - self._base)
        return False


def _mask_voxels(ctx) -> int | None:
    """Voxels of the hard mask of the map (Level 1: of the primary map), None when there is none."""
    from .errors import GpuvalidError

    ctx0 = getattr(ctx, "ctx0", ctx)
    try:
        return int(ctx0.be.to_host(ctx0.be.xp.count_nonzero(ctx0.hard_mask)))
    except (GpuvalidError, MemoryError):   # no threshold, or no room for the mask: estimate for the whole box
        return None


def _mark_fallback(res, why: str) -> None:
    if not res.evaluable:  # no number to qualify
        return
    res.values = dict(res.values or {})
    res.values["device"] = f"cpu (fallback: {why})"
    res.blocks.insert(0, f"*Computed on the CPU: {why}.*")


def run_within_budget(run, sid: str, ctx):
    """``run(ctx)`` on the map's device when its estimate fits the device budget, else on the CPU.

    The result gets ``peak_device_bytes`` (the measured high-water mark, None on the CPU) and
    ``estimated_device_bytes``; a section moved to the CPU carries ``values["device"] = "cpu (fallback:
    …)"`` and a line saying why.  A device out-of-memory error during the section also reruns it on the CPU.
    While it runs, its estimate is claimed in the machine's :mod:`ledger <gpuvalid.ledger>`: a section of
    another gpuvalid process that would not fit beside it waits.
    """
    be = ctx.be
    mask_voxels = _mask_voxels(ctx) if (be.is_gpu and "mask" in BYTES_PER_VOXEL.get(sid, {})) else None
    need = estimate_bytes(sid, ctx.shape, ctx.voxel_size, ctx.resolution, mask_voxels)
    if not be.is_gpu:
        return _on_host(run, sid, ctx, need)
    kind = f"cuda:{be.device_id}"
    avail = available_bytes(be)
    if avail is not None and need > avail and not ledger.others_present(kind):
        return _on_host(run, sid, ctx, need, f"needs {gib(need)} of device memory (estimate), budget {gib(avail)}")
    meter = PeakMeter(be)
    with ledger.hold(kind, need, lambda others: available_bytes(be, others)) as claim:   # others may go first
        avail = available_bytes(be, claim.others_bytes)
        if avail is not None and need > avail:
            why = f"needs {gib(need)} of device memory (estimate), budget {gib(avail)}"
            if claim.others_bytes:
                why += f" beside the {gib(claim.others_bytes)} that other gpuvalid processes held"
            if claim.waited_s >= 1.0:
                why += f" (waited {claim.waited_s:.0f} s)"
        else:
            why = None
            try:
                with meter:
                    res = run(ctx)
            except Exception as exc:
                if not is_device_oom(exc):
                    raise
                be.free_pool()
                why = (f"the device ran out of memory ({type(exc).__name__}); estimate {gib(need)}, "
                       f"budget {gib(avail)}")
        if why is None and ledger.others_present(kind):   # hand the cached blocks to the process waiting
            be.free_pool()
    if why is not None:
        return _on_host(run, sid, ctx, need, why)
    _note_wait(res, claim)
    res.peak_device_bytes, res.estimated_device_bytes = meter.peak, need
    if need >= RELEASE_PLANS_ABOVE:   # large maps: the cached plans' work areas would crowd the next section
        be.release_fft_plans()
    _release_torch_cache()
    return res


def _on_host(run, sid: str, ctx, need: int, device_why: str = ""):
    """Run section ``sid`` on the CPU within the host memory (``device_why``: why not on the device)."""
    with _host_memory(sid, ctx, device_why) as claim:
        res = run(ctx.on_cpu() if device_why else ctx)
    if device_why:
        _mark_fallback(res, device_why)
    _note_wait(res, claim)
    res.peak_device_bytes, res.estimated_device_bytes = None, need
    return res


def _note_wait(res, claim: ledger.Hold) -> None:
    """Say in the section that it waited for memory that other gpuvalid processes held (one second or more)."""
    if claim.waited_s >= 1.0 and res.evaluable:
        res.memory_wait_s = claim.waited_s
        res.blocks.insert(0, f"*Waited {claim.waited_s:.0f} s for memory that other gpuvalid processes on this "
                             "machine held.*")


@contextlib.contextmanager
def _host_memory(sid: str, ctx, device_why: str = ""):
    """Claim section ``sid``'s host estimate in the ledger and refuse it when it exceeds the room left.

    The section is about to run on the CPU; ``device_why``: why not on the device (empty on a CPU run).
    The room is :func:`host_available_bytes` less what other gpuvalid processes still have to allocate.

    Raises
    ------
    NotMeasurable
        With the estimate and what is available, before any of it is allocated.
    """
    need = estimate_host_bytes(sid, ctx.shape, ctx.voxel_size, ctx.resolution)   # no host entry is per mask voxel
    with ledger.hold("host", need, host_available_bytes, rss=rss_bytes) as claim:
        avail = host_available_bytes(claim.others_bytes)
        if avail is not None and need > avail:
            from .errors import NotMeasurable

            where = f"it {device_why} and on the CPU it" if device_why else "it"
            env = os.environ.get(ENV_HOST_BUDGET)
            source = f"with ${ENV_HOST_BUDGET}={env}" if env else "on this machine"
            if claim.others_bytes:
                source += (f", {gib(claim.others_bytes)} more being held by other gpuvalid processes (waited "
                           f"{claim.waited_s:.0f} s)")
            raise NotMeasurable(f"{where} needs about {gib(need)} of host memory (estimate), and {gib(avail)} are "
                                f"available {source}: run it on a machine with more memory"
                                + ("" if device_why else " or on a GPU"))
        yield claim


def _release_torch_cache() -> None:
    """Hand torch's cached device blocks back (CuPy sees them as free for the next section)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:
        pass
