"""A CuPy stand-in on the CPU: gpuvalid's GPU code paths, run without a GPU.

No session of this project is sure to get a GPU, and a GPU session has minutes, not hours: a GPU branch
that fails on ``AttributeError`` or on a host array passed to a device function must fail here first.
:func:`backend` returns a :class:`gpuvalid.backend.Backend` with ``is_gpu`` True whose ``xp``,
``ndimage`` and FFT namespaces compute with NumPy/SciPy but behave like CuPy where CuPy differs:

- only names and keyword arguments that CuPy 14 has exist (``cupy_api.json``, a snapshot of the real
  package's API made by :mod:`tests.standin.snapshot`);
- device arrays (:class:`ndarray`) refuse implicit conversion to NumPy (``np.asarray`` raises
  ``TypeError``, as CuPy does), refuse NumPy arrays and lists as operands or arguments (no implicit host to
  device copy; a NumPy array assigned to a slice is copied, as in CuPy, a list is refused), and reductions
  and scalar indexing give 0-d device arrays, not Python numbers;
- raw CUDA modules are compiled with NVRTC, CuPy's compiler, when ``libnvrtc`` is installed (the ``dev``
  extra; :mod:`tests.nvrtc`; sm_90, a compile error fails the test), each launch checks its block against
  the registers and shared memory ``ptxas`` reports (CUDA's "too many resources requested for launch"), and
  every argument's type against the ``extern "C"`` signature, then runs a NumPy transcription of the kernel
  (:mod:`tests.standin.kernels`);
- a memory pool counts the bytes of live device buffers (the allocator hook of
  ``cupy.cuda.set_allocator`` sees every new buffer), so :class:`gpuvalid.memory.PeakMeter` and the
  memory budget run as on a device of :data:`DEVICE_BYTES`;
- ``cupyx.scipy.ndimage`` keeps CuPy 14's rules that SciPy does not have (:func:`_ndimage_rules`, read off
  CuPy's sources): an iterated binary erosion or dilation with the structure's centre set needs
  ``brute_force=True`` (``NotImplementedError`` otherwise), and the buffers CuPy allocates inside a call
  are counted in the pool while it runs (a separable filter over several axes holds a second output-sized
  buffer; an output that overlaps the input is filtered into a fresh array and copied back; an iterated
  binary morphology holds a second mask).

What it cannot show: CUDA compile errors of CuPy's own generated kernels, cuFFT/cuDNN numerics, speed.
"""

from __future__ import annotations

import inspect
import json
import re
import weakref
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.ndimage

from gpuvalid.backend import Backend

API = json.loads((Path(__file__).with_name("cupy_api.json")).read_text())
CUPY_VERSION = API["cupy_version"]
DEVICE_BYTES = 80 * 2 ** 30          # the emulated device's memory (set smaller to test budgets)
_CONVERTERS = {"asarray", "array", "asanyarray", "from_dlpack", "fromDlpack"}  # host -> device allowed


_MISSING = object()


class StandinError(TypeError):
    """What real CuPy would refuse (a TypeError there too)."""


