"""Wanda for decoder LLMs (torchao's WandaSparsifier): which weights it zeroes, 2:4, distillation that keeps the
zeros, and the command line, on a 2-block Llama small enough to run in seconds."""

from pathlib import Path

import pytest
import torch

import sizewise
from sizewise.compress.prune import WandaPrune
from sizewise.compress.prune.wanda import decoder_linear_weights
from sizewise.compress.quantize.llm import calibration_windows
from sizewise.compress.registry import StepContext, get_method
from sizewise.core.errors import ConfigError

pytest.importorskip("torchao")
from kill_harness import tiny_causal_lm  # noqa: E402  (tests/reliability, put on the path by conftest.py)

QUICK = dict(calibration_samples=2, calibration_tokens=32)


def _input_norms(model, layer: torch.nn.Linear, windows) -> torch.Tensor:
    sums = []
    handle = layer.register_forward_hook(lambda _m, args, _o: sums.append((args[0].reshape(-1, args[0].shape[-1])
                                                                           ** 2).sum(0)))
    with torch.no_grad():
        for w in windows:
            model(input_ids=w)
    handle.remove()
    return torch.stack(sums).sum(0).sqrt()


def test_wanda_zeroes_the_lowest_weight_times_input_norm_of_each_layer(tiny_lm):
    model, text = tiny_lm
    layer = model.module.model.layers[0].mlp.down_proj
    windows, _ = calibration_windows(model, text.without_test(), QUICK["calibration_samples"],
                                     QUICK["calibration_tokens"])
    magnitude = layer.weight.detach().abs().clone()
    score = magnitude * _input_norms(model.module, layer, windows)
    embedding = model.module.model.embed_tokens.weight.detach().clone()
    details = get_method("wanda").apply(model, WandaPrune(0.5, **QUICK), StepContext(data=text.without_test()))
    kept = layer.weight.detach() != 0
    threshold = score.flatten().sort().values[score.numel() // 2]
    assert kept.float().mean() == pytest.approx(0.5, abs=0.01)
    assert bool((score[kept] >= threshold * (1 - 1e-5)).all()) and bool((score[~kept] <= threshold * (1 + 1e-5)).all())
    # activation-aware, not magnitude pruning: some kept weight is smaller than some zeroed one
    assert magnitude[kept].min() < magnitude[~kept].max()
    assert details["weight_sparsity"] == pytest.approx(0.5, abs=0.01) and details["calibration"]["split"] == "train"
    assert details["layers"] == len(decoder_linear_weights(model.module, model.module.model.layers)) == 14
    torch.testing.assert_close(model.module.model.embed_tokens.weight, embedding)  # the embedding stays dense


def test_two_four_keeps_two_of_every_four_input_weights(tiny_lm):
    model, text = tiny_lm
    details = get_method("wanda").apply(model, WandaPrune(pattern="2:4", **QUICK), StepContext(data=text.without_test()))
    for name, w in decoder_linear_weights(model.module, model.module.model.layers).items():
        zeros = (w.detach().reshape(-1, 4) == 0).sum(1)
        assert bool((zeros >= 2).all()), name
    assert details["pattern"] == "2:4" and details["comparison_group"] == "4 consecutive input weights"


def test_distillation_after_wanda_keeps_the_zeros(tiny_lm):
    model, text = tiny_lm
    ctx = StepContext(data=text.without_test(), train=sizewise.TrainConfig(epochs=1, lr=1e-3, batch_size=8))
    layer = model.module.model.layers[0].mlp.up_proj
    seen = []
    ctx.fit = lambda m, train, **kw: (seen.append(layer.weight.detach().clone()),  # noqa: E731
                                      StepContext.fit(ctx, m, train, **kw))[1]
    details = get_method("wanda").apply(model, WandaPrune(0.5, **QUICK), ctx)
    assert ctx.recovery_teacher and details["weight_sparsity"] == pytest.approx(0.5, abs=0.01)
    pruned = seen[0]
    assert bool((layer.weight[pruned == 0] == 0).all())  # the zeros held through training
    assert not torch.equal(layer.weight[pruned != 0], pruned[pruned != 0])  # and the rest trained


@pytest.mark.parametrize("fields, message", [({"pattern": "4:8"}, "unknown sparsity pattern"),
                                             ({"pattern": "2:4", "sparsity": 0.7}, "half of the weights"),
                                             ({"sparsity": 1.0}, r"\[0, 1\)")])
def test_bad_wanda_configs_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        WandaPrune(**fields)


def test_the_prune_command_runs_wanda_2_4_and_refuses_a_cnn(tmp_path):
    from typer.testing import CliRunner

    from sizewise.cli.app import app

    model_dir, text_dir = tiny_causal_lm(tmp_path / "lm")
    result = CliRunner().invoke(app, ["prune", str(model_dir), "--data", str(text_dir), "--method", "wanda",
                                      "--pattern", "2:4", "--finetune-epochs", "0", "--no-memory",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "weight_sparsity: 0.5" in result.output
    result = CliRunner().invoke(app, ["prune", "zoo:digits-cnn", "--data", "digits", "--method", "wanda",
                                      "--out", str(tmp_path / "d")])
    assert result.exit_code == 1 and "not a decoder LLM" in result.output


def test_a_sparse_llm_is_stored_as_bitmask_and_values_and_reloads_exactly(tiny_lm, tmp_path):
    model, text = tiny_lm
    dense_dir = sizewise.save_model(model, tmp_path / "dense")
    get_method("wanda").apply(model, WandaPrune(0.5, **QUICK), StepContext(data=text.without_test()))
    sparse_dir = sizewise.save_model(model, tmp_path / "sparse")

    def weight_bytes(d):
        return sum(f.stat().st_size for f in Path(d).glob("*.safetensors"))

    assert weight_bytes(sparse_dir) < 0.85 * weight_bytes(dense_dir)  # the decoder layers hold most weights here
    again = sizewise.load(str(sparse_dir))
    for name, tensor in model.module.state_dict().items():
        torch.testing.assert_close(again.module.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(again.module(input_ids=ids).logits, model.module(input_ids=ids).logits)
