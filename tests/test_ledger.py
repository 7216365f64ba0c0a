"""The machine's memory ledger (gpuvalid.ledger): a section that would not fit beside what other gpuvalid
processes hold waits for them, first come first served, and refuses or falls back after the longest wait;
claims of ended processes are dropped.  Other processes are real ones (a sleeping Python, or one that holds
a claim through the ledger itself); their claims are written as such a process would write them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager

import pytest

from gpuvalid import ledger, memory
from gpuvalid.context import MapContext
from gpuvalid.runner import run_section
from tests.test_memory import CPU, FakeGpu, blob_map

GIB = 2 ** 30
MASK = ("gpuvalid.analyses.mask", "0.b")


@contextmanager
def sleeper():
    """A live process that allocates nothing (its claims are fabricated)."""
    p = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(120)"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"        # started: its resident memory no longer grows
        yield p.pid
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


def claim(d, pid, need, kind="host", state="hold", since=None, rss0=None):
    """Write the claim that process ``pid`` would write (``rss0``: its resident bytes then; default now)."""
    rss0 = ledger.rss_of(pid) if rss0 is None else rss0
    ledger._write(d, ledger.Claim(pid, kind, int(need), int(rss0 or 0), time.time() if since is None else since,
                                  state))


def test_alone_it_never_waits(tmp_path):
    with ledger.hold("host", 5 * GIB, lambda o: 1 - o, d=tmp_path) as h:   # does not fit, but nobody else holds
        assert (h.waited_s < 0.5, h.others_bytes, h.timed_out) == (True, 0, False)
        assert [c.state for c in ledger.claims(tmp_path)] == ["hold"]
    assert ledger.claims(tmp_path) == []                               # released


def test_a_section_that_fits_beside_the_others_goes_ahead(tmp_path):
    with sleeper() as pid:
        claim(tmp_path, pid, 10 * GIB)
        with ledger.hold("host", 1 * GIB, lambda o: 12 * GIB - o, d=tmp_path, max_wait_s=5) as h:
            assert h.waited_s < 0.5
            assert 9.9 * GIB < h.others_bytes <= 10 * GIB               # the sleeper grew by a few kB at most
        # another kind (a GPU) is not held by a host claim
        with ledger.hold("cuda:0", 11 * GIB, lambda o: 12 * GIB - o, d=tmp_path, max_wait_s=5) as h:
            assert (h.others_bytes, h.waited_s < 0.5) == (0, True)


def test_what_a_holder_already_allocated_is_not_counted_twice(tmp_path):
    """The holder's resident growth since its claim is in MemAvailable already: only the rest is outstanding."""
    with sleeper() as pid:
        rss = ledger.rss_of(pid)
        if rss is None:
            pytest.skip("no /proc/<pid>/statm on this system: whole claims count")
        claim(tmp_path, pid, rss + 64 * 2 ** 20, rss0=0)        # it has allocated all but 64 MiB of it
        with ledger._locked(tmp_path):
            (c,) = ledger.claims(tmp_path)
        assert 56 * 2 ** 20 < ledger.outstanding(c) <= 64 * 2 ** 20
        claim(tmp_path, pid, 64 * 2 ** 20, kind="cuda:0", rss0=0)  # a device claim always counts whole
        with ledger._locked(tmp_path):
            (c,) = ledger.claims(tmp_path)
        assert ledger.outstanding(c) == 64 * 2 ** 20


