"""Synthetic maps with known answers, shared by the tests; ``DATA``, the real maps and models."""

import os
from pathlib import Path

import mrcfile
import numpy as np

#: ../shared/data (the real maps, MANIFEST.tsv, models/), or $GPUVALID_DATA (e.g. .devdata on a GPU node)
DATA = Path(os.environ.get("GPUVALID_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def bench_module(name: str):
    """Import ``bench/<name>.py`` (the benchmark scripts are not a package) and return the module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_map(path: Path, data: np.ndarray, voxel_size=1.0, **header) -> Path:
    with mrcfile.new(str(path), overwrite=True) as m:
        m.set_data(np.asarray(data, dtype=np.float32))
        m.voxel_size = voxel_size
        for k, v in header.items():
            setattr(m.header, k, v)
    return path


def cubes_map(shape=(40, 40, 40), cubes=(((5, 5, 5), 6), ((25, 25, 25), 3), ((5, 30, 30), 2)), value=1.0):
    """Zero map with solid cubes (corner zyx, edge) of ``value``; returns the map and the cube sizes."""
    V = np.zeros(shape, dtype=np.float32)
    for (z, y, x), e in cubes:
        V[z:z + e, y:y + e, x:x + e] = value
    return V, [e ** 3 for _, e in cubes]


# ---- one CPU/GPU parity check ------------------------------------------------------------------------------
def on_backend(be, args):
    """``args`` with host NumPy arrays moved to ``be``'s device (other arguments as they are)."""
    return [be.asarray(a) if isinstance(a, np.ndarray) else a for a in args]


def to_host_tree(be, x):
    """``x`` with every device array (in dicts, lists, tuples, dataclass fields) copied to the host."""
    import dataclasses

    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        x = {f.name: getattr(x, f.name) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {k: to_host_tree(be, v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(to_host_tree(be, v) for v in x)
    if hasattr(x, "shape") and not isinstance(x, (np.ndarray, np.generic)):
        return be.to_host(x)
    return x


def assert_same(a, b, rtol: float, atol: float, where: str = "result") -> None:
    """``b`` (another backend's result, on the host: :func:`to_host_tree`) equals ``a``: floats and float
    arrays within ``|b − a| ≤ atol + rtol·|a|`` with NaN at the same places, everything else exactly; dicts,
    lists and tuples are compared element by element."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], rtol, atol, f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths {len(a)} vs {len(b)}"
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, rtol, atol, f"{where}[{i}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, f"{where}: shapes {a.shape} vs {b.shape}"
        if np.issubdtype(a.dtype, np.inexact):
            np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, equal_nan=True, err_msg=where)
        else:
            np.testing.assert_array_equal(b, a, err_msg=where)
    elif isinstance(a, (float, np.floating)):
        assert (np.isnan(a) and np.isnan(b)) or abs(b - a) <= atol + rtol * abs(a), f"{where}: {a!r} vs {b!r}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def assert_backends_agree(fn, cpu, gpu, *args, rtol: float = 0.0, atol: float = 0.0, **kwargs):
    """Run ``fn(be, *args, **kwargs)`` on the CPU and on the device backend (host arrays in ``args`` moved
    there first) and check the results agree (:func:`assert_same`); returns ``(cpu_result, device_result)``.
    State the tolerance and why in the calling test."""
    a = to_host_tree(cpu, fn(cpu, *args, **kwargs))
    b = to_host_tree(gpu, fn(gpu, *on_backend(gpu, args), **kwargs))
    assert_same(a, b, rtol, atol)
    return a, b


def assert_backends_raise(exc: type, fn, cpu, gpu, *args, **kwargs) -> None:
    """``fn`` refuses the same input with the same error class on both backends."""
    import pytest

    for be, xs in ((cpu, args), (gpu, on_backend(gpu, args))):
        with pytest.raises(exc):
            fn(be, *xs, **kwargs)
