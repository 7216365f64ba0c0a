"""What a figure is to the report: a PNG in the report folder and its caption.

No plotting here, so the sections and the report can name figures without importing matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Figure:
    """A PNG written into the report folder; ``file`` is relative to the report folder."""

    file: str
    caption: str
