"""Host memory guard of the CPU path (gpuvalid.memory): a section whose host estimate exceeds what the system
(or $GPUVALID_HOST_BUDGET) leaves says "could not be measured" with both numbers before it allocates
anything, on the CPU backend and when a GPU section falls back to the CPU; the other sections still run.
The cgroup reader is checked on fake v1 and v2 hierarchies."""

from __future__ import annotations

import json

import pytest

from gpuvalid import memory
from gpuvalid.context import MapContext, MapInput
from gpuvalid.runner import run_section
from tests.test_memory import CPU, FakeGpu, blob_map

MASK = ("gpuvalid.analyses.mask", "0.b")


def test_environment_caps_the_host_budget(monkeypatch):
    monkeypatch.setenv(memory.ENV_HOST_BUDGET, "1MiB")       # less than this process already holds
    assert memory.host_available_bytes() == 0
    monkeypatch.setenv(memory.ENV_HOST_BUDGET, "1TiB")
    free = memory._meminfo_available()
    got = memory.host_available_bytes()
    assert got is not None and got <= 2 ** 40
    if free is not None:
        assert got <= free
    monkeypatch.setenv(memory.ENV_HOST_BUDGET, "plenty")
    with pytest.raises(ValueError, match=memory.ENV_HOST_BUDGET):
        memory.host_available_bytes()


def test_host_estimate_form(monkeypatch):
    """Per-voxel terms as the device estimate's form, one tile's activations per CPU thread for 0.e's
    network phase, and the larger of 0.e's two phases."""
    shape, ts = (100, 100, 100), 1.742
    nw = memory.working_voxels(shape, ts)
    per = memory.HOST_BYTES_PER_VOXEL
    assert memory.estimate_host_bytes("0.c", shape, ts, 6.6) == memory.HOST_FIXED_BYTES + per["0.c"]["input"] * 10**6
    import sys

    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch") or object())   # loaded: no import cost
    for threads in (1, 16):
        monkeypatch.setattr(memory, "_cpu_threads", lambda threads=threads: threads)
        mono, net = per["0.e"]["phases"]
        want = max(mono["input"] * 10**6,
                   net["input"] * 10**6 + net["work"] * nw + threads * memory.HOST_TILE_BYTES)
        assert memory.estimate_host_bytes("0.e", shape, ts, 6.6) == memory.HOST_FIXED_BYTES + want
    loaded = memory.estimate_host_bytes("0.e", shape, ts, 6.6)
    monkeypatch.delitem(sys.modules, "torch")                  # not loaded yet: its import counts
    assert memory.estimate_host_bytes("0.e", shape, ts, 6.6) == loaded + memory.HOST_TORCH_BYTES
    assert memory.estimate_host_bytes("0.c", shape, ts, 6.6) == memory.HOST_FIXED_BYTES + per["0.c"]["input"] * 10**6
    # no slab discount on the host (the CPU's FFTs take the whole grid)
    big = (768,) * 3
    assert memory.estimate_host_bytes("0.h", big, ts) == (memory.HOST_FIXED_BYTES
                                                           + per["0.h"]["work"] * memory.working_voxels(big, ts))


