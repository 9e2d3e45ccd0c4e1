"""One type for progress everywhere: a callable that hears a short description of what is about to happen."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def silent(_message: str) -> None:
    """The progress that shows nothing."""
