"""Run a batch on Dask: a local CPU cluster, a dask-cuda GPU cluster, or an existing cluster.

The cluster is a local cluster (CPU), dask-cuda's ``LocalCUDACluster`` (one worker per GPU), or an existing
cluster given by its scheduler address.

On a cluster started here every worker has 2 threads and one ``compute`` resource: the input stage
(read, hash, inflate) of one entry runs as its own task beside the validation of another, and the
validation tasks ask for the ``compute`` resource so only one runs per worker (per GPU).  On an
existing cluster (whose workers may not declare that resource) each entry is a single task.
The same per-entry function as the local runner is used (:func:`..entry.process_entry`), and the
calling process alone writes the index and claims entries.  Needs ``pip install gpuvalid[cluster]``
(and ``dask-cuda`` for the GPU cluster).

GPU clusters never ask dask-cuda for more workers than visible GPUs (it refuses with
``ValueError: Can not scale beyond visible devices``): ``--workers`` is clamped with a warning, an
explicit ``cuda:K`` runs one worker on GPU K, and no visible GPU is a one-line error.
"""

from __future__ import annotations

import time
import uuid

from ..errors import InputError
from .entry import EntryOptions, EntryTask, process_entry
from .stages import BatchOptions, Dispatcher, failed_record, stage_input, unchanged_record, warn


def _import_distributed():
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise InputError("Dask is not installed: pip install 'gpuvalid[cluster]' (dask[distributed])") from None
    return distributed


def _worker_name() -> str | None:
    try:
        from distributed import get_worker
        return str(get_worker().name)
    except Exception:
        return None


def dask_stage(task: EntryTask, opts: BatchOptions):
    """Run the input stage of ``task`` as a Dask task: resolve (download), read, hash and inflate its map."""
    return stage_input(task, opts)


def dask_compute(staged, eopts: EntryOptions):
    """Validate a staged entry as a Dask task; return ``("skip", record)`` or ``("ran", record)``.

    ``skip``: the map's bytes did not change since the earlier record (refreshed with the new mtime); an entry
    whose earlier record has gone since staging is validated again.
    """
    task, pf = staged
    if pf is not None and pf.unchanged:
        try:
            rec = unchanged_record(task, pf)
        except OSError:
            rec = None
        if rec is not None:
            return "skip", rec
        pf = None  # the earlier record is gone: validate it again
    return "ran", process_entry(task, eopts, pf, worker=_worker_name())


def dask_whole(task: EntryTask, opts: BatchOptions, eopts: EntryOptions):
    """Stage and validate one entry in a single Dask task (clusters whose workers declare no ``compute`` resource)."""
    return dask_compute(stage_input(task, opts), eopts)


def _device_for_worker(device: str) -> str:
    """dask-cuda workers see their own GPU as device 0 (CUDA_VISIBLE_DEVICES is rotated per worker)."""
    d = (device or "cpu").lower()
    return "cuda:0" if d in ("cuda", "gpu") or d.startswith(("cuda:", "gpu:")) else device


def cuda_cluster_plan(device: str, requested: int, visible: list[str] | None) -> tuple[int, list[str] | None,
                                                                                      str | None]:
    """(workers, CUDA_VISIBLE_DEVICES list for LocalCUDACluster or None, warning or None).

    ``cuda``/``gpu``: one worker per visible GPU, at most ``requested``; ``cuda:K``: one worker on the
    K-th visible GPU.  ``visible`` None means the count is unknown (nothing is clamped).

    Raises
    ------
    InputError
        When ``cuda:K`` has no integer K, K is not a visible GPU, or no GPU is visible at all.
    """
    d = (device or "").strip().lower()
    n = max(1, int(requested))
    if ":" in d:
        try:
            k = int(d.split(":", 1)[1])
        except ValueError:
            raise InputError(f"bad device {device!r}: use cpu, cuda or cuda:N") from None
        if visible is not None and not 0 <= k < len(visible):
            raise InputError(f"--dask --device {device}: only {len(visible)} GPU(s) visible")
        note = (f"--dask --device {device} runs one Dask worker on that GPU (--workers {n} asked for more; "
                "use --device cuda for one worker per GPU)") if n > 1 else None
        return 1, ([visible[k]] if visible is not None else None), note
    if visible is None:
        return n, None, None
    if not visible:
        raise InputError("--dask --device cuda: no GPU visible (CUDA_VISIBLE_DEVICES is empty or no device "
                         "answers); use --device cpu")
    if n > len(visible):
        return len(visible), list(visible), (f"--workers {n} but only {len(visible)} GPU(s) visible: "
                                             f"starting {len(visible)} Dask worker(s), one per GPU")
    return n, list(visible[:n]), None


