"""One rich progress bar for every long step (prepare's blocks and hashes, effects over units,
refutations, dose-response scales), or nothing.

A bar is drawn only when it is asked for and the console is a terminal: piped output, logs and
tests get no bar frames mixed into their text. Bars share rich's global console, so a bar drawn
inside another (a refit's epoch bar inside the refutations' bar) nests below it instead of
fighting it for the cursor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(
    enabled: bool,
    description: str,
    total: float,
    *,
    completed: float = 0,
    nbytes: bool = False,
) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1)``, which moves a rich progress bar on by ``n`` (a no-op when no bar
    is drawn).

    Parameters
    ----------
    enabled : the command's ``progress`` setting; a bar is drawn only when it is set and the
        console is a terminal.
    description : what is counted ("writing time blocks", "refits").
    total, completed : the number of items (or bytes) in all and done already (a resumed run).
    nbytes : count bytes (sizes and speed) rather than items.
    """
    from rich import get_console

    console = get_console()
    if not enabled or total <= 0 or not console.is_terminal:
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    counts = (DownloadColumn(), TransferSpeedColumn()) if nbytes else (MofNCompleteColumn(),)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        *counts,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(description, total=total, completed=completed)
        yield lambda n=1: bar.advance(task, n)
