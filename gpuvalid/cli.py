"""Command line: ``gpuvalid run MAP …`` validates one map; ``gpuvalid info`` shows the compute devices."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .errors import GpuvalidError, InputError, fail, print_error


def _exc_classes(name: str) -> tuple:
    """``name`` from typer's own (vendored) click and from click itself, whichever exist."""
    found = []
    for mod in ("typer.exceptions", "typer._click.exceptions", "click.exceptions"):
        try:
            cls = getattr(__import__(mod, fromlist=[name]), name, None)
        except ImportError:
            cls = None
        if cls is not None and cls not in found:
            found.append(cls)
    return tuple(found)


_NO_ARGS = _exc_classes("NoArgsIsHelpError")
_USAGE = _exc_classes("UsageError")
_CLICK = _exc_classes("ClickException")
_EXIT = _exc_classes("Exit")
_ABORT = _exc_classes("Abort")


class _App(typer.Typer):
    """The Typer app run with one-line errors.

    Click's usage box becomes ``gpuvalid: error: …`` (exit 2), and any exception that escapes a command is an
    "internal error" line, never a traceback (unless ``GPUVALID_DEBUG`` is set).
    """

    def __call__(self, args=None, prog_name: str = "gpuvalid", **kwargs):
        cmd = typer.main.get_command(self)
        try:
            rv = cmd.main(args=args, prog_name=prog_name, standalone_mode=False, **kwargs)
        except _NO_ARGS as exc:
            ctx = getattr(exc, "ctx", None)
            print(ctx.get_help() if ctx is not None else str(exc))
            sys.exit(2)
        except _USAGE as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            print_error(f"{exc.format_message()}{hint}")
            sys.exit(2)
        except _CLICK as exc:
            print_error(exc.format_message())
            sys.exit(getattr(exc, "exit_code", 1) or 1)
        except _EXIT as exc:
            sys.exit(getattr(exc, "exit_code", 0))
        except _ABORT + (KeyboardInterrupt,):
            print_error("interrupted")
            sys.exit(130)
        except GpuvalidError as exc:
            print_error(str(exc))
            sys.exit(2)
        except Exception as exc:
            if os.environ.get("GPUVALID_DEBUG"):
                traceback.print_exc()
            print_error(f"internal error ({type(exc).__name__}: {exc}); set GPUVALID_DEBUG=1 for the traceback")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = _App(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
           help="GPU-first Level 0 validation of cryo-EM density maps.")
console = Console()
err_console = Console(stderr=True)

STATUS_STYLE = {"ok": "green", "warnings": "yellow", "not_measured": "red", "not_applicable": "dim",
                "not_implemented": "dim", "info": "cyan"}



def resolve_map_argument(map_arg: str, archive: Optional[Path], download: bool, base_url: Optional[str],
                         cache_dir: Optional[Path]) -> tuple[Path, Optional[Path]]:
    """Return a file path as given, or an EMDB id (EMD-1234, emd_1234, 1234) resolved by the archive module.

    Raises
    ------
    InputError
        When the argument is empty or has a NUL byte, cannot be accessed, is neither an existing file nor an
        EMDB id, or is an EMDB id without archive support installed.
    """
    from .io.emdb import normalise_emdb_id

    if not map_arg or "\x00" in map_arg:
        raise InputError("no map given" if not map_arg else "the map path contains a NUL byte")
    p = Path(map_arg)
    try:
        if p.exists():
            return p, None
    except OSError as exc:  # a name too long for the file system, …
        raise InputError(f"cannot access {map_arg}: {exc.strerror or type(exc).__name__}") from None
    eid = normalise_emdb_id(map_arg)
    if eid is None:
        raise InputError(f"file not found: {map_arg}")
    try:
        from .archive.resolve import resolve_entry
    except ImportError:
        raise InputError(f"{map_arg} looks like an EMDB id, but archive support is not installed") from None
    return resolve_entry(eid, archive=archive, download=download, base_url=base_url, cache_dir=cache_dir)


