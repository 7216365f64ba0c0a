"""Every raw kernel compiled by NVRTC, the compiler CuPy uses on the device, on a machine without a GPU.

``tests/cuda_emul`` runs the CUDA sources with g++; this file compiles them with CUDA 13's own NVRTC (the
``nvidia-cuda-nvrtc`` wheel of the ``dev`` extra, :mod:`tests.nvrtc`) for the chips an archive operator runs:
sm_80 (A100), sm_90 (H100, H200) and sm_100 (B200).  It checks what only the real compiler can tell before a
device run: the source compiles without a warning, the compiled parameter list (PTX ABI) is the one the CuPy
stand-in checks the Python launches against, every kernel the Python code asks for exists (and none is dead),
and ``ptxas``'s registers and shared memory let each kernel launch with the block the Python code uses
(CUDA's "too many resources requested for launch" otherwise), without register spills or a stack frame; in the
machine code (``cuobjdump -sass``), no atomic is a compare-and-swap loop.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from gpuvalid.backend import Backend, find_kernel_source
from gpuvalid.level1 import local_fsc
from gpuvalid.render import raycast
from gpuvalid import spiral
from tests import nvrtc
from tests.standin import _SIG, _param_type

pytestmark = pytest.mark.skipif(
    nvrtc.library() is None,
    reason="libnvrtc not installed: pip install nvidia-cuda-nvrtc (in the dev extra on Linux x86_64/aarch64)")

REPO = Path(__file__).resolve().parents[1]
FILES = sorted(p.name for p in (REPO / "kernels").glob("*.cu"))
DEFAULT_OPTIONS = inspect.signature(Backend.kernel).parameters["options"].default
OPTIONS = {raycast.KERNEL_FILE: raycast.KERNEL_OPTIONS}          # files compiled with other options
ARCHS = ("sm_80", "sm_90", "sm_100")

# The thread block each kernel is launched with (the Python code's constants).
BLOCKS = {
    "lfsc_planes": local_fsc.PLANES_THREADS,
    "lfsc_shells": local_fsc.SHELLS_THREADS,
    "spiral_pack": spiral._BLOCK,
    "spiral_magnitude": spiral._BLOCK,
    "lsq_accumulate": spiral._BLOCK,
    "occupancy_accumulate": spiral._BLOCK,
    "first_crossing": raycast.BLOCK[0] * raycast.BLOCK[1] * raycast.BLOCK[2],
}

# C parameter type → PTX parameter type (the CUDA ABI: pointers and 64-bit integers are .u64).
PTX_TYPE = {"int": "u32", "unsigned int": "u32", "long long": "u64", "float": "f32", "double": "f64"}


def _compile(filename: str, arch: str) -> nvrtc.Compiled:
    src = find_kernel_source(filename).read_text()
    return nvrtc.compile_source(src, tuple(OPTIONS.get(filename, DEFAULT_OPTIONS)), arch, filename)


def _requested() -> dict[str, set[str]]:
    """(kernel file → kernel names) that gpuvalid's Python code asks ``Backend.kernel`` for: a file's name
    given as a module constant (``KERNELS = "x.cu"``) or a literal, the kernel's name as a literal."""
    out: dict[str, set[str]] = {}
    for py in (REPO / "gpuvalid").rglob("*.py"):
        text = py.read_text()
        consts = dict(re.findall(r'^(\w+)\s*=\s*"(\w+\.cu)"', text, re.M))
        for first, name in re.findall(r'\.kernel\(\s*("?\w+(?:\.cu)?"?)\s*,\s*"(\w+)"', text):
            f = first.strip('"') if first.startswith('"') else consts.get(first)
            assert f is not None, f"{py}: kernel file {first} is not a module constant"
            out.setdefault(f, set()).add(name)
    return out


def test_nvrtc_targets_the_device_architectures():
    """The installed NVRTC compiles for every architecture tested here."""
    archs = nvrtc.supported_archs()
    for a in ARCHS:
        assert int(a[3:]) in archs, (a, archs, nvrtc.version())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("filename", FILES)
def test_kernel_compiles_without_warnings(filename, arch):
    c = _compile(filename, arch)
    assert "warning" not in c.log.lower(), c.log
    assert c.params, f"{filename}: no extern \"C\" __global__ function in the PTX"


@pytest.mark.parametrize("filename", FILES)
def test_compiled_parameters_match_the_signature_the_standin_checks(filename):
    """The PTX parameter list of each entry equals the C signature as the stand-in parses it (so its
    per-argument dtype checks of the Python launches check the real ABI)."""
    src = find_kernel_source(filename).read_text()
    parsed = {m.group(1): [_param_type(p) for p in m.group(2).split(",") if p.strip()] for m in _SIG.finditer(src)}
    compiled = _compile(filename, "sm_90").params
    assert set(parsed) == set(compiled), (sorted(parsed), sorted(compiled))
    for name, types in parsed.items():
        want = ["u64" if t.endswith("*") else PTX_TYPE[t] for t in types]
        assert compiled[name] == want, (name, types, compiled[name])


