"""How many CUDA devices this process may use, without importing CuPy or creating a CUDA context.

``CUDA_VISIBLE_DEVICES`` when set (what dask-cuda also reads), else NVML (``pynvml``), else
``nvidia-smi -L``; None when none of these answers (the count is then unknown and nothing is clamped).
"""

from __future__ import annotations

import os
import shutil
import subprocess


def _nvml_count() -> int | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


def _smi_count() -> int | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        r = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    return sum(line.startswith("GPU ") for line in r.stdout.splitlines())


def visible_gpu_ids(env=os.environ) -> list[str] | None:
    """Ids of the visible GPUs as CUDA_VISIBLE_DEVICES would name them ('0', '1' … or UUIDs)."""
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return [x.strip() for x in cvd.split(",") if x.strip()]
    n = _nvml_count()
    if n is None:
        n = _smi_count()
    return None if n is None else [str(i) for i in range(n)]
