"""Deep Compression: Huffman coding, the .swz format, weight sharing, recipes (plans run by the one executor) and
their commands."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import sizewise
from sizewise.cli.app import app
from sizewise.compress.cluster import ClusterWeights, cluster, distinct_values, finetune_centroids
from sizewise.core import huffman
from sizewise.core.errors import ConfigError, ModelReferenceError
from sizewise.models import compressed_format as cf
from sizewise.compress.registry import StepContext
from sizewise.pipeline.executor import RunOptions, run
from sizewise.pipeline.plan import load_plan, parse_plan


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def bits_of(t: torch.Tensor) -> torch.Tensor:
    """The raw bits, so -0.0 != 0.0 and NaN == NaN: 'bit-identical' means this."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


# -- Huffman -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("counts", [[5, 1, 1, 1], [1] * 33, [100, 0, 3, 0, 7], [9]])
def test_huffman_round_trips_and_is_a_complete_prefix_code(counts):
    rng = np.random.default_rng(0)
    symbols = rng.permutation(np.repeat(np.arange(len(counts)), counts))
    code = huffman.code_lengths(np.bincount(symbols, minlength=len(counts)))
    data, n_bits = huffman.encode(symbols, code)
    assert np.array_equal(huffman.decode(data, n_bits, len(symbols), code), symbols)
    used = code.lengths[code.lengths > 0].astype(float)
    if len(used) > 1:
        assert np.isclose((2.0 ** -used).sum(), 1.0)  # Kraft equality: no wasted code space
    assert n_bits == int((np.bincount(symbols, minlength=len(counts)) * code.lengths).sum())


def test_huffman_beats_fixed_width_on_skewed_symbols():
    rng = np.random.default_rng(1)
    symbols = rng.choice(32, size=20000, p=np.r_[0.5, np.full(31, 0.5 / 31)])
    counts = np.bincount(symbols, minlength=32)
    assert huffman.mean_bits(counts, huffman.code_lengths(counts)) < 4.0 < 5  # 5 bits fixed


def test_too_skewed_counts_are_stored_raw_not_coded(tmp_path):
    fib = [1, 1]
    while len(fib) < 24:
        fib.append(fib[-1] + fib[-2])
    with pytest.raises(huffman.CodeTooLongError):
        huffman.code_lengths(np.array(fib))  # Fibonacci counts give a code as deep as the alphabet
    values = torch.repeat_interleave(torch.arange(1, 25, dtype=torch.float32), torch.tensor(fib))
    state = {"w": values[torch.randperm(values.numel(), generator=torch.Generator().manual_seed(0))].reshape(-1, 8)}
    cf.write(tmp_path / "skewed.swz", state, {})
    assert cf.inspect(tmp_path / "skewed.swz")[0][0].coding == "raw"
    assert torch.equal(cf.read(tmp_path / "skewed.swz")[0]["w"], state["w"])


def test_huffman_refuses_a_short_stream():
    code = huffman.code_lengths(np.array([3, 1]))
    data, n_bits = huffman.encode(np.array([0, 0, 1, 0]), code)
    with pytest.raises(ValueError):
        huffman.decode(data, n_bits - 1, 4, code)


# -- the .swz format -----------------------------------------------------------------------------------------------

def _shared_state():
    torch.manual_seed(0)
    w = torch.randn(60, 90)
    w[w.abs() < 1.2] = 0  # sparse, with gaps longer than 2**5 (fillers)
    w[5, :] = 0
    codebook = torch.linspace(-3, 3, 31)
    w = torch.where(w != 0, codebook[(w.unsqueeze(-1) - codebook).abs().argmin(-1)], torch.zeros(()))
    conv = torch.randint(1, 4, (4, 3, 3, 3)).float()  # few values, no zeros
    return {"fc.weight": w, "fc.bias": torch.randn(60), "conv.weight": conv, "other": torch.randn(8, 8),
            "steps": torch.arange(4), "half": torch.randn(6, 6).half().round(), "neg": torch.tensor([[-0.0, 1.0]])}