# ---- memory ------------------------------------------------------------------------------------------
class _Pool:
    """CuPy's default memory pool, reduced to byte counts of live buffers (512-byte rounded like CuPy)."""

    def __init__(self):
        self._used = 0

    def malloc(self, size: int):
        size = -(-int(size) // 512) * 512
        self._used += size
        return _Mem(self, size)

    def used_bytes(self) -> int:
        return self._used

    def free_bytes(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        pass


class _Mem:
    __slots__ = ("pool", "size")

    def __init__(self, pool, size):
        self.pool, self.size = pool, size


def _release(mem):
    if isinstance(mem, _Mem):
        mem.pool._used -= mem.size


POOL = _Pool()
_allocator = [POOL.malloc]
_tracked: dict[int, object] = {}     # id(root buffer) -> its weakref.finalize
_sites: dict[int, tuple] = {}        # id(root buffer) -> (bytes, allocation site), when tracing
TRACE = {"on": False, "peak": 0, "live": [], "copies": {}, "ops": {}}
# what makes no kernel on a device: allocation without initialisation, and views
_NO_KERNEL = {"empty", "empty_like", "reshape", "ravel", "transpose", "swapaxes", "moveaxis", "squeeze", "view",
              "expand_dims", "broadcast_to", "atleast_1d", "atleast_2d", "atleast_3d", "shape", "ndim", "size",
              "result_type", "can_cast", "asnumpy", "from_dlpack", "fromDlpack"}
# calls whose result size depends on the data: CuPy reads a count back from the device (a synchronisation)
_DATA_SIZED = {"nonzero", "argwhere", "flatnonzero", "unique", "extract", "compress", "nanmedian", "median",
               "nanpercentile", "percentile", "nanquantile", "quantile"}


def trace(on: bool = True) -> None:
    """Record the live device buffers (bytes, gpuvalid file:line that made them) at the pool's high-water
    mark: ``TRACE["live"]`` after the run, to see what a section holds at its peak; the host/device
    copies, ``TRACE["copies"][(direction, site)] = [count, bytes]`` (direction "d2h" or "h2d"); and the
    device operations, ``TRACE["ops"][(kind, site)] = [count, bytes]``: each call that would launch work on
    a GPU (kind "kernel": element-wise, reduction, copy or fill; "raw": a raw CUDA kernel; "fft": one
    cuFFT transform; "ndimage": one cupyx.scipy.ndimage call, one or a few kernels) with the bytes of the
    device arrays it reads and writes, and each point where the host waits for the device (kind "sync": a
    device value read as a Python number or bool, a ``get``, a data-sized result such as ``nonzero`` or a
    boolean-mask index, a sort: Thrust's synchronous ``par`` policy).  What a GPU run's time is made of besides arithmetic: see
    ``bench/standin_profile.py --launches``."""
    TRACE.update(on=on, peak=0, live=[], copies={}, ops={})
    _sites.clear()


def _nbytes(obj) -> int:
    """Bytes of the arrays (device or host) in ``obj``, looking inside lists, tuples and dicts."""
    return sum(v._a.nbytes if isinstance(v, ndarray) else v.nbytes for v in _flat(obj)
               if isinstance(v, (ndarray, np.ndarray)))


def _tally(table: str, kind: str, nbytes: int) -> None:
    """``TRACE[table][(kind, calling gpuvalid line)]`` += one event of ``nbytes`` (when tracing)."""
    if TRACE["on"]:
        c = TRACE[table].setdefault((kind, _site()), [0, 0])
        c[0] += 1
        c[1] += int(nbytes)


def _op(kind: str, nbytes: int = 0) -> None:
    """Count one device operation (or synchronisation) of ``kind`` at the calling gpuvalid line."""
    _tally("ops", kind, nbytes)


# CuPy sorts with Thrust under ``cuda::par.on(stream)``, which waits for the device before it returns
_THRUST_SYNC = {"sort", "argsort", "lexsort", "msort"}


def _bool_index(idx) -> bool:
    """Whether the index holds a boolean device mask (CuPy then counts its voxels: a host wait)."""
    return any(isinstance(v, ndarray) and v.dtype == np.bool_ for v in (idx if isinstance(idx, tuple) else (idx,)))


def _launched(name: str, inputs, res) -> None:
    """Count the call ``name`` as a kernel launch (unless it makes none) and a sync when data-sized."""
    if not TRACE["on"]:
        return
    if name in _DATA_SIZED or name in _THRUST_SYNC:
        _op("sync")
    if name in _NO_KERNEL:
        return
    r = res._a if isinstance(res, ndarray) else res
    if isinstance(r, np.ndarray) and any(isinstance(a, ndarray) and a._a is not r and np.shares_memory(a._a, r)
                                         for a in _flat(inputs)):
        return                                   # a view of an input: no kernel
    _op("kernel", _nbytes(inputs) + _nbytes(res))


def _ndimage_passes(name: str, args, kwargs) -> int:
    """How many times a cupyx.scipy.ndimage call reads and writes its arrays: once per axis for the separable
    filters, once per iteration for binary morphology, once otherwise."""
    a = args[0] if args else None
    ndim = a.ndim if isinstance(a, ndarray) else 1
    if name in ("gaussian_filter", "uniform_filter", "maximum_filter", "minimum_filter", "median_filter"):
        return ndim
    if name.startswith("binary_"):
        it = kwargs.get("iterations", args[2] if len(args) > 2 else 1)
        return max(1, int(it or 1))
    return 1


_SEPARABLE = {"gaussian_filter", "uniform_filter"}                 # always through CuPy's _run_1d_filters
_SEPARABLE_BY_SIZE = {"maximum_filter", "minimum_filter"}          # ... when given a size, not a footprint
# binary morphology: (input, structure, iterations, ..., brute_force at index 7) in CuPy 14
_ITERATED = {"binary_erosion", "binary_dilation", "binary_opening", "binary_closing"}


def _arg(args, kwargs, name: str, index: int, default=None):
    return kwargs[name] if name in kwargs else (args[index] if len(args) > index else default)


def _ndimage_rules(name: str, args, kwargs) -> int:
    """CuPy 14's ``cupyx.scipy.ndimage`` where it differs from SciPy (read off its sources): raises what CuPy
    raises, and returns the bytes CuPy holds inside the call beyond its arguments (its extra buffers, and the
    result it allocates first when there are any: the stand-in counts the result only once it returns)."""
    a = args[0] if args else kwargs.get("input")
    if not isinstance(a, ndarray):
        return 0
    out = kwargs.get("output")
    out_bytes = out._a.nbytes if isinstance(out, ndarray) else a._a.nbytes
    hidden = 0
    if name in _ITERATED:
        it = _arg(args, kwargs, "iterations", 2, 1)
        st = _arg(args, kwargs, "structure", 1)
        st = st._a if isinstance(st, ndarray) else st
        centre = True if st is None else bool(np.asarray(st)[tuple(n // 2 for n in np.shape(st))])
        if it != 1 and centre and not _arg(args, kwargs, "brute_force", 7, False):
            raise NotImplementedError(f"cupy stand-in: cupyx.scipy.ndimage.{name} with iterations={it}: only "
                                      f"brute_force iteration has been implemented (cupy {CUPY_VERSION})")
        if it != 1:
            hidden += a._a.size                 # tmp_in: a second bool mask
    sep = name in _SEPARABLE or (name in _SEPARABLE_BY_SIZE and kwargs.get("footprint") is None
                                 and _arg(args, kwargs, "size", 1) is not None)
    if sep and a.ndim > 1:
        hidden += out_bytes                     # the second buffer of the passes over the axes
    if isinstance(out, ndarray) and np.shares_memory(out._a, a._a):
        hidden += out_bytes                     # filtered into a fresh array, then copied into the output
    if hidden and not isinstance(out, ndarray):  # the result CuPy allocates first is alive beside them
        hidden += a._a.size if name in _ITERATED else out_bytes
    return hidden


def _hold(nbytes: int):
    """Count ``nbytes`` in the pool (a buffer CuPy allocates inside a call); returns what to release."""
    if nbytes <= 0:
        return None
    mem = _allocator[0](nbytes)
    if TRACE["on"]:
        _note_peak([(nbytes, f"(inside cupyx) {_site()}")])
    return mem


def _note_peak(extra=()) -> None:
    """When the pool is at a new high-water mark, keep the buffers alive (and ``extra``, not tracked)."""
    if POOL.used_bytes() > TRACE["peak"]:
        TRACE["peak"] = POOL.used_bytes()
        TRACE["live"] = sorted(list(_sites.values()) + list(extra), reverse=True)


def _flat(obj):
    """The leaves of ``obj`` (lists, tuples and dict values opened)."""
    if isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _flat(v)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _flat(v)
    else:
        yield obj


def _copy(direction: str, nbytes: int) -> None:
    _tally("copies", direction, nbytes)


def _site() -> str:
    import traceback

    for fr in reversed(traceback.extract_stack(limit=40)):
        if "/gpuvalid/" in fr.filename and "/tests/" not in fr.filename and not fr.filename.endswith("backend.py"):
            return f"{fr.filename.split('/gpuvalid/')[-1]}:{fr.lineno} {fr.line}"
    return "?"


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _track(a: np.ndarray) -> None:
    """Count ``a``'s buffer once, as a device allocation, until the last array on it is gone."""
    r = _root(a)
    k = id(r)
    if k in _tracked or r.nbytes == 0:
        return
    mem = _allocator[0](r.nbytes)
    fin = weakref.finalize(r, _untrack, k, mem)
    _tracked[k] = fin
    if TRACE["on"]:
        _sites[k] = (r.nbytes, _site())
        _note_peak()


def _untrack(k, mem):
    _tracked.pop(k, None)
    _sites.pop(k, None)
    _release(mem)


# ---- arrays --------------------------------------------------------------------------------------------
_ND_ATTRS = set(API["ndarray"])


def _is_host(x) -> bool:
    return isinstance(x, np.ndarray)


def _check(obj, where: str) -> None:
    """Raise like CuPy when a host array reaches device code (also inside lists and tuples)."""
    if _is_host(obj):
        raise StandinError(f"cupy stand-in: {where} got a NumPy array {obj.shape} {obj.dtype} (host memory); "
                           "CuPy does not copy to the device implicitly: use be.asarray")
    if isinstance(obj, (list, tuple)):
        for v in obj:
            _check(v, where)


def _unwrap(obj):
    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, (list, tuple)):
        t = [_unwrap(v) for v in obj]
        return t if isinstance(obj, list) else tuple(t)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(obj):
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise StandinError("cupy stand-in: CuPy has no object arrays")
        return ndarray(obj)
    if isinstance(obj, np.generic):
        return ndarray(np.asarray(obj))
    if isinstance(obj, tuple):
        return tuple(_wrap(v) for v in obj)
    if isinstance(obj, list):
        return [_wrap(v) for v in obj]
    return obj


class _MemoryPointer:
    """``cupy.cuda.MemoryPointer`` reduced to its address (``ptr``, bytes)."""

    __slots__ = ("ptr",)

    def __init__(self, ptr: int):
        self.ptr = int(ptr)


class ndarray:
    """A device array: a NumPy array that behaves like ``cupy.ndarray`` at the host/device boundary."""

    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100

    def __init__(self, a: np.ndarray):
        self._a = a
        _track(a)

    # what CuPy refuses or does differently
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
                        "a NumPy array explicitly.")

    def get(self, stream=None, order="C", out=None, blocking=True):
        _copy("d2h", self._a.nbytes)
        _op("sync")
        return np.array(self._a, order=order)

    def set(self, arr, stream=None):
        if not _is_host(arr):
            raise StandinError("cupy stand-in: ndarray.set needs a NumPy array")
        self._a[...] = arr

    def __repr__(self):
        return "standin." + repr(self._a)

    def __format__(self, spec):
        _op("sync")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __float__(self):
        _op("sync")
        return float(self._a)

    def __int__(self):
        _op("sync")
        return int(self._a)

    def __bool__(self):
        _op("sync")
        return bool(self._a)

    def __complex__(self):
        _op("sync")
        return complex(self._a)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for v in self._a:
            yield _wrap(v)

    def __dlpack__(self, *args, **kwargs):
        return self._a.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()

    def __getitem__(self, idx):
        res = _wrap(self._a[_unwrap(idx)])
        if TRACE["on"]:
            if _bool_index(idx):
                _op("sync")
            if isinstance(res, ndarray) and not np.shares_memory(res._a, self._a):
                _op("kernel", 2 * res._a.nbytes + _nbytes(idx))
        return res

    def __setitem__(self, idx, value):
        if isinstance(value, list):
            raise StandinError("cupy stand-in: ndarray.__setitem__ got a Python list (CuPy: Unsupported type)")
        if _is_host(value):           # CuPy copies a NumPy array assigned to a slice (cupy/cupy#2079)
            _copy("h2d", value.nbytes)
        if TRACE["on"]:
            if _bool_index(idx):
                _op("sync")             # CuPy counts a boolean mask's voxels before it scatters
            _op("kernel", 2 * np.asarray(self._a[_unwrap(idx)]).nbytes)   # read and write of the target
        self._a[_unwrap(idx)] = _unwrap(value)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = ufunc.__name__
        if name not in API["modules"]["cupy"]:
            return NotImplemented
        _check(list(inputs) + list(kwargs.values()), f"cupy.{name}")
        out = kwargs.get("out")
        res = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        if out is not None:
            _op("kernel", _nbytes(inputs) + _nbytes(out))
            return out[0] if isinstance(out, tuple) and len(out) == 1 else out
        res = _wrap(res)
        _launched(name, inputs, res)
        return res

    def __array_function__(self, func, types, args, kwargs):
        mod = func.__module__ or "numpy"
        ns = {"numpy": "cupy", "numpy.fft": "cupy.fft", "numpy.linalg": "cupy.linalg"}.get(mod, "cupy")
        if func.__name__ not in API["modules"].get(ns, {}):
            return NotImplemented
        _check(list(args) + list(kwargs.values()), f"numpy.{func.__name__} on a device array")
        res = _wrap(func(*_unwrap(args), **_unwrap(kwargs)))
        _launched(func.__name__, (args, kwargs), res)
        return res

    def __getattr__(self, name):
        if name not in _ND_ATTRS:
            raise AttributeError(f"cupy.ndarray has no attribute {name!r} (cupy {CUPY_VERSION})")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            _check(list(args) + list(kwargs.values()), f"ndarray.{name}")
            res = attr(*_unwrap(args), **_unwrap(kwargs))
            if name in ("item", "tolist"):          # a device value read on the host
                _op("sync")
                return _wrap(res)
            if kwargs.get("out") is not None:
                _op("kernel", _nbytes((self, args, kwargs)))
                return kwargs["out"]
            res = _wrap(res)
            _launched(name, (self, args, kwargs), res)
            return res

        return method

    # attributes that must not go through __getattr__ (slots, properties)
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: _wrap(self._a.T))
    data = property(lambda self: _MemoryPointer(self._a.ctypes.data))   # CuPy: a MemoryPointer; ``.ptr``

    real = property(lambda self: _wrap(self._a.real), lambda self, v: _set_part(self, "real", v))
    imag = property(lambda self: _wrap(self._a.imag), lambda self, v: _set_part(self, "imag", v))


def _set_part(a: ndarray, part: str, v) -> None:
    """``a.real = v`` / ``a.imag = v`` (device values only, as in CuPy)."""
    _check(v, f"ndarray.{part} =")
    setattr(a._a, part, _unwrap(v))


def _binary(dunder):
    def op(self, other):
        _check(other, f"ndarray.{dunder}")
        if isinstance(other, list):
            raise StandinError(f"cupy stand-in: ndarray.{dunder} got a Python list")
        res = getattr(self._a, dunder)(_unwrap(other))
        if res is NotImplemented:
            return NotImplemented
        if dunder.startswith("__i"):           # NumPy's in-place operator returns the same array
            _op("kernel", 2 * self._a.nbytes + _nbytes(other))
            return self
        res = _wrap(res)
        _op("kernel", self._a.nbytes + _nbytes(other) + _nbytes(res))
        return res

    op.__name__ = dunder
    return op


for _n in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor", "lshift",
           "rshift"):
    for _d in (f"__{_n}__", f"__r{_n}__", f"__i{_n}__"):
        setattr(ndarray, _d, _binary(_d))
for _d in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
    setattr(ndarray, _d, _binary(_d))
for _d in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(ndarray, _d, (lambda d: lambda self: _unary(self, d))(_d))
ndarray.__hash__ = None


def _unary(a: ndarray, dunder: str):
    res = _wrap(getattr(a._a, dunder)())
    _op("kernel", 2 * a._a.nbytes)
    return res


# ---- namespaces ----------------------------------------------------------------------------------------
def _signature(spec):
    if not isinstance(spec, list):
        return None
    params = [inspect.Parameter(n, inspect._ParameterKind(k), default=None if d else inspect.Parameter.empty)
              for n, k, d in spec]
    try:
        return inspect.Signature(params)
    except ValueError:
        return None


class Namespace:
    """A CuPy module: its names (from the snapshot) bound to the NumPy/SciPy functions of ``impl``."""

    def __init__(self, key: str, impl, extra: dict | None = None):
        self._key = key
        self._impl = impl
        self._names = API["modules"][key]
        self._extra = extra or {}
        self._cache: dict = {}

    def __repr__(self):
        return f"<cupy stand-in {self._key}>"

    def __getattr__(self, name):
        if name.startswith("__") and name not in self._extra:
            raise AttributeError(name)
        if name in self._cache:
            return self._cache[name]
        if name in self._extra:
            val = self._extra[name]
        elif name not in self._names:
            raise AttributeError(f"module '{self._key}' has no attribute {name!r} (cupy {CUPY_VERSION})")
        else:
            impl = getattr(self._impl, name, _MISSING)
            if impl is _MISSING:
                raise AttributeError(f"cupy stand-in: {self._key}.{name} exists in CuPy but has no NumPy/SciPy "
                                     "twin here: add it to tests/standin")
            spec = self._names[name]
            val = impl if (isinstance(impl, type) or not callable(impl) or spec in ("class", "value")) \
                else self._function(name, impl, spec)
        self._cache[name] = val
        return val

    def _function(self, name, impl, spec):
        where = f"{self._key}.{name}"
        sig = _signature(spec)
        ufunc_nin = spec.get("ufunc") if isinstance(spec, dict) else None
        converter = name in _CONVERTERS

        def call(*args, **kwargs):
            if sig is not None:
                try:
                    sig.bind(*args, **kwargs)
                except TypeError as exc:
                    raise TypeError(f"{where}{sig}: {exc} (cupy {CUPY_VERSION})") from None
            if ufunc_nin is not None and len(args) > ufunc_nin + spec.get("nout", 1):
                raise TypeError(f"{where}: too many arguments")
            if not converter:
                _check(list(args) + list(kwargs.values()), where)
            held = _hold(_ndimage_rules(name, args, kwargs)) if self._key == "cupyx.scipy.ndimage" else None
            try:
                res = impl(*_unwrap(args), **_unwrap(kwargs))
            finally:
                _release(held)
            if TRACE["on"] and not converter:
                kind = {"cupy.fft": "fft", "cupyx.scipy.fft": "fft", "cupyx.scipy.ndimage": "ndimage"}.get(self._key)
                if kind:
                    passes = _ndimage_passes(name, args, kwargs) if kind == "ndimage" else 1
                    _op(kind, passes * (_nbytes((args, kwargs)) + _nbytes(res)))
                elif kwargs.get("out") is not None:
                    _op("kernel", _nbytes((args, kwargs)))
                else:
                    _launched(name, (args, kwargs), res)
            if kwargs.get("out") is not None:
                return kwargs["out"]
            if isinstance(res, int) and not isinstance(res, bool) and name == "count_nonzero":
                res = np.asarray(res, dtype=np.intp)      # CuPy gives a 0-d device array, NumPy a Python int
            if converter and args and isinstance(args[0], np.ndarray):
                _copy("h2d", args[0].nbytes)
                _op("h2d", args[0].nbytes)
            if converter and isinstance(res, np.ndarray) and any(
                    isinstance(a, np.ndarray) and np.shares_memory(a, res) for a in args):
                res = res.copy()            # host -> device is a copy, never a view of host memory
            return _wrap(res)

        call.__name__ = name
        call.__qualname__ = where
        return call


# ---- cupy.cuda -------------------------------------------------------------------------------------------
class _Device:
    def __init__(self, device=0):
        self.id = int(device)

    def use(self):
        return None

    def synchronize(self):
        return None

    @property
    def mem_info(self):
        return max(0, DEVICE_BYTES - POOL.used_bytes()), DEVICE_BYTES


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def getDeviceProperties(i):
        return {"name": b"cupy stand-in (CPU)", "major": 9, "minor": 0, "totalGlobalMem": DEVICE_BYTES,
                "multiProcessorCount": 1}

    @staticmethod
    def runtimeGetVersion():
        return 13000

    @staticmethod
    def driverGetVersion():
        return 13000

    def __getattr__(self, name):
        raise AttributeError(f"cupy stand-in: cupy.cuda.runtime.{name} is not emulated")


def _set_allocator(fn=None):
    _allocator[0] = fn if fn is not None else POOL.malloc


class _PlanCache:
    """CuPy's per-device cuFFT plan cache, as gpuvalid uses it: iterating gives ``(key, node)`` pairs and
    ``del cache[key]`` drops one plan (scipy.fft keeps no plans here, so the cache stays empty)."""

    def __init__(self):
        self._plans: dict = {}

    def __iter__(self):
        return iter(list(self._plans.items()))

    def __delitem__(self, key):
        del self._plans[key]

    def get_curr_size(self) -> int:
        return len(self._plans)

    def clear(self):
        self._plans.clear()


class _FftConfig:
    @staticmethod
    def get_plan_cache():
        return _PlanCache()


# ---- raw modules -----------------------------------------------------------------------------------------
_SIG = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(([^)]*)\)',
                  re.S)


