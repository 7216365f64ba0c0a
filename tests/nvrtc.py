"""NVIDIA's run-time CUDA compiler (NVRTC) on a machine without a GPU: the compiler CuPy's ``RawModule`` uses.

NVRTC is a host library; it needs no GPU and no driver.  The ``nvidia-cuda-nvrtc`` wheel (the ``dev`` extra on
Linux) ships it, and this module calls it through :mod:`ctypes`, so the tests compile every ``kernels/*.cu`` with
the real compiler of CUDA 13, for the real target architectures, and read what ``ptxas`` reports per kernel
(registers, shared memory, stack, spills).  Without the library, :func:`library` returns ``None`` and the
callers skip (tests) or fall back (the CuPy stand-in).

Set ``GPUVALID_NVRTC`` to a ``libnvrtc.so`` path to use another copy (e.g. a CUDA toolkit's).  :func:`sass`
disassembles the compiled code with ``cuobjdump`` and ``nvdisasm`` (the ``nvidia-cuda-cuobjdump`` and
``nvidia-cuda-nvdisasm`` wheels, or a toolkit's on the PATH).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

# Limits of one thread block on every architecture CUDA 13 targets (sm_75 … sm_120): the CUDA C++
# Programming Guide's table of technical specifications.
MAX_THREADS_PER_BLOCK = 1024
REGISTERS_PER_BLOCK = 65536
STATIC_SMEM_PER_BLOCK = 48 * 1024        # beyond this a kernel needs dynamic memory and an opt-in attribute
REGISTER_ALLOC_UNIT = 256                # registers are given to a warp in units of 256
WARP = 32


class NvrtcError(RuntimeError):
    """A compile that NVRTC refused; the message holds its log."""


@dataclass
class KernelResources:
    """What ``ptxas -v`` reports for one ``__global__`` function."""

    registers: int
    smem: int = 0                        # static shared memory (bytes)
    stack: int = 0                       # stack frame (bytes of local memory per thread)
    spill_stores: int = 0
    spill_loads: int = 0

    def registers_for_block(self, threads: int) -> int:
        """Registers a block of ``threads`` occupies (warp-granular allocation)."""
        per_warp = -(-self.registers * WARP // REGISTER_ALLOC_UNIT) * REGISTER_ALLOC_UNIT
        return -(-threads // WARP) * per_warp

    def launch_error(self, threads: int, dynamic_smem: int = 0) -> str | None:
        """Why a launch of ``threads`` threads per block would fail ("too many resources requested for
        launch"), or None when it fits."""
        if threads > MAX_THREADS_PER_BLOCK:
            return f"{threads} threads per block (at most {MAX_THREADS_PER_BLOCK})"
        regs = self.registers_for_block(threads)
        if regs > REGISTERS_PER_BLOCK:
            return (f"{threads} threads × {self.registers} registers need {regs} registers per block "
                    f"(at most {REGISTERS_PER_BLOCK})")
        if self.smem + dynamic_smem > STATIC_SMEM_PER_BLOCK:
            return (f"{self.smem + dynamic_smem} bytes of shared memory per block (at most "
                    f"{STATIC_SMEM_PER_BLOCK} without an opt-in attribute)")
        return None


@dataclass
class Compiled:
    """One NVRTC compile: the PTX, the log, and per kernel its PTX parameter types and ``ptxas`` resources
    (resources only for a real architecture, ``sm_XX``)."""

    arch: str
    log: str
    ptx: str
    params: dict[str, list[str]] = field(default_factory=dict)
    resources: dict[str, KernelResources] = field(default_factory=dict)
    cubin: bytes = b""                   # the machine code (a real architecture only)


def _nvidia_roots() -> list[str]:
    spec = importlib.util.find_spec("nvidia")
    return list(spec.submodule_search_locations or []) if spec else []


def _candidates() -> list[str]:
    env = os.environ.get("GPUVALID_NVRTC")
    if env:
        return [env]
    found = []
    for root in _nvidia_roots():
        # CUDA 13 wheels: nvidia/cu13/lib/libnvrtc.so.13; CUDA 12: nvidia/cuda_nvrtc/lib/libnvrtc.so.12
        found += glob.glob(os.path.join(root, "*", "lib", "libnvrtc.so*"))
    found = [p for p in found if "builtins" not in os.path.basename(p)]
    found.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", os.path.basename(p))], reverse=True)
    system = ctypes.util.find_library("nvrtc")
    return found + ([system] if system else [])


@functools.cache
def library():
    """The loaded ``libnvrtc`` (ctypes), or None when no copy is installed."""
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        return lib
    return None


def version() -> tuple[int, int]:
    """NVRTC's (major, minor) version."""
    lib = _need()
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(lib, lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def supported_archs() -> list[int]:
    """Architectures this NVRTC compiles for (75 for sm_75, …)."""
    lib = _need()
    n = ctypes.c_int()
    _check(lib, lib.nvrtcGetNumSupportedArchs(ctypes.byref(n)), "nvrtcGetNumSupportedArchs")
    archs = (ctypes.c_int * n.value)()
    _check(lib, lib.nvrtcGetSupportedArchs(archs), "nvrtcGetSupportedArchs")
    return list(archs)


def _need():
    lib = library()
    if lib is None:
        raise NvrtcError("libnvrtc not found: pip install nvidia-cuda-nvrtc (the dev extra on Linux) "
                         "or set GPUVALID_NVRTC")
    return lib


def _check(lib, rc: int, what: str, log: str = "") -> None:
    if rc != 0:
        raise NvrtcError(f"{what}: {lib.nvrtcGetErrorString(rc).decode()}" + (f"\n{log}" if log else ""))


def _text(lib, prog, size_fn, get_fn) -> str:
    n = ctypes.c_size_t()
    _check(lib, getattr(lib, size_fn)(prog, ctypes.byref(n)), size_fn)
    buf = ctypes.create_string_buffer(max(n.value, 1))
    _check(lib, getattr(lib, get_fn)(prog, buf), get_fn)
    return buf.value.decode(errors="replace")


def _compile_once(source: str, name: str, options: list[str], cubin: bool) -> tuple[str, str, bytes]:
    lib = _need()
    prog = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
           "nvrtcCreateProgram")
    try:
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        rc = lib.nvrtcCompileProgram(prog, len(options), opts)
        log = _text(lib, prog, "nvrtcGetProgramLogSize", "nvrtcGetProgramLog")
        _check(lib, rc, f"NVRTC could not compile {name}", log)
        ptx = _text(lib, prog, "nvrtcGetPTXSize", "nvrtcGetPTX")
        code = b""
        if cubin:
            n = ctypes.c_size_t()
            _check(lib, lib.nvrtcGetCUBINSize(prog, ctypes.byref(n)), "nvrtcGetCUBINSize")
            buf = ctypes.create_string_buffer(n.value)
            _check(lib, lib.nvrtcGetCUBIN(prog, buf), "nvrtcGetCUBIN")
            code = buf.raw
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return log, ptx, code


@functools.lru_cache(maxsize=64)
def compile_source(source: str, options: tuple = (), arch: str = "sm_90", name: str = "kernel.cu") -> Compiled:
    """Compile ``source`` with ``options`` for ``arch`` (``sm_90``: code for the chip, with ``ptxas``
    resources; ``compute_90``: PTX only).  Raises :class:`NvrtcError` with the compiler's log on an error."""
    opts = [*options, f"-arch={arch}"]
    real = arch.startswith("sm_")
    if real:
        opts.append("--ptxas-options=-v")
    log, ptx, cubin = _compile_once(source, name, opts, real)
    return Compiled(arch=arch, log=log, ptx=ptx, params=ptx_params(ptx),
                    resources=ptxas_resources(log) if real else {}, cubin=cubin)


def _tool(name: str) -> str | None:
    for root in _nvidia_roots():
        for path in sorted(glob.glob(os.path.join(root, "*", "bin", name)), reverse=True):
            if os.path.isfile(path):
                if not os.access(path, os.X_OK):     # wheels may unpack without the executable bit
                    try:
                        os.chmod(path, 0o755)
                    except OSError:
                        continue
                return path
    return shutil.which(name)


def sass(cubin: bytes) -> str | None:
    """The machine code of ``cubin`` as text (``cuobjdump -sass``), or None without cuobjdump and nvdisasm."""
    cuobjdump, nvdisasm = _tool("cuobjdump"), _tool("nvdisasm")
    if cuobjdump is None or nvdisasm is None:
        return None
    env = {**os.environ, "PATH": os.path.dirname(nvdisasm) + os.pathsep + os.environ.get("PATH", "")}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        r = subprocess.run([cuobjdump, "-sass", path], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise NvrtcError(f"cuobjdump -sass failed: {r.stderr.strip()}")
    return r.stdout


def sass_by_function(text: str) -> dict[str, list[str]]:
    """Per function of a ``cuobjdump -sass`` listing, its instructions' opcodes with modifiers
    (``FFMA``, ``ATOMS.CAST.SPIN.64``, …)."""
    out: dict[str, list[str]] = {}
    cur = None
    for line in text.splitlines():
        m = re.search(r"Function : (\w+)", line)
        if m:
            cur = out.setdefault(m.group(1), [])
            continue
        m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T\d]\s+)?([A-Z][A-Z0-9_.]*)", line)
        if m and cur is not None:
            cur.append(m.group(1))
    return out


