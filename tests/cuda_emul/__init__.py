"""Build a raw CUDA source of ``kernels/`` for the CPU (``cuda_cpu.h``), to run its kernels through ctypes.

:func:`build` appends a launcher file (``extern "C"`` wrappers calling ``cuda_emul_launch``) to the kernel
source and compiles both with g++ (C++20: ``std::barrier``, ``std::atomic_ref``); ``tsan=True`` adds
ThreadSanitizer, which reports any shared-memory access that no ``__syncthreads()`` orders.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNELS = HERE.parents[1] / "kernels"


class Unavailable(RuntimeError):
    """No C++20 compiler (or no ThreadSanitizer runtime) on this machine."""


def tsan_runtime() -> str | None:
    """Path of g++'s ThreadSanitizer runtime (to LD_PRELOAD into Python), or None."""
    gxx = shutil.which("g++")
    if gxx is None:
        return None
    r = subprocess.run([gxx, "-print-file-name=libtsan.so"], capture_output=True, text=True)
    p = Path(r.stdout.strip())
    return str(p) if r.returncode == 0 and p.is_absolute() and p.exists() else None


def build(kernel: str, launcher: str, out_dir: Path, tsan: bool = False) -> Path:
    """Shared library of ``kernels/<kernel>`` + ``tests/cuda_emul/<launcher>`` in ``out_dir``.

    Raises
    ------
    Unavailable
        When g++ is missing or cannot compile C++20 (``<barrier>``).
    RuntimeError
        When the kernel source does not compile (the compiler's message).
    """
    gxx = shutil.which("g++")
    if gxx is None:
        raise Unavailable("g++ is not installed")
    src = out_dir / f"{Path(kernel).stem}_emul.cpp"
    src.write_text((KERNELS / kernel).read_text() + "\n" + (HERE / launcher).read_text())
    lib = out_dir / f"{Path(kernel).stem}{'_tsan' if tsan else ''}.so"
    cmd = [gxx, "-std=c++20", "-O1", "-g", "-pthread", "-shared", "-fPIC", "-include", str(HERE / "cuda_cpu.h"),
           "-x", "c++", str(src), "-o", str(lib)] + (["-fsanitize=thread"] if tsan else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        if "barrier" in r.stderr and "No such file" in r.stderr:
            raise Unavailable("g++ has no C++20 <barrier>")
        raise RuntimeError(f"g++ could not compile {kernel} for the CPU:\n{r.stderr[-3000:]}")
    return lib
