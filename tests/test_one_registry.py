"""One registry: every method the CLI, recipes and shrink offer is a registered method, and none of them keeps a
table of method names of its own."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sizewise.cli.app import app
from sizewise.compress.registry import FAMILIES, get_method, list_methods
from sizewise.pipeline.config import resolve_methods
from sizewise.pipeline.plan import FAMILY_DEFAULTS, build_step

PACKAGE = Path(__file__).resolve().parents[1] / "sizewise"
CONSUMERS = ("cli", "pipeline")  # what reads the registry; they must not hold name tables
# a pick of a few methods that is a choice, not a copy of the registry (it goes through resolve_methods like --methods)
CHOICES = {"cli/demo_cmd.py": "the demo searches two methods that need no training, to end in minutes"}


def test_list_methods_from_a_fresh_interpreter_names_every_family():
    out = subprocess.run([sys.executable, "-c", "import sizewise; print(sizewise.list_methods())"],
                         check=True, capture_output=True, text=True).stdout
    names = eval(out)  # a list of strings printed by the line above
    assert names == sorted(names) and set(names) == set(list_methods())
    families = {get_method(n).family for n in names}
    assert families == {"train", "prune", "quantize", "distill", "finetune", "factorize", "cluster", "encode",
                        "runtime"}


@pytest.mark.parametrize("family", ["prune", "quantize"])
def test_the_cli_accepts_exactly_the_registered_methods_of_a_family(family, tmp_path):
    # a name the registry does not know is refused with the registry's list, before any model is loaded
    result = CliRunner().invoke(app, [family, "zoo:digits-cnn", "--data", "digits", "--out", str(tmp_path / "x"),
                                      "--method", "no-such-method"])
    assert result.exit_code == 1
    for name in list_methods(family):
        assert name in result.output, f"`sizewise {family}` does not offer the registered method {name}"


def test_recipes_accept_every_registered_method_and_family():
    for name in list_methods():
        method = get_method(name)
        required = {"student": "width:0.5"} if name == "distill" else {"energy": 0.9} if name == "factorize" else \
            {"blocks": 2} if name == "depth" else {"sparsity": 0.5} if "sparsity" in method.options else {}
        training = {"epochs": 1} if name in ("gradual", "lottery") else {}
        step = build_step(name, {**required, **training}, f"recipe step {name}")
        assert step.method == name and method.matches(step.config)
    assert set(FAMILY_DEFAULTS) <= {get_method(n).family for n in list_methods()}


def test_shrink_searches_every_method_that_declares_a_search_space():
    searchable = {n for n in list_methods() if get_method(n).search is not None}
    families = {get_method(n).family for n in searchable}
    assert set(resolve_methods(tuple(families))) == searchable
    assert set(resolve_methods(tuple(sorted(searchable)))) == searchable


def _name_tables(tree: ast.AST, names: set[str]) -> list[int]:
    """Lines of tuple/list/set/dict literals holding two or more method names: a table of its own."""
    found = []
    for node in ast.walk(tree):
        items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else \
            node.keys if isinstance(node, ast.Dict) else []
        literal = [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
        if len(set(literal) & names) >= 2:
            found.append(node.lineno)
    return found


def test_no_consumer_keeps_a_table_of_method_names():
    # family names (prune, quantize, distill, ...) are the registry's own vocabulary; method names are what must not
    # be listed again
    names = set(list_methods()) - set(FAMILIES)
    offenders = []
    for layer in CONSUMERS:
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            if str(path.relative_to(PACKAGE)) in CHOICES:
                continue
            for line in _name_tables(ast.parse(path.read_text()), names):
                offenders.append(f"{path.relative_to(PACKAGE)}:{line}")
    assert not offenders, f"method-name tables outside the registry: {offenders}"


def test_the_table_detector_finds_a_table():
    tree = ast.parse('QUANTIZERS = ("int8-dynamic", "int8-static", "fp16")\nx = ("int8-dynamic",)\n')
    assert _name_tables(tree, set(list_methods()) - set(FAMILIES)) == [1]
