"""The central input checks and dtype policy (gpuvalid._checks): user data is refused with InputError by the
loaders, misuse of an engine or a context raises ValueError, on both backends alike."""

import math

import numpy as np
import pytest

from gpuvalid import masks
from gpuvalid._checks import check_number, check_positive, check_volume, work_dtype
from gpuvalid.backend import get_backend
from gpuvalid.context import MapContext
from gpuvalid.errors import InputError
from gpuvalid.io.load import load_map_input
from gpuvalid.spiral import SpiralEngine
from tests.helpers import assert_backends_raise, cubes_map, write_map

CPU = get_backend("cpu")


def _map(shape=(40, 40, 40)) -> np.ndarray:
    return cubes_map(shape)[0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "x", None, [1.0]])
def test_check_number_refuses_non_finite(bad):
    with pytest.raises(ValueError, match="threshold must be a"):
        check_number(bad, "threshold")


@pytest.mark.parametrize("bad", [0, -1.5, float("nan"), float("inf"), "abc"])
def test_check_positive_refuses_with_the_class_asked_for(bad):
    with pytest.raises(ValueError, match=r"voxel size \(Å\) must be a"):
        check_positive(bad, "voxel size (Å)")
    with pytest.raises(InputError, match=r"voxel size \(Å\) must be a"):
        check_positive(bad, "voxel size (Å)", error=InputError)


def test_check_positive_returns_a_float():
    v = check_positive(np.float32(1.5), "x")
    assert v == 1.5 and type(v) is float
    assert check_number("-2", "t") == -2.0


@pytest.mark.parametrize("shape", [(8, 8), (2, 8, 8, 8), (0, 8, 8), ()])
def test_check_volume_refuses_other_shapes(shape):
    with pytest.raises(ValueError, match="3-D|empty"):
        check_volume(np.zeros(shape, np.float32))


def test_check_volume_refuses_complex_and_non_finite():
    with pytest.raises(ValueError, match="real numbers"):
        check_volume(np.zeros((4, 4, 4), np.complex64))
    V = np.zeros((4, 4, 4), np.float32)
    V[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        check_volume(V, error=InputError)
    V[1, 2, 3] = -np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_volume(V)
    assert check_volume(V, finite=False) is None


def test_check_volume_returns_min_and_max():
    V = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    assert check_volume(V) == (float(V.min()), float(V.max()))


class _Gpu:
    is_gpu = True


@pytest.mark.parametrize("dtype,cpu_dtype", [(np.float64, np.float64), (np.float32, np.float32),
                                             (np.float16, np.float32), (np.int16, np.float32),
                                             (np.uint8, np.float32)])
def test_work_dtype_keeps_float64_on_the_cpu_only(dtype, cpu_dtype):
    assert work_dtype(CPU, dtype) == np.dtype(cpu_dtype)
    assert work_dtype(_Gpu(), dtype) == np.dtype(np.float32)


def test_spiral_engine_follows_the_dtype_policy():
    V = _map((12, 12, 12))
    assert SpiralEngine(CPU, V.astype(np.float64), 1.0).real_dtype == np.float64
    assert SpiralEngine(CPU, V.astype(np.int16), 1.0).real_dtype == np.float32


def _engine(be, V, ts):
    return SpiralEngine(be, V, ts)


@pytest.mark.gpu
@pytest.mark.parametrize("V,ts", [(np.zeros((8, 8), np.float32), 1.0),
                                  (np.zeros((8, 8, 8), np.float32), 0.0),
                                  (np.full((8, 8, 8), np.nan, np.float32), 1.0)])
def test_spiral_engine_misuse_is_a_value_error_on_both_backends(cpu, gpu, V, ts):
    """A 2-D map, a zero voxel size and NaN values are refused alike on the CPU and the GPU."""
    assert_backends_raise(ValueError, _engine, cpu, gpu, V, ts)


def test_spiral_engine_misuse_is_a_value_error_on_the_cpu():
    for V, ts in ((np.zeros((8, 8), np.float32), 1.0), (np.zeros((8, 8, 8), np.float32), 0.0),
                  (np.full((8, 8, 8), np.nan, np.float32), 1.0)):
        with pytest.raises(ValueError, match="SpiralEngine"):
            SpiralEngine(CPU, V, ts)


def test_spiral_engine_refuses_a_zero_shell_width():
    eng = SpiralEngine(CPU, _map((12, 12, 12)), 1.0)
    with pytest.raises(ValueError, match="shell width"):
        next(eng.amplitudes([0.1], 0.0))


@pytest.mark.parametrize("kw,match", [({"voxel_size": 0.0}, "voxel size"), ({"voxel_size": float("nan")}, "voxel size"),
                                      ({"resolution": -3.0}, "resolution"), ({"threshold": float("nan")}, "threshold")])
def test_map_context_misuse_is_a_value_error(kw, match):
    args = {"voxel_size": 1.5, "threshold": 0.3, "resolution": 6.0} | kw
    with pytest.raises(ValueError, match=match):
        MapContext(CPU, _map(), args["voxel_size"], args["threshold"], args["resolution"])


def test_map_context_refuses_a_non_finite_map_and_keeps_its_range():
    V = _map()
    ctx = MapContext(CPU, V, 1.5, 0.3, None)
    assert (ctx.vmin, ctx.vmax) == (float(V.min()), float(V.max()))
    V = V.copy()
    V[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        MapContext(CPU, V, 1.5, 0.3, None)


def test_masks_refuse_misuse():
    V = _map()
    with pytest.raises(ValueError, match="threshold"):
        masks.raw_mask(CPU, V, float("nan"))
    with pytest.raises(ValueError, match="resolution"):
        masks.resize_for_resolution(CPU, V, 1.5, 0.0)
    with pytest.raises(ValueError, match="voxel size"):
        masks.dilation_radius_vox(-1.0)
    assert masks.dilation_radius_vox(0.9) == math.ceil(2.0 / 0.9)


@pytest.mark.parametrize("kw,match", [({"voxel_size": -1.0}, "voxel size must be a positive number"),
                                      ({"resolution": float("inf")}, "resolution must be a positive number"),
                                      ({"threshold": float("nan")}, "threshold must be a finite number")])
def test_loader_refuses_user_data_with_input_error(tmp_path, kw, match):
    path = write_map(tmp_path / "m.mrc", _map(), voxel_size=1.5)
    with pytest.raises(InputError, match=match) as exc:
        load_map_input(path, **kw)
    assert "\n" not in str(exc.value)
