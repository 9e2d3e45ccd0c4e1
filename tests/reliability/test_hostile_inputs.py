"""Hostile inputs: files made to run code, exhaust memory or script a report. Each is refused with one line (or, for
the report, shown as text) and nothing it asks for runs; each case plants a marker its payload would create.

Covered elsewhere: a zip bomb in a CIFAR-style folder of zips is refused before extracting
(tests/fuzz/test_fuzz_data.py::test_a_zip_bomb_member_is_refused_before_extracting), an .npz whose header declares
10**12 floats (same file, ``header_declares_1e12_float64``), and a pickle given to ``sizewise.load``
(tests/fuzz/test_fuzz_reference.py::test_a_pickle_that_runs_code_is_refused_and_runs_nothing).
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import sizewise
from sizewise.cli.app import app
from sizewise.core.errors import ConfigError, ModelReferenceError
from sizewise.models import loader

runner = CliRunner()
FAST = ["--no-memory"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_red_line(result, *needles: str) -> str:
    """The CLI refused: exit 1, one `error:` line holding every needle, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    error = next(line for line in lines if line.startswith("error:"))
    text = " ".join(result.output.split())  # the console wraps long lines
    for needle in needles:
        assert needle in text, (needle, result.output)
    return error


def planted(tmp_path: Path, name: str, marker: Path) -> str:
    """A module ``name`` on sys.path whose import and whose ``factory`` each create ``marker`` (and a tiny model)."""
    (tmp_path / f"{name}.py").write_text(
        "from pathlib import Path\nimport torch\n"
        f"Path({str(marker)!r}).with_suffix('.imported').touch()\n"
        "def factory():\n"
        f"    Path({str(marker)!r}).touch()\n"
        "    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n"
        "    m.input_shape = (1, 8, 8)\n"
        "    return m\n")
    return f"{name}:factory"


# -- a factory named inside a file --------------------------------------------------------------------------------------

def test_a_run_directory_naming_a_factory_needs_consent_and_then_loads(tmp_path, monkeypatch):
    """`sizewise prune my.module:factory` then `sizewise measure OUT` in a new process: the run directory names the
    factory, and a file can name any callable, so it loads only with --trust-remote-code."""
    monkeypatch.syspath_prepend(str(tmp_path))
    marker = tmp_path / "called"
    spec = planted(tmp_path, "hostile_user_factory", marker)
    made = invoke("prune", spec, "--data", "digits", "--out", tmp_path / "out", "--sparsity", "0.5",
                  "--finetune-epochs", "0", *FAST)
    assert made.exit_code == 0, made.output  # the user typed it: it runs, and the result reloads in that process
    marker.unlink()
    monkeypatch.setattr(loader, "_CONSENTED_FACTORIES", set())  # a new process: nothing typed yet
    refused = invoke("measure", tmp_path / "out", *FAST)
    one_red_line(refused, "sizewise-model.json names the factory 'hostile_user_factory:factory'",
                 "pass --trust-remote-code")
    assert not marker.exists()
    for command in (["compare", tmp_path / "out", "zoo:digits-cnn"],
                    ["shrink", tmp_path / "out", "--data", "digits", "--out", tmp_path / "search"]):
        one_red_line(invoke(*command), "names the factory 'hostile_user_factory:factory'", "--trust-remote-code")
    assert not marker.exists()
    trusted = invoke("measure", tmp_path / "out", "--trust-remote-code", *FAST)
    assert trusted.exit_code == 0, trusted.output
    assert marker.exists()


def test_a_run_directory_naming_os_fork_is_refused(tmp_path, trained_digits_dir, monkeypatch):
    shutil.copytree(trained_digits_dir, tmp_path / "run")
    manifest = tmp_path / "run" / "model" / "sizewise-model.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"arch": "os:fork"}))
    monkeypatch.setattr(loader, "_CONSENTED_FACTORIES", set())
    with pytest.raises(ModelReferenceError, match="names the factory 'os:fork' as its architecture: loading it "
                                                  r"would import os and call fork\(\)"):
        sizewise.load(tmp_path / "run")


# -- a Hugging Face directory that asks for its own code ----------------------------------------------------------------

EVIL_MODULE = "from pathlib import Path\nPath({marker!r}).touch()\n"


