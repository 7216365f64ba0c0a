"""Archive mode: validate EMDB entries in bulk, resumably, on SLURM job arrays or Dask.

Modules: :mod:`.ids` (archive layout of one entry), :mod:`.resolve` (local mirror or download),
:mod:`.download` (HTTPS with retries, checks and a rate limit), :mod:`.manifest` (header scan),
:mod:`.record` (per-entry ``status.json``), :mod:`.index` (SQLite results index),
:mod:`.prefetch` (read + decompress ahead), :mod:`.entry` (one entry end to end),
:mod:`.batch` (planning, resume, the driver), :mod:`.stages` (options, claims, input stage, failure
records: what the runners share), :mod:`.local_runner` (process pools), :mod:`.dask_runner`, :mod:`.progress`,
:mod:`.summary`, :mod:`.commands` (typer commands), :mod:`.mirror` (build small mirrors for tests).

This package is imported by worker processes: keep its ``__init__`` free of heavy imports.
"""