def test_decoded_tensors_are_bit_identical():
    state = _shared_state()
    back, manifest = cf.read_bytes(cf.encode(state, {"arch": "x"}))
    assert manifest == {"arch": "x"} and set(back) == set(state)
    for name, t in state.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape
        assert torch.equal(bits_of(back[name]), bits_of(t)), name


def test_codings_are_chosen_by_size_and_reported(tmp_path):
    path = tmp_path / "m.swz"
    size = cf.write(path, _shared_state(), {"arch": "x"})
    rows, facts = cf.inspect(path)
    by_name = {r.name: r for r in rows}
    assert facts["file_bytes"] == size == path.stat().st_size
    assert by_name["fc.weight"].coding == "shared-sparse" and 2 <= by_name["fc.weight"].index_bits_fixed <= 8
    assert by_name["fc.weight"].weight_bits_fixed == 5  # 31 values + zero
    assert by_name["fc.weight"].weight_bits_huffman < 5
    assert by_name["conv.weight"].coding == "shared-dense"
    assert by_name["other"].coding == "raw"  # 64 distinct values: a codebook would cost more than the tensor
    assert by_name["neg"].coding == "raw"  # -0.0 must survive
    assert by_name["fc.weight"].bytes < by_name["fc.weight"].dense_bytes / 10


def test_relative_index_width_is_searched_and_fillers_bridge_long_gaps(tmp_path):
    state = _shared_state()
    searched, fixed = tmp_path / "searched.swz", tmp_path / "fixed.swz"
    cf.write(searched, state, {})
    cf.write(fixed, state, {}, index_bits=2)  # gaps of up to 4: most entries need fillers
    assert searched.stat().st_size <= fixed.stat().st_size
    row = next(r for r in cf.inspect(fixed)[0] if r.name == "fc.weight")
    assert row.index_bits_fixed == 2 and row.fillers > 0 and row.entries == row.nonzero + row.fillers
    assert torch.equal(cf.read(fixed)[0]["fc.weight"], state["fc.weight"])


