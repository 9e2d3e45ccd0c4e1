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


def print_comparison(before, after, title: str | None = None, before_name: str = "before",
                     after_name: str = "after", warnings: list[str] | tuple = ()) -> None:
    """The two cards side by side, the savings verdict, and each card's warnings once."""
    from sizewise.report.card_view import compare_table, savings_line

    console.print(compare_table(before, after, title=title, before_name=before_name, after_name=after_name))
    console.print(savings_line(before, after))
    for warning in dict.fromkeys([*before.warnings, *after.warnings, *warnings]):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def run_compression(model: str, arch: str | None, data: str, config, finetune, out, runtime: str,
                    threads: int | None, doing: str):
    """What prune, factorize and cluster share: load, ``compress`` with before/after cards, show the comparison."""
    import sizewise
    from sizewise.compress import compress
    from sizewise.measure import MeasureConfig

    loaded = sizewise.load(model, arch=arch)
    dataset = sizewise.load_dataset(data)
    with err_console.status(doing) as status:
        result = compress(loaded, config, out, dataset=dataset, finetune=finetune,
                          measure_config=MeasureConfig(runtime=runtime, threads=threads), progress=status.update)
    print_comparison(result.before, result.after)
    return result


def print_compressed_file(model_dir) -> None:
    """The per-layer table of the run's ``model.swz``, when the artifact is one."""
    from sizewise.models import compressed_format
    from sizewise.report.compressed_view import inspect_table

    swz = model_dir / compressed_format.WEIGHTS
    if swz.is_file():
        console.print(inspect_table(*compressed_format.inspect(swz)))
