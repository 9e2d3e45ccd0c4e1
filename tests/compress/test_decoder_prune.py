"""Structured pruning of decoder LLMs (depth: whole blocks; ffn: MLP neurons; attn-heads: query heads) and their
recovery by token-level distillation from the original model, on a 2-block Llama small enough to train in seconds."""

import copy

import numpy as np
import pytest
import torch

import sizewise
from sizewise.compress.distill import DistillConfig, Distillation
from sizewise.compress.prune import AttentionHeadPrune, DepthPrune, FFNPrune
from sizewise.compress.registry import StepContext, get_method
from sizewise.core.errors import ConfigError

from kill_harness import tiny_causal_lm  # noqa: E402  (tests/reliability, put on the path by conftest.py)

QUICK = dict(calibration_samples=2, calibration_tokens=32)


def test_depth_removes_the_block_that_changes_its_input_least(tiny_lm):
    model, text = tiny_lm
    block = model.module.model.layers[1]
    with torch.no_grad():  # block 1 adds nothing to the residual stream: its output is its input
        block.self_attn.o_proj.weight.zero_()
        block.mlp.down_proj.weight.zero_()
    ctx = StepContext(data=text.without_test())
    details = get_method("depth").apply(model, DepthPrune(1, **QUICK), ctx)
    assert details["blocks_removed"] == [1] and details["block_influence"][1] == pytest.approx(0, abs=1e-6)
    assert details["calibration"]["split"] == "train"
    assert model.module.config.num_hidden_layers == 1 and len(model.module.model.layers) == 1
    assert model.module.model.layers[0].self_attn.layer_idx == 0
    ids = torch.tensor([[5, 6, 7, 8]])
    out = model.module.generate(ids, max_new_tokens=3, do_sample=False)  # the KV cache indexes the kept block
    assert out.shape == (1, 7)
    with pytest.raises(ConfigError, match="leaves none"):
        get_method("depth").apply(model, DepthPrune(1, **QUICK), ctx)


def test_ffn_keeps_the_most_active_neurons(tiny_lm):
    model, text = tiny_lm
    mlp = model.module.model.layers[0].mlp
    with torch.no_grad():  # neurons 0..63 of block 0 never fire
        mlp.gate_proj.weight[:64].zero_()
        mlp.up_proj.weight[:64].zero_()
    kept_weights = mlp.down_proj.weight[:, 64:].clone()
    details = get_method("ffn").apply(model, FFNPrune(0.5, multiple=32, **QUICK), StepContext(data=text.without_test()))
    assert details["intermediate_before"] == 128 and details["intermediate_after"] == 64
    assert model.module.config.intermediate_size == 64
    torch.testing.assert_close(mlp.down_proj.weight, kept_weights)  # exactly the live half, in order
    assert model.module(input_ids=torch.tensor([[5, 6, 7]])).logits.shape[-1] == model.module.config.vocab_size
    too_little = FFNPrune(0.1, multiple=64, **QUICK)  # 64 x 0.9 kept, to the nearest multiple of 64: all of them
    with pytest.raises(ConfigError, match="removes none"):
        get_method("ffn").apply(model, too_little, StepContext(data=text.without_test()))



def _head_outputs(model, windows) -> list[torch.Tensor]:
    """Per block, the summed L2 norm of each head's output over the windows (what the ranking should see)."""
    layers = model.module.model.layers
    found = [torch.zeros(4) for _ in layers]

    def tap(i):
        def hook(_module, args):
            found[i] += args[0].reshape(-1, 4, 16).norm(dim=-1).sum(0)
        return hook

    hooks = [b.self_attn.o_proj.register_forward_pre_hook(tap(i)) for i, b in enumerate(layers)]
    with torch.no_grad():
        for w in windows:
            model.module(input_ids=w)
    for h in hooks:
        h.remove()
    return found


def _heads_masked(model, removed: list[list[int]], head_dim: int):
    """The unpruned model with the removed heads' outputs zeroed: what the pruned model must compute exactly."""
    masked = copy.deepcopy(model.module)
    with torch.no_grad():
        for block, heads in zip(masked.model.layers, removed):
            for h in heads:
                block.self_attn.o_proj.weight[:, h * head_dim:(h + 1) * head_dim] = 0
    return masked


