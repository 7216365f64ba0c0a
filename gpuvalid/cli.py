"""Command line: ``gpuvalid run MAP …`` validates one map; ``gpuvalid info`` shows the compute devices."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .errors import GpuvalidError, InputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="GPU-first Level 0 validation of cryo-EM density maps.")
console = Console()
err_console = Console(stderr=True)

STATUS_STYLE = {"ok": "green", "warnings": "yellow", "not_measured": "red", "not_applicable": "dim",
                "not_implemented": "dim"}


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit with ``code``."""
    err_console.print(f"[bold red]gpuvalid: error:[/] {' '.join(str(message).split())}", highlight=False,
                      soft_wrap=True)
    raise typer.Exit(code)


def resolve_map_argument(map_arg: str, archive: Optional[Path], download: bool, base_url: Optional[str],
                         cache_dir: Optional[Path]) -> tuple[Path, Optional[Path]]:
    """A file path as given, or an EMDB id (EMD-1234, emd_1234, 1234) resolved by the archive module."""
    from .io.emdb import normalise_emdb_id

    p = Path(map_arg)
    if p.exists():
        return p, None
    eid = normalise_emdb_id(map_arg)
    if eid is None:
        raise InputError(f"file not found: {map_arg}")
    try:
        from .archive.resolve import resolve_entry
    except ImportError:
        raise InputError(f"{map_arg} looks like an EMDB id, but archive support is not installed") from None
    return resolve_entry(eid, archive=archive, download=download, base_url=base_url, cache_dir=cache_dir)


def print_summary(report, out_dir: Path | None) -> None:
    table = Table(title=f"gpuvalid {report.input.path.name}", show_lines=False)
    table.add_column("section")
    table.add_column("analysis")
    table.add_column("status")
    table.add_column("key result")
    for sid, s in report.sections.items():
        table.add_row(sid, s.title, f"[{STATUS_STYLE.get(s.status, '')}]{s.status_text}[/]",
                      s.key if s.evaluable else ("—" if s.status == "not_implemented" else (s.reason or "")[:80]))
    console.print(table)
    console.print(f"Score: [bold]{report.passed} out of {report.evaluable}[/] evaluable items passed "
                  f"({report.seconds:.1f} s on {report.backend.get('device')}).")
    if out_dir is not None:
        console.print(f"Report: {out_dir / 'report.md'}   Results: {out_dir / 'results.json'}")


@app.command()
def run(
    map: str = typer.Argument(..., help="MRC/CCP4 map (.map, .mrc, .gz, .bz2) or an EMDB id (EMD-1234)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", "-t", help="Contour level (map units)."),
    resolution: Optional[float] = typer.Option(None, "--resolution", "-r", help="Reported resolution (Å)."),
    voxel_size: Optional[float] = typer.Option(None, "--voxel-size", help="Override the voxel size (Å)."),
    header: Optional[Path] = typer.Option(None, "--header", help="EMDB header XML (contour, resolution, spacing)."),
    device: str = typer.Option("auto", "--device", "-d", help="cpu, cuda:N or auto."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default reports/<map name>)."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Write PNG figures."),
    save_maps: bool = typer.Option(False, "--save-maps", help="Also write derived maps (MRC)."),
    resample_anisotropic: bool = typer.Option(False, "--resample-anisotropic",
                                              help="Resample anisotropic voxels to the finest spacing."),
    archive: Optional[Path] = typer.Option(None, "--archive", help="Local EMDB mirror (for EMDB ids)."),
    download: bool = typer.Option(False, "--download", help="Download EMDB entries that are not local."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="EMDB archive base URL for --download."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where downloaded entries are kept."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of internal errors."),
) -> None:
    """Validate one map and write report.md, results.json and figures."""
    from .backend import get_backend
    from .io import load_map_input
    from .pipeline import validate
    from .report import write_report

    try:
        map_path, hdr = resolve_map_argument(map, archive, download, base_url, cache_dir)
        inp = load_map_input(map_path, threshold=threshold, resolution=resolution, voxel_size=voxel_size,
                             header=header or hdr, resample_anisotropic=resample_anisotropic)
        be = get_backend(device)
        out_dir = out if out is not None else Path("reports") / _stem(map_path)
        from .analyses import SECTIONS

        with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                      console=err_console, transient=True, disable=not err_console.is_terminal) as prog:
            task = prog.add_task("reading", total=len(SECTIONS) + 1)

            def step(label: str) -> None:
                prog.update(task, description=label, advance=1)

            report = validate(inp, be, out_dir, figures=figures, save_maps=save_maps, progress=step)
            prog.update(task, completed=len(SECTIONS) + 1)
        write_report(report, out_dir)
    except GpuvalidError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # never a traceback for the user unless asked
        if debug:
            traceback.print_exc()
        fail(f"internal error ({type(exc).__name__}: {exc}); rerun with --debug for the traceback", 1)
    print_summary(report, out_dir)


def _stem(path: Path) -> str:
    name = path.name
    for suf in (".gz", ".bz2", ".map", ".mrc", ".ccp4", ".mrcs"):
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
    return name or "map"


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


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
