"""Tiny Hugging Face model directories with random weights, written offline (no hub access) for loader tests."""

from __future__ import annotations

from pathlib import Path

SENTENCES = [
    "Large models cost money, energy and carbon, and most teams cannot deploy them.",
    "Pruning, quantization, distillation and low-rank factorization make them smaller and faster;",
    "measuring them honestly tells by how much.",
]
EOS = "<|endoftext|>"


def word_tokenizer(pad: bool = False, bos_eos: bool = True):
    """A word-level tokenizer trained on three sentences: 31 words + <unk> + eos (+ <pad>), as a fast tokenizer."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    specials = ["<unk>", EOS] + (["<pad>"] if pad else [])
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=specials))
    extra = {"pad_token": "<pad>"} if pad else {}
    if bos_eos:
        extra.update(eos_token=EOS, bos_token=EOS)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", **extra)


def _save(model, preprocessor, path: Path) -> Path:
    model.save_pretrained(path)
    preprocessor.save_pretrained(path)
    return path


def gpt2_dir(path: Path) -> Path:
    """GPT-2, 2 layers of width 32, 4 heads, 64 positions; its tokenizer has no pad token (as GPT-2's)."""
    import torch
    import transformers

    tokenizer = word_tokenizer()
    eos = tokenizer.convert_tokens_to_ids(EOS)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=eos, eos_token_id=eos)
    torch.manual_seed(0)
    return _save(transformers.GPT2LMHeadModel(config), tokenizer, path)


def llama_dir(path: Path) -> Path:
    """Llama, 2 layers, hidden 32, 4 query heads sharing 2 key/value heads, MLP 64, untied output head."""
    import torch
    import transformers

    tokenizer = word_tokenizer()
    eos = tokenizer.convert_tokens_to_ids(EOS)
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, bos_token_id=eos, eos_token_id=eos,
                                      tie_word_embeddings=False)
    torch.manual_seed(0)
    return _save(transformers.LlamaForCausalLM(config), tokenizer, path)


def vit_dir(path: Path) -> Path:
    """ViT image classifier: 16x16 RGB images in 8x8 patches, width 32, 2 layers, 3 labels, with its processor."""
    import torch
    import transformers

    config = transformers.ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=64, num_labels=3)
    # transformers 5 without torchvision: the PIL processor, asked for by name so it does not warn
    processor_class = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    processor = processor_class(size={"height": 16, "width": 16}, image_mean=[0.5, 0.4, 0.3],
                                               image_std=[0.2, 0.25, 0.3])
    torch.manual_seed(0)
    return _save(transformers.ViTForImageClassification(config), processor, path)


def bert_classifier_dir(path: Path) -> Path:
    """BERT sequence classifier: 2 layers, width 32, 4 heads, MLP 64, 64 positions, 2 labels."""
    import torch
    import transformers

    tokenizer = word_tokenizer(pad=True, bos_eos=False)
    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                                     num_labels=2, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    return _save(transformers.BertForSequenceClassification(config), tokenizer, path)
