import numpy as np
import pytest
import torch

import sizewise
from sizewise.compress import list_methods
from sizewise.compress.registry import StepContext, get_method
from sizewise.compress.prune import ChannelPrune, GradualPrune, HeadPrune, LotteryPrune, MagnitudePrune, NMPrune
from sizewise.compress.prune.masks import magnitude_masks, prunable_weights, weight_sparsity
from sizewise.compress.prune.structured import UnprunableLayerError
from sizewise.compress.prune.unstructured import cubic_schedule
from sizewise.core.errors import ConfigError, DataError


def compress(loaded, config, out, dataset=None, finetune=None, measure_config=None):
    """One method as a one-step plan through the executor: before/after cards, the artifact saved and reloaded."""
    from sizewise.measure import MeasureConfig
    from sizewise.pipeline.executor import RunOptions, run
    from sizewise.pipeline.plan import Plan, Step

    return run(loaded, Plan((Step.of(config, train=finetune),)), dataset, out,
               RunOptions(measure=measure_config or MeasureConfig()))


def apply(name, loaded, config, **context):
    """Run one registered method's handler in memory; returns the (possibly new) model and the details."""
    out = get_method(name).apply(loaded, config, StepContext(**context))
    return getattr(out, "model", loaded), getattr(out, "details", out)


def random_digits_cnn(seed=0):
    torch.manual_seed(seed)
    return sizewise.load("zoo:digits-cnn")


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# DigitsCNN: conv1 1->16 (3x3), conv2 16->32 (3x3), 2x2 pool, fc1 32*4*4=512->64, fc2 64->10.
# Its prunable weights (Linear/Conv weights; biases stay dense): 144 + 4,608 + 32,768 + 640 = 38,160.
PRUNABLE = {"conv1.weight": 1 * 16 * 9, "conv2.weight": 16 * 32 * 9, "fc1.weight": 512 * 64, "fc2.weight": 64 * 10}


def test_digits_cnn_prunable_weights_are_the_conv_and_linear_weights():
    weights = prunable_weights(random_digits_cnn().module)
    assert {k: w.numel() for k, w in weights.items()} == PRUNABLE and sum(PRUNABLE.values()) == 38_160


@pytest.mark.parametrize("scope, zeros", [
    # global: round(0.9 x 38,160) = 34,344 over all prunable weights together
    ("global", {"all": 34_344}),
    # layer: round(0.9 x n) per layer: 129.6 -> 130, 4,147.2 -> 4,147, 29,491.2 -> 29,491, 576
    ("layer", {"conv1.weight": 130, "conv2.weight": 4_147, "fc1.weight": 29_491, "fc2.weight": 576}),
])
def test_magnitude_removes_exactly_the_smallest_weights(scope, zeros):
    loaded = random_digits_cnn()
    before = state(loaded.module)
    _, details = apply("magnitude", loaded, MagnitudePrune(0.9, scope))
    after = state(loaded.module)
    removed = {n: after[n] == 0 for n in PRUNABLE}
    assert not any((before[n] == 0).any() for n in PRUNABLE)  # every zero below was made by pruning
    if scope == "global":
        assert sum(int(r.sum()) for r in removed.values()) == zeros["all"]
        groups = [list(PRUNABLE)]  # one threshold over all layers
    else:
        assert {n: int(r.sum()) for n, r in removed.items()} == zeros
        groups = [[n] for n in PRUNABLE]  # one threshold per layer
    assert details["weight_sparsity"] == pytest.approx(sum(int(r.sum()) for r in removed.values()) / 38_160)
    for group in groups:  # no removed weight was larger than a kept one
        gone = torch.cat([before[n][removed[n]].abs() for n in group])
        kept = torch.cat([before[n][~removed[n]].abs() for n in group])
        assert gone.max() <= kept.min()
    for name in after:  # survivors and biases are untouched, bit for bit
        keep = ~removed[name] if name in removed else torch.ones_like(after[name], dtype=torch.bool)
        assert torch.equal(after[name][keep], before[name][keep]), name


def _rows(pruned: torch.Tensor, original: torch.Tensor) -> list[int]:
    """Which rows of ``original`` the rows of ``pruned`` are (each must be exactly one of them)."""
    rows = []
    for row in pruned:
        match = (original == row).flatten(1).all(1).nonzero().flatten().tolist()
        assert len(match) == 1, "a pruned row is not an unchanged row of the original"
        rows.append(match[0])
    return rows