def _compile_check(code: str, options: tuple) -> dict:
    """Compile ``code`` with NVRTC (CuPy's compiler, :mod:`tests.nvrtc`) for sm_90, the H100/H200, when
    ``libnvrtc`` is installed: a compile error fails the test as it would fail on the device.  Returns
    ``ptxas``'s resources per kernel (empty without NVRTC), which each launch checks."""
    from .. import nvrtc

    if nvrtc.library() is None:
        return {}
    try:
        return nvrtc.compile_source(code, tuple(options), "sm_90").resources
    except nvrtc.NvrtcError as e:
        raise RuntimeError(f"cupy stand-in: NVRTC could not compile the raw module: {e}") from None


def _param_type(decl: str) -> str:
    d = decl.replace("__restrict__", "").replace("const", "").strip()
    if "*" in d:
        return " ".join(d.split("*")[0].split()) + "*"
    return " ".join(d.split()[:-1])


_SCALARS = {"int": np.int32, "unsigned int": np.uint32, "long long": np.int64, "float": np.float32,
            "double": np.float64, "bool": np.bool_}
_POINTERS = {"float*": np.float32, "double*": np.float64, "float2*": np.complex64, "double2*": np.complex128,
             "int*": np.int32, "long long*": np.int64, "unsigned char*": np.uint8, "bool*": np.bool_}


