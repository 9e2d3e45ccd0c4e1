import numpy as np
import pytest
import torch

import sizewise
from sizewise.compress import compress, list_methods
from sizewise.compress.prune import ChannelPrune, GradualPrune, HeadPrune, LotteryPrune, MagnitudePrune, NMPrune
from sizewise.compress.prune.masks import magnitude_masks, prunable_weights, weight_sparsity
from sizewise.compress.prune.structured import UnprunableLayerError
from sizewise.compress.prune.unstructured import cubic_schedule
from sizewise.core.errors import ConfigError, DataError


def test_registry_lists_every_method():
    assert {"magnitude", "gradual", "lottery", "nm", "channel", "head"} <= set(list_methods())


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_sparsity_is_exact_masks_folded_and_bytes_drop(trained_digits_dir, digits, quick, tmp_path, scope):
    result = compress(sizewise.load(trained_digits_dir), MagnitudePrune(0.9, scope), tmp_path, dataset=digits,
                      measure_config=quick)
    reloaded = sizewise.load(tmp_path)
    weights = prunable_weights(reloaded.module)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    total = sum(w.numel() for w in weights.values())
    if scope == "layer":  # exactly, not "about": per layer...
        assert all(int((w == 0).sum()) == round(0.9 * w.numel()) for w in weights.values())
    else:  # ...or over all prunable weights together
        assert zeros == round(0.9 * total)
    assert not any("orig" in k or "mask" in k for k in reloaded.module.state_dict())
    assert result.after.size.disk_bytes < 0.2 * result.before.size.disk_bytes
    # layer scope prunes every layer 90%; global spares the convs (fewer, larger weights) where most FLOPs are
    assert result.after.flops.effective < (0.15 if scope == "layer" else 0.5) * result.before.flops.effective
    assert result.after.flops.total == result.before.flops.total  # a mask does not remove dense work...
    assert "accuracy" in result.after.metrics  # ...and the card shows both, with accuracy


def test_sparse_artifact_decodes_bit_exactly(tmp_path):
    from sizewise.models.sparse_format import load_sparse, save_sparse

    torch.manual_seed(0)
    w = torch.randn(64, 64)
    w[torch.rand(64, 64) < 0.8] = 0
    state = {"a.weight": w, "a.bias": torch.randn(64), "tied": w}
    counts = save_sparse(state, tmp_path / "s.safetensors")
    back = load_sparse(tmp_path / "s.safetensors")
    assert counts == {"sparse": 1, "dense": 1}  # the tied alias is stored once
    assert all(torch.equal(back[k], v) for k, v in state.items())


def test_cubic_schedule_follows_zhu_and_gupta():
    config = GradualPrune(0.8, initial_sparsity=0.0, pruning_steps=4, ramp_fraction=1.0)
    values = [cubic_schedule(t, config, total_steps=100) for t in (0, 25, 50, 75, 100, 150)]
    expected = [0.8 + (0 - 0.8) * (1 - t / 100) ** 3 for t in (0, 25, 50, 75, 100, 100)]
    assert values == pytest.approx(expected)


def test_gradual_reaches_the_final_sparsity_while_finetuning(trained_digits_dir, digits, quick, tmp_path):
    finetune = sizewise.TrainConfig(epochs=2, lr=1e-3)
    result = compress(sizewise.load(trained_digits_dir), GradualPrune(0.8, pruning_steps=5), tmp_path,
                      dataset=digits, finetune=finetune, measure_config=quick)
    sparsities = [s for _, s in result.details["schedule"]]
    assert sparsities == sorted(sparsities) and sparsities[-1] == pytest.approx(0.8)
    assert weight_sparsity(sizewise.load(tmp_path).module) == pytest.approx(0.8, abs=1e-3)


def test_gradual_with_per_layer_sparsity_reaches_each_layers_target(trained_digits_dir, digits, quick, tmp_path):
    config = GradualPrune(0.8, pruning_steps=5, layer_sparsity={"conv1": 0.3, "fc2": 0.5})
    result = compress(sizewise.load(trained_digits_dir), config, tmp_path, dataset=digits,
                      finetune=sizewise.TrainConfig(epochs=1, lr=1e-3), measure_config=quick)
    module = sizewise.load(tmp_path).module
    zeros = {n: float((p == 0).float().mean()) for n, p in module.named_parameters() if p.dim() > 1}
    assert zeros["conv1.weight"] == pytest.approx(0.3, abs=0.01) and zeros["fc2.weight"] == pytest.approx(0.5, abs=0.01)
    rest = [n for n in zeros if n not in ("conv1.weight", "fc2.weight")]
    kept = sum(int((dict(module.named_parameters())[n] != 0).sum()) for n in rest)
    assert 1 - kept / sum(dict(module.named_parameters())[n].numel() for n in rest) == pytest.approx(0.8, abs=1e-3)
    assert result.details["layer_sparsity"]["conv1.weight"] == pytest.approx(0.3, abs=0.01)
    with pytest.raises(ConfigError, match="not prunable layers.*prunable layers: conv1"):
        compress(sizewise.load(trained_digits_dir), GradualPrune(0.8, layer_sparsity={"conv9": 0.5}), tmp_path / "x",
                 dataset=digits, finetune=sizewise.TrainConfig(epochs=1), measure_config=quick)
    with pytest.raises(ConfigError, match="layer_sparsity\\['conv1'\\]"):
        GradualPrune(0.8, layer_sparsity={"conv1": 1.5})


