"""Terminal output shared by every command: one stderr console and rich progress bars."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Progress and logs go to stderr so stdout stays clean for --json output.
# Logs and CI are not terminals: give wide tables room there instead of rich's 80-column default.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def make_progress(enabled: bool = True, *fields: str) -> Progress:
    """A progress bar with count, elapsed time, ETA and extra `{task.fields[...]}` columns."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        *(TextColumn(f) for f in fields),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    return Progress(*columns, console=console, disable=not enabled, transient=True)
