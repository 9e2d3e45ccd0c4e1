import pytest
import torch

from sizewise.models.zoo import ZOO, build

# Published parameter counts: Han et al. 2015 (LeNets), He et al. 2016 (ResNets: 0.27M, 0.85M).
PUBLISHED = {"lenet-300-100": 266_610, "lenet5": 431_080, "resnet20": 269_722, "resnet56": 853_018,
             "digits-cnn": 38_282}


@pytest.mark.parametrize("name", ZOO.names())
def test_zoo_models_have_published_sizes_and_run(name):
    model = build(name).eval()
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[name]
    entry = ZOO.get(name)
    out = model(torch.zeros(2, *entry.input_shape))
    assert out.shape == (2, entry.num_classes)


def test_resnet20_is_0_27m_and_resnet56_0_85m():
    assert round(PUBLISHED["resnet20"] / 1e6, 2) == 0.27
    assert round(PUBLISHED["resnet56"] / 1e6, 2) == 0.85


def test_option_a_shortcut_adds_no_parameters():
    from sizewise.models.zoo.resnet_cifar import ZeroPadShortcut

    shortcut = ZeroPadShortcut(16)
    assert not list(shortcut.parameters())
    assert shortcut(torch.ones(1, 16, 8, 8)).shape == (1, 32, 4, 4)


def test_unknown_zoo_name_lists_the_known_ones():
    with pytest.raises(KeyError) as info:
        build("resnet21")
    assert "did you mean 'resnet20'" in str(info.value)
    assert "lenet5" in str(info.value)
