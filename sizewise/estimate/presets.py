"""Built-in model presets, written as data.

Nothing can be fetched from the Hugging Face hub on the machines sizewise targets, so each transformer preset carries
the fields of its ``config.json`` that decide the parameter count; sizewise builds the model from it on PyTorch's meta
device and counts exactly. The convolutional presets have no transformers architecture (and torchvision is not a
dependency), so they carry their published parameter counts and multiply-accumulates instead, labelled as such.

Training-set sizes are the ones the papers state; where a paper states none, the estimate falls back to a labelled
default (see :mod:`sizewise.estimate.compute`).
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    description: str
    hf_config: dict[str, Any] | None = None  # None: not a transformers architecture, use the published numbers
    published_params: float | None = None
    params_source: str | None = None
    training_tokens: float | None = None  # tokens for transformers, images for the CNNs
    tokens_source: str | None = None
    forward_macs: float | None = None  # per image, CNNs only
    macs_source: str | None = None
    unit: str = "token"

    def __post_init__(self) -> None:
        if self.hf_config is None and self.published_params is None:
            raise ValueError(f"preset '{self.name}' needs either hf_config or published_params")


_GPT2_BASE = {
    "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 50257, "n_positions": 1024,
    "n_embd": 768, "n_layer": 12, "n_head": 12, "activation_function": "gelu_new", "tie_word_embeddings": True,
}
_BERT_BASE = {
    "model_type": "bert", "architectures": ["BertForMaskedLM"], "vocab_size": 30522, "hidden_size": 768,
    "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
    "type_vocab_size": 2, "hidden_act": "gelu",
}
_LLAMA2 = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32000, "max_position_embeddings": 4096,
    "hidden_act": "silu", "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
}
_BERT_TOKENS = "Devlin et al. 2019, App. A.2: 1,000,000 steps x 256 sequences x 512 tokens = 128,000 tokens/batch"
_LLAMA2_TOKENS = "Touvron et al. 2023 (Llama 2), Table 1: 2.0T pretraining tokens"

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "gpt3-175b",
            "GPT-3 175B (Brown et al. 2020): built as a GPT-2-architecture decoder with GPT-3's sizes; the alternating "
            "sparse attention layers do not change the parameter count",
            hf_config={**_GPT2_BASE, "n_positions": 2048, "n_embd": 12288, "n_layer": 96, "n_head": 96},
            published_params=175.0e9, params_source="Brown et al. 2020, Table 2.1: 175.0B",
            training_tokens=300e9, tokens_source="Brown et al. 2020, Table D.1 / Sec. 2.2: 300B training tokens",
        ),
        Preset(
            "gpt2", "GPT-2 small (Radford et al. 2019), the 'gpt2' checkpoint on the Hugging Face hub",
            hf_config=dict(_GPT2_BASE),
            published_params=117e6, params_source="Radford et al. 2019, Table 2: 117M (the released checkpoint has 124M)",
        ),
        Preset(
            "bert-base-uncased", "BERT-base, uncased (Devlin et al. 2019); encoder with pooler, no task head",
            hf_config=dict(_BERT_BASE),
            published_params=110e6, params_source="Devlin et al. 2019, Sec. 3: 110M",
            training_tokens=128e9, tokens_source=_BERT_TOKENS,
        ),
        Preset(
            "bert-large-uncased", "BERT-large, uncased (Devlin et al. 2019); encoder with pooler, no task head",
            hf_config={**_BERT_BASE, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                       "intermediate_size": 4096},
            published_params=340e6, params_source="Devlin et al. 2019, Sec. 3: 340M",
            training_tokens=128e9, tokens_source=_BERT_TOKENS,
        ),
        Preset(
            "t5-base", "T5-base encoder-decoder (Raffel et al. 2020), tied input/output embeddings",
            hf_config={
                "model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "vocab_size": 32128,
                "d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12, "num_decoder_layers": 12, "num_heads": 12,
                "relative_attention_num_buckets": 32, "feed_forward_proj": "relu", "n_positions": 512,
                "is_encoder_decoder": True, "tie_word_embeddings": True,
            },
            published_params=220e6, params_source="Raffel et al. 2020, Sec. 3.7: about 220M",
            training_tokens=1e12,
            tokens_source="Raffel et al. 2020, Sec. 3.7: 1M steps x 2^11 sequences x 512 tokens, about 1 trillion",
        ),
        Preset(
            "llama-2-7b", "Llama 2 7B (Touvron et al. 2023), untied output head",
            hf_config={**_LLAMA2, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                       "num_attention_heads": 32, "num_key_value_heads": 32},
            published_params=7e9, params_source="Touvron et al. 2023, Table 1: 7B",
            training_tokens=2.0e12, tokens_source=_LLAMA2_TOKENS,
        ),
        Preset(
            "llama-2-70b", "Llama 2 70B (Touvron et al. 2023), grouped-query attention with 8 key/value heads",
            hf_config={**_LLAMA2, "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
                       "num_attention_heads": 64, "num_key_value_heads": 8},
            published_params=70e9, params_source="Touvron et al. 2023, Table 1: 70B",
            training_tokens=2.0e12, tokens_source=_LLAMA2_TOKENS,
        ),
        Preset(
            "minilm", "all-MiniLM-L6-v2 sentence encoder (6-layer BERT, hidden 384), as the sizewise 'minilm' alias",
            hf_config={**_BERT_BASE, "architectures": ["BertModel"], "hidden_size": 384, "num_hidden_layers": 6,
                       "intermediate_size": 1536},
            published_params=22.7e6, params_source="sentence-transformers/all-MiniLM-L6-v2 model card: 22.7M",
        ),
        Preset(
            "mobilenet-v2", "MobileNetV2 1.0, 224x224 ImageNet classifier (Sandler et al. 2018)",
            published_params=3_504_872,
            params_source="torchvision model documentation, MobileNet_V2_Weights.IMAGENET1K_V1: 3,504,872 params",
            forward_macs=300e6, macs_source="Sandler et al. 2018, Table 4: 300M multiply-adds per 224x224 image",
            unit="image",
        ),
        Preset(
            "resnet50", "ResNet-50, 224x224 ImageNet classifier (He et al. 2016)",
            published_params=25_557_032,
            params_source="torchvision model documentation, ResNet50_Weights.IMAGENET1K_V1: 25,557,032 params",
            forward_macs=3.8e9, macs_source="He et al. 2016, Table 1: 3.8x10^9 FLOPs (multiply-adds) per image",
            training_tokens=600_000 * 256,
            tokens_source="He et al. 2016, Sec. 3.4: 60x10^4 iterations x mini-batch 256 images",
            unit="image",
        ),
    ]
}


def get_preset(name: str) -> Preset | None:
    return PRESETS.get(name.strip().lower())


def preset_names() -> list[str]:
    return list(PRESETS)