def test_every_requested_kernel_exists_and_none_is_dead():
    requested = _requested()
    assert set(requested) == set(FILES), (sorted(requested), FILES)
    for filename, names in requested.items():
        compiled = set(_compile(filename, "sm_90").params)
        assert names == compiled, (filename, sorted(names), sorted(compiled))
    assert set(BLOCKS) == set().union(*requested.values())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("filename", FILES)
def test_kernels_launch_with_their_blocks_without_spills(filename, arch):
    res = _compile(filename, arch).resources
    assert res, f"ptxas reported nothing for {filename}"
    for name, r in res.items():
        assert r.launch_error(BLOCKS[name]) is None, (name, arch, r, r.launch_error(BLOCKS[name]))
        assert r.spill_stores == 0 and r.spill_loads == 0, (name, arch, r)
        assert r.stack == 0, (name, arch, r, "a stack frame: an array indexed at run time lives in local memory")


def _is_cas(op: str) -> bool:
    """A compare-and-swap atomic (``ATOMS.CAS``, ``ATOMS.CAST.SPIN.64``, ``ATOMG.E.CAS``, …)."""
    parts = op.split(".")
    return parts[0].startswith("ATOM") and bool({"CAS", "CAST"} & set(parts))


@pytest.mark.parametrize("arch", ("sm_80", "sm_90"))
@pytest.mark.parametrize("filename", FILES)
def test_no_atomic_becomes_a_compare_and_swap_loop(filename, arch):
    """In the machine code (cuobjdump -sass), no atomic is a compare-and-swap loop: float and double
    atomicAdd on shared memory compile to one (``ATOMS.CAST.SPIN``), which serialises the threads that
    collide; global float64 adds (``REDG.E.ADD.F64``) and shared int32 adds (``ATOMS.ADD``) are native."""
    text = nvrtc.sass(_compile(filename, arch).cubin)
    if text is None:
        pytest.skip("cuobjdump/nvdisasm not installed (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    per_function = nvrtc.sass_by_function(text)
    assert set(per_function) == set(_compile(filename, arch).params)
    for name, ops in per_function.items():
        assert len(ops) > 10, (name, ops)
        loops = [op for op in ops if _is_cas(op)]
        assert not loops, (filename, arch, name, loops)


def test_sass_sees_a_shared_double_atomic_as_a_loop():
    """The check above can fail: a shared-memory double atomicAdd is a CAS loop on sm_90, an int32 one not."""
    src = """extern "C" __global__ void d(double* o) { __shared__ double s[32]; s[threadIdx.x % 32] = 0.0;
               __syncthreads(); atomicAdd(&s[threadIdx.x % 32], o[1]); __syncthreads(); o[threadIdx.x] = s[0]; }
             extern "C" __global__ void i(int* o) { __shared__ int s[32]; s[threadIdx.x % 32] = 0;
               __syncthreads(); atomicAdd(&s[threadIdx.x % 32], o[1]); __syncthreads(); o[threadIdx.x] = s[0]; }"""
    text = nvrtc.sass(nvrtc.compile_source(src, (), "sm_90").cubin)
    if text is None:
        pytest.skip("cuobjdump/nvdisasm not installed")
    ops = nvrtc.sass_by_function(text)
    assert any(_is_cas(op) for op in ops["d"]), ops["d"]
    assert not any(_is_cas(op) for op in ops["i"]) and "ATOMS.ADD" in ops["i"], ops["i"]


def test_launch_limits_arithmetic():
    """Register allocation per warp in units of 256: 123 registers → 16 × 256 = 4,096 per warp."""
    r = nvrtc.KernelResources(registers=123, smem=1160)
    assert r.registers_for_block(210) == 7 * 4096          # 210 threads = 7 warps
    assert r.launch_error(210) is None
    assert "registers" in r.launch_error(1024)            # 32 warps × 4,096 = 131,072 > 65,536
    assert r.launch_error(512) is None                     # 16 × 4,096 = 65,536: exactly the limit
    assert "shared memory" in r.launch_error(64, dynamic_smem=48 * 1024)
    assert "threads per block" in r.launch_error(1025)


def test_standin_refuses_a_launch_beyond_the_registers():
    """On the stand-in a launch checks ptxas's resources before it runs (as the driver does)."""
    from tests.standin import _RawKernel

    src = find_kernel_source(local_fsc.KERNELS).read_text()
    params = {m.group(1): m.group(2).split(",") for m in _SIG.finditer(src)}
    k = _RawKernel("lfsc_shells", params["lfsc_shells"], nvrtc.KernelResources(registers=123))
    with pytest.raises(RuntimeError, match="too many resources requested for launch"):
        k((1,), (1024,), ())


def test_compile_error_carries_the_compiler_log():
    with pytest.raises(nvrtc.NvrtcError, match='identifier "not_declared" is undefined'):
        nvrtc.compile_source('extern "C" __global__ void f(float* a) { a[0] = not_declared; }')