def test_channel_pruning_half_gives_the_hand_counted_network_and_keeps_its_function():
    from sizewise.measure.flops import count_flops

    loaded = random_digits_cnn()
    original = {k: v for k, v in state(loaded.module).items()}
    x = torch.randn(5, 1, 8, 8)
    model, details = apply("channel", loaded, ChannelPrune(0.5))
    m = model.module
    # half the channels of every layer but the classifier, whose 10 outputs are the classes
    assert (m.conv1.out_channels, m.conv2.in_channels, m.conv2.out_channels) == (8, 8, 16)
    assert (m.fc1.in_features, m.fc1.out_features, m.fc2.in_features, m.fc2.out_features) == (16 * 4 * 4, 32, 32, 10)
    # conv1 1*8*9+8 = 80, conv2 8*16*9+16 = 1,168, fc1 256*32+32 = 8,224, fc2 32*10+10 = 330
    assert sum(p.numel() for p in m.parameters()) == 80 + 1_168 + 8_224 + 330 == 9_802
    assert details["params_kept"] == pytest.approx(9_802 / 38_282) and details["left_unpruned"] == []
    # FLOPs at batch 1 (2 x MACs; 8x8 maps before the pool): 2*64*8*9 + 2*64*16*8*9 + 2*256*32 + 2*32*10
    assert count_flops(m, {"x": x[:1]})[0].total == 9_216 + 147_456 + 16_384 + 640 == 173_696
    # the survivors are unchanged slices of the original, cut consistently along every dependency...
    k1 = _rows(m.conv1.weight, original["conv1.weight"])
    k2 = _rows(m.conv2.weight, original["conv2.weight"][:, k1])
    cols = [c * 16 + j for c in k2 for j in range(16)]  # conv2 channel c feeds fc1 inputs 16c .. 16c+15
    k3 = _rows(m.fc1.weight, original["fc1.weight"][:, cols])
    assert k1 == sorted(k1) and k2 == sorted(k2) and k3 == sorted(k3)
    assert torch.equal(m.fc2.weight, original["fc2.weight"][:, k3]) and torch.equal(m.fc2.bias, original["fc2.bias"])
    for name, kept in (("conv1.bias", k1), ("conv2.bias", k2), ("fc1.bias", k3)):
        assert torch.equal(dict(m.named_parameters())[name], original[name][kept])
    # ...so the small model computes what the original does with the removed channels switched off
    masked = random_digits_cnn().module.eval()
    masked.load_state_dict(original)
    with torch.no_grad():
        for layer, kept in (("conv1", k1), ("conv2", k2), ("fc1", k3)):
            off = torch.ones(getattr(masked, layer).weight.shape[0], dtype=torch.bool)
            off[kept] = False
            getattr(masked, layer).weight[off] = 0
            getattr(masked, layer).bias[off] = 0
        torch.testing.assert_close(m.eval()(x), masked(x))


def test_nm_keeps_the_two_largest_of_every_four():
    loaded = random_digits_cnn()
    before = state(loaded.module)["fc1.weight"].reshape(64, -1, 4)
    apply("nm", loaded, NMPrune(2, 4))
    after = loaded.module.fc1.weight.detach().reshape(64, -1, 4)
    kept = after != 0
    assert (kept.sum(-1) == 2).all()  # exactly 2 of every 4, in all 64 x 128 groups
    top2 = before.abs().topk(2, dim=-1).indices
    assert torch.equal(kept, torch.zeros_like(kept).scatter_(-1, top2, True))
    assert torch.equal(after[kept], before[kept])


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
    # by hand in test_channel_pruning_half_gives_the_hand_counted_network_and_keeps_its_function
    assert (result.before.params.total, result.after.params.total) == (38_282, 9_802)
    # 2*64*16*9 + 2*64*32*16*9 + 2*512*64 + 2*64*10 = 675,072 before; 173,696 after
    assert (result.before.flops.total, result.after.flops.total) == (675_072, 173_696)
    x = reloaded.example_inputs(3)
    assert reloaded.module(**x).shape == (3, 10)


class _PlainChannelPad(torch.nn.Module):
    """The option-A shortcut as a plain op (subsample, zero channels) that cannot say how to narrow itself."""

    def __init__(self, extra: int):
        super().__init__()
        self.extra = extra

    def forward(self, x):
        return torch.nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


def _resnet_with_plain_pads():
    torch.manual_seed(0)
    model = sizewise.load("zoo:resnet20")
    for block in (model.module.layer2[0], model.module.layer3[0]):
        block.shortcut = _PlainChannelPad(block.shortcut.out_channels - block.shortcut.in_channels)
    return sizewise.wrap(model.module, torch.randn(1, 3, 32, 32), task="image-classification")