def print_summary(report, out_dir: Path | None, formats=("md", "html", "json")) -> None:
    """Print the report's table of sections, its score, and the paths of the report files written.

    The Level 1 sections share one row when none applies for the same reason (no half maps); ``formats``
    lists the report files written to ``out_dir`` (md, html, json); no paths are printed when ``out_dir``
    is None.
    """
    from rich.markup import escape

    from .errors import one_line

    table = Table(title=escape(f"gpuvalid {one_line(report.input.path.name)}"), show_lines=False)
    table.add_column("section")
    table.add_column("analysis")
    table.add_column("status")
    table.add_column("key result")
    from .report.markdown import level1_absent

    absent = level1_absent(report)
    grouped = set(absent[0]) if absent else set()
    for sid, s in report.sections.items():
        if sid in grouped:
            continue
        key = s.key if s.evaluable else ("—" if s.status == "not_implemented" else (s.reason or "")[:80])
        table.add_row(sid, s.title, f"[{STATUS_STYLE.get(s.status, '')}]{s.status_text}[/]", escape(key))
    if absent:  # one row instead of eight identical "does not apply" rows
        table.add_row(f"{absent[0][0]}–{absent[0][-1]}", "Level 1 (half maps)",
                      f"[{STATUS_STYLE['not_applicable']}]does not apply[/]", escape(absent[1][:80]))
    console.print(table)
    console.print(f"Score: [bold]{report.passed} out of {report.evaluable}[/] evaluable items passed "
                  f"({report.seconds:.1f} s on {report.backend.get('device')}).")
    if out_dir is not None:
        labels = {"md": "Report", "html": "HTML", "json": "Results"}
        files = "; ".join(f"{labels[f]}: {out_dir / REPORT_FILES[f]}" for f in ("md", "html", "json") if f in formats)
        console.print(escape(one_line(files)), highlight=False)