def visible_gpus() -> list[str] | None:
    """Visible GPU ids as dask-cuda counts them (its own helper when installed)."""
    import os

    from .gpus import visible_gpu_ids
    ids = visible_gpu_ids()
    if ids is None and "CUDA_VISIBLE_DEVICES" not in os.environ:
        try:
            from dask_cuda.utils import get_n_gpus
            ids = [str(i) for i in range(int(get_n_gpus()))]
        except Exception:
            ids = None
    return ids


def start_client(opts: BatchOptions):
    """(client, cluster or None, whether workers declare the 'compute' resource).

    Raises
    ------
    InputError
        When Dask (or, for a CUDA device, dask-cuda) is not installed, or no worker can be placed on the asked
        GPUs (see :func:`cuda_cluster_plan`).
    """
    distributed = _import_distributed()
    if opts.scheduler:
        return distributed.Client(opts.scheduler), None, False
    n = max(1, opts.workers)
    common = dict(threads_per_worker=2, resources={"compute": 1}, dashboard_address=None)
    if (opts.device or "").lower().startswith(("cuda", "gpu")):
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise InputError("--dask with a CUDA device needs dask-cuda (pip install dask-cuda)") from None
        n, ids, note = cuda_cluster_plan(opts.device, n, visible_gpus())
        if note:
            warn(note)
        if ids is not None:
            common["CUDA_VISIBLE_DEVICES"] = ids
        cluster = LocalCUDACluster(n_workers=n, **common)
    else:
        cluster = distributed.LocalCluster(n_workers=n, processes=True, **common)
    return distributed.Client(cluster), cluster, True


def run_dask(tasks, opts: BatchOptions, on_start, on_done, on_skip) -> None:
    """Run ``tasks`` (a list or a claiming :class:`.stages.Dispatcher`) on Dask."""
    distributed = _import_distributed()
    disp = tasks if isinstance(tasks, Dispatcher) else Dispatcher(tasks, None, "", on_skip)
    client, cluster, has_resources = start_client(opts)
    eopts = opts.entry_options()
    eopts.device = _device_for_worker(opts.device)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or opts.workers)
        window = 2 * n_workers + max(0, opts.prefetch)
        ac = distributed.as_completed()
        by_future = {}

        def submit_one() -> bool:
            t = disp.take()
            if t is None:
                return False
            tag = uuid.uuid4().hex[:8]
            if has_resources:
                st = client.submit(dask_stage, t, opts, key=f"stage-{t.emdb_id}-{tag}", pure=False)
                fut = client.submit(dask_compute, st, eopts, key=f"validate-{t.emdb_id}-{tag}",
                                    resources={"compute": 1}, pure=False)
            else:
                fut = client.submit(dask_whole, t, opts, eopts, key=f"entry-{t.emdb_id}-{tag}", pure=False)
            by_future[fut] = t
            on_start(t)
            ac.add(fut)
            return True

        def top_up():
            while len(by_future) < window and submit_one():
                pass

        from .spool import record_semaphores
        last_record = 0.0
        while True:
            top_up()
            if opts.spool_dir and time.monotonic() - last_record > 5.0:  # cleaned after a SIGKILL
                record_semaphores(opts.spool_dir)
                last_record = time.monotonic()
            if not by_future:
                if not disp:
                    break
                time.sleep(0.5)  # only entries claimed by another live process are left
                continue
            fut = next(ac)
            t = by_future.pop(fut)
            try:
                kind, rec = fut.result()
            except Exception as exc:  # a worker died or the task could not be deserialised
                kind, rec = "ran", failed_record(t, f"Dask task failed ({type(exc).__name__}: "
                                              f"{' '.join(str(exc).split())})", opts)
            if kind == "skip":
                on_skip(rec, started=True)
            else:
                on_done(rec)
            disp.release(t)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
