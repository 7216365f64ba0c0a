"""Typer commands of the archive mode: ``manifest``, ``batch`` and ``summary`` (added to the main app)."""

from __future__ import annotations

import json
import sqlite3
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..errors import GpuvalidError, fail

DEBUG_HELP = "Show tracebacks of internal errors."


@contextmanager
def one_line_errors(debug: bool = False, interrupted: str = "interrupted"):
    """Turn every failure of a command into ``gpuvalid: error: <reason>`` and a non-zero exit code."""
    from .batch import Terminated

    try:
        yield
    except typer.Exit:
        raise
    except GpuvalidError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail(interrupted, 130)
    except Terminated:
        fail(interrupted.replace("interrupted", "terminated (SIGTERM)"), 143)
    except sqlite3.Error as exc:
        fail(f"results index: {type(exc).__name__}: {exc}", 1)
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        fail(f"{where}{exc.strerror or exc}", 1)
    except MemoryError:
        fail("out of memory", 1)
    except Exception as exc:  # never a traceback for the user unless asked
        if debug:
            traceback.print_exc()
        fail(f"internal error ({type(exc).__name__}: {exc}); rerun with --debug for the traceback", 1)


def register(app: typer.Typer) -> None:
    """Add the archive commands ``manifest``, ``batch`` and ``summary`` to the typer ``app``."""
    @app.command()
    def manifest(
        archive: Optional[Path] = typer.Option(None, "--archive", help="EMDB mirror root (default $GPUVALID_ARCHIVE)."),
        out: Path = typer.Option(Path("manifest.tsv"), "--out", "-o", help="Manifest file (.tsv or .parquet)."),
        stats: Optional[Path] = typer.Option(None, "--stats", help="Also write the size distribution (JSON)."),
        debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
    ) -> None:
        """Scan the mirror's headers (no map decompression) into a manifest and show the size distribution."""
        from .manifest import scan_archive, size_stats, write_manifest
        from .resolve import archive_root

        with one_line_errors(debug):
            root = archive_root(archive)
            if root is None:
                raise GpuvalidError("no archive mirror given: pass --archive DIR or set GPUVALID_ARCHIVE")
            if not root.is_dir():
                raise GpuvalidError(f"archive mirror {root} is not a folder")
            for p in (out, stats):
                if p is not None and p.is_dir():
                    raise GpuvalidError(f"{p} is a folder: give a file name")
            rows = scan_archive(root)
            write_manifest(rows, out)
            st = size_stats(rows)
            if stats is not None:
                stats.write_text(json.dumps(st, indent=1))
        con = Console()
        con.print(f"{st['entries']} entries → {out}; {st['with_contour_pct']:.0f} % with a contour level, "
                  f"{st['with_half_maps_pct']:.0f} % with half maps, {st['with_problem']} with problems; "
                  f"{st['total_GB']:.2f} GB stored, {st['uncompressed_GB']:.2f} GB inflated", highlight=False,
                  markup=False)
        if st["map_MB_percentiles"]:
            con.print("map MB percentiles " + ", ".join(f"p{k}={v:g}" for k, v in st["map_MB_percentiles"].items())
                      + "; box edge " + ", ".join(f"p{k}={v:g}" for k, v in st["box_edge_percentiles"].items()),
                      highlight=False)

    @app.command()
    def batch(
        manifest_file: Path = typer.Argument(..., metavar="MANIFEST",
                                             help="Manifest (.tsv/.parquet) or a list of EMDB ids."),
        out: Path = typer.Option(Path("reports/batch"), "--out", "-o", help="One report folder per entry here."),
        shard: Optional[str] = typer.Option(None, "--shard", help="i/N: this process's share "
                                            "(default: from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT)."),
        device: str = typer.Option("auto", "--device", "-d", help="cpu, cuda, cuda:N or auto."),
        workers: int = typer.Option(1, "--workers", "-w", help="Compute processes (one per GPU)."),
        prefetch: int = typer.Option(2, "--prefetch", help="Read/decompress-ahead processes (0: inline)."),
        figures: bool = typer.Option(False, "--figures/--no-figures", help="PNG figures (off in batch for speed)."),
        save_maps: bool = typer.Option(False, "--save-maps", help="Also write derived maps (MRC)."),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="Re-run recorded failures only."),
        force: bool = typer.Option(False, "--force", help="Re-run every entry, finished or not."),
        use_dask: bool = typer.Option(False, "--dask", help="Run on a local Dask cluster (LocalCUDACluster on GPUs)."),
        scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Join an existing Dask scheduler."),
        archive: Optional[Path] = typer.Option(None, "--archive", help="EMDB mirror for id-only manifests."),
        download: bool = typer.Option(False, "--download", help="Download entries not in the mirror."),
        base_url: Optional[str] = typer.Option(None, "--base-url", help="Download base URL."),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Download cache (a mirror)."),
        index: Optional[Path] = typer.Option(None, "--index", help="SQLite index (default OUT/index.sqlite)."),
        spool: Optional[Path] = typer.Option(None, "--spool", help="Folder for inflated maps (default /dev/shm)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
        debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
    ) -> None:
        """Validate the manifest's entries (resumable: finished entries with the same input hash are skipped)."""
        from .batch import BatchOptions, parse_shard, run_batch
        from .manifest import read_manifest

        with one_line_errors(debug, "interrupted (finished entries are kept; rerun to resume)"):
            rows = read_manifest(manifest_file)
            opts = BatchOptions(out_dir=out, device=device, workers=workers, prefetch=prefetch, figures=figures,
                                save_maps=save_maps, spool_dir=str(spool) if spool else None,
                                archive=str(archive) if archive else None, download=download, base_url=base_url,
                                cache_dir=str(cache_dir) if cache_dir else None, retry_failed=retry_failed,
                                force=force, index_path=index, progress=not quiet, dask=use_dask,
                                scheduler=scheduler, shard=parse_shard(shard))
            if opts.workers < 1 or opts.prefetch < 0:
                raise GpuvalidError("--workers must be ≥ 1 and --prefetch ≥ 0")
            from ..memory import check_settings

            check_settings()
            res = run_batch(rows, opts)
        other = f" ({res.by_other} finished by another process meanwhile)" if res.by_other else ""
        Console().print(f"{res.done} done, {res.failed} failed, {res.skipped} skipped (already done){other} in "
                        f"{res.seconds:.1f} s ({res.per_minute:.1f} entries/min); index: "
                        f"{index or out / 'index.sqlite'}", highlight=False, markup=False)

    @app.command()
    def summary(
        out: Path = typer.Argument(Path("reports/batch"), help="Batch output folder."),
        csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write key numbers (.csv/.tsv/.parquet)."),
        index: Optional[Path] = typer.Option(None, "--index", help="SQLite index (default OUT/index.sqlite)."),
        rebuild: bool = typer.Option(False, "--rebuild-index", help="Rebuild the index from the report folders."),
        limit: int = typer.Option(50, "--limit", help="Rows shown on screen."),
        html: bool = typer.Option(False, "--html", help="Also write the archive dashboard OUT/index.html."),
        debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
    ) -> None:
        """Table of the batch's entries (status, score, time split) and a CSV/Parquet of key numbers."""
        from .summary import collect, print_summary, write_table

        with one_line_errors(debug):
            if csv_path is not None and csv_path.is_dir():
                raise GpuvalidError(f"--csv {csv_path} is a folder: give a file name")
            rows = collect(out, index, rebuild)
            print_summary(rows, limit=limit)
            if html:  # one self-contained page: gpuvalid.archive.dashboard
                from .dashboard import write_dashboard
                Console().print(f"wrote {write_dashboard(rows, out)}", highlight=False, markup=False)
            if csv_path is not None:
                write_table(rows, csv_path)
                Console().print(f"wrote {csv_path}", highlight=False, markup=False)
