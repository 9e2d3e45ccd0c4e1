"""What every command shares: the console, error rendering, the ``--debug`` switch, and the one way a command that
changes a model runs: a plan, run by the one executor, rendered from its run record.

A :class:`~sizewise.core.errors.SizewiseError` becomes one red line and exit code 1; ``sizewise --debug ...`` re-raises
it so the traceback shows. Anything else is a bug and always shows its traceback.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
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
            from rich.markup import escape

            # The message can quote a user's file or value: escaped, so "[/x]" in it is text, not Rich markup.
            hint = f" — {exc.hint}" if exc.hint else ""
            err_console.print(f"[bold red]error:[/] {escape(exc.message + hint)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def command_line() -> str:
    """The command as the user typed it, for the run record."""
    return " ".join(["sizewise", *map(shlex.quote, sys.argv[1:])])


def measure_config(runtime: str = "torch", threads: int | None = None, batch_size: int = 1,
                   seq_len: int | None = None, no_memory: bool = False, eval_limit: int | None = None):
    """How a command's before and after cards are measured (both the same way)."""
    from sizewise.measure.api import MeasureConfig

    skip = {"measure_memory": False} if no_memory else {}  # else MeasureConfig's own default
    return MeasureConfig(runtime=runtime, threads=threads, batch_size=batch_size, seq_len=seq_len,
                         eval_limit=eval_limit, **skip)


def method_config(family: str, name: str, given: dict[str, Any], flags: dict[str, str] | None = None,
                  defaults: dict[str, Any] | None = None):
    """The config of ``family`` method ``name`` from the options the user set (``None``: not set).

    Only the fields in the method's registered ``options`` may be set: an option that does not apply to the method is
    an error naming the flag, not a value silently ignored. ``defaults`` fill a field the method has and the user left
    unset (the command's own default, e.g. the deployment runtime).
    """
    import dataclasses

    from sizewise.compress.registry import get_method, list_methods
    from sizewise.core.errors import ConfigError

    known = list_methods(family)
    if name not in known:
        raise ConfigError(f"unknown {family} method '{name}'", hint=f"choose one of: {', '.join(known)}")
    method = get_method(name)
    flag_of = {k: f"--{k.replace('_', '-')}" for k in given} | (flags or {})
    fields = {k: v for k, v in given.items() if v is not None}
    extra = sorted(dict.fromkeys(flag_of[k] for k in fields if k not in method.options))
    if extra:
        usable = sorted(dict.fromkeys(flag_of.get(k, f"--{k.replace('_', '-')}") for k in method.options))
        raise ConfigError(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not apply to --method {name}",
                          hint=f"its options: {', '.join(usable) or 'none'}")
    fields = {k: v for k, v in (defaults or {}).items() if k in method.options} | fields
    required = [f.name for f in dataclasses.fields(method.config) if f.init and f.name not in method.preset
                and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in fields]
    if missing:
        raise ConfigError(f"--method {name} needs {flag_of.get(missing[0], f'--{missing[0]}'.replace('_', '-'))}",
                          hint=f"see `sizewise {family} --help`")
    return method.make(**fields)


def one_step(method: str, config: Any, train: Any = None, name: str = ""):
    """A command's plan: one step."""
    from sizewise.pipeline.plan import Plan, Step

    return Plan((Step(method, config, train),), name=name or method)


def refuse_earlier_run(out: Path, resume: bool) -> None:
    """For the commands with ``--resume``: a folder that already holds a run is continued only when asked to."""
    from sizewise.core.errors import ConfigError

    if resume or not out.is_dir():
        return
    left = [name for name in ("steps.json", "card.json", "before.json", "steps") if (out / name).exists()]
    if left:
        raise ConfigError(f"{out} already holds a run ({', '.join(left)})",
                          hint="pass --resume to continue or re-measure it, or use a new --out")


# --- how a user's data is read: the same flags on every command that takes --data ------------------------------------

_DATA_FLAGS = {
    "text_column": (str | None, typer.Option(None, "--text-column", help="Data: the column holding the text.")),
    "text_pair_column": (str | None, typer.Option(None, "--text-pair-column",
                                                  help="Data: the column holding the second text of a pair.")),
    "label_column": (str | None, typer.Option(None, "--label-column", help="Data: the column holding the label.")),
    "columns": (str | None, typer.Option(None, "--columns", help="Data: the column names of a headerless CSV/TSV, "
                                                                 "comma-separated, in order.")),
    "task": (str | None, typer.Option(None, "--task", help="The task, when the model's config and the data do not "
                                                           "say it: image-classification, text-classification, "
                                                           "sentence-similarity, causal-lm, ...")),
    "trust_remote_code": (bool, typer.Option(False, "--trust-remote-code", help="Let a model run Python code it "
                                                                               "names: a Hugging Face directory's own "
                                                                               "code (auto_map), or a package.module:"
                                                                               "factory named in a run directory or "
                                                                               ".swz file. Only for models you trust.")),
    "image_size": (int | None, typer.Option(None, "--image-size", help="Data: resize images to this square size.")),
}
_data_options: contextvars.ContextVar = contextvars.ContextVar("data_options", default=None)


