"""Outputs of the local maps (0.e, 0.f, 0.g, 1.c–1.f): the MRC on request, the histogram and the colour views."""

from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np

from .figure import Figure
from .plots import histogram_png


def local_histogram(fig_dir: Path, stem: str, values: np.ndarray, xlabel: str, title: str,
                    percentiles: list[float] | None = None) -> Figure:
    """Histogram of the local values inside the hard mask (the median marked)."""
    med = percentiles[2] if percentiles else None
    file = histogram_png(Path(fig_dir) / f"{stem}_histogram.png", values, xlabel, title,
                         marker=med, marker_label=None if med is None else f"median {med:.2f}")
    return Figure(file, f"{title}: histogram over the hard mask.")


def write_local_map_outputs(res, sid: str, options, errors: list[str], *, stem: str, inside: np.ndarray,
                            unit_label: str, title: str, percentiles: list[float], views=None,
                            mrc=None) -> None:
    r"""Write what a local map gives the report.

    Never raises: a failure goes to ``errors`` as ``"<sid>:\n<traceback>"``, which the pipeline writes to
    ``errors.log``.

    ``mrc``: ``(file stem, values, voxel size Å, sentence for the results)``, written under
    ``options.map_dir`` when maps are requested.  Under ``options.figure_dir``: the histogram of ``inside``
    (the finite values inside the mask; x label ``unit_label``, ``title``, the median of ``percentiles``
    marked) as ``<stem>_histogram.png`` and, when ``options.views`` and ``views = (context of the map's grid,
    values, lo, hi, colour-bar label)`` are given, the colour views ``<stem>_views.png``.
    """
    if mrc is not None and options.map_dir is not None:
        mrc_stem, values, voxel_size, sentence = mrc
        try:
            from ..io.mrc import write_mrc
            write_mrc(Path(options.map_dir) / f"{mrc_stem}.mrc", values, voxel_size)
            res.blocks.append(sentence)
        except Exception:
            errors.append(f"{sid}:\n{traceback.format_exc()}")
    if options.figure_dir is None:
        return
    try:
        res.figures.append(local_histogram(options.figure_dir, stem, inside, unit_label, title, percentiles))
    except Exception:
        errors.append(f"{sid}:\n{traceback.format_exc()}")
    if views is not None and options.views:
        grid_ctx, values, lo, hi, label = views
        try:
            from .views import colour_views
            res.figures += list(colour_views(grid_ctx, values, lo, hi, label, options.figure_dir, stem=stem))
        except Exception:
            errors.append(f"{sid}:\n{traceback.format_exc()}")