_ENTRY = re.compile(r"\.entry\s+(\w+)\s*\(([^)]*)\)", re.S)
_PARAM = re.compile(r"\.param\s+(?:\.align\s+\d+\s+)?\.(\w+)\s+\w+")


def ptx_params(ptx: str) -> dict[str, list[str]]:
    """Per ``.entry`` of the PTX, its parameters' PTX types (``u64`` for a pointer or ``long long``, ``u32``
    for ``int``, ``f32``, ``f64``)."""
    return {m.group(1): _PARAM.findall(m.group(2)) for m in _ENTRY.finditer(ptx)}


_FUNC = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")


def ptxas_resources(log: str) -> dict[str, KernelResources]:
    """Per kernel, ``ptxas -v``'s registers, shared memory, stack frame and spills."""
    out = {}
    blocks = _FUNC.split(log)
    # split gives [pre, name, arch, text, name, arch, text, ...]
    for i in range(1, len(blocks) - 2, 3):
        name, text = blocks[i], blocks[i + 2]

        def num(pattern: str) -> int:
            m = re.search(pattern, text)
            return int(m.group(1)) if m else 0

        regs = re.search(r"Used (\d+) registers", text)
        if regs is None:
            raise NvrtcError(f"ptxas reported no register count for {name}:\n{text}")
        out[name] = KernelResources(registers=int(regs.group(1)), smem=num(r"(\d+) bytes smem"),
                                    stack=num(r"(\d+) bytes stack frame"),
                                    spill_stores=num(r"(\d+) bytes spill stores"),
                                    spill_loads=num(r"(\d+) bytes spill loads"))
    return out