@pytest.mark.parametrize("kv_heads", [2, 4], ids=["grouped-query", "multi-head"])
def test_attention_heads_removes_the_weakest_heads_and_computes_the_rest_exactly(tmp_path, kv_heads):
    import transformers

    model_dir, text_dir = tiny_causal_lm(tmp_path / "lm")
    if kv_heads == 4:  # the same tiny Llama with plain multi-head attention (a key/value head per query head)
        config = transformers.AutoConfig.from_pretrained(model_dir)
        config.num_key_value_heads = 4
        torch.manual_seed(1)
        transformers.LlamaForCausalLM(config).save_pretrained(model_dir)
    model, text = sizewise.load(str(model_dir)), sizewise.load_dataset(str(text_dir))
    ctx = StepContext(data=text.without_test())
    from sizewise.compress.prune.decoder import calibration_windows_for

    scores = _head_outputs(model, calibration_windows_for(model, ctx, 2, 32, "test")[0])  # QUICK's windows
    units = [s.split(2) if kv_heads == 2 else (s,) for s in scores]  # groups of 2 query heads, or all 4 heads
    removed = [[int(torch.argmin(u)) + i * len(u) for i, u in enumerate(parts)] if kv_heads == 2 else
               sorted(torch.topk(parts[0], 2, largest=False).indices.tolist()) for parts in units]
    masked = _heads_masked(model, removed, 16)
    details = get_method("attn-heads").apply(model, AttentionHeadPrune(0.5, **QUICK), ctx)
    # grouped-query: one of each group's 2 query heads goes, both key/value heads stay; multi-head: 2 of 4 heads go
    # with their keys and values
    assert (details["heads_before"], details["heads_after"], details["key_value_heads"]) == (4, 2, 2)
    config = model.module.config
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (2, 2, 16)
    assert [sorted(set(range(4)) - set(k)) for k in details["heads_kept"]] == removed
    sample = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        torch.testing.assert_close(model.module(input_ids=sample).logits, masked(input_ids=sample).logits)
    out = model.module.generate(sample, max_new_tokens=3, do_sample=False)  # the KV cache holds the narrower heads
    assert out.shape == (1, 9)
    model.module.save_pretrained(tmp_path / "saved")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=sample).logits, masked(input_ids=sample).logits)


def test_attention_heads_refuses_a_sparsity_that_removes_no_head(tiny_lm):
    model, text = tiny_lm
    with pytest.raises(ConfigError, match="removes none"):  # groups of 2 query heads: 10% of 2 rounds to none
        get_method("attn-heads").apply(model, AttentionHeadPrune(0.1, **QUICK), StepContext(data=text.without_test()))

def test_next_token_training_and_distillation_teach_a_pruned_student(tiny_lm):
    model, text = tiny_lm
    # fp32 pinned: precision "auto" picks bf16 autocast on a CPU with avx512_bf16, which this tiny model learns less
    # well in 3 epochs; what is tested here is the objective, on any CPU
    train = sizewise.TrainConfig(epochs=3, lr=3e-3, batch_size=8, seed=0, precision="fp32")
    result = sizewise.train(model, text.without_test(), train)  # the causal-LM objective: next-token cross-entropy
    perplexities = [e.val_accuracy for e in result.epochs]  # the loop's validation metric: perplexity here
    assert perplexities[-1] < 0.8 * perplexities[0]
    teacher = copy.deepcopy(model)
    split = text.split("train")
    same = Distillation(model, teacher, text, DistillConfig(alpha=1.0))
    assert float(same.loss(split, np.arange(4))[0].detach()) == pytest.approx(0, abs=1e-5)
    assert same.metric == "perplexity" and same.higher_is_better is False
    get_method("depth").apply(model, DepthPrune(1, **QUICK), StepContext(data=text.without_test()))
    student = Distillation(model, teacher, text, DistillConfig(alpha=1.0))
    before = float(student.loss(split, np.arange(16))[0].detach())
    assert before > 0.01
    sizewise.train(model, text.without_test(), train, objective=student)
    assert float(student.loss(split, np.arange(16))[0].detach()) < 0.7 * before