def _remote_code_dir(folder: Path, marker: Path, where: str) -> Path:
    folder.mkdir()
    (folder / "evil.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    config = {"model_type": "bert", "architectures": ["BertModel"], "vocab_size": 10, "hidden_size": 8,
              "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8}
    asks = {"auto_map": {"AutoModel": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}, "trust_remote_code": True}
    if where == "config.json":
        config |= asks
    else:
        (folder / where).write_text(json.dumps({"tokenizer_class": "BertTokenizer"} | asks))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_a_model_directory_asking_for_remote_code_is_refused(where, tmp_path):
    marker = tmp_path / "ran"
    folder = _remote_code_dir(tmp_path / "m", marker, where)
    result = invoke("measure", folder, *FAST)
    one_red_line(result, f"asks to run its own code (auto_map in {where}: evil.EvilConfig, evil.EvilModel)",
                 "--trust-remote-code")
    assert not marker.exists()


@pytest.mark.parametrize("saved_as", [{}, {"pruned_shapes": True}, {"lowrank": {"x": 2}},
                                      {"torch_quantization": "dynamic int8 Linear"}],
                         ids=["plain", "pruned", "factorized", "int8"])
def test_a_run_directory_whose_config_asks_for_remote_code_is_refused(saved_as, tmp_path):
    """These used to reach transformers' AutoConfig first: a ValueError traceback instead of one line."""
    marker = tmp_path / "ran"
    folder = _remote_code_dir(tmp_path / "m", marker, "config.json")
    (folder / "sizewise-model.json").write_text(json.dumps({"format": "sizewise.model/1", "arch": "huggingface",
                                                            "task": "feature-extraction", **saved_as}))
    one_red_line(invoke("measure", folder, *FAST), "asks to run its own code")
    assert not marker.exists()


# -- a pickle disguised as a state dict ----------------------------------------------------------------------------------

class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt", ".pkl"])
def test_a_pickle_disguised_as_a_state_dict_is_refused(suffix, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(pickle.dumps({"state_dict": {"conv1.weight": _RunsCode(str(marker))}}))
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("weights_only")) or real_load(*a, **k))
    result = invoke("measure", path, "--arch", "zoo:digits-cnn", *FAST)
    one_red_line(result, "is not a plain state dict: it is a pickle that can run arbitrary code", "--trust-pickle")
    assert calls == [True] and not marker.exists()  # read with weights_only=True, and only so


# -- recipes that name Python objects -----------------------------------------------------------------------------------

RECIPES = {
    "python_object_apply": ('steps:\n  - !!python/object/apply:os.system ["touch {marker}"]\n',
                            "is not valid YAML: could not determine a constructor for the tag"),
    "python_name": ("steps:\n  - prune: {{sparsity: !!python/name:os.system }}\n",
                    "is not valid YAML: could not determine a constructor for the tag"),
    "python_object_new": ("steps:\n  - prune: !!python/object/new:collections.OrderedDict []\n",
                          "is not valid YAML: could not determine a constructor for the tag"),
    "step_named_after_a_callable": ("steps:\n  - os:system: {{command: touch {marker}}}\n",
                                    "step 1 has unknown method 'os:system'"),
    "family_method_a_callable": ("steps:\n  - prune: {{method: 'builtins:exec'}}\n",
                                 "unknown prune method 'builtins:exec'"),
    "config_class_field": ("steps:\n  - prune: {{sparsity: 0.5, _target_: os.system, class: os.system}}\n",
                           "unknown field '_target_'"),
    "student_a_factory": ("steps:\n  - distill: {{student: 'hostile_recipe_student:factory', epochs: 1}}\n",
                          "step 1 (distill) names the factory 'hostile_recipe_student:factory' as its student"),
}


@pytest.mark.parametrize("name", list(RECIPES))
def test_a_recipe_that_names_a_python_object_is_refused(name, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.syspath_prepend(str(tmp_path))
    planted(tmp_path, "hostile_recipe_student", marker)
    text, message = RECIPES[name]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text.format(marker=marker))
    result = invoke("compress", "zoo:digits-cnn", "--recipe", recipe, "--data", "digits", "--out", tmp_path / "out",
                    *FAST)
    one_red_line(result, message)
    assert not marker.exists() and not marker.with_suffix(".imported").exists()
    assert not (tmp_path / "out").exists()  # refused before any model was loaded
    assert "hostile_recipe_student" not in sys.modules


