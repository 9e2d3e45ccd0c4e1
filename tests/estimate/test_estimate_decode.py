"""The decode roofline of ``estimate``: bytes read per step = weights + KV cache (measure's definition), tokens/s =
batch x bandwidth / bytes, the bandwidth's source always stated, and no figure for models that do not decode."""

import json
import math
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))

from hf_dirs import llama_dir  # noqa: E402
from sizewise.cli.app import app as APP  # noqa: E402

import sizewise  # noqa: E402
import sizewise.api  # noqa: E402
from sizewise.core.constants import load_constants  # noqa: E402
from sizewise.core.errors import ConfigError  # noqa: E402
from sizewise.estimate import EstimateConfig, estimate  # noqa: E402
from sizewise.estimate.render import build_view, to_markdown  # noqa: E402
from sizewise.measure.card import BandwidthStats  # noqa: E402

runner = CliRunner()
SECTION = "Decode (estimate: bandwidth roofline)"


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    """Llama, 2 layers, hidden 32, 4 query heads sharing 2 key/value heads (head_dim 8), untied head."""
    return llama_dir(tmp_path_factory.mktemp("llama") / "m")


def test_bytes_per_step_are_weights_plus_kv_cache(llama):
    e = estimate(str(llama / "config.json"), seq_len=48, batch=2, bandwidth=50)
    d = e.decode
    assert d.applies and d.reason == "" and (d.batch, d.context) == (2, 48)
    # 2 (K and V) x 2 layers x 2 kv heads x 8 head_dim x 48 tokens x batch 2, 2 bytes each (fp16)
    kv16 = 2 * 2 * 2 * 8 * 48 * 2 * 2
    assert e.memory.kv_cache_bytes == kv16
    assert d.kv_cache_bytes == {"fp32": 2 * kv16, "fp16": kv16, "int8": kv16, "int4": kv16}
    n = e.params.total
    assert d.bytes_per_step == {"fp32": 4 * n + 2 * kv16, "fp16": 2 * n + kv16, "int8": n + kv16,
                                "int4": math.ceil(n / 2) + kv16}
    assert d.bytes_per_step == e.memory.inference_bytes  # the memory table's inference bytes, same convention
    assert d.bandwidth_bytes_per_s == 50e9
    for prec, nbytes in d.bytes_per_step.items():
        assert d.tokens_per_s[prec] == pytest.approx(2 * 50e9 / nbytes, rel=1e-12)
    assert "upper bound" in d.kind and "not a measurement" in d.caveat


def test_fp32_bytes_per_step_equal_what_measure_reads(llama):
    """measure's roofline divides by weights as held + its KV cache formula; on the fp32 model they are the same
    bytes as estimate's fp32 row."""
    from sizewise.measure.llm import kv_cache_stats, weights_bytes

    e = estimate(str(llama / "config.json"), seq_len=40, batch=1, bandwidth=10)
    module = sizewise.load(llama).module
    measured = weights_bytes(module) + kv_cache_stats(module.config, 40, 1, 4).bytes
    assert e.decode.bytes_per_step["fp32"] == measured


def test_tokens_per_s_scale_with_bandwidth():
    slow, fast = estimate("gpt2", bandwidth=10), estimate("gpt2", bandwidth="40")
    assert slow.decode.bytes_per_step == fast.decode.bytes_per_step
    for prec in slow.decode.tokens_per_s:
        assert fast.decode.tokens_per_s[prec] == pytest.approx(4 * slow.decode.tokens_per_s[prec], rel=1e-12)
    assert slow.decode.bandwidth_source == "given: --bandwidth 10"
    assert any(a.name == "memory read bandwidth" and a.value == 10e9 for a in slow.assumptions)


def test_hardware_bandwidth_comes_from_hardware_json_with_its_source():
    e = estimate("gpt2", hardware="h100")
    assert e.decode.bandwidth_bytes_per_s == 3.35e12
    assert "h100, --hardware" in e.decode.bandwidth_source and "datasheet" in e.decode.bandwidth_source
    default = estimate("gpt2")  # the training default, a100-40gb, labelled as the default
    assert default.decode.bandwidth_bytes_per_s == 1555e9
    assert "the default hardware" in default.decode.bandwidth_source
    assert any(a.name == "a100-40gb memory bandwidth" and a.year == 2020 for a in default.assumptions)


def test_every_published_bandwidth_has_a_source_and_year():
    expected = {"v100": 900e9, "a100-40gb": 1555e9, "a100-80gb": 2039e9, "h100": 3.35e12, "rtx-4090": 1008e9}
    table = load_constants("hardware")["accelerators"]
    for key, value in expected.items():
        assert table[key]["memory_bandwidth"]["value"] == value, key
    for key, hw in table.items():
        entry = hw.get("memory_bandwidth")
        if entry is not None:
            assert entry["value"] > 0 and "B/s" in entry["source"] and isinstance(entry["year"], int), key


def test_unknown_bandwidth_is_said_not_invented():
    e = estimate("gpt2", hardware="tpu-v3")
    assert e.decode.applies and e.decode.bandwidth_bytes_per_s is None and e.decode.tokens_per_s is None
    assert e.decode.bytes_per_step["fp16"] > 0  # the bytes are still known
    assert "bandwidth unknown" in e.decode.bandwidth_source and "--bandwidth" in e.decode.bandwidth_source
    assert any("decode tokens/s is n/a" in n for n in e.notes)
    rows = next(t for t in build_view(e.to_dict()).tables if t.title == SECTION).rows
    assert all(r[2] == "n/a (bandwidth unknown)" for r in rows)


