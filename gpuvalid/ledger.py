"""Memory shared by the gpuvalid processes of one machine: claims in one folder, under a file lock.

Before a section allocates, :mod:`gpuvalid.memory` checks what the machine has available.  Two processes
(the compute workers of one batch, batch shards on one node, ``gpuvalid run`` started side by side) can
each see room for their own section, start together and exceed the machine between them: the kernel then
kills one.  So each process writes what its section will allocate (its estimate: host bytes, or device
bytes on one GPU) to a claim file of its own before the section starts, and removes it when the section
ends; reading the others' claims and writing one's own happen under an exclusive ``flock``.

What another holder still has to allocate: on the host, its claim less the growth of its resident memory
since it claimed (``/proc/<pid>/statm``: what it already holds is no longer in ``MemAvailable``), or its
whole claim where that cannot be read; on a GPU its whole claim (another process's memory pool cannot be
read, so this errs on the side of waiting).

A section that does not fit beside the others waits, holding nothing, and polls.  Waiters are served first
come, first served: a later section must leave room for those waiting before it, so a large section is
not overtaken for ever by small ones.  A section goes ahead as soon as it fits, or when no other process
holds or waits before it (the caller's own check then decides), or after ``max_wait_s``: it is then told
what the others hold, and refuses or falls back rather than crash.  Claims of ended processes are removed.

The folder is ``$GPUVALID_MEMORY_LEDGER`` (``off`` disables it), else ``gpuvalid-memory-<uid>`` in
``/dev/shm`` or the temporary folder: every gpuvalid process of one user on one machine (one process-id
namespace).  Without ``fcntl`` (Windows) or a usable folder each process checks alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no ledger
    fcntl = None

__all__ = ["ENV_LEDGER", "MAX_WAIT_S", "Claim", "Hold", "ledger_dir", "hold", "claims", "others_present", "describe",
           "rss_of"]

ENV_LEDGER = "GPUVALID_MEMORY_LEDGER"
POLL_S = 0.25
#: the longest a section waits for memory that other processes hold (a CPU section of a large map runs for
#: minutes; a stopped process's claim must not block the others for ever)
MAX_WAIT_S = 1800.0


@dataclass
class Claim:
    """One process's claim: ``need`` bytes of ``kind`` (``"host"`` or ``"cuda:K"``), held or waited for."""

    pid: int
    kind: str
    need: int
    rss0: int
    since: float
    state: str  # "hold" | "wait"


@dataclass
class Hold:
    """What :func:`hold` found: seconds waited, and what the other processes still had to allocate."""

    waited_s: float = 0.0
    others_bytes: int = 0
    timed_out: bool = False


def ledger_dir(env=None) -> Path | None:
    """Return the ledger folder (created, mode 0700), or None when disabled or unusable."""
    env = os.environ if env is None else env
    if fcntl is None:
        return None
    text = env.get(ENV_LEDGER, "")
    if text.strip().lower() in ("off", "0", "none", "no"):
        return None
    if text:
        d = Path(text)
    else:
        base = Path("/dev/shm") if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) \
            else Path(tempfile.gettempdir())
        d = base / f"gpuvalid-memory-{os.getuid()}"
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not d.is_dir() or not os.access(d, os.W_OK):
            return None
    except OSError:
        return None
    return d