class _RawKernel:
    def __init__(self, name: str, params: list[str], resources=None):
        from . import kernels

        self.name = name
        self.resources = resources          # ptxas's registers and shared memory (None without NVRTC)
        self.types = [_param_type(p) for p in params]
        self.emulate = getattr(kernels, name, None)
        if self.emulate is None:
            raise AttributeError(f"cupy stand-in: no NumPy transcription of kernel {name!r} in tests/standin/kernels.py")

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        if not (isinstance(grid, tuple) and isinstance(block, tuple)):
            raise TypeError(f"{self.name}: grid and block must be tuples")
        if int(np.prod(block)) > 1024:
            raise ValueError(f"{self.name}: {np.prod(block)} threads per block (CUDA allows 1024)")
        if self.resources is not None:
            why = self.resources.launch_error(int(np.prod(block)), int(shared_mem))
            if why:
                raise RuntimeError(f"{self.name}: too many resources requested for launch: {why}")
        if len(args) != len(self.types):
            raise TypeError(f"kernel {self.name} takes {len(self.types)} arguments, got {len(args)}")
        for i, (a, t) in enumerate(zip(args, self.types)):
            if t.endswith("*"):
                if not isinstance(a, ndarray):
                    raise StandinError(f"kernel {self.name} argument {i} ({t}) must be a device array, got {type(a)}")
                want = _POINTERS[t]
                if a.dtype != want:
                    raise StandinError(f"kernel {self.name} argument {i} ({t}) has dtype {a.dtype}, needs {np.dtype(want)}")
                if not a.flags.c_contiguous:
                    raise StandinError(f"kernel {self.name} argument {i} ({t}) is not C-contiguous")
            else:
                want = _SCALARS[t]
                if not isinstance(a, want):
                    raise StandinError(f"kernel {self.name} argument {i} ({t}) must be {want.__name__}, got "
                                       f"{type(a).__name__} (CuPy passes Python numbers as 64-bit)")
        if TRACE["on"]:
            from . import kernels

            traffic = kernels.TRAFFIC.get(self.name)
            _op("raw", traffic(args) if traffic else _nbytes(args))
        self.emulate(grid, block, *[a._a if isinstance(a, ndarray) else a for a in args])