@pytest.mark.parametrize("value,message", [
    ("abc", "bandwidth must be a number of GB/s or 'here', got 'abc'"),
    ("-1", "bandwidth must be a positive number of GB/s, got -1"),
    ("0", "bandwidth must be a positive number of GB/s, got 0"),
    (0, "bandwidth must be a positive number of GB/s, got 0"),
    ("nan", "bandwidth must be a positive number of GB/s, got nan"),
    ("inf", "bandwidth must be a positive number of GB/s, got inf"),
    (True, "bandwidth must be a number of GB/s or 'here', got True"),
])
def test_bad_bandwidth_is_a_config_error(value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as info:
        EstimateConfig(model="gpt2", bandwidth=value)
    assert "--bandwidth here" in info.value.hint


@pytest.mark.parametrize("value,message", [
    ("abc", "error: bandwidth must be a number of GB/s or 'here', got 'abc'"),
    ("-1", "error: bandwidth must be a positive number of GB/s, got -1"),
    ("0", "error: bandwidth must be a positive number of GB/s, got 0"),
])
def test_bad_bandwidth_on_the_cli_is_one_line(value, message):
    result = runner.invoke(APP, ["estimate", "gpt2", "--bandwidth", value])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_here_is_normalized_and_needs_a_meter():
    assert EstimateConfig(model="gpt2", bandwidth=" Here ").bandwidth == "here"
    with pytest.raises(ConfigError, match="bandwidth 'here' needs a measurement"):
        estimate("gpt2", bandwidth="here")  # sizewise.estimate.estimate imports sizewise.core only


def _fake_bandwidth(threads, buffer_bytes=None, runs=7, device="cpu"):
    return BandwidthStats(bytes_per_s=20e9, ci95_bytes_per_s=(19e9, 21e9), buffer_bytes=2**29,
                          last_level_cache_bytes=None, runs=runs, threads=threads, device="cpu",
                          method=f"fake meter, {threads} thread(s)")


def test_here_measures_through_the_api_and_the_cli(monkeypatch, tmp_path):
    from sizewise.measure import llm  # `sizewise.measure` is also the API's function: import the module by name

    monkeypatch.setattr(llm, "measure_read_bandwidth", _fake_bandwidth)
    e = sizewise.estimate("gpt2", bandwidth="here", seq_len=128)
    assert e.decode.bandwidth_bytes_per_s == 20e9
    assert e.decode.bandwidth_source.startswith("measured here: fake meter")
    path = tmp_path / "e.json"
    result = runner.invoke(APP, ["estimate", "gpt2", "--bandwidth", "here", "--json", str(path)])
    assert result.exit_code == 0, result.output
    d = json.loads(path.read_text())
    assert d["config"]["bandwidth"] == "here" and d["decode"]["bandwidth_bytes_per_s"] == 20e9
    assert "measured here" in " ".join(result.output.split())


def test_real_bandwidth_measurement_on_a_tiny_buffer():
    value, how = sizewise.api._read_bandwidth_here(buffer_bytes=2**20)
    assert math.isfinite(value) and value > 0 and "torch.sum over a 1 MiB" in how


def test_cli_shows_the_section_and_writes_the_fields(tmp_path):
    path = tmp_path / "g.json"
    result = runner.invoke(APP, ["estimate", "gpt2", "--bandwidth", "100", "--batch", "4", "--seq-len", "512",
                                 "--json", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert SECTION in output and "tokens/s (upper bound)" in output
    assert "bandwidth 100 GB/s (given: --bandwidth 100)" in output
    assert "Upper-bound estimate, not a measurement" in output and "at batch 4, context 512 tokens" in output
    d = json.loads(path.read_text())["decode"]
    assert d["applies"] and d["batch"] == 4 and d["context"] == 512 and d["bandwidth_bytes_per_s"] == 100e9
    assert set(d["tokens_per_s"]) == set(d["bytes_per_step"]) == {"fp32", "fp16", "int8", "int4"}
    assert d["tokens_per_s"]["int4"] > d["tokens_per_s"]["fp16"] > d["tokens_per_s"]["fp32"]
    assert d["tokens_per_s"]["fp16"] == pytest.approx(4 * 100e9 / d["bytes_per_step"]["fp16"])
    assert "upper bound" in d["kind"] and d["formula"] and d["bandwidth_source"] == "given: --bandwidth 100"
    assert f"## {SECTION}" in to_markdown(json.loads(path.read_text()))


@pytest.mark.parametrize("model,reason", [("bert-base-uncased", "encoder"), ("resnet50", "not a token-by-token"),
                                          ("t5-base", "encoder-decoder")])
def test_models_that_do_not_decode_get_no_section(model, reason, tmp_path, monkeypatch):
    monkeypatch.setattr(sizewise.api, "_read_bandwidth_here", lambda: pytest.fail("measured for a non-decoder"))
    e = sizewise.estimate(model, bandwidth="here")
    assert not e.decode.applies and reason in e.decode.reason and e.decode.reason.startswith("n/a")
    assert e.decode.tokens_per_s is None and e.decode.bandwidth_bytes_per_s is None
    path = tmp_path / "e.json"
    result = runner.invoke(APP, ["estimate", model, "--json", str(path)])
    assert result.exit_code == 0, result.output
    assert "Decode" not in result.output
    assert json.loads(path.read_text())["decode"]["applies"] is False


def test_estimates_written_before_decode_still_render():
    d = estimate("gpt2", bandwidth=10).to_dict()
    del d["decode"]
    assert SECTION not in [t.title for t in build_view(d).tables]