def with_data_options(fn: F) -> F:
    """Add the input flags (``--text-column``, ``--label-column``, ``--columns``, ``--task``, ``--trust-remote-code``,
    ...) to a command; they reach :func:`load_inputs` without every command passing them along."""
    signature = inspect.signature(fn)
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
             for name, (kind, option) in _DATA_FLAGS.items()]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name, None) for name in _DATA_FLAGS}
        token = _data_options.set(given)
        try:
            return fn(*args, **kwargs)
        finally:
            _data_options.reset(token)

    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *extra])
    return wrapper  # type: ignore[return-value]


def data_options():
    """The DataOptions the command line gave, or None."""
    given = {k: v for k, v in (_data_options.get() or {}).items() if k != "trust_remote_code" and v is not None}
    if not given:
        return None
    from sizewise.data.options import DataOptions

    return DataOptions(**given)


def model_options() -> dict[str, Any]:
    """What the command line said about loading the model: ``task`` and ``trust_remote_code``."""
    given = _data_options.get() or {}
    return {"task": given.get("task"), "trust_remote_code": bool(given.get("trust_remote_code"))}


def load_inputs(model: str, data: str | None, arch: str | None = None, model_task: bool = True):
    """The model and the dataset (or None) from their references (``model_task=False``: ``--task`` is about the data
    and the result only, as in fine-tuning to a new task)."""
    from sizewise.data import load_dataset
    from sizewise.models.loader import load

    with err_console.status("loading") as status:
        options = model_options()
        loaded = load(model, arch=arch, task=options["task"] if model_task else None,
                      trust_remote_code=options["trust_remote_code"])
        if data:
            status.update(f"loading data {data}")
        dataset = load_dataset(data, options=data_options()) if data else None
    return loaded, dataset


def run_plan(loaded, plan, dataset, out: Path, *, kind: str, measure=None, budget=None,
             references: tuple[str, ...] = (), eval_limit: int | None = None, before_name: str | None = None,
             after_name: str | None = None, title: str | None = None, show: bool = True):
    """Run ``plan`` with the one executor (it writes ``OUT/card.json``, schema ``sizewise.run/1``), then print the
    comparison, the verdict and the warnings (unless ``show`` is False: the command prints its own)."""
    from sizewise.pipeline.executor import RunOptions, run

    with err_console.status(plan.describe()) as status:
        result = run(loaded, plan, dataset, out, RunOptions(
            measure=measure or measure_config(), budget=budget, references=references, eval_limit=eval_limit,
            kind=kind, command=command_line(), progress=status.update))
    if result.resumed_from:
        done = result.resumed_from
        console.print(f"resumed: step{'s 1-' if done > 1 else ' '}{done} of {len(plan.steps)} "
                      f"{'were' if done > 1 else 'was'} already done (read from {Path(out) / 'steps.json'})",
                      highlight=False, soft_wrap=True)
    if show:
        print_epochs(result.details.get("training"))
        print_result(result, title=title, before_name=before_name, after_name=after_name)
    return result


def print_result(result, title: str | None = None, before_name: str | None = None,
                 after_name: str | None = None) -> None:
    """The comparison under the roles' names, the verdict, and every card's warnings once."""
    from sizewise.report.card_view import compare_table

    roles = result.record.get("roles", {})
    before_name, after_name = before_name or roles.get("before", "before"), after_name or roles.get("after", "after")
    for runtime, card in result.references.items():
        name = f"{before_name} on {runtime}"
        console.print(compare_table(card, result.after, title=f"{name} → {after_name}", before_name=name,
                                    after_name=after_name))
    print_comparison(result.before, result.after, title=title, before_name=before_name, after_name=after_name)
    print_verdict(result.verdict)


def print_verdict(verdict) -> None:
    style = {True: "green", False: "red"}.get(verdict.meets_budget)
    console.print(f"[{style}]{verdict.message}[/]" if style else verdict.message, highlight=False)


def print_comparison(before, after, title: str | None = None, before_name: str = "before",
                     after_name: str = "after", warnings: list[str] | tuple = ()) -> None:
    """The two cards side by side, the savings verdict, and each card's warnings once."""
    from sizewise.report.card_view import compare_table, savings_line

    console.print(compare_table(before, after, title=title, before_name=before_name, after_name=after_name))
    console.print(savings_line(before, after), highlight=False)
    for warning in dict.fromkeys([*before.warnings, *after.warnings, *warnings]):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def print_epochs(training: dict | None) -> None:
    """One line per epoch of a step's training (its details' ``training``)."""
    training = training or {}
    if training.get("resumed_from_epoch"):
        console.print(f"resumed after epoch {training['resumed_from_epoch']}", highlight=False)
    for s in training.get("epochs", [])[training.get("resumed_from_epoch") or 0:]:
        val = f" · val {s['val_accuracy']:.4f}" if s.get("val_accuracy") is not None else ""
        train = f" · train {s['train_accuracy']:.2%}" if s.get("train_accuracy") is not None else ""
        err_console.print(f"  epoch {s['epoch']:>3}: loss {s['train_loss']:.4f}{train}{val} · {s['seconds']:.1f} s",
                          highlight=False)


def print_compressed_file(model_dir) -> None:
    """The per-layer table of the run's ``model.swz``, when the artifact is one."""
    from sizewise.models import compressed_format
    from sizewise.report.compressed_view import inspect_table

    swz = Path(model_dir) / compressed_format.WEIGHTS
    if swz.is_file():
        console.print(inspect_table(*compressed_format.inspect(swz)))
