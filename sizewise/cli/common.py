"""What every command shares: the console, error rendering, and the ``--debug`` switch.

A :class:`~sizewise.core.errors.SizewiseError` becomes one red line and exit code 1; ``sizewise --debug ...`` re-raises
it so the traceback shows. Anything else is a bug and always shows its traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from sizewise.core.errors import SizewiseError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    debug = False


state = _State()


def handles_errors(fn: F) -> F:
    """Wrap a command so a sizewise error prints as one actionable line instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SizewiseError as exc:
            if state.debug:
                raise
            hint = f" — {exc.hint}" if exc.hint else ""
            err_console.print(f"[bold red]error:[/] {exc.message}{hint}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]
