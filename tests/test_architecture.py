"""The house rules of DESIGN.md section 2, enforced: layers import one way, and `import sizewise` stays light.

Every import statement of every module under sizewise/ is read with `ast` -- at module level, inside functions
(lazy imports are dependencies too), under `if TYPE_CHECKING:`, relative ones resolved, and
`importlib.import_module("sizewise....")` with a literal name -- and checked against the layer table below.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sizewise"

# DESIGN.md section 2, bottom to top. A module may import its own package or a package of a LOWER rank, never one of
# the same rank (siblings are independent of each other) or a higher one.
LAYERS = {
    "core": 0,
    "models": 1, "data": 1,  # siblings: each needs core only; `tasks` is where models meet data
    "tasks": 2,
    "measure": 3,
    "train": 4,
    "compress": 5, "runtimes": 5, "estimate": 5,
    "pipeline": 6,
    "report": 7,
    "api": 8,  # sizewise/api.py, the Python API: every verb once; the CLI is a thin layer over it
    "cli": 9,
}
# Top-level modules: `sizewise/__init__.py` (lazy re-export of the API) sits above everything; `api.py` below the cli.
TOP_MODULES = {"__init__.py": 10, "api.py": 8}
# Narrower than their rank allows: estimate is the analytic cost of models too large to run here.
ONLY = {"estimate": {"core"}}

# Permanent, deliberate exceptions: {(file under sizewise/, enclosing scope, imported module): reason}.
ALLOWED: dict[tuple[str, str, str], str] = {}

# Violations that exist today, each at (file, enclosing function or <module>, imported module). The test fails on any
# violation not listed here, and on any entry that no longer occurs (delete it when it is fixed).
KNOWN_VIOLATIONS: dict[tuple[str, str, str], str] = {
    # to be fixed by the one-plan refactor
}


@dataclass(frozen=True)
class Import:
    file: str  # relative to sizewise/, e.g. "measure/api.py"
    line: int
    scope: str  # enclosing function/class ("Outer.method"), or "<module>"
    module: str  # absolute dotted name, e.g. "sizewise.models.loader"; "sizewise" for the top-level package

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.file, self.scope, self.module)

    def __str__(self) -> str:
        return f"sizewise/{self.file}:{self.line} (in {self.scope}) imports {self.module}"


def _module_name(rel: Path) -> tuple[str, bool]:
    parts = ["sizewise", *rel.with_suffix("").parts]
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _absolute(node: ast.ImportFrom, module_name: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module_name.split(".") if is_package else module_name.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def read_imports(source: str, rel: str) -> list[Import]:
    """Every sizewise import in ``source`` (the file ``rel`` under sizewise/), wherever it is written."""
    module_name, is_package = _module_name(Path(rel))
    found: list[Import] = []

    def add(node: ast.AST, name: str, scope: list[str]) -> None:
        if name == "sizewise" or name.startswith("sizewise."):
            found.append(Import(rel, node.lineno, ".".join(scope) or "<module>", name))

    def visit(node: ast.AST, scope: list[str]) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node, alias.name, scope)
        elif isinstance(node, ast.ImportFrom):
            # `from sizewise import X` counts as importing the top-level package even when X is a subpackage:
            # the name is looked up on the public API first
            add(node, _absolute(node, module_name, is_package), scope)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None) in
                   ("import_module", "__import__"))):
            add(node, node.args[0].value, scope)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = [*scope, node.name]
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(ast.parse(source), [])
    return found


def _files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@cache
def all_imports() -> tuple[Import, ...]:
    return tuple(i for p in _files() for i in read_imports(p.read_text(), p.relative_to(PACKAGE).as_posix()))


def _place(rel: str) -> tuple[str, int | None]:
    """(layer name, rank) of a file under sizewise/; rank None when the table does not place it."""
    first = rel.split("/")[0]
    if "/" not in rel:
        return "<top>", TOP_MODULES.get(first)
    return first, LAYERS.get(first)


def check(imp: Import) -> str | None:
    """Why ``imp`` breaks the house rules, or None."""
    if imp.module == "sizewise":
        if imp.file == "__init__.py":
            return None
        return ("imports the top-level package `sizewise` (the public API); internal code must import the module "
                "that defines the name, e.g. `from sizewise.models.loader import load`")
    layer, rank = _place(imp.file)
    target = imp.module.split(".")[1]
    target_rank = LAYERS.get(target)
    if rank is None or target_rank is None:
        return None  # unplaced packages are reported by test_every_package_has_a_layer
    if layer == target or layer == "<top>":
        return None
    if layer in ONLY and target not in ONLY[layer]:
        return f"layer {layer} may import only {sorted(ONLY[layer])}, not {target}"
    if target_rank > rank:
        return f"layer {layer} (rank {rank}) imports the higher layer {target} (rank {target_rank})"
    if target_rank == rank:
        return f"layer {layer} imports its sibling {target} (same rank {rank}); siblings stay independent"
    return None


def _violations() -> list[tuple[Import, str]]:
    return [(imp, why) for imp in all_imports() if (why := check(imp))]


def test_every_package_has_a_layer():
    packages = sorted({p.relative_to(PACKAGE).parts[0] for p in _files() if len(p.relative_to(PACKAGE).parts) > 1})
    unplaced = [p for p in packages if p not in LAYERS]
    assert not unplaced, (f"sizewise/{unplaced[0]}/ has no layer: add it to LAYERS in tests/test_architecture.py "
                          f"with the rank DESIGN.md section 2 gives it (e.g. runtimes sits with compress)")
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in TOP_MODULES)
    assert not top, f"top-level module(s) {top} have no layer: add them to TOP_MODULES (or move them into a layer)"


def test_imports_go_one_way():
    new = [f"{imp}: {why}" for imp, why in _violations()
           if imp.key not in ALLOWED and imp.key not in KNOWN_VIOLATIONS]
    assert not new, "new layer violation(s):\n" + "\n".join(new)


def test_listed_exceptions_still_occur_and_say_why():
    present = {imp.key for imp, _ in _violations()}
    for name, table in (("ALLOWED", ALLOWED), ("KNOWN_VIOLATIONS", KNOWN_VIOLATIONS)):
        dead = [k for k in table if k not in present]
        assert not dead, f"{name} lists violations that no longer occur: delete {dead}"
        assert all(isinstance(r, str) and r.strip() for r in table.values()), f"every {name} entry needs a reason"


@pytest.mark.parametrize("rel, source, expected", [
    # a lazy import inside a method is a dependency like any other
    ("core/x.py", "class A:\n    def f(self):\n        from sizewise.pipeline.plan import Plan\n",
     ("A.f", "sizewise.pipeline.plan", "higher layer pipeline")),
    ("measure/x.py", "import sizewise.train.loop as loop\n", ("<module>", "sizewise.train.loop", "higher layer train")),
    ("models/x.py", "from sizewise.data import load_dataset\n", ("<module>", "sizewise.data", "sibling data")),
    ("estimate/x.py", "def f():\n    import sizewise.models.loader\n", ("f", "sizewise.models.loader", "only")),
    # relative imports are resolved: from measure/x.py, `..train` is sizewise.train
    ("measure/x.py", "from ..train import loop\n", ("<module>", "sizewise.train", "higher layer train")),
    ("measure/sub/__init__.py", "from ... import measure\n", ("<module>", "sizewise", "top-level package")),
    ("tasks/x.py", "def f():\n    import sizewise\n", ("f", "sizewise", "top-level package")),
    ("cli/x.py", "from sizewise import load\n", ("<module>", "sizewise", "top-level package")),
    ("core/x.py", "import importlib\nm = importlib.import_module('sizewise.report.svg')\n",
     ("<module>", "sizewise.report.svg", "higher layer report")),
    # allowed: own package, lower layers, and anything from the top-level API module
    ("train/x.py", "from sizewise.measure import flops\nfrom .loop import train\nfrom sizewise.tasks import x\n", None),
    ("api.py", "from sizewise.cli.app import app\nfrom sizewise.estimate import estimate\n", None),
    ("__init__.py", "from sizewise import api\n", None),
])
def test_the_checker_sees_every_kind_of_import(rel, source, expected):
    found = [(imp.scope, imp.module, why) for imp in read_imports(source, rel) if (why := check(imp))]
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0][:2] == expected[:2] and expected[2] in found[0][2], found


def test_import_sizewise_is_lean():
    heavy = ("torch", "transformers", "onnxruntime", "onnx", "optuna", "ray", "numpy", "scipy", "sklearn",
             "datasets", "peft", "torch_pruning")
    code = f"import sys, sizewise; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"`import sizewise` loaded {out}: import them inside the function that needs them"


def test_files_stay_small():
    big = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if len(p.read_text().splitlines()) > 600]
    assert big == []