@contextlib.contextmanager
def _locked(d: Path):
    with open(d / "lock", "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    """Return True while process ``pid`` runs (a zombie, ended but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process with that id
        return True
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def rss_of(pid: int | str) -> int | None:
    """Return the resident bytes of process ``pid`` (``"self"``: this one), None where ``/proc`` does not say."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def claims(d: Path) -> list[Claim]:
    """Return the claims of live processes in ``d``, removing those of ended ones; call under the lock."""
    out = []
    for f in d.glob("claim-*.json"):
        try:
            c = Claim(**json.loads(f.read_text()))
        except (OSError, ValueError, TypeError):
            c = None
        if c is None or not _alive(c.pid):
            with contextlib.suppress(OSError):
                f.unlink()
            continue
        out.append(c)
    return out


def outstanding(c: Claim) -> int:
    """Bytes the holder of ``c`` may still allocate (host: its claim less its growth since; device: all)."""
    if c.kind != "host":
        return c.need
    rss = rss_of(c.pid)
    return c.need if rss is None else max(0, c.need - max(0, rss - c.rss0))


def _write(d: Path, c: Claim) -> None:
    tmp = d / f".claim-{c.pid}.tmp"
    tmp.write_text(json.dumps(c.__dict__))
    os.replace(tmp, d / f"claim-{c.pid}.json")


def _remove(d: Path, pid: int) -> None:
    with contextlib.suppress(OSError):
        (d / f"claim-{pid}.json").unlink()


def others_present(kind: str, d: Path | None = None) -> bool:
    """Return True when another live process holds or waits for ``kind`` (then a device section frees its cache)."""
    d = ledger_dir() if d is None else d
    if d is None:
        return False
    try:
        with _locked(d):
            return any(c.pid != os.getpid() and c.kind == kind for c in claims(d))
    except OSError:
        return False


def describe(d: Path | None = None) -> str:
    """Return one line on the ledger: its folder and what live processes hold and wait for (``gpuvalid info``)."""
    d = ledger_dir() if d is None else d
    if d is None:
        return "none (each process checks memory alone)"
    try:
        with _locked(d):
            cs = claims(d)
    except OSError as exc:
        return f"{d} (unreadable: {exc.strerror or type(exc).__name__})"
    held = [c for c in cs if c.state == "hold"]
    text = f"{d}: {len(held)} section(s) holding {sum(c.need for c in held) / 2 ** 30:.2f} GiB"
    return text + f", {len(cs) - len(held)} waiting"


@contextlib.contextmanager
def hold(kind: str, need: int, available, *, max_wait_s: float | None = None, poll_s: float | None = None,
         rss=None, d: Path | None = None):
    """Claim ``need`` bytes of ``kind`` for the ``with`` block, waiting while it does not fit beside the others.

    Parameters
    ----------
    kind : str
        ``"host"`` or ``"cuda:K"``.
    need : int
        The section's estimate (bytes).
    available : callable
        ``available(others)``: the bytes this section may allocate now when other processes still have to
        allocate ``others`` (None: unknown, never wait).
    max_wait_s, poll_s : float, optional
        The longest wait (default :data:`MAX_WAIT_S`), and the interval between looks (:data:`POLL_S`).
    rss : callable, optional
        This process's resident bytes (host claims; others read its growth from it).
    d : Path, optional
        The ledger folder (default :func:`ledger_dir`).

    Yields
    ------
    Hold
        ``others_bytes``: what the other processes still had to allocate when this one went ahead; the caller
        checks ``need`` against ``available(others_bytes)``.
    """
    d = ledger_dir() if d is None else d
    h = Hold()
    if d is None or need <= 0:
        yield h
        return
    me, since, t0 = os.getpid(), time.time(), time.monotonic()
    max_wait_s = MAX_WAIT_S if max_wait_s is None else max_wait_s
    poll_s = POLL_S if poll_s is None else poll_s
    try:
        while True:
            try:
                with _locked(d):
                    others = [c for c in claims(d) if c.pid != me and c.kind == kind]
                    ahead = [c for c in others if c.state == "wait" and (c.since, c.pid) < (since, me)]
                    held = sum(outstanding(c) for c in others if c.state == "hold") + sum(c.need for c in ahead)
                    avail = available(held) if held else None
                    h.waited_s = time.monotonic() - t0
                    h.timed_out = h.waited_s >= max_wait_s
                    go = held == 0 or avail is None or need <= avail or h.timed_out
                    h.others_bytes = held if avail is not None else 0
                    rss0 = int(rss()) if (go and rss is not None and kind == "host") else 0
                    _write(d, Claim(me, kind, int(need), rss0, since, "hold" if go else "wait"))
            except OSError:  # the folder went away or is not writable: check alone
                h.others_bytes = 0
                yield h
                return
            if go:
                break
            time.sleep(poll_s)
        yield h
    finally:
        try:
            with _locked(d):
                _remove(d, me)
        except OSError:
            pass