class _RawModule:
    def __init__(self, code: str = None, path: str = None, options=(), **kwargs):
        if code is None:
            code = Path(path).read_text()
        self._resources = _compile_check(code, tuple(options))
        self._params = {m.group(1): [p for p in m.group(2).split(",") if p.strip()]
                        for m in _SIG.finditer(code)}

    def get_function(self, name: str):
        if name not in self._params:
            raise AttributeError(f"raw module has no extern \"C\" __global__ function {name!r}")
        return _RawKernel(name, self._params[name], self._resources.get(name))


class _RandomState:
    """``cupy.random.RandomState``: NumPy's generator with CuPy's ``dtype`` keyword, results on the device."""

    def __init__(self, seed=None, method=None):
        self._rs = np.random.RandomState(None if seed is None else int(seed) % 2 ** 32)

    def __getattr__(self, name):
        f = getattr(self._rs, name)

        def call(*args, dtype=None, **kwargs):
            _check(list(args) + list(kwargs.values()), f"cupy.random.RandomState.{name}")
            res = f(*_unwrap(args), **_unwrap(kwargs))
            if dtype is not None:
                res = np.asarray(res).astype(dtype)
            return _wrap(res)

        return call


# ---- the cupy module (what gpuvalid uses of CuPy; any other CuPy name fails with "no NumPy/SciPy twin") --
fft = Namespace("cupy.fft", scipy.fft, {"config": _FftConfig()})   # CuPy keeps single precision like scipy.fft
linalg = Namespace("cupy.linalg", np.linalg)
random = Namespace("cupy.random", np.random, {"RandomState": _RandomState})
cuda = Namespace("cupy.cuda", None, {"Device": _Device, "runtime": _Runtime(), "set_allocator": _set_allocator})


