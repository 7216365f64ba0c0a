"""Input checks and the dtype policy, in one place (style lesson 9).

Two kinds of bad input, two error classes:

- **User data** (a map file, its header, the command line) is refused by the loaders
  (:mod:`gpuvalid.io`) with :class:`~gpuvalid.errors.InputError`, whose message is shown as one line.  They
  call these checks with ``error=InputError``.
- **Programmer misuse** (an engine or a context built with a 2-D array, a zero voxel size, NaN values that a
  loader would have refused) raises :class:`ValueError`, the default here: it means a bug in the caller.

The dtype policy: volumes are computed in float32 (complex64 spectra), except that a float64 map on the CPU
is kept in float64 (the precision tests' reference path).  The GPU always works in float32.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .backend import Backend


def check_number(value, name: str, *, positive: bool = False, error: type[Exception] = ValueError) -> float:
    """Return ``value`` as a float after checking that it is finite (and > 0 when ``positive``).

    Parameters
    ----------
    value
        A number (int, float, NumPy scalar or a string that ``float`` reads).
    name
        What the number is, with its unit where it has one (e.g. ``"voxel size (Å)"``), for the message.
    positive
        Also require ``value > 0``.
    error
        The class raised: ``ValueError`` (misuse, the default) or ``InputError`` (user data).

    Raises
    ------
    ValueError
        When ``value`` is not a number, not finite, or not positive when ``positive`` (or ``error`` instead).
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise error(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or (positive and v <= 0):
        raise error(f"{name} must be a {'positive' if positive else 'finite'} number, got {value!r}")
    return v


def check_positive(value, name: str, *, error: type[Exception] = ValueError) -> float:
    """Return ``value`` as a float after checking that it is finite and > 0 (voxel sizes, resolutions, widths).

    Raises
    ------
    ValueError
        When ``value`` is not a finite positive number (``error`` instead when given, e.g. ``InputError``).

    Examples
    --------
    >>> check_positive("1.742", "voxel size (Å)")
    1.742
    >>> check_positive(0, "voxel size (Å)")
    Traceback (most recent call last):
    ...
    ValueError: voxel size (Å) must be a positive number, got 0
    """
    return check_number(value, name, positive=True, error=error)


def check_volume(V, name: str = "map", *, finite: bool = True,
                 error: type[Exception] = ValueError) -> tuple[float, float] | None:
    """Check that ``V`` is a non-empty 3-D real array ``[z, y, x]`` (NumPy or CuPy) with finite values.

    The finiteness check uses the minimum and maximum (two reductions, no temporary of the map's size),
    which it returns so that a caller need not reduce the map again.

    Parameters
    ----------
    V
        The volume, on the host or the device.
    name
        What the volume is, for the message.
    finite
        Also check that every value is finite (skip for a volume already checked).
    error
        The class raised: ``ValueError`` (misuse, the default) or ``InputError`` (user data).

    Returns
    -------
    tuple of float or None
        ``(min, max)`` of ``V`` when ``finite``, else None.

    Raises
    ------
    ValueError
        When ``V`` is not 3-D, is empty, is complex, or holds NaN/±Inf (``error`` instead when given).
    """
    shape = tuple(getattr(V, "shape", ()))
    if len(shape) != 3:
        raise error(f"{name} must be a 3-D array [z, y, x], got shape {shape}")
    if min(shape) == 0:
        raise error(f"{name} is empty (shape {shape})")
    if np.dtype(V.dtype).kind not in "fiub":
        raise error(f"{name} must hold real numbers, got dtype {V.dtype}")
    if not finite:
        return None
    lo, hi = float(V.min()), float(V.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise error(f"{name} holds NaN or infinite values")
    return lo, hi


def work_dtype(be: Backend, dtype) -> np.dtype:
    """Return the real dtype in which a volume of ``dtype`` is computed on backend ``be``.

    float64 stays float64 on the CPU only; everything else (float16, integers, any dtype on the GPU) is
    computed in float32.
    """
    if np.dtype(dtype) == np.float64 and not be.is_gpu:
        return np.dtype(np.float64)
    return np.dtype(np.float32)
