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
from contextvars import ContextVar

__all__ = ["progress_bar", "report", "reported"]

#: the bar that :func:`report` moves, set by :func:`reported` (None: nothing listens)
_LISTENER: ContextVar[Callable[..., None] | None] = ContextVar("kgcm_progress", default=None)


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


@contextlib.contextmanager
def reported(enabled: bool, description: str, total: float) -> Iterator[None]:
    """A bar (as :func:`progress_bar`) that code deeper down moves with :func:`report`: a long
    step inside one library call (an estimator's effects over many units, in chunks) shows
    progress without passing a callback through every layer."""
    with progress_bar(enabled, description, total) as advance:
        token = _LISTENER.set(advance)
        try:
            yield
        finally:
            _LISTENER.reset(token)


def report(n: float = 1) -> None:
    """Move the enclosing :func:`reported` bar on by ``n`` (nothing happens outside one)."""
    listener = _LISTENER.get()
    if listener is not None:
        listener(n)