class _Lib:
    stride_tricks = Namespace("cupy.lib.stride_tricks", np.lib.stride_tricks)


cupy = Namespace("cupy", np, {
    "ndarray": ndarray, "fft": fft, "linalg": linalg, "random": random, "cuda": cuda, "lib": _Lib(),
    "get_default_memory_pool": lambda: POOL, "RawModule": _RawModule, "__version__": CUPY_VERSION,
})
ndimage = Namespace("cupyx.scipy.ndimage", scipy.ndimage)
fft_scipy = Namespace("cupyx.scipy.fft", scipy.fft, {"config": _FftConfig()})


def _in_place(name: str):
    """cupyx.scipy.fft's C2C transform with ``overwrite_x=True`` on a contiguous complex array of the
    output's dtype writes the result into that array (cuFFT in place): emulated, so the pool sees no second
    array."""
    f = fft_scipy._function(name, getattr(scipy.fft, name), API["modules"]["cupyx.scipy.fft"][name])

    def call(x, *args, **kwargs):
        res = f(x, *args, **kwargs)
        if (kwargs.get("overwrite_x") and isinstance(x, ndarray) and x.dtype.kind == "c" and res.dtype == x.dtype
                and res.shape == x.shape and x.flags.c_contiguous and res is not x):
            x._a[...] = res._a
            return x
        return res

    return call