@app.command()
def run(
    map: str = typer.Argument(..., help="MRC/CCP4 map (.map, .mrc, .gz, .bz2) or an EMDB id (EMD-1234)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", "-t", help="Contour level (map units)."),
    resolution: Optional[float] = typer.Option(None, "--resolution", "-r", help="Reported resolution (Å)."),
    voxel_size: Optional[float] = typer.Option(None, "--voxel-size", help="Override the voxel size (Å)."),
    header: Optional[Path] = typer.Option(None, "--header", help="EMDB header XML (contour, resolution, spacing)."),
    device: str = typer.Option("auto", "--device", "-d", help="cpu, cuda:N or auto."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Report folder (default reports/<map name>)."),
    force: bool = typer.Option(False, "--force", help="Overwrite a folder that holds another map's report "
                               "(or other files)."),
    max_voxels: Optional[int] = typer.Option(None, "--max-voxels", help="Largest map accepted, in voxels "
                                             "(default 1024³)."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Write PNG figures."),
    save_maps: bool = typer.Option(False, "--save-maps", help="Also write derived maps (MRC)."),
    resample_anisotropic: bool = typer.Option(False, "--resample-anisotropic",
                                              help="Resample anisotropic voxels to the finest spacing."),
    archive: Optional[Path] = typer.Option(None, "--archive", help="Local EMDB mirror (for EMDB ids)."),
    download: bool = typer.Option(False, "--download", help="Download EMDB entries that are not local."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="EMDB archive base URL for --download."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where downloaded entries are kept."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of internal errors."),
    half1: Optional[Path] = typer.Option(None, "--half1", help="Half map 1 (Level 1 runs with both halves)."),
    half2: Optional[Path] = typer.Option(None, "--half2", help="Half map 2 (Level 1 runs with both halves)."),
    formats: str = typer.Option("md,html,json", "--format", help="Report files to write: comma-separated "
                                "md (report.md), html (self-contained report.html), json (results.json)."),
    local_fsc_step: Optional[int] = typer.Option(None, "--local-fsc-step", min=1, help="1.c: local FSC every "
                                                 "K-th voxel, interpolated (default: every voxel on a GPU, "
                                                 "an automatic step on the CPU)."),
) -> None:
    """Validate one map and write report.md, report.html, results.json and figures.

    Raises
    ------
    typer.Exit
        When the run fails: a gpuvalid error (an InputError for a bad ``--format``, map or ``--out``, a
        BackendError, ...) or an unwritable report exits with status 2, an interruption with 130, an internal
        error with 1; each is reported as one line on stderr.
    """
    from .backend import get_backend
    from .io import load_map_input
    from .memory import check_settings
    from .pipeline import validate
    from .report import write_report

    try:
        fmts = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
        if not fmts or set(fmts) - {"md", "html", "json"}:
            raise InputError(f"--format {formats!r}: give a comma-separated list of md, html, json")
        check_settings()   # the budgets in the environment, before a map is read
        map_path, hdr = resolve_map_argument(map, archive, download, base_url, cache_dir)
        out_dir = Path("reports") / safe_name(map_path) if out is None else Path(out)
        check_out_dir(out, out_dir, map_path)
        inp = load_map_input(map_path, threshold=threshold, resolution=resolution, voxel_size=voxel_size,
                             header=header or hdr, resample_anisotropic=resample_anisotropic,
                             max_voxels=max_voxels)
        be = get_backend(device)
        prepare_out_dir(out_dir, inp.sha256, inp.path.name, force, keep=fmts)
        from .analyses import SECTIONS

        with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                      console=err_console, transient=True, disable=not err_console.is_terminal) as prog:
            task = prog.add_task("reading", total=len(SECTIONS) + 1)

            def step(label: str) -> None:
                prog.update(task, description=label, advance=1)

            halves = [half1, half2] if (half1 or half2) else None
            if halves is None and hdr is not None:  # an EMDB id: the archive entry's half maps, if present
                from .level1 import halves_beside
                halves = halves_beside(map_path)
            report = validate(inp, be, out_dir, figures=figures, save_maps=save_maps, progress=step,
                              halves=halves, local_fsc_step=local_fsc_step)
            prog.update(task, completed=len(SECTIONS) + 1)
        write_report(report, out_dir, fmts)
    except GpuvalidError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except OSError as exc:  # writing the report: read-only or full file system, name too long, …
        where = f" {exc.filename}" if exc.filename else ""
        fail(f"cannot write the report{where}: {exc.strerror or type(exc).__name__}")
    except Exception as exc:  # never a traceback for the user unless asked
        if debug:
            traceback.print_exc()
        fail(f"internal error ({type(exc).__name__}: {exc}); rerun with --debug for the traceback", 1)
    print_summary(report, out_dir, fmts)


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(path: Path) -> str:
    """Return a folder name made from the map's file name.

    Known suffixes are dropped, anything but letters, digits and ``._+-`` replaced by ``_``, with no leading
    dots (so ``...map`` cannot name ``..``), at most 100 characters.
    """
    name = path.name
    for suf in (".gz", ".bz2", ".map", ".mrc", ".ccp4", ".mrcs"):
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
    name = _UNSAFE.sub("_", name).lstrip(".")[:100].rstrip(".")
    return name or "map"


_stem = safe_name  # former name


def check_out_dir(out_arg: str | None, out_dir: Path, map_path: Path) -> None:
    """Refuse report folders that cannot be right, before anything is read.

    Refused are an empty ``--out``, the working directory, an existing file or device (``/dev/null``, the
    input map), and the root or home folder.

    Raises
    ------
    InputError
        When ``--out`` is one of these, contains a NUL byte, or cannot be resolved.
    """
    if out_arg is not None and not str(out_arg).strip():
        raise InputError("--out is empty: give a report folder")
    if "\x00" in str(out_dir):
        raise InputError("--out contains a NUL byte")
    try:
        target = out_dir.resolve()
        if target == Path.cwd().resolve():
            raise InputError(f"--out {out_dir} is the working directory: give a report folder of its own")
        if target == map_path.resolve() or (out_dir.exists() and target.samefile(map_path)):
            raise InputError(f"--out {out_dir} is the input map")
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"--out {out_dir} exists and is not a folder")
        if target in (Path("/"), Path.home().resolve()):
            raise InputError(f"--out {out_dir}: refusing to write a report into {target}")
    except OSError as exc:
        raise InputError(f"--out {out_dir}: {exc.strerror or type(exc).__name__}") from None


REPORT_FILES = {"md": "report.md", "html": "report.html", "json": "results.json"}
STALE = ("errors.log", "figures", "maps")  # written by a previous run; removed when the folder is reused


