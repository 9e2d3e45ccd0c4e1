import pytest
import torch

from sizewise.models.zoo import ZOO, build


def conv(c_in, c_out, k, bias=True):
    return c_in * c_out * k * k + (c_out if bias else 0)


def linear(n_in, n_out):
    return n_in * n_out + n_out


def cifar_resnet(depth):
    """He et al. 2016 sec. 4.2 with option-A shortcuts: 3x3 convs without bias, BN (weight + bias) after each conv,
    stages of n = (depth - 2) / 6 blocks at 16/32/64 channels, global pooling, fc 64 -> 10."""
    n = (depth - 2) // 6
    total = conv(3, 16, 3, bias=False) + 2 * 16  # stem conv + its BN
    c_in = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += conv(c_in, width, 3, bias=False) + 2 * width + conv(width, width, 3, bias=False) + 2 * width
            c_in = width
    return total + linear(64, 10)  # shortcuts add nothing (option A)


# Counted here from the layer shapes, independently of the zoo's code, then checked against the published figures:
# Han et al. 2015 (LeNet-300-100 1,070 KB, LeNet-5 1,720 KB at fp32) and He et al. 2016 (ResNet-20 0.27M, -56 0.85M).
EXPECTED_LAYERS = {
    "lenet-300-100": {"fc1": linear(784, 300), "fc2": linear(300, 100), "fc3": linear(100, 10)},
    # 28x28 -conv5-> 24x24 -pool-> 12x12 -conv5-> 8x8 -pool-> 4x4, so fc1 sees 50 * 4 * 4 = 800 inputs
    "lenet5": {"conv1": conv(1, 20, 5), "conv2": conv(20, 50, 5), "fc1": linear(50 * 4 * 4, 500),
               "fc2": linear(500, 10)},
    # 8x8 -conv3 pad1-> 8x8 -conv3 pad1-> 8x8 -pool-> 4x4, so fc1 sees 32 * 4 * 4 = 512 inputs
    "digits-cnn": {"conv1": conv(1, 16, 3), "conv2": conv(16, 32, 3), "fc1": linear(32 * 4 * 4, 64),
                   "fc2": linear(64, 10)},
}
EXPECTED = {name: sum(layers.values()) for name, layers in EXPECTED_LAYERS.items()} | {
    "resnet20": cifar_resnet(20), "resnet56": cifar_resnet(56)}


def test_hand_counts_are_the_published_ones():
    # 784*300+300 + 300*100+100 + 100*10+10
    assert EXPECTED["lenet-300-100"] == 235_500 + 30_100 + 1_010 == 266_610
    # 1*20*25+20 + 20*50*25+50 + 800*500+500 + 500*10+10
    assert EXPECTED["lenet5"] == 520 + 25_050 + 400_500 + 5_010 == 431_080
    # stem 432+32; stage 1: 3 x (2*2,304 + 64); stage 2: 13,952 + 2 x 18,560; stage 3: 55,552 + 2 x 73,984; fc 650
    assert EXPECTED["resnet20"] == 464 + 14_016 + 51_072 + 203_520 + 650 == 269_722
    # n = 9: stem 464; stage 1: 9 x 4,672; stage 2: 13,952 + 8 x 18,560; stage 3: 55,552 + 8 x 73,984; fc 650
    assert EXPECTED["resnet56"] == 464 + 42_048 + 162_432 + 647_424 + 650 == 853_018
    assert EXPECTED["digits-cnn"] == 160 + 4_640 + 32_832 + 650 == 38_282
    assert round(EXPECTED["resnet20"] / 1e6, 2) == 0.27 and round(EXPECTED["resnet56"] / 1e6, 2) == 0.85


def test_the_zoo_has_exactly_the_checked_models():
    assert sorted(ZOO.names()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_zoo_models_have_the_hand_counted_sizes_and_run(name):
    torch.manual_seed(0)
    model = build(name).eval()
    assert sum(p.numel() for p in model.parameters()) == EXPECTED[name]
    for layer, count in EXPECTED_LAYERS.get(name, {}).items():
        assert sum(p.numel() for p in getattr(model, layer).parameters()) == count, layer
    entry = ZOO.get(name)
    assert entry.input_shape == model.input_shape and entry.num_classes == 10
    with torch.no_grad():
        out = model(torch.randn(3, *entry.input_shape))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # the output depends on the input: a real forward pass


def test_resnet_stages_halve_resolution_and_double_width():
    model = build("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        x = torch.relu(model.bn1(model.conv1(x)))
        shapes = []
        for stage in (model.layer1, model.layer2, model.layer3):
            x = stage(x)
            shapes.append(tuple(x.shape))
    assert shapes == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3)] == [3, 3, 3]  # n = (20 - 2) / 6


def test_option_a_shortcut_adds_no_parameters_and_pads_with_zeros():
    from sizewise.models.zoo.resnet_cifar import ZeroPadShortcut

    shortcut = ZeroPadShortcut(16, 32)
    assert not list(shortcut.parameters())
    x = torch.arange(16 * 8 * 8, dtype=torch.float32).reshape(1, 16, 8, 8)
    y = shortcut(x)
    assert y.shape == (1, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])  # the input, subsampled by 2, in the middle channels
    assert not y[:, :8].any() and not y[:, 24:].any()  # 8 zero channels either side


def test_unknown_zoo_name_lists_the_known_ones():
    with pytest.raises(KeyError) as info:
        build("resnet21")
    assert "did you mean 'resnet20'" in str(info.value)
    assert "lenet5" in str(info.value)


def test_resnet_weights_saved_before_the_shortcut_layout_was_a_buffer_still_load():
    model = build("resnet20")
    old = {k: v for k, v in model.state_dict().items() if not k.endswith("shortcut.select")}
    assert len(old) < len(model.state_dict())  # the two option-A shortcuts' layouts are left out
    fresh = build("resnet20")
    fresh.load_state_dict(old, strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(fresh.eval()(x), model.eval()(x))
