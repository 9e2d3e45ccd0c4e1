"""The ``sizewise`` command line: parse, call one API function, render. No logic lives here."""

from __future__ import annotations

import typer

from sizewise.cli import (
    cluster_cmd,
    compare_cmd,
    compress_cmd,
    demo_cmd,
    distill_cmd,
    estimate_cmd,
    factorize_cmd,
    finetune_cmd,
    generate_cmd,
    inspect_cmd,
    measure_cmd,
    prune_cmd,
    quantize_cmd,
    report_cmd,
    shrink_cmd,
    train_cmd,
)
from sizewise.cli.common import state

app = typer.Typer(
    name="sizewise",
    help="How big and costly is a model, and how to make it smaller, faster and greener.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors.")) -> None:
    state.debug = debug


app.command("measure")(measure_cmd.measure)
app.command("compare")(compare_cmd.compare)
app.command("train")(train_cmd.train)
app.command("prune")(prune_cmd.prune)
app.command("quantize")(quantize_cmd.quantize)
app.command("factorize")(factorize_cmd.factorize)
app.command("finetune")(finetune_cmd.finetune)
app.command("distill")(distill_cmd.distill)
app.command("cluster")(cluster_cmd.cluster)
app.command("compress", epilog=compress_cmd.EXAMPLE)(compress_cmd.compress)
app.command("inspect")(inspect_cmd.inspect)
app.command("shrink")(shrink_cmd.shrink)
app.command("demo")(demo_cmd.demo)
app.command("estimate")(estimate_cmd.estimate)
app.command("generate")(generate_cmd.generate)
app.command("report")(report_cmd.report)


def main() -> None:
    import logging

    # Libraries imported on the way (transformers pulls in torchao when it is installed) log import-time noise that
    # says nothing about the user's run: CUDA-only kernels that cannot load on a CPU, a torch.compile deprecation.
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    app()


if __name__ == "__main__":
    main()
