"""The house rules of DESIGN.md section 2, enforced: layers import one way, and `import sizewise` stays light."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sizewise"

# Lower number = lower layer. A module may import from its own layer or any lower one, never a higher one.
LAYERS = {"core": 0, "models": 1, "data": 1, "tasks": 2, "measure": 2, "train": 2, "estimate": 3, "compress": 3,
          "export": 3, "pipeline": 4, "report": 5, "cli": 6}
# Deliberate, documented upward reach: estimate counts the parameters of any loadable model reference.
ALLOWED = {("estimate", "models")}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sizewise."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("sizewise."))
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_one_way(path):
    rel = path.relative_to(PACKAGE)
    if len(rel.parts) == 1:
        return  # sizewise/__init__.py is the public facade
    layer = rel.parts[0]
    for target in imports_of(path):
        if target in LAYERS and (layer, target) not in ALLOWED:
            assert LAYERS[target] <= LAYERS[layer], f"{rel} (layer {layer}) imports the higher layer {target}"


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(LAYERS)


def test_import_sizewise_is_lean():
    code = ("import sys, sizewise; heavy = [m for m in ('torch', 'transformers', 'onnxruntime', 'numpy') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_files_stay_small():
    big = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if len(p.read_text().splitlines()) > 600]
    assert big == []
