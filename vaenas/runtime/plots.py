"""Figures of a run's report: matplotlib on the Agg backend (no display), written atomically as PNG."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from vaenas.runtime.files import write_atomic


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (imported on first use: matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: str | os.PathLike, *, dpi: int = 100, bbox_inches: str | None = None) -> str:
    """Write `figure` to `path` as PNG (atomically) and close it; returns the file name.

    bbox_inches=None lays the figure out with tight_layout first; "tight" crops to its content instead."""
    if bbox_inches is None:
        figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches=bbox_inches)
    pyplot().close(figure)
    write_atomic(path, buffer.getvalue())
    return Path(path).name
