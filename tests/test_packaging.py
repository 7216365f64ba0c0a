"""The wheel built from the repository ships every raw CUDA kernel source, and the installed package
(not the source tree) finds them: ``pip wheel . --no-deps``, install into a fresh virtual environment
(not editable, no dependencies), look every ``kernels/*.cu`` up through :mod:`gpuvalid.backend`."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KERNELS = sorted(p.name for p in (REPO / "kernels").glob("*.cu"))

pytestmark = pytest.mark.skipif(importlib.util.find_spec("setuptools") is None,
                                reason="setuptools is needed to build the wheel (pip install -e '.[dev]')")


def _copy_sources(dst: Path) -> Path:
    """The files a wheel is built from (no build/ or egg-info left behind in the checkout)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, dst / name)
    for name in ("gpuvalid", "kernels"):
        shutil.copytree(REPO / name, dst / name, ignore=ignore)
    return dst


def _deps_dir(dst: Path) -> Path:
    """Links to the installed numpy and scipy (what ``import gpuvalid.backend`` needs), nothing else."""
    dst.mkdir()
    for mod in ("numpy", "scipy"):
        spec = importlib.util.find_spec(mod)
        pkg = Path(spec.origin).parent
        for p in pkg.parent.iterdir():
            if p.name == mod or p.name == f"{mod}.libs" or p.name.startswith(f"{mod}-") and p.suffix == ".dist-info":
                os.symlink(p, dst / p.name)
    return dst


def test_wheel_ships_and_finds_every_kernel(tmp_path):
    assert KERNELS, "no kernels/*.cu in the checkout"
    (tmp_path / "src").mkdir()
    src = _copy_sources(tmp_path / "src")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(wheels)], check=True, cwd=tmp_path)
    (whl,) = wheels.glob("gpuvalid-*.whl")
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
    missing = [k for k in KERNELS if f"gpuvalid/kernels/{k}" not in names]
    assert not missing, f"wheel lacks kernel sources {missing}"
    # every subpackage of the source tree is in the wheel (setup.py's package list)
    pkgs = {str(p.parent.relative_to(REPO)) for p in (REPO / "gpuvalid").rglob("__init__.py")}
    assert {p for p in pkgs if f"{p}/__init__.py" not in names} == set()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                    "-q", str(whl)], check=True, cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GPUVALID_KERNELS", "PYTHONHOME")}
    env["PYTHONPATH"] = str(_deps_dir(tmp_path / "deps"))
    code = ("import sys, gpuvalid, gpuvalid.backend as b\n"
            "print(gpuvalid.__file__)\n"
            "for k in sys.argv[1:]: print(b.find_kernel_source(k))\n")
    out = subprocess.run([str(py), "-c", code, *KERNELS], check=True, capture_output=True, text=True,
                         cwd=tmp_path, env=env).stdout.split()
    site = venv.resolve()
    assert Path(out[0]).resolve().is_relative_to(site), f"imported gpuvalid from {out[0]}, not the wheel"
    for k, p in zip(KERNELS, out[1:]):
        p = Path(p).resolve()
        assert p.is_relative_to(site) and p.parent.name == "kernels" and p.name == k
        assert p.read_text() == (REPO / "kernels" / k).read_text()


def test_source_checkout_finds_every_kernel():
    from gpuvalid.backend import find_kernel_source

    for k in KERNELS:
        assert find_kernel_source(k).resolve() == (REPO / "kernels" / k).resolve()


def test_start_up_imports_are_lazy():
    """``gpuvalid --help`` loads no NumPy/SciPy/torch/matplotlib/CuPy; the backend module no SciPy."""
    code = ("import sys, gpuvalid.cli; a = set(sys.modules)\n"
            "import gpuvalid.backend; b = set(sys.modules)\n"
            "heavy = ('numpy', 'scipy', 'torch', 'matplotlib', 'cupy', 'dask')\n"
            "print(' '.join(m for m in heavy if m in a)); print(' '.join(m for m in heavy if m in b))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=REPO).stdout.split("\n")
    assert out[0] == "", f"gpuvalid.cli imports {out[0]}"
    assert out[1] == "numpy", f"gpuvalid.backend imports {out[1]}"