def test_lottery_rewinds_and_prunes_each_round(trained_digits_dir, digits, quick, tmp_path):
    finetune = sizewise.TrainConfig(epochs=1, lr=1e-3)
    result = compress(sizewise.load(trained_digits_dir), LotteryPrune(0.875, rounds=3), tmp_path, dataset=digits,
                      finetune=finetune, measure_config=quick)
    assert [r["sparsity"] for r in result.details["rounds"]] == pytest.approx([0.5, 0.75, 0.875], abs=1e-3)


def test_nm_keeps_n_of_every_m(trained_digits_dir, quick, tmp_path):
    compress(sizewise.load(trained_digits_dir), NMPrune(2, 4), tmp_path, measure_config=quick)
    w = sizewise.load(tmp_path).module.fc1.weight.detach()
    groups = (w.reshape(w.shape[0], -1, 4) != 0).sum(-1)
    assert int(groups.max()) == 2


def test_channel_pruning_makes_a_smaller_module_that_reloads(trained_digits_dir, digits, quick, tmp_path):
    result = compress(sizewise.load(trained_digits_dir), ChannelPrune(0.5), tmp_path, dataset=digits,
                      measure_config=quick)
    reloaded = sizewise.load(tmp_path)
    assert reloaded.module.conv1.out_channels == 8 and reloaded.module.fc2.out_features == 10
    assert result.after.params.total < 0.3 * result.before.params.total
    assert result.after.flops.total < 0.5 * result.before.flops.total
    x = reloaded.example_inputs(3)
    assert reloaded.module(**x).shape == (3, 10)


def test_residual_resnet_names_unprunable_groups_then_prunes_the_rest(quick, tmp_path):
    with pytest.raises(UnprunableLayerError) as info:
        compress(sizewise.load("zoo:resnet20"), ChannelPrune(0.5), tmp_path / "a", measure_config=quick)
    assert "conv1" in info.value.message and "--skip-unprunable" in info.value.hint
    result = compress(sizewise.load("zoo:resnet20"), ChannelPrune(0.5, skip_unprunable=True), tmp_path / "b",
                      measure_config=quick)
    assert result.details["left_unpruned"]
    assert result.after.flops.total < 0.6 * result.before.flops.total
    reloaded = sizewise.load(tmp_path / "b")
    assert reloaded.module(**reloaded.example_inputs(2)).shape == (2, 10)


def test_bn_scale_importance(quick, tmp_path, digits, trained_digits_dir):
    result = compress(sizewise.load("zoo:resnet20"), ChannelPrune(0.5, importance="bn", skip_unprunable=True),
                      tmp_path / "r", measure_config=quick)
    assert result.after.params.total < result.before.params.total
    with pytest.raises(ConfigError, match="no BatchNorm layers"):
        compress(sizewise.load(trained_digits_dir), ChannelPrune(0.5, importance="bn"), tmp_path / "d",
                 measure_config=quick)


@pytest.mark.parametrize("importance", ["l2", "taylor"])
def test_channel_importances(trained_digits_dir, digits, quick, tmp_path, importance):
    result = compress(sizewise.load(trained_digits_dir), ChannelPrune(0.25, importance=importance), tmp_path,
                      dataset=digits, measure_config=quick)
    assert result.after.params.total < result.before.params.total


def test_head_pruning_saves_reloads_and_exports(tiny_bert_dir, quick, tmp_path):
    from sizewise.models.convert import to_onnx

    source = sizewise.load(tiny_bert_dir)
    result = compress(source, HeadPrune(0.5), tmp_path, measure_config=quick)
    assert set(result.details["heads_after"].values()) == {2} and result.details["intermediate_size"] == 32
    reloaded = sizewise.load(tmp_path)
    x = reloaded.example_inputs(2, 8)
    torch.testing.assert_close(reloaded.module(**x).last_hidden_state, source.module(**x).last_hidden_state)
    assert to_onnx(reloaded, tmp_path / "p.onnx").stat().st_size > 0


@pytest.mark.parametrize("make, message", [
    (lambda: MagnitudePrune(1.0), r"sparsity must be in \[0, 1\)"),
    (lambda: MagnitudePrune(-0.1), r"sparsity must be in \[0, 1\)"),
    (lambda: MagnitudePrune(0.5, scope="row"), "unknown scope 'row'"),
    (lambda: NMPrune(4, 2), "N:M needs 0 < N < M"),
    (lambda: ChannelPrune(0.5, importance="random"), "unknown importance 'random'"),
])
def test_bad_pruning_settings(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_gradual_without_finetuning_says_what_to_do(trained_digits_dir, quick, tmp_path, digits):
    with pytest.raises(ConfigError, match="--finetune-epochs"):
        compress(sizewise.load(trained_digits_dir), GradualPrune(0.5), tmp_path, dataset=digits, measure_config=quick)


def test_data_that_does_not_fit(quick, tmp_path, digits):
    with pytest.raises(DataError, match="models made for digits"):
        compress(sizewise.load("zoo:lenet5"), MagnitudePrune(0.5), tmp_path, dataset=digits, measure_config=quick)


def test_global_masks_prune_small_layers_less():
    big = torch.nn.Parameter(torch.randn(100, 100) * 0.01)
    small = torch.nn.Parameter(torch.randn(10, 10))
    masks = magnitude_masks({"big": big, "small": small}, 0.5, "global")
    assert float(masks["big"].float().mean()) < 0.5 < float(masks["small"].float().mean())
    assert np.isclose(sum(int((~m).sum()) for m in masks.values()), 0.5 * 10_100)
