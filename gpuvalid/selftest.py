"""``gpuvalid selftest [--device cuda:0]``: check a new GPU node against the CPU path.

A deterministic synthetic map (a right-handed four-helix bundle of Gaussian atoms, :mod:`gpuvalid.simulate`,
low-passed to 4 Å, with coloured noise; no files needed) goes through every Level 0 section, and two half maps
made of it (independent coloured noise added to each, their mean the primary map) through every Level 1
section, on the chosen device and on the CPU; the numbers are compared within the tolerances of the
GPU-vs-CPU tests and a table shows, per section, the CPU and device seconds, their ratio, the device's peak
memory and the agreement.  The exit code is 1 when any section disagrees (status, warnings count or a number
out of tolerance), 2 on errors.  With ``--device cpu`` the CPU is compared with itself (one run, trivially in
agreement).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .backend import Backend

#: (relative, absolute) tolerance per section: the GPU-vs-CPU tests' (mask sections 1e-5 relative,
#: float64 reductions on both; 0.e network/monogenic 1e-3; 0.f per-voxel B within 0.5 Å²; 0.g fractions)
TOLERANCE = {
    "0.a": (1e-5, 1e-9), "0.b": (1e-5, 1e-9), "0.c": (1e-5, 1e-9), "0.d": (1e-5, 1e-6),
    "0.e": (1e-3, 1e-3), "0.f": (1e-3, 0.5), "0.g": (1e-3, 1e-3), "0.h": (1e-3, 1e-4),
}
# Level 1: every number within rel 1e-3 / abs 1e-6 (the end-to-end GPU test's); 1.b draws its permutations from
# the device's generator (Monte-Carlo p-values, equal in distribution, not in bits): only its status, warnings
# and FDR-FSC resolution are compared, the latter within one shell, as the GPU test's (shell 13 of the
# bundle's halves, 3.3 Å: a shell is 8 % of the resolution)
TOLERANCE.update({sid: (1e-3, 1e-6) for sid in ("1.a", "1.c", "1.d", "1.e", "1.f", "1.g", "1.h")})
TOLERANCE["1.b"] = (0.1, 1e-6)
COMPARED_KEYS = {"1.b": ("fdr_fsc_A",)}
HOW = ("device", "engine")   # values that say how a section ran (device, fallback, 1.c's engine), not what it found
SEED = 20240601
HALF_NOISE = 0.7       # σ of each half map's added noise, × the σ of the synthetic map


def _helix_atoms(n_res: int, axis_xy: tuple, z0: float, up: bool):
    """Backbone-like atoms (N, CA, C, O, CB) of an ideal right-handed α-helix along z (Å)."""
    # (radius Å, phase offset °, rise offset Å, element) per atom of a residue, 100° and 1.5 Å per residue
    geom = [(1.55, -28.0, -0.8, "N"), (2.3, 0.0, 0.0, "C"), (1.6, 28.0, 0.9, "C"), (2.0, 40.0, 2.0, "O"),
            (3.3, -10.0, -0.6, "C")]
    xyz, el = [], []
    for i in range(n_res):
        for r, ph, dz, e in geom:
            a = math.radians(100.0 * i + ph)
            z = 1.5 * i + dz
            if not up:  # an antiparallel helix, still right-handed: rotate by 180° about x
                xyz.append((axis_xy[0] + r * math.cos(a), axis_xy[1] - r * math.sin(a), z0 - z))
            else:
                xyz.append((axis_xy[0] + r * math.cos(a), axis_xy[1] + r * math.sin(a), z0 + z))
            el.append(e)
    return xyz, el


def synthetic_map(voxel_size: float = 1.2, resolution: float = 4.0, seed: int = SEED, helices: int = 4,
                  n_res: int = 18):
    """``(V, voxel_size, threshold, resolution)``: a helix bundle map, the same for a given ``seed``."""
    import numpy as np

    from .simulate import filters
    from .simulate.density import atom_density
    from .simulate.structure import Atoms

    xyz, el = [], []
    for h in range(helices):
        a = 2 * math.pi * h / helices
        x, e = _helix_atoms(n_res, (7.0 * math.cos(a), 7.0 * math.sin(a)), 0.0 if h % 2 == 0 else 1.5 * n_res,
                            up=(h % 2 == 0))
        xyz += x
        el += e
    n = len(xyz)
    zmap = {"C": 6, "N": 7, "O": 8}
    atoms = Atoms(np.asarray(xyz, float), np.asarray(el), np.asarray([zmap[e] for e in el], float),
                  np.asarray(["X"] * n), np.asarray([("A", i, "") for i in range(n)], dtype=object),
                  np.asarray(["ALA"] * n))
    rng = np.random.default_rng(seed)
    V, _ = atom_density(atoms, voxel_size, bfactor_A2=20.0, pad_A=10.0)
    V = filters.lowpass(V, voxel_size, resolution)
    signal_sd = float(V.std())
    V = V + filters.coloured_noise(V.shape, rng, voxel_size, 0.15 * signal_sd, 30.0, nyquist_A=2 * voxel_size)
    t = filters.threshold_for_volume(V, int(n * 17.0 * 1.3 / voxel_size ** 3))
    return np.ascontiguousarray(V, dtype=np.float32), float(voxel_size), float(t), float(resolution)


def synthetic_halves(V, voxel_size: float, seed: int = SEED):
    """Return ``(h1, h2, primary)``: two half maps made of ``V``, and their mean.

    Each half is ``V`` plus independent coloured noise (σ = ``HALF_NOISE``·σ(V)); the same for a given
    ``seed``.
    """
    import numpy as np

    from .level1.simhalves import noise_pair

    n1, n2 = noise_pair(V.shape, voxel_size, np.random.default_rng(seed + 1), HALF_NOISE * float(V.std()))
    h1 = np.ascontiguousarray(V + n1, dtype=np.float32)
    h2 = np.ascontiguousarray(V + n2, dtype=np.float32)
    return h1, h2, (0.5 * (h1 + h2)).astype(np.float32)


@dataclass
class Row:
    """One line of the self-test table: a section's status, CPU and device seconds, peak and agreement.

    ``dev_s`` is None when the device is the CPU; ``peak`` is the device's peak memory in bytes (None on the
    CPU); ``detail`` says how the two runs agree or where they differ.
    """

    sid: str
    title: str
    status: str
    cpu_s: float
    dev_s: float | None
    peak: int | None
    agree: bool
    detail: str


def _flat(v, key=""):
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _flat(x, f"{key}.{k}" if key else str(k))
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            yield from _flat(x, f"{key}[{i}]")
    else:
        yield key, v


def compare(a, b, rel: float, abs_: float) -> tuple[bool, str]:
    """Tell whether two :class:`SectionResult` agree, with a one-line detail.

    They agree with the same status and warning count, equal non-float values, and floats within
    ``|a − b| ≤ max(rel·|a|, abs_)`` (NaN/None on both sides agree); the values in ``HOW`` (where and how the
    section ran) are not compared.
    """
    import numpy as np

    if a.status != b.status:
        return False, f"status {a.status} vs {b.status}"
    if len(a.warnings) != len(b.warnings):
        return False, f"{len(a.warnings)} vs {len(b.warnings)} warnings"
    from .analyses.base import jsonable

    va = {k: v for k, v in _flat(jsonable(a.values)) if k not in HOW}   # arrays → lists, NaN → None
    vb = {k: v for k, v in _flat(jsonable(b.values)) if k not in HOW}
    if set(va) != set(vb):
        return False, f"different values: {sorted(set(va) ^ set(vb))[:3]}"
    worst, worst_key = 0.0, ""
    for k, x in va.items():
        y = vb[k]
        if isinstance(x, (float, np.floating)) or isinstance(y, (float, np.floating)):
            if x is None or y is None:
                if (x is None) != (y is None):
                    return False, f"{k}: {x} vs {y}"
                continue
            x, y = float(x), float(y)
            if math.isnan(x) and math.isnan(y):
                continue
            d = abs(x - y)
            if not d <= max(rel * abs(x), abs_):
                return False, f"{k}: {x:.6g} vs {y:.6g}"
            r = d / max(abs(x), 1e-300)
            if r > worst:
                worst, worst_key = r, k
        elif x != y:
            return False, f"{k}: {x!r} vs {y!r}"
    return True, (f"max rel. diff {worst:.1e} ({worst_key})" if worst_key else "identical")


def _only_keys(res, keys):
    """Return a copy of ``res`` whose values keep only ``keys`` (for the sections compared on a few numbers)."""
    import copy

    out = copy.copy(res)
    out.values = {k: v for k, v in res.values.items() if k in keys}
    return out


def _run_level1(be: Backend, halves, ts, t, R, only=None):
    """Every Level 1 section on ``halves`` = ``(h1, h2, primary)``: ``{sid: (result, seconds)}``."""
    from pathlib import Path

    from .context import MapContext
    from .level1 import SECTIONS1
    from .level1.context import HalfMaps, Level1Context

    h1, h2, P = halves
    ctx0 = MapContext(be, P, ts, t, R, name="selftest halves")
    ctx1 = Level1Context(ctx0, HalfMaps((Path("half1"), Path("half2")), (h1, h2), ("-", "-"), ((ts,) * 3,) * 2))
    out = run_timed(be, ctx1, SECTIONS1, only)
    ctx1.release()
    ctx0.release()
    return out


def run_timed(be: Backend, ctx, sections, only=None, error_log: list[str] | None = None) -> dict:
    """Run each of ``sections`` on ``ctx`` in turn and return ``{sid: (SectionResult, seconds)}``.

    ``sections`` holds ``(sid, title, module)`` (module None: not implemented, skipped); each is timed until
    the device is done.  ``error_log`` (a list) receives the traceback of every internal error.
    """
    from .runner import run_section

    out = {}
    for sid, title, module in sections:
        if module is None or (only and sid not in only):
            continue
        t0 = time.perf_counter()
        res = run_section(module, sid, title, ctx, error_log)
        be.synchronize()
        out[sid] = (res, time.perf_counter() - t0)
    return out


def _run_all(be: Backend, V, ts, t, R, only=None):
    from .analyses import SECTIONS
    from .context import MapContext

    ctx = MapContext(be, V, ts, t, R, name="selftest")
    out = run_timed(be, ctx, SECTIONS, only)
    ctx.release()
    return out


def selftest(device: str = "auto", *, voxel_size: float = 1.2, only: set[str] | None = None,
             console=None) -> tuple[int, list[Row]]:
    """Run the self-test; returns ``(exit code, rows)`` and prints the table on ``console`` (rich)."""
    from .backend import get_backend
    from .memory import check_settings

    check_settings()
    be = get_backend(device)
    cpu = get_backend("cpu")
    V, ts, t, R = synthetic_map(voxel_size)
    halves = synthetic_halves(V, ts)
    if be.is_gpu:  # warm-up: CUDA context, cuFFT plans, kernel compilation are not the sections' time
        _run_all(be, V[:24, :24, :24].copy(), ts, t, R, only={"0.a", "0.d"})
        _run_level1(be, halves, ts, t, R, only)
    ref = {**_run_all(cpu, V, ts, t, R, only), **_run_level1(cpu, halves, ts, t, R, only)}
    got = {**_run_all(be, V, ts, t, R, only), **_run_level1(be, halves, ts, t, R, only)} if be.is_gpu else ref
    rows = []
    for sid, (a, ta) in ref.items():
        b, tb = got[sid]
        rel, abs_ = TOLERANCE.get(sid, (1e-5, 1e-9))
        if sid in COMPARED_KEYS:
            ok, detail = compare(_only_keys(a, COMPARED_KEYS[sid]), _only_keys(b, COMPARED_KEYS[sid]), rel, abs_)
        else:
            ok, detail = compare(a, b, rel, abs_)
        if "device" in b.values:
            detail += f"; {b.values['device']}"
        rows.append(Row(sid, a.title, b.status, ta, tb if be.is_gpu else None,
                        b.peak_device_bytes, ok, detail))
    code = 0 if all(r.agree for r in rows) else 1
    if console is not None:
        _print(console, rows, be, V.shape, ts, R)
    return code, rows


def _print(console, rows, be: Backend, shape, ts, R) -> None:
    from rich.table import Table

    dev = be.info().get("device_name", be.device) if be.is_gpu else "cpu"
    table = Table(title=f"gpuvalid selftest: {be.device} ({dev}) vs cpu, synthetic helix bundle "
                        f"{shape[2]}×{shape[1]}×{shape[0]} at {ts:g} Å, R = {R:g} Å (Level 1: two half maps of it)")
    for c in ("section", "status", "CPU s", f"{be.device} s", "ratio", "peak device MiB", "agreement"):
        table.add_column(c, justify="right" if c.endswith(("s", "MiB", "ratio")) else "left")
    for r in rows:
        ratio = f"{r.cpu_s / r.dev_s:.1f}×" if r.dev_s else "—"
        peak = f"{r.peak / 2**20:.0f}" if r.peak is not None else "—"
        mark = "[green]agrees[/]" if r.agree else "[bold red]DIFFERS[/]"
        table.add_row(f"{r.sid} {r.title}", r.status, f"{r.cpu_s:.2f}",
                      f"{r.dev_s:.2f}" if r.dev_s is not None else "—", ratio, peak, f"{mark} {r.detail}")
    console.print(table)
    if not be.is_gpu:
        console.print("The device is the CPU: the CPU results are compared with themselves and trivially "
                      "agree; run with --device cuda:0 on a GPU node.")
    bad = [r.sid for r in rows if not r.agree]
    console.print(f"[bold red]{len(bad)} section(s) disagree: {', '.join(bad)}[/]" if bad else
                  f"[bold green]All {len(rows)} sections agree[/] within the tolerances of the GPU tests.")


def register(app) -> None:
    """Add the ``selftest`` command to the Typer ``app``."""
    import typer

    @app.command("selftest")
    def selftest_command(
        device: str = typer.Option("auto", "--device", "-d", help="Device to test: cuda:N, auto or cpu."),
        voxel_size: float = typer.Option(1.2, "--voxel-size", help="Voxel size (Å) of the synthetic map "
                                         "(smaller: a larger map)."),
    ) -> None:
        """Run every section on a synthetic map (and its half maps) on DEVICE and on the CPU and compare."""
        from rich.console import Console

        from .errors import GpuvalidError

        console = Console()
        try:
            code, _ = selftest(device, voxel_size=voxel_size, console=console)
        except GpuvalidError as exc:
            Console(stderr=True).print(f"[bold red]gpuvalid: error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None   # the error is already printed as one line
        raise typer.Exit(code)
