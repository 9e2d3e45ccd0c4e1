"""``estimate``'s formulas, checked against ``measure`` on the same small causal LMs: parameters, the key/value cache
and FLOPs per token must agree, with the definitions stated where they differ on purpose."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))

from hf_dirs import gpt2_dir, llama_dir  # noqa: E402

import sizewise  # noqa: E402
from sizewise.measure.llm import flops_per_token, kv_cache_stats  # noqa: E402


@pytest.mark.parametrize("make", [gpt2_dir, llama_dir], ids=["gpt2", "llama-gqa"])
def test_estimate_of_the_config_agrees_with_the_measured_model(make, tmp_path):
    directory = make(tmp_path / "m")
    estimate = sizewise.estimate(str(directory / "config.json"), seq_len=48, batch=2)
    loaded = sizewise.load(directory)
    module = loaded.module
    # parameters: counted from the config's layer sizes vs counted on the loaded weights (a tied matrix once)
    assert estimate.params.total == sum(p.numel() for p in module.parameters())
    # the KV cache at batch 2 x 48 tokens: estimate assumes fp16 (2 bytes), the loaded model is fp32 (4 bytes)
    measured = kv_cache_stats(module.config, context=48, batch=2, bytes_per_element=4)
    assert estimate.memory.kv_cache_bytes * 2 == measured.bytes
    # FLOPs per token: the parameter part agrees exactly; the attention part differs by definition. estimate uses
    # Kaplan et al.'s 2 * n_layer * n_ctx * d_attn, the average over a causal sequence (a token attends to n_ctx / 2
    # positions on average, 2 multiply-adds each); measure counts QK^T and AV for the token AT position n_ctx:
    # 2 * 2 * n_layer * n_ctx * d_attn, which FlopCounterMode confirms on the real forward.
    inputs = loaded.example_inputs(1, 48)
    counted = flops_per_token(module, inputs)
    attention_at_end = counted.analytic - 2 * (counted.non_embedding_params + counted.tied_unembedding_params)
    assert estimate.inference.parameter_flops == 2 * (counted.non_embedding_params + counted.tied_unembedding_params)
    assert estimate.inference.attention_flops * 2 == attention_at_end
    assert counted.measured == pytest.approx(counted.analytic, rel=0.05)
    with torch.no_grad():
        assert torch.isfinite(module(**inputs).logits).all()