def prepare_out_dir(out_dir: Path, sha256: str, file_name: str, force: bool,
                    keep: tuple[str, ...] = tuple(REPORT_FILES)) -> None:
    """Create ``out_dir`` or make an existing one ready for this map's report.

    A folder holding another map's report (``results.json`` with another input SHA-256) or other files
    is refused unless ``force``.  When the folder holds a gpuvalid report (this map's, or another's
    with ``force``), the stale ``errors.log``, ``figures/`` and ``maps/`` of that run are removed, and so
    are its report files of the formats this run will not rewrite (``keep``: md, html, json).

    Raises
    ------
    InputError
        When the folder is refused (another map's report or other files, without ``force``) or cannot be
        created or cleaned.
    """
    try:
        if not out_dir.exists():
            out_dir.mkdir(parents=True)
            return
        entries = [p.name for p in out_dir.iterdir()]
        res = out_dir / "results.json"
        if res.is_file():
            try:
                prev = json.loads(res.read_text(encoding="utf-8"))
                prev_in = prev.get("input", {}) if isinstance(prev, dict) else {}
                prev_sha, prev_file = prev_in.get("sha256"), prev_in.get("file")
            except (ValueError, UnicodeDecodeError, AttributeError):
                prev_sha, prev_file = None, None
            if prev_sha != sha256 and not force:
                what = f"the report of another map ({prev_file})" if prev_sha else "an unreadable results.json"
                raise InputError(f"--out {out_dir} holds {what}: choose another folder or pass --force")
        ours = set(STALE) | set(REPORT_FILES.values())
        leftovers = all(n in ours or n.endswith(".tmp") for n in entries) and "report.md" not in entries
        if not res.is_file() and not leftovers and not force:
            raise InputError(f"--out {out_dir} is not empty and holds no gpuvalid report: choose another "
                             "folder or pass --force")
        if res.is_file() or leftovers:
            for name in STALE + tuple(f for k, f in REPORT_FILES.items() if k not in keep):
                p = out_dir / name
                if p.is_symlink() or p.is_file():
                    p.unlink()
                elif p.is_dir():
                    shutil.rmtree(p)
    except OSError as exc:
        raise InputError(f"cannot prepare the report folder {out_dir}: "
                         f"{exc.strerror or type(exc).__name__}") from None


@app.command()
def info(device: str = typer.Option("auto", "--device", "-d", help="cpu, cuda:N or auto.")) -> None:
    """Show the compute backend that would be used (device, memory, CUDA/CuPy versions)."""
    from .backend import cuda_available, get_backend, kernel_dirs

    try:
        be = get_backend(device)
    except GpuvalidError as exc:
        fail(str(exc), 3)
    table = Table(title=f"gpuvalid {__version__}")
    table.add_column("property")
    table.add_column("value")
    for k, v in be.info().items():
        table.add_row(k, str(v))
    table.add_row("CUDA usable", "yes" if cuda_available() else "no (CuPy missing or no device)")
    table.add_row("kernel folders", ", ".join(str(d) for d in kernel_dirs()) or "none")
    from .ledger import describe
    from .memory import gib, host_available_bytes

    try:
        host = host_available_bytes()
    except ValueError as exc:   # an unreadable $GPUVALID_HOST_BUDGET
        table.add_row("host memory available", str(exc))
    else:
        table.add_row("host memory available", "unknown" if host is None else gib(host))
    table.add_row("memory ledger", describe())
    table.add_row("python", sys.version.split()[0])
    console.print(table)


@app.command()
def version() -> None:
    """Print the gpuvalid version."""
    console.print(__version__)


try:  # batch/manifest/summary commands of the archive mode
    from .archive.commands import register as _register_archive
except ImportError:
    _register_archive = None
if _register_archive is not None:
    _register_archive(app)

from .selftest import register as _register_selftest  # noqa: E402  (issue 14: gpuvalid selftest)

_register_selftest(app)


def main() -> None:  # pragma: no cover
    """Run the ``gpuvalid`` command line (the console-script entry point)."""
    app()



if __name__ == "__main__":  # pragma: no cover
    main()