@pytest.mark.parametrize("damage", ["flip", "truncate", "magic", "empty"])
def test_corrupted_or_truncated_files_are_refused(tmp_path, damage):
    data = bytearray(cf.encode(_shared_state(), {"arch": "x"}))
    if damage == "flip":
        data[len(data) // 2] ^= 0x10
    elif damage == "truncate":
        data = data[: len(data) - 100]
    elif damage == "magic":
        data[:4] = b"PK\x03\x04"
    else:
        data = bytearray()
    path = tmp_path / "bad.swz"
    path.write_bytes(bytes(data))
    with pytest.raises(cf.CorruptFileError):
        cf.read(path)
    with pytest.raises(ModelReferenceError):
        sizewise.load(str(path))


# -- weight sharing ------------------------------------------------------------------------------------------------

def _sparse_lenet():
    loaded = sizewise.load("zoo:digits-cnn")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in loaded.module.parameters():
            if p.dim() > 1:
                p[p.abs() < p.abs().median()] = 0
    return loaded


def test_cluster_shares_values_per_layer_and_keeps_zeros():
    loaded = _sparse_lenet()
    zeros = {n: (p == 0).clone() for n, p in loaded.module.named_parameters() if p.dim() > 1}
    details = cluster(loaded, ClusterWeights(conv_bits=4, linear_bits=3), StepContext())
    for name, p in loaded.module.named_parameters():
        if p.dim() > 1:
            bits = 4 if p.dim() == 4 else 3
            assert 1 < distinct_values(p) <= 2 ** bits - 1  # one symbol is left for "zero"
            assert torch.equal(p == 0, zeros[name])
    assert all(layer["distinct_values"] == layer["centroids"] for layer in details["layers"].values())


def test_centroid_finetuning_moves_centroids_but_keeps_sharing(digits):
    loaded = _sparse_lenet()
    cluster(loaded, ClusterWeights(bits=3), StepContext())
    before = {n: p.detach().clone() for n, p in loaded.module.named_parameters() if p.dim() > 1}
    finetune_centroids(loaded, StepContext(data=digits), sizewise.TrainConfig(epochs=1, lr=1e-2, weight_decay=0.0))
    assert not any("parametrizations" in n for n, _ in loaded.module.named_parameters())
    for name, p in loaded.module.named_parameters():
        if p.dim() > 1:
            assert torch.equal(p == 0, before[name] == 0)
            assert distinct_values(p) <= distinct_values(before[name])
            # weights that shared a value before still share one after: the mapping old value -> new value is a function
            pairs = torch.unique(torch.stack([before[name].flatten(), p.detach().flatten()]), dim=1)
            assert pairs.shape[1] == torch.unique(before[name]).numel()
            assert not torch.equal(p, before[name])


def test_cluster_config_is_validated():
    with pytest.raises(ConfigError, match="bits"):
        ClusterWeights(bits=0)
    with pytest.raises(ConfigError, match="init"):
        ClusterWeights(init="kmeans++")


def test_a_clustered_hf_model_round_trips_as_swz(tiny_bert_dir, tmp_path):
    loaded = sizewise.load(str(tiny_bert_dir))
    cluster(loaded, ClusterWeights(bits=4), StepContext())
    sizewise.save_model(loaded, tmp_path / "model", encoding="deep-compression")
    assert (tmp_path / "model" / cf.WEIGHTS).is_file()
    back = sizewise.load(str(tmp_path))
    inputs = loaded.example_inputs(2)
    with torch.inference_mode():
        assert torch.equal(loaded.module(**inputs).last_hidden_state, back.module(**inputs).last_hidden_state)
    with pytest.raises(ModelReferenceError, match="run directory"):
        sizewise.load(str(tmp_path / "model" / cf.WEIGHTS))


# -- recipes -------------------------------------------------------------------------------------------------------

def test_the_help_example_is_a_valid_recipe():
    import yaml

    from sizewise.cli.compress_cmd import EXAMPLE, EXAMPLE_RECIPE

    assert EXAMPLE_RECIPE in EXAMPLE
    plan = parse_plan(yaml.safe_load(EXAMPLE_RECIPE))
    assert [s.method for s in plan.steps] == ["gradual", "finetune", "int8-dynamic"]
    assert plan.steps[0].train.epochs == 3 and plan.steps[2].config.runtime == "onnxruntime"


def test_the_builtin_recipe_is_the_papers_chain():
    plan = load_plan("deep-compression")
    assert [s.method for s in plan.steps] == ["gradual", "finetune", "cluster", "finetune", "huffman"]
    assert plan.steps[0].config.sparsity == 0.92 and plan.steps[0].train.epochs == 12
    assert plan.source == "built-in:deep-compression"


@pytest.mark.parametrize("steps, message", [
    ([{"distil": {}}], "step 1 has unknown method 'distil'.*families: prune, quantize, distill"),
    ([{"prune": {"sparsity": "high"}}], "step 1 \\(prune\\): field 'sparsity' must be float"),
    ([{"prune": {"sparsity": 0.5}}, {"cluster": {"bits": 4.5}}], "step 2 \\(cluster\\): field 'bits' must be"),
    ([{"finetune": {"epochs": 1, "learning_rate": 0.1}}], "unknown field 'learning_rate'.*known fields: .*epochs, lr"),
    ([{"prune": {"method": "gradual", "sparsity": 0.9}}], "trains while it prunes"),
    ([{"prune": {"method": "random", "sparsity": 0.9}}], "unknown prune method 'random'"),
    ([{"quantize": {"method": "magnitude"}}], "unknown quantize method 'magnitude'"),
    ([{"quantize": {"method": "int8-dynamic", "group_size": 32}}], "unknown field 'group_size'"),
    ([{"prune": {"sparsity": 1.5}}], "sparsity must be in"),
    ([{"encode": {"format": "zip"}}], "unknown format 'zip'"),
    ([{"prune": {"method": "gradual", "sparsity": 0.9, "epochs": 1, "layer_sparsity": {"fc1": "most"}}}],
     "field 'layer_sparsity' must be a mapping of str to float or null"),
    ([{"prune": {}, "cluster": {}}], "one-key mapping"),
    ([], "non-empty 'steps' list"),
])
def test_recipe_errors_name_the_step_and_field(steps, message):
    with pytest.raises(ConfigError, match=message):
        parse_plan({"name": "r", "steps": steps})


def test_recipe_files_unknown_names_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="built-in recipes: deep-compression"):
        load_plan("deep-compresion")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [prune: {sparsity: 0.5}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_plan(str(bad))


SMALL_RECIPE = {"name": "small", "steps": [
    {"prune": {"method": "magnitude", "sparsity": 0.8, "epochs": 1, "lr": 0.003}},
    {"finetune": {"epochs": 1, "lr": 0.001}},
    {"cluster": {"bits": 4}},
    {"finetune": {"epochs": 1, "lr": 0.0003, "weight_decay": 0.0}},
    {"encode": {}}]}


def test_recipe_runs_reloads_exactly_and_resumes(trained_digits_dir, digits, tmp_path, fast_measure):
    plan = parse_plan(SMALL_RECIPE)
    out = tmp_path / "dc"
    options = RunOptions(measure=fast_measure, kind="compress")
    result = run(sizewise.load(str(trained_digits_dir)), plan, digits, out, options)
    assert [s.method for s in result.steps] == ["magnitude", "finetune", "cluster", "finetune", "huffman"]
    assert (out / "model" / cf.WEIGHTS).is_file() and (out / "steps.json").is_file()
    assert result.after.size.disk_bytes < result.before.size.disk_bytes / 8
    # the reloaded artifact is the model that was evaluated: the last step's validation score and the after card's
    # test score, to the example
    reloaded = sizewise.load(str(out))
    assert sizewise.evaluate(reloaded, digits, split="validation")["accuracy"] == result.steps[-1].metrics["accuracy"]
    assert sizewise.evaluate(reloaded, digits)["accuracy"] == result.after.metrics["accuracy"]
    assert result.after.metrics["split"] == "test" and result.steps[-1].metrics["split"] == "validation"
    weights = [p for p in reloaded.module.parameters() if p.dim() > 1]
    assert all(distinct_values(p) <= 15 for p in weights)  # 4 bits: 15 values + zero
    assert sum(int((p == 0).sum()) for p in weights) / sum(p.numel() for p in weights) >= 0.79  # global 80%
    again = run(sizewise.load(str(trained_digits_dir)), plan, digits, out, options)
    assert again.resumed_from == 5 and again.after.metrics == result.after.metrics
    other = parse_plan({"name": "other", "steps": [{"cluster": {"bits": 3}}]})
    with pytest.raises(ConfigError, match="different plan"):
        run(sizewise.load(str(trained_digits_dir)), other, digits, out, options)


def test_cli_cluster_inspect_and_compress(trained_digits_dir, tmp_path, monkeypatch, fast_measure):
    import dataclasses
    import importlib

    api = importlib.import_module("sizewise.measure.api")  # `sizewise.measure` is the verb; its module is here
    monkeypatch.setattr(api, "MeasureConfig", lambda **kw: dataclasses.replace(fast_measure, **kw))
    runner = CliRunner()
    result = runner.invoke(app, ["cluster", str(trained_digits_dir), "--data", "digits", "--out",
                                 str(tmp_path / "c"), "--bits", "4", "--finetune-epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "model.swz" in result.output and "Huffman" in result.output
    reported = runner.invoke(app, ["report", str(tmp_path / "c")])  # any run record renders
    assert reported.exit_code == 0, reported.output
    assert "<table>" in (tmp_path / "c" / "report.html").read_text() and (tmp_path / "c" / "report.md").is_file()
    shown = runner.invoke(app, ["inspect", str(tmp_path / "c"), "--json", str(tmp_path / "t.json")])
    assert shown.exit_code == 0, shown.output
    assert "shared" in shown.output and (tmp_path / "t.json").is_file()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps:\n  - cluster: {bits: 4, colour: red}\n")
    bad = runner.invoke(app, ["compress", str(trained_digits_dir), "--recipe", str(recipe), "--data", "digits",
                              "--out", str(tmp_path / "r")])
    assert bad.exit_code == 1 and "unknown field 'colour'" in bad.output
    assert "Traceback" not in bad.output
    missing = runner.invoke(app, ["inspect", str(tmp_path)])
    assert missing.exit_code == 1 and "no compressed model" in missing.output
