"""Write ``cupy_api.json``: the public API surface of an installed CuPy (names and call signatures).

The CuPy stand-in (:mod:`tests.standin`) accepts only the names and keyword arguments that real CuPy has, so
a GPU code path that calls something CuPy lacks fails on the CPU too.  CuPy imports without a GPU (only
its device calls need one), so the snapshot is made on any machine with the wheel::

    pip install --target /tmp/cupy_site cupy-cuda13x cuda-pathfinder fastrlock
    PYTHONPATH=/tmp/cupy_site python -m tests.standin.snapshot
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

# stand-in namespace -> real module path (what gpuvalid reaches through ``be.xp``, ``be.ndimage``, ``be._fft``)
MODULES = {
    "cupy": "cupy",
    "cupy.fft": "cupy.fft",
    "cupy.linalg": "cupy.linalg",
    "cupy.random": "cupy.random",
    "cupy.lib.stride_tricks": "cupy.lib.stride_tricks",
    "cupy.cuda": "cupy.cuda",
    "cupy.cuda.runtime": "cupy.cuda.runtime",
    "cupyx.scipy.ndimage": "cupyx.scipy.ndimage",
    "cupyx.scipy.fft": "cupyx.scipy.fft",
}


def _signature(obj):
    """[[name, kind, has_default], ...] or None when CuPy's object has no introspectable signature; ufuncs
    are {"ufunc": nin}."""
    if type(obj).__name__ == "ufunc":
        return {"ufunc": int(obj.nin), "nout": int(obj.nout)}
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    return [[p.name, int(p.kind), p.default is not inspect.Parameter.empty] for p in sig.parameters.values()]


def snapshot() -> dict:
    import importlib

    import cupy

    out = {"cupy_version": cupy.__version__, "modules": {}}
    for key, path in MODULES.items():
        mod = importlib.import_module(path)
        names = {}
        for n in dir(mod):
            if n.startswith("_"):
                continue
            obj = getattr(mod, n)
            if inspect.ismodule(obj):
                names[n] = "module"
            elif inspect.isclass(obj):
                names[n] = "class"
            elif callable(obj):
                names[n] = _signature(obj) or "callable"
            else:
                names[n] = "value"
        out["modules"][key] = names
    nd = {}
    for n in dir(cupy.ndarray):
        if n.startswith("_") and not (n.startswith("__") and n.endswith("__")):
            continue
        nd[n] = _signature(getattr(cupy.ndarray, n)) if callable(getattr(cupy.ndarray, n)) else "value"
    out["ndarray"] = nd
    return out


if __name__ == "__main__":
    p = Path(__file__).with_name("cupy_api.json")
    p.write_text(json.dumps(snapshot(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {p}")