def test_a_group_an_op_breaks_is_named_then_left_unpruned_on_request():
    with pytest.raises(UnprunableLayerError) as info:
        get_method("channel").apply(_resnet_with_plain_pads(), ChannelPrune(0.5), StepContext())
    assert "conv1" in info.value.message and "--skip-unprunable" in info.value.hint
    model = _resnet_with_plain_pads()
    details = get_method("channel").apply(model, ChannelPrune(0.5, skip_unprunable=True), StepContext())
    assert "conv1" in details["left_unpruned"]  # the stem's group runs through the residual stream and the pads
    widths = details["conv_widths"]
    assert widths["conv1"] == 16 and widths["layer1.0.conv1"] == 8  # the residual width stays, a block's inside halves
    assert model.module(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet_prunes_its_residual_channels_through_the_option_a_shortcuts(quick, tmp_path):
    torch.manual_seed(0)
    result = compress(sizewise.load("zoo:resnet20"), ChannelPrune(0.5), tmp_path / "b", measure_config=quick)
    assert result.details["left_unpruned"] == []
    widths = result.details["conv_widths"]
    # every conv of a stage halves: the block-internal ones and the residual stream the shortcuts carry
    assert widths["conv1"] == 8 and widths["layer1.2.conv2"] == 8 and widths["layer3.0.conv1"] == 32
    assert widths["layer2.0.conv2"] == 16 and widths["layer3.2.conv2"] == 32
    assert result.after.flops.total < 0.27 * result.before.flops.total
    reloaded = sizewise.load(tmp_path / "b")
    x = reloaded.example_inputs(2)
    torch.testing.assert_close(reloaded.module.eval()(**x), result.model.module.eval()(**x))
    assert [tuple(m.select.shape) for m in reloaded.module.modules() if hasattr(m, "select")] == [(16, 8), (32, 16)]


def test_pruned_resnet_exports_to_onnx_with_the_same_outputs(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from sizewise.models.convert import to_onnx

    torch.manual_seed(0)
    model = sizewise.load("zoo:resnet20")
    get_method("channel").apply(model, ChannelPrune(0.3), StepContext())
    shortcuts = [m for m in model.module.modules() if hasattr(m, "select")]
    assert any(m._pad is None for m in shortcuts)  # at least one shortcut runs the pruned (gather) layout
    path = to_onnx(model, tmp_path / "m.onnx")
    x = model.example_inputs(3)
    expected = model.module.eval()(**x).detach().numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {k: v.numpy() for k, v in
                                                                                         x.items()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_round_to_keeps_the_nearest_multiple_and_at_least_one():
    with pytest.raises(ConfigError, match="round_to"):
        ChannelPrune(0.5, round_to=0)
    model = sizewise.load("zoo:resnet20")
    details = get_method("channel").apply(model, ChannelPrune(0.3, round_to=8), StepContext())
    # kept 16*0.7=11.2 -> 8 (nearest), 32*0.7=22.4 -> 24, 64*0.7=44.8 -> 48
    assert sorted(set(details["conv_widths"].values())) == [8, 24, 48]
    model = sizewise.load("zoo:resnet20")
    details = get_method("channel").apply(model, ChannelPrune(0.7, round_to=16), StepContext())
    assert set(details["conv_widths"].values()) == {16}  # 4.8 and 9.6 kept channels still keep one multiple of 16


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
    # a quarter of each layer's channels, whatever ranks them: conv1 16 -> 12, conv2 32 -> 24, fc1 64 -> 48
    # 1*12*9+12 + 12*24*9+24 + 24*16*48+48 + 48*10+10 = 120 + 2,616 + 18,480 + 490
    assert result.after.params.total == 21_706


def test_head_pruning_saves_reloads_and_exports(tiny_bert_dir, quick, tmp_path):
    from sizewise.models.convert import to_onnx

    source = sizewise.load(tiny_bert_dir)
    result = compress(source, HeadPrune(0.5), tmp_path, measure_config=quick)
    assert set(result.details["heads_after"].values()) == {2} and result.details["intermediate_size"] == 32
    reloaded = sizewise.load(tmp_path)
    x = reloaded.example_inputs(2, 8)
    torch.testing.assert_close(reloaded.module(**x).last_hidden_state, result.model.module(**x).last_hidden_state)
    assert source.module.encoder.layer[0].attention.self.num_attention_heads == 4  # the input model is untouched
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