def test_host_tile_allowance_covers_the_shipped_network():
    pytest.importorskip("torch")
    from gpuvalid.models import infer

    net = infer.load("locres")
    edge = infer.TILE + 2 * (net.receptive_field // 2)
    assert edge ** 3 * infer.activation_bytes_per_voxel(net) <= memory.HOST_TILE_BYTES


def test_cpu_section_beyond_the_host_budget_is_not_measured(monkeypatch):
    monkeypatch.setenv(memory.ENV_HOST_BUDGET, "1MiB")
    V = blob_map()
    res = run_section(*MASK, "Mask analysis", MapContext(CPU, V, 1.5, 0.3, 6.0))
    need = memory.estimate_host_bytes("0.b", V.shape, 1.5, 6.0)
    assert res.status == "not_measured"
    assert res.reason == (f"it needs about {memory.gib(need)} of host memory (estimate), and 0.00 GiB are available "
                          f"with ${memory.ENV_HOST_BUDGET}=1MiB: run it on a machine with more memory or on a GPU")
    monkeypatch.delenv(memory.ENV_HOST_BUDGET)
    assert run_section(*MASK, "Mask analysis", MapContext(CPU, V, 1.5, 0.3, 6.0)).status in ("ok", "warnings")


def test_fallback_that_does_not_fit_the_host_either(monkeypatch):
    """Neither the device (1 MiB free) nor the host (1 MiB budget): not measured, saying both."""
    monkeypatch.setenv(memory.ENV_HOST_BUDGET, "1MiB")
    be = FakeGpu(free=2 ** 20 + memory.RESERVE_BYTES)
    res = run_section(*MASK, "Mask analysis", MapContext(be, blob_map(), 1.5, 0.3, 6.0))
    assert res.status == "not_measured"
    assert res.reason.startswith("it needs ") and " of device memory (estimate), budget 0.00 GiB and on the CPU it " \
        "needs about " in res.reason
    assert res.reason.endswith("run it on a machine with more memory")


def test_whole_run_keeps_the_sections_that_fit(tmp_path, monkeypatch):
    """A host budget between the small sections' estimates and 0.d's: 0.d says why, the others are measured,
    and results.json and the report carry the line."""
    from gpuvalid.pipeline import validate
    from gpuvalid.report import write_report

    V = blob_map(36)
    inp = MapInput(path=tmp_path / "blobs.map", data=V, voxel_size=1.5, threshold=0.3, resolution=6.0,
                   sha256="0" * 64)
    est = {sid: memory.estimate_host_bytes(sid, V.shape, 1.5, 6.0) for sid in ("0.a", "0.b", "0.c", "0.d")}
    assert est["0.d"] > max(est["0.a"], est["0.b"], est["0.c"])
    cap = (est["0.d"] + max(est["0.a"], est["0.b"], est["0.c"])) // 2
    monkeypatch.setattr(memory, "host_available_bytes", lambda others=0: cap - others)
    rep = validate(inp, CPU, tmp_path / "out", figures=False, only={"0.a", "0.b", "0.c", "0.d"})
    assert {s: r.status for s, r in rep.sections.items() if r.status == "not_measured"} == {"0.d": "not_measured"}
    write_report(rep, tmp_path / "out")
    js = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "of host memory (estimate)" in json.dumps(js["sections"]["0.d"])
    assert "of host memory (estimate)" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_cgroup_room(tmp_path, version):
    gib = 2 ** 30
    if version == "v2":
        (tmp_path / "proc").write_text("0::/job_1/step_0\n")
        d = tmp_path / "cg" / "job_1" / "step_0"
        d.mkdir(parents=True)
        (d / "memory.max").write_text(f"{8 * gib}\n")
        (d / "memory.current").write_text(f"{5 * gib}\n")
        (d / "memory.stat").write_text(f"anon {2 * gib}\nfile {3 * gib}\n")
    else:
        (tmp_path / "proc").write_text("5:cpu:/\n4:memory:/slurm/job_1\n0::/\n")
        d = tmp_path / "cg" / "memory" / "slurm" / "job_1"
        d.mkdir(parents=True)
        (d / "memory.limit_in_bytes").write_text(f"{8 * gib}\n")
        (d / "memory.usage_in_bytes").write_text(f"{5 * gib}\n")
        (d / "memory.stat").write_text(f"cache {1 * gib}\ntotal_cache {3 * gib}\n")
    # 8 GiB limit, 5 GiB used of which 3 GiB page cache: 6 GiB of room
    assert memory._cgroup_room(str(tmp_path / "proc"), str(tmp_path / "cg")) == 6 * gib
    (d / ("memory.max" if version == "v2" else "memory.limit_in_bytes")).write_text(
        "max\n" if version == "v2" else f"{2 ** 63 - 4096}\n")
    assert memory._cgroup_room(str(tmp_path / "proc"), str(tmp_path / "cg")) is None   # no limit
    assert memory._cgroup_room(str(tmp_path / "missing"), str(tmp_path / "cg")) is None


@pytest.mark.parametrize("name", [memory.ENV_HOST_BUDGET, memory.ENV_BUDGET])
def test_unreadable_budget_is_one_line_before_the_run(name, tmp_path, monkeypatch, data_dir):
    from typer.testing import CliRunner

    from gpuvalid.cli import app

    monkeypatch.setenv(name, "lots")
    res = CliRunner().invoke(app, ["run", str(data_dir / "emd_5168.map"), "-t", "10", "--device", "cpu",
                                   "--out", str(tmp_path / "o"), "--no-figures"])
    assert res.exit_code == 2
    assert f"{name}: cannot read 'lots' as a size" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_a_section_that_does_not_apply_says_so_before_any_memory_estimate(monkeypatch):
    """No resolution (0.d-0.h) or R > 5 Å (0.h): "does not apply", not "could not be measured", even with no
    host memory and no device memory to spare."""
    from gpuvalid.analyses import SECTIONS

    monkeypatch.setenv(memory.ENV_HOST_BUDGET, "1MiB")
    V = blob_map()
    mods = {sid: mod for sid, _, mod in SECTIONS}
    for be in (CPU, FakeGpu(free=0)):
        for R, sids in ((None, ("0.d", "0.e", "0.f", "0.g", "0.h")), (6.0, ("0.h",))):
            for sid in sids:
                res = run_section(mods[sid], sid, sid, MapContext(be, V, 1.5, 0.3, R))
                assert res.status == "not_applicable", (sid, R, res.reason)
        assert run_section(mods["0.d"], "0.d", "0.d", MapContext(be, V, 1.5, 0.3, 6.0)).status == "not_measured"


def test_without_meminfo_the_physical_memory_bounds_the_host_budget(monkeypatch):
    """macOS has no /proc/meminfo: the machine's physical memory less what the process holds."""
    monkeypatch.setattr(memory, "_meminfo_available", lambda: None)
    monkeypatch.setattr(memory, "_cgroup_room", lambda: None)
    monkeypatch.setattr(memory, "_physical_bytes", lambda: 16 * 2 ** 30)
    monkeypatch.setattr(memory, "rss_bytes", lambda: 2 ** 30)
    assert memory.host_available_bytes() == 15 * 2 ** 30
    monkeypatch.setattr(memory, "_physical_bytes", lambda: None)
    assert memory.host_available_bytes() is None                 # nothing known: no guard
