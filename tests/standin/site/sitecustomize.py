"""With ``GPUVALID_CUPY_STANDIN=1`` and this folder first on ``PYTHONPATH`` (and the repository root on it),
every Python process, worker processes included, sees the CuPy stand-in of :mod:`tests.standin` as its
CUDA device: how ``bench/device_check.sh --standin`` rehearses the GPU check on a machine without one."""

import os
import sys

if os.environ.get("GPUVALID_CUPY_STANDIN", "") not in ("", "0"):
    try:
        from tests import standin

        standin.install()
    except Exception as exc:  # a rehearsal that cannot install the stand-in must say so, not run on nothing
        sys.stderr.write(f"sitecustomize: the CuPy stand-in is not installed ({type(exc).__name__}: {exc})\n")