def test_claims_of_ended_processes_are_dropped(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    claim(tmp_path, p.pid, 100 * GIB, rss0=0)
    z = subprocess.Popen([sys.executable, "-c", "pass"])       # ended, not yet reaped: a zombie
    t0 = time.monotonic()
    while ledger.rss_of(z.pid) not in (None, 0) and time.monotonic() - t0 < 30:
        time.sleep(0.02)
    claim(tmp_path, z.pid, 100 * GIB, rss0=0)
    (tmp_path / "claim-123.json").write_text("{not json")
    with ledger.hold("host", 1 * GIB, lambda o: 2 * GIB - o, d=tmp_path, max_wait_s=5) as h:
        assert (h.others_bytes, h.waited_s < 0.5) == (0, True)
    assert sorted(f.name for f in tmp_path.glob("claim-*")) == []
    z.wait()


def test_it_waits_until_the_other_process_releases(tmp_path):
    """A real second process holds 10 GiB through the ledger for 1.5 s; 4 GiB more do not fit in 12 GiB."""
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from gpuvalid import ledger
        with ledger.hold("host", 10 * 2 ** 30, lambda o: 12 * 2 ** 30 - o, d=Path({str(tmp_path)!r})):
            Path({str(tmp_path / "holding")!r}).touch()
            time.sleep(1.5)
    """)
    p = subprocess.Popen([sys.executable, "-c", script])
    try:
        t0 = time.monotonic()
        while not (tmp_path / "holding").exists():
            assert time.monotonic() - t0 < 60 and p.poll() is None, "the holder did not start"
            time.sleep(0.02)
        with ledger.hold("host", 4 * GIB, lambda o: 12 * GIB - o, d=tmp_path, max_wait_s=60, poll_s=0.05) as h:
            assert p.poll() is not None or not any(c.state == "hold" and c.pid == p.pid
                                                   for c in ledger.claims(tmp_path))
            assert 0.5 < h.waited_s < 30 and (h.others_bytes, h.timed_out) == (0, False)
    finally:
        p.kill()
        p.wait()


def test_first_come_first_served(tmp_path):
    """A process waiting before us for 6 GiB keeps its room: our 2 GiB wait although they fit beside the holder."""
    with sleeper() as holder, sleeper() as waiter:
        claim(tmp_path, holder, 8 * GIB)
        claim(tmp_path, waiter, 6 * GIB, state="wait", since=time.time() - 10)
        with ledger.hold("host", 2 * GIB, lambda o: 12 * GIB - o, d=tmp_path, max_wait_s=0.3, poll_s=0.05) as h:
            assert h.timed_out and 13.9 * GIB < h.others_bytes <= 14 * GIB
        # a waiter who came after us does not hold us back
        claim(tmp_path, waiter, 6 * GIB, state="wait", since=time.time() + 10)
        with ledger.hold("host", 2 * GIB, lambda o: 12 * GIB - o, d=tmp_path, max_wait_s=5) as h:
            assert (h.timed_out, h.waited_s < 0.5) == (False, True)


def test_disabled_or_unusable_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(ledger.ENV_LEDGER, "off")
    assert ledger.ledger_dir() is None
    monkeypatch.setenv(ledger.ENV_LEDGER, str(tmp_path / "sub" / "ledger"))
    assert ledger.ledger_dir() == tmp_path / "sub" / "ledger"
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(ledger.ENV_LEDGER, str(tmp_path / "file"))
    assert ledger.ledger_dir() is None
    with ledger.hold("host", GIB, lambda o: -o) as h:     # no ledger: nothing to wait for
        assert h.others_bytes == 0


def machine_with(monkeypatch, room):
    """A machine whose kernel reports ``room`` bytes available and no cgroup limit."""
    monkeypatch.setattr(memory, "_meminfo_available", lambda: room)
    monkeypatch.setattr(memory, "_cgroup_room", lambda: None)
    monkeypatch.delenv(memory.ENV_HOST_BUDGET, raising=False)


def test_cpu_section_refused_when_other_processes_hold_the_room(tmp_path, monkeypatch):
    """With 2 GiB available and 1.9 GiB held by another process, 0.b waits the longest wait, then says why."""
    monkeypatch.setenv(ledger.ENV_LEDGER, str(tmp_path))
    monkeypatch.setattr(ledger, "MAX_WAIT_S", 0.4)
    monkeypatch.setattr(ledger, "POLL_S", 0.05)
    machine_with(monkeypatch, 2 * GIB)
    V = blob_map()
    with sleeper() as pid:
        claim(tmp_path, pid, 1.9 * GIB)
        res = run_section(*MASK, "Mask analysis", MapContext(CPU, V, 1.5, 0.3, 6.0))
    assert res.status == "not_measured"
    assert res.reason.startswith("it needs about 0.25 GiB of host memory (estimate), and 0.10 GiB are available on "
                                 "this machine, 1.90 GiB more being held by other gpuvalid processes (waited 0 s)")
    # once it has gone, the section runs
    assert run_section(*MASK, "Mask analysis", MapContext(CPU, V, 1.5, 0.3, 6.0)).status in ("ok", "warnings")


def test_other_processes_do_not_shrink_this_processes_own_budget(tmp_path, monkeypatch):
    """$GPUVALID_HOST_BUDGET caps this process alone: others' claims come off the machine's room only."""
    monkeypatch.setenv(ledger.ENV_LEDGER, str(tmp_path))
    machine_with(monkeypatch, 100 * GIB)
    monkeypatch.setenv(memory.ENV_HOST_BUDGET, str(memory.rss_bytes() + 2 * GIB))
    with sleeper() as pid:
        claim(tmp_path, pid, 50 * GIB)
        assert 1.9 * GIB < memory.host_available_bytes(50 * GIB) <= 2 * GIB
        assert memory.host_available_bytes(99 * GIB) == 1 * GIB
        res = run_section(*MASK, "Mask analysis", MapContext(CPU, blob_map(), 1.5, 0.3, 6.0))
    assert res.status in ("ok", "warnings") and not res.blocks[0].startswith("*Waited")


def test_cpu_section_runs_after_waiting_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv(ledger.ENV_LEDGER, str(tmp_path))
    monkeypatch.setattr(ledger, "MAX_WAIT_S", 60)
    monkeypatch.setattr(ledger, "POLL_S", 0.05)
    machine_with(monkeypatch, 2 * GIB)
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.3)"])
    try:
        claim(tmp_path, p.pid, 2 * GIB - 2 ** 20)
        res = run_section(*MASK, "Mask analysis", MapContext(CPU, blob_map(), 1.5, 0.3, 6.0))
    finally:
        p.kill()
        p.wait()
    assert res.status in ("ok", "warnings")
    assert res.blocks[0].startswith("*Waited ") and "other gpuvalid processes on this machine held" in res.blocks[0]
    assert 1.0 <= res.to_json()["memory_wait_s"] < 30


def test_device_section_falls_back_when_other_processes_hold_the_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv(ledger.ENV_LEDGER, str(tmp_path))
    monkeypatch.setattr(ledger, "MAX_WAIT_S", 0.3)
    monkeypatch.setattr(ledger, "POLL_S", 0.05)
    be = FakeGpu(free=4 * GIB + memory.RESERVE_BYTES)
    with sleeper() as pid:
        claim(tmp_path, pid, 4 * GIB - 2 ** 20, kind="cuda:0")      # the host is free: the fallback runs
        res = run_section(*MASK, "Mask analysis", MapContext(be, blob_map(), 1.5, 0.3, 6.0))
    assert res.status in ("ok", "warnings")
    assert res.values["device"].startswith("cpu (fallback: needs ")
    assert res.values["device"].endswith(" beside the 4.00 GiB that other gpuvalid processes held)")


def test_device_section_waits_for_the_other_process_on_its_gpu(tmp_path, monkeypatch):
    """The GPU's free memory is taken by another gpuvalid process for 1.3 s: the section waits, then runs there."""
    monkeypatch.setenv(ledger.ENV_LEDGER, str(tmp_path))
    monkeypatch.setattr(ledger, "MAX_WAIT_S", 60)
    monkeypatch.setattr(ledger, "POLL_S", 0.05)
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.3)"])

    class SharedGpu(FakeGpu):
        def free_memory_bytes(self):                            # nothing free while the other process runs
            return memory.RESERVE_BYTES + (0 if p.poll() is None else 4 * GIB)

    try:
        claim(tmp_path, p.pid, 4 * GIB, kind="cuda:0")
        res = run_section(*MASK, "Mask analysis", MapContext(SharedGpu(0), blob_map(), 1.5, 0.3, 6.0))
    finally:
        p.kill()
        p.wait()
    assert res.status in ("ok", "warnings") and "device" not in res.values
    assert res.blocks[0].startswith("*Waited ")
    assert res.estimated_device_bytes < 4 * GIB