def test_a_recipe_student_factory_loads_with_consent(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(loader, "_CONSENTED_FACTORIES", set())
    planted(tmp_path, "hostile_recipe_trusted", tmp_path / "ran")
    (tmp_path / "r.yaml").write_text("steps:\n  - distill: {student: 'hostile_recipe_trusted:factory'}\n")
    with pytest.raises(ModelReferenceError, match=r"sizewise.load_plan\(..., trust_remote_code=True\)"):
        sizewise.load_plan(str(tmp_path / "r.yaml"))
    plan = sizewise.load_plan(str(tmp_path / "r.yaml"), trust_remote_code=True)
    assert plan.steps[0].config.student == "hostile_recipe_trusted:factory"


# -- files whose headers declare absurd sizes ---------------------------------------------------------------------------

def _s(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


_GGUF = b"GGUF" + struct.pack("<I", 3)
_ARCH = _s("general.architecture") + struct.pack("<I", 8) + _s("llama")
GGUF_FILES = {  # each under 200 bytes
    "2**62_tensors": (_GGUF + struct.pack("<QQ", 2**62, 0), "declares 4,611,686,018,427,387,904 tensors"),
    "2**62_keys": (_GGUF + struct.pack("<QQ", 0, 2**62), "declares 4,611,686,018,427,387,904 metadata keys"),
    "a_2**60_byte_string": (_GGUF + struct.pack("<QQ", 0, 1) + _s("general.name") + struct.pack("<IQ", 8, 2**60),
                            "metadata 'general.name' declares 1,152,921,504,606,846,976 bytes"),
    # the gguf package looped and allocated on this one for a minute, then ran out of memory
    "an_array_of_2**40_items": (_GGUF + struct.pack("<QQ", 0, 1) + _s("tokenizer.ggml.scores")
                                + struct.pack("<IIQ", 9, 6, 2**40) + b"\0" * 16,
                                "metadata 'tokenizer.ggml.scores' declares an array of 1,099,511,627,776 items"),
    "a_tensor_of_2**64_elements": (_GGUF + struct.pack("<QQ", 1, 1) + _ARCH + _s("w")
                                   + struct.pack("<I4QIQ", 4, 2**16, 2**16, 2**16, 2**16, 0, 0) + b"\0" * 32,
                                   "tensor 'w' declares 73,786,976,294,838,206,464 bytes at offset 0"),
    "a_tensor_past_the_end": (_GGUF + struct.pack("<QQ", 1, 1) + _ARCH + _s("w")
                              + struct.pack("<I2QIQ", 2, 4, 4, 0, 2**40) + b"\0" * 32,
                              "tensor 'w' declares 64 bytes at offset 1,099,511,627,776"),
}


@pytest.mark.parametrize("name", list(GGUF_FILES))
def test_a_gguf_header_declaring_absurd_sizes_is_refused_at_once(name, tmp_path):
    pytest.importorskip("gguf")
    data, message = GGUF_FILES[name]
    path = tmp_path / "model.gguf"
    path.write_bytes(data)
    assert len(data) < 200
    warm = tmp_path / "warm.gguf"
    warm.write_bytes(GGUF_FILES["2**62_keys"][0])
    with pytest.raises(ModelReferenceError, match="nothing was loaded"):
        sizewise.load(str(warm))  # imports gguf and transformers, so what is timed below is the check alone
    started = time.perf_counter()
    with pytest.raises(ModelReferenceError) as info:
        sizewise.load(str(path))
    assert time.perf_counter() - started < 1.0
    assert info.value.message.startswith(f"the GGUF file {path} is damaged or hostile: ")
    assert message in info.value.message
    assert "\n" not in str(info.value)


def test_a_real_gguf_file_passes_the_header_check():
    from sizewise.models.gguf import smollm2_file
    from sizewise.models.gguf_header import check_gguf_header

    try:
        path = smollm2_file()
    except Exception as exc:  # the llm extra is not installed
        pytest.skip(str(exc))
    started = time.perf_counter()
    check_gguf_header(path)  # 272 tensors, a 49,152-token vocabulary
    assert time.perf_counter() - started < 5.0


def _onnx(initializer) -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [initializer])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def _initializer(dims, external: dict[str, str] | None = None, raw: bytes | None = None):
    from onnx import TensorProto

    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims)
    if raw is not None:
        tensor.raw_data = raw
    if external:
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in external.items():
            tensor.external_data.add(key=key, value=value)
    return tensor


