"""Live progress of a batch: done / failed / running, maps per minute and ETA (rich).

On a terminal a live bar is drawn; otherwise (SLURM logs) one line is printed per finished entry.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .record import DONE, EntryRecord


class BatchProgress:
    """Progress of a batch: a live rich bar on a terminal, else one printed line per finished entry."""

    def __init__(self, total: int, skipped: int = 0, enabled: bool = True, console: Console | None = None,
                 label: str = "batch"):
        self.total, self.skipped = total, skipped
        self.done = self.failed = self.running = 0
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.t0 = time.monotonic()
        self._progress = None
        self.label = label

    # rates ----------------------------------------------------------------------------------
    @property
    def finished(self) -> int:
        """Entries finished so far (done + failed)."""
        return self.done + self.failed

    @property
    def per_minute(self) -> float:
        """Entries finished per minute since the start."""
        dt = time.monotonic() - self.t0
        return 60.0 * self.finished / dt if dt > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate (None before the first entry finishes)."""
        rate = self.per_minute
        return None if rate <= 0 else 60.0 * (self.total - self.finished) / rate

    def _fields(self) -> dict:
        eta = self.eta_s
        eta_txt = "–" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta)) if eta < 86400 \
            else f"{eta / 86400:.1f} d"
        return dict(done=self.done, failed=self.failed, running=self.running, rate=f"{self.per_minute:.1f}",
                    eta=eta_txt)

    # lifecycle ------------------------------------------------------------------------------
    def __enter__(self):
        if self.live:
            self._progress = Progress(
                TextColumn(f"[bold]{self.label}"), BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("[green]done {task.fields[done]}[/] [red]failed {task.fields[failed]}[/] "
                           "running {task.fields[running]}"),
                TextColumn("{task.fields[rate]} maps/min  ETA {task.fields[eta]}"),
                TimeElapsedColumn(), console=self.console, refresh_per_second=2)
            self._progress.__enter__()
            self._task = self._progress.add_task("batch", total=self.total, **self._fields())
        elif self.enabled:
            self.console.print(f"{self.label}: {self.total} to run, {self.skipped} already done (skipped)")
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._update()
            self._progress.__exit__(*exc)

    def _update(self):
        if self._progress is not None:
            self._progress.update(self._task, completed=self.finished, **self._fields())

    def started(self, emdb_id: str) -> None:
        """Count ``emdb_id`` as running."""
        self.running += 1
        self._update()

    def finished_entry(self, rec: EntryRecord) -> None:
        """Count ``rec`` as done or failed (and print its line when no live bar is drawn)."""
        self.running = max(0, self.running - 1)
        if rec.status == DONE:
            self.done += 1
        else:
            self.failed += 1
        self._update()
        if self.enabled and not self.live:
            s = rec.seconds or {}
            what = "done" if rec.status == DONE else f"FAILED: {rec.reason}"
            self.console.print(f"[{self.finished}/{self.total}] {rec.emdb_id} {what} "
                               f"({s.get('total', 0):.1f} s; {self.per_minute:.1f} maps/min)",
                               highlight=False, markup=False)