def test_a_depth_pruned_llm_recovers_saves_reloads_and_runs_as_4_bit_gguf(tiny_lm, tmp_path):
    pytest.importorskip("llama_cpp")
    model, text = tiny_lm
    plan = sizewise.Plan((sizewise.Step("depth", DepthPrune(1, **QUICK),
                                        sizewise.TrainConfig(epochs=1, lr=1e-3, batch_size=8)),
                          sizewise.Step("int4-rtn", sizewise.LLMWeightInt4(algorithm="rtn", group_size=32,
                                                                           eval_tokens=256))))
    from sizewise.measure.llm import LLMConfig

    fast = sizewise.MeasureConfig(runtime="llamacpp", threads=1, latency_seconds=0.05, measure_memory=False,
                                  llm=LLMConfig(prompt_tokens=8, new_tokens=4, runs=1, warmup=0, bandwidth=False))
    result = sizewise.run(model, plan, data=text, out=tmp_path / "run", measure_config=fast)
    depth_step = result.steps[0]
    assert depth_step.details["blocks_before"] == 2 and depth_step.details["recovery_teacher"]
    assert result.after.llm.perplexity is not None and result.after.latency.runtime == "llamacpp"
    reloaded = sizewise.load(str(tmp_path / "run"))
    assert reloaded.module.config.num_hidden_layers == 1


def test_the_prune_command_removes_blocks_of_a_decoder(tmp_path):
    from typer.testing import CliRunner

    from sizewise.cli.app import app

    model_dir, text_dir = tiny_causal_lm(tmp_path / "lm")
    result = CliRunner().invoke(app, ["prune", str(model_dir), "--data", str(text_dir), "--method", "depth",
                                      "--blocks", "1", "--finetune-epochs", "1", "--batch-size", "8", "--no-memory",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "blocks_removed" in result.output
    assert sizewise.load(str(tmp_path / "o")).module.config.num_hidden_layers == 1
    result = CliRunner().invoke(app, ["prune", "zoo:digits-cnn", "--data", "digits", "--method", "depth",
                                      "--blocks", "1", "--out", str(tmp_path / "d")])
    assert result.exit_code == 1 and "not a decoder LLM" in result.output


@pytest.mark.parametrize("runtime", ["llamacpp", "ortgenai"])
def test_a_head_pruned_llm_runs_on_the_deployment_runtimes_with_torchs_logits(tiny_lm, tmp_path, runtime):
    # fewer query heads than hidden_size / head size: llama.cpp and the ORT GenAI builder must read the head size
    # from the config, not derive it
    model, text = tiny_lm
    get_method("attn-heads").apply(model, AttentionHeadPrune(0.5, **QUICK), StepContext(data=text.without_test()))
    ids = torch.tensor([model.inputs.tokenizer(text.split("test").inputs[0])["input_ids"][:24]])
    with torch.no_grad():
        want = model.module(input_ids=ids).logits
    if runtime == "llamacpp":
        pytest.importorskip("llama_cpp")
        from sizewise.models.gguf_writer import write_gguf
        from sizewise.models.llamacpp import LlamaCppModule

        path = write_gguf(model.module, model.inputs.tokenizer, tmp_path / "m.gguf")
        got = LlamaCppModule(path, threads=1, n_ctx=64, config=model.module.config)(input_ids=ids).logits
    else:
        pytest.importorskip("onnxruntime_genai")
        from sizewise.models.ortgenai import OrtGenAIModule, build

        folder = build(model.module, model.inputs.tokenizer, tmp_path / "fp32", "fp32")
        got = OrtGenAIModule(folder, threads=1, config=model.module.config)(input_ids=ids).logits
    torch.testing.assert_close(torch.as_tensor(got, dtype=want.dtype), want, rtol=1e-3,
                               atol=1e-3 * want.abs().max().item())