ONNX_FILES = {
    "2**40_floats_declared_none_stored": (lambda: _onnx(_initializer([2**40])), "declares a size of"),
    "dims_overflowing_int64": (lambda: _onnx(_initializer([2**21, 2**21, 2**21], raw=b"\0" * 4)),
                               "Integer overflow"),
    "external_data_of_2**36_bytes": (lambda: _onnx(_initializer([2**34], {"location": "w.data", "offset": "0",
                                                                          "length": str(2**36)})),
                                     "are out of bounds or can not be read in full"),
    "external_data_outside_its_folder": (lambda: _onnx(_initializer([4], {"location": "../../../../etc/hostname"})),
                                         "External data path escapes model directory"),
    "external_data_absolute_path": (lambda: _onnx(_initializer([4], {"location": "/etc/hostname"})),
                                    "Absolute path not allowed for external data"),
    "protobuf_field_of_2**62_bytes": (lambda: b"\x3a" + bytes([0xFF] * 8 + [0x3F]) + b"abc",
                                      "Protobuf parsing failed"),
}


@pytest.mark.parametrize("name", list(ONNX_FILES))
def test_an_onnx_file_declaring_absurd_sizes_is_refused(name, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    make, message = ONNX_FILES[name]
    path = tmp_path / "model.onnx"
    path.write_bytes(make())
    (tmp_path / "w.data").write_bytes(b"\0" * 16)
    started = time.perf_counter()
    result = invoke("measure", path, *FAST)
    one_red_line(result, "onnxruntime cannot load", message)
    assert time.perf_counter() - started < 30  # onnxruntime checks sizes before allocating


# -- markup in names that reach report.html ------------------------------------------------------------------------------

# Built so that the literal XSSRAN never appears in the page: only a script that ran can put it in the DOM (the title,
# an attribute) or in the console. No "/" in it: it is also a directory name.
PAYLOADS = ["<script>document.title='XSS'+'RAN';console.error('XSS'+'RAN')</script>",
            "<img src=x onerror=\"document.title='XSS'+'RAN';console.error('XSS'+'RAN')\">",
            "<svg onload=\"document.body.setAttribute('data-x','XSS'+'RAN')\">",
            "\"><iframe srcdoc=\"<script>parent.document.title='XSS'+'RAN'</script>\">"]


def _chromium(page: Path, profile: Path) -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not installed (CI installs Debian's chromium)")
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=2000",
         "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def test_markup_in_a_model_name_and_a_record_is_text_in_report_html(tmp_path, trained_digits_dir):
    model = tmp_path / PAYLOADS[1].replace("/", "")  # a directory named like a tag
    shutil.copytree(trained_digits_dir, model)
    out = tmp_path / "out"
    made = invoke("prune", model, "--data", "digits", "--out", out, "--sparsity", "0.5", "--finetune-epochs", "0",
                  *FAST)
    assert made.exit_code == 0, made.output
    record = json.loads((out / "card.json").read_text())
    assert record["model"] == str(model)
    # a run directory can come from someone else: every string a page shows, hostile
    record["data"]["name"] = PAYLOADS[0]
    record["data"]["label_names"] = PAYLOADS
    record["command"] = PAYLOADS[2]
    record["steps"][0]["description"] = PAYLOADS[3]
    record["roles"] = {"before": PAYLOADS[0], "after": PAYLOADS[2]}
    record["before"]["warnings"] = [PAYLOADS[1]]
    record["after"]["params"]["per_layer"][0]["name"] = PAYLOADS[0]
    (out / "card.json").write_text(json.dumps(record))
    rendered = invoke("report", out)
    assert rendered.exit_code == 0, rendered.output
    html = (out / "report.html").read_text()
    for payload in PAYLOADS:
        assert payload not in html
    assert "&lt;script&gt;document.title=" in html and "&lt;img src=x onerror=" in html
    assert not re.search(r"<(script|img|iframe)\b|<svg onload", html)

    dom, log = _chromium(out / "report.html", tmp_path / "profile")
    assert "XSSRAN" not in dom and "XSSRAN" not in log
    assert "&lt;script&gt;document.title='XSS'+'RAN'" in dom  # shown as text

    control = tmp_path / "control.html"  # the same payloads unescaped: proof the check would see a script run
    control.write_text(f"<!doctype html><html><head><title>t</title></head><body>{''.join(PAYLOADS)}</body></html>")
    dom, log = _chromium(control, tmp_path / "profile-control")
    assert "<title>XSSRAN</title>" in dom and 'data-x="XSSRAN"' in dom
