"""Per-run spool folders for inflated maps, removed on exit and, after a crash, by the next run.

A batch run inflates ``.map.gz`` files into ``<base>/gpuvalid-run-<pid>-<random>/`` where ``<base>``
is ``--spool DIR`` or ``/dev/shm/gpuvalid-spool-<uid>`` (RAM; the temporary folder when /dev/shm is
absent).  The run holds an exclusive ``flock`` on the folder's ``.lock`` file for its lifetime; the
kernel drops that lock when the process ends in any way (SIGKILL included).  Every run starts by
removing the ``gpuvalid-run-*`` folders of ``<base>`` whose lock it can take (their run is gone), so
files left by a killed run never accumulate, and ends by removing its own folder.

The local runner's worker processes use no POSIX named semaphores (:mod:`.pool`), but Dask's
(multiprocessing queues in its nannies and workers) do, and a process group killed with SIGKILL
leaves them in ``/dev/shm``.  :func:`record_semaphores` writes the names the run's processes have
mapped into the run folder; cleaning a dead run's folder unlinks those (and only those) names.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

RUN_PREFIX = "gpuvalid-run-"
NEW_PREFIX = ".gpuvalid-new-"
LOCK_NAME = ".lock"
LEGACY = re.compile(r"^EMD-\d+-.*\.mrc$")  # spool files of versions without per-run folders
STALE_S = 3600.0                           # age after which unlocked leftovers without a lock go
SEM_LIST = "semaphores"                    # names of the POSIX semaphores mapped by the run's processes
SEM_NAME = re.compile(r"^sem\.mp-[A-Za-z0-9_-]+$")
SHM = Path("/dev/shm")


def _descendants(pid: int) -> set[int]:
    parent: dict[int, int] = {}
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return set()
    for d in entries:
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parent.items() if pp == p} - out
        todo.extend(kids)
        out |= kids
    return out


def mapped_semaphores(pids) -> set[str]:
    """Names (``sem.mp-…``) of the POSIX named semaphores that the processes ``pids`` have mapped."""
    names: set[str] = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as fh:
                for line in fh:
                    if "/dev/shm/sem." in line:
                        n = line.split()[-1].rsplit("/", 1)[-1]
                        if SEM_NAME.match(n):
                            names.add(n)
        except OSError:
            continue
    return names


def record_semaphores(run_dir: str | Path) -> int:
    """Add the semaphores mapped by this process and its descendants to ``run_dir/semaphores``."""
    run_dir = Path(run_dir)
    f = run_dir / SEM_LIST
    try:
        known = set(f.read_text().split()) if f.exists() else set()
    except OSError:
        known = set()
    names = mapped_semaphores({os.getpid()} | _descendants(os.getpid()))
    if names - known:
        try:
            tmp = run_dir / (SEM_LIST + ".tmp")
            tmp.write_text("\n".join(sorted(known | names)) + "\n")
            os.replace(tmp, f)
        except OSError:
            pass
    return len(known | names)


def _unlink_semaphores(run_dir: Path) -> None:
    try:
        names = (run_dir / SEM_LIST).read_text().split()
    except OSError:
        return
    for n in names:
        if SEM_NAME.match(n):
            try:
                (SHM / n).unlink()
            except OSError:
                pass


def default_base() -> Path:
    """Return the default spool base, ``/dev/shm/gpuvalid-spool-<uid>`` (RAM), else in the temporary folder."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"gpuvalid-spool-{os.getuid()}"


def _try_lock(path: Path) -> int | None:
    """Return an fd holding an exclusive lock on ``path`` (None when another process holds it)."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def clean_stale(base: Path) -> list[Path]:
    """Remove the spool folders of runs that have ended (their lock is free); returns what went."""
    base = Path(base)
    removed: list[Path] = []
    try:
        children = list(base.iterdir())
    except OSError:
        return removed
    default = base.name == default_base().name
    for p in children:
        try:
            if p.name.startswith(RUN_PREFIX) and p.is_dir():
                lock = p / LOCK_NAME
                if lock.exists():
                    fd = _try_lock(lock)
                    if fd is None:
                        continue  # a live run
                    try:
                        _unlink_semaphores(p)
                        shutil.rmtree(p, ignore_errors=True)
                    finally:
                        os.close(fd)
                elif _age(p) > STALE_S:
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    continue
                removed.append(p)
            elif p.name.startswith(NEW_PREFIX) and p.is_dir() and _age(p) > STALE_S:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
            elif default and LEGACY.match(p.name) and p.is_file() and _age(p) > STALE_S:
                p.unlink(missing_ok=True)  # only in gpuvalid's own default folder
                removed.append(p)
        except OSError:
            continue
    return removed


class RunSpool:
    """The spool folder of this run (``path``), locked while the run lives; use as a context manager."""

    def __init__(self, base: str | Path | None = None):
        self.base = Path(base) if base else default_base()
        self.path: Path | None = None
        self._fd: int | None = None
        self.removed: list[Path] = []

    def open(self) -> Path:
        """Remove the folders of ended runs under ``base``, then create and lock this run's; return it.

        Raises
        ------
        InputError
            When ``base`` cannot be created or is not a folder.
        """
        try:
            self.base.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from ..errors import InputError
            raise InputError(f"cannot create the spool folder {self.base}: {exc.strerror or exc}") from None
        if not self.base.is_dir():
            from ..errors import InputError
            raise InputError(f"spool {self.base} is not a folder")
        self.removed = clean_stale(self.base)
        # create under a temporary name, lock, then rename: a cleaner never sees an unlocked run folder
        tmp = Path(tempfile.mkdtemp(prefix=NEW_PREFIX, dir=self.base))
        self._fd = _try_lock(tmp / LOCK_NAME)
        final = self.base / f"{RUN_PREFIX}{os.getpid()}-{tmp.name[len(NEW_PREFIX):]}"
        os.rename(tmp, final)
        self.path = final
        return final

    def close(self) -> None:
        """Remove this run's folder and release its lock."""
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunSpool":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