for _n in ("fft", "ifft", "fftn", "ifftn", "fft2", "ifft2"):
    fft_scipy._extra[_n] = _in_place(_n)


def _aligned_real_input(ns: Namespace, name: str):
    """A real-to-complex transform refuses an input that is not aligned to cuFFT's complex type.

    cuFFT reads the input of an R2C transform at an address aligned to ``cufftComplex`` (8 bytes; 16 for
    double precision) and answers ``CUFFT_INVALID_VALUE`` otherwise (cupy/cupy#9229); CuPy passes a
    contiguous input as it is (a view of a z-slab of a float32 map whose planes hold an odd number of voxels
    starts 4 bytes off), and copies only a non-contiguous one.  NumPy's allocations are 16-byte aligned, so
    the offset of a view is what is checked.
    """
    f = ns._extra.get(name) or ns._function(name, getattr(scipy.fft, name), API["modules"][ns._key][name])

    def call(x, *args, **kwargs):
        if isinstance(x, ndarray) and x.dtype.kind == "f" and (x.flags.c_contiguous or x.flags.f_contiguous):
            align = 16 if x.dtype.itemsize == 8 else 8
            if x._a.ctypes.data % align:
                raise RuntimeError(f"CUFFT_INVALID_VALUE (cupy stand-in: {ns._key}.{name} input at an address "
                                   f"{x._a.ctypes.data % align} bytes off the {align}-byte alignment cuFFT needs)")
        return f(x, *args, **kwargs)

    return call


