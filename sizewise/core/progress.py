"""Progress, in the two forms sizewise shows it: a callable that hears a short description of what is about to happen,
and a bar for long counted work (training steps, sampled batches) drawn by rich on stderr."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

Progress = Callable[[str], None]


def silent(_message: str) -> None:
    """The progress that shows nothing."""


def bar(enabled: bool, description: str, total: int | None, unit: str = ""):
    """A context manager giving a :class:`Bar` (or None when ``enabled`` is false, so callers write
    ``if b: b.advance()``). The bar goes when the work ends (transient): the command prints its own summary."""
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(unit)] if unit else []
    columns += [TimeRemainingColumn(), TextColumn("{task.fields[status]}")]
    return Bar(Progress(*columns, console=Console(stderr=True), transient=True), description, total)


class Bar:
    def __init__(self, progress, description: str, total: int | None):
        self.progress, self.description, self.total = progress, description, total

    def __enter__(self) -> Bar:
        self.progress.__enter__()
        self.task = self.progress.add_task(self.description, total=self.total, status="")
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def advance(self, status: str = "") -> None:
        """One more unit done."""
        self.progress.update(self.task, advance=1, status=status)

    def update(self, completed: int, total: int | None = None) -> None:
        """``completed`` units done (of ``total``, when it became known only now: a resumed run)."""
        self.progress.update(self.task, completed=completed, total=total if total is not None else self.total)