for _ns in (fft, fft_scipy):
    for _n in ("rfft", "rfft2", "rfftn"):
        _ns._extra[_n] = _aligned_real_input(_ns, _n)


def backend(device_bytes: int | None = None) -> Backend:
    """A CUDA-flavoured :class:`Backend` on the stand-in (``is_gpu`` True, device ``cuda:0``)."""
    global DEVICE_BYTES
    if device_bytes is not None:
        DEVICE_BYTES = int(device_bytes)
    return Backend("cupy", "cuda:0", cupy, ndimage, fft_scipy, device_id=0)


def install(device_bytes: int | None = None) -> Backend:
    """Make this process's gpuvalid see the stand-in as its CUDA device: ``get_backend("cuda:N")`` and
    ``"auto"`` return :func:`backend`, ``cuda_available()`` is True, and the networks load on torch's CPU
    (the stand-in's arrays live in host memory; patched when :mod:`gpuvalid.models.infer` is imported, so
    a process that never runs a network never imports torch).  For tests (``GPUVALID_CUPY_STANDIN=1``),
    rehearsal scripts and ``tests/standin/site`` (every Python process of ``bench/device_check.sh
    --standin``); modules that bound ``get_backend`` before this call keep the real one."""
    import sys

    import gpuvalid.backend as gb

    be = backend(device_bytes)
    if getattr(gb.get_backend, "standin", False):
        return be
    orig_get = gb.get_backend

    def get_backend(device: str = "auto"):
        dev = (device or "auto").strip().lower()
        if dev == "auto" or dev.startswith(("cuda", "gpu")):
            return be
        return orig_get(device)

    get_backend.cache_clear, get_backend.standin = orig_get.cache_clear, True
    gb.get_backend, gb.cuda_available = get_backend, (lambda: True)
    if "gpuvalid.models.infer" in sys.modules:
        _patch_infer(sys.modules["gpuvalid.models.infer"])
    else:
        sys.meta_path.insert(0, _PatchOnImport("gpuvalid.models.infer", _patch_infer))
    return be


def _patch_infer(infer) -> None:
    """Networks load on torch's CPU whatever device they are asked for."""
    orig_load = infer.load

    def load(kind, path=None, device="cpu"):
        return orig_load(kind, path, "cpu")

    load.cache_clear = orig_load.cache_clear
    infer.load = load


class _PatchOnImport:
    """A meta-path finder that runs ``patch(module)`` right after ``name`` is first imported."""

    def __init__(self, name: str, patch):
        self.name, self.patch = name, patch

    def find_spec(self, name, path=None, target=None):
        import importlib.util
        import sys

        if name != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module, patch = spec.loader.exec_module, self.patch

        def run(module):
            exec_module(module)
            patch(module)

        spec.loader.exec_module = run
        return spec
