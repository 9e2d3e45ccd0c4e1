"""Transfer learning: new heads, freezing, gradual unfreezing, LoRA merged back, --labels, compute, bad input, resume."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import sizewise
from sizewise.core.errors import ConfigError, DataError
from sizewise.data.dataset import Dataset, Split
from sizewise.measure.flops import count_flops
from sizewise.models.loaded import InputSpec, LoadedModel
from sizewise.train import TrainConfig
from sizewise.train.finetuning import FinetuneConfig, finetune, labelled_train
from sizewise.train.transfer import add_lora, final_linear, head_names, lora_targets, merge_lora, new_head


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    from transfer_models import pretrained_digits

    return pretrained_digits(tmp_path_factory.mktemp("pretrained"))


POSITIVE = ["smaller", "faster", "honestly", "pruning", "quantization", "distillation"]
NEGATIVE = ["cost", "money", "energy", "carbon", "cannot", "large"]


def toy_text(n_train: int = 80, n_dev: int = 30, seed: int = 0) -> Dataset:
    """Two-class sentences in the tiny BERT's vocabulary: the label says which word list a sentence was drawn from."""
    rng = np.random.default_rng(seed)

    def split(n):
        labels = rng.integers(0, 2, n)
        return Split([" ".join(rng.choice(POSITIVE if y else NEGATIVE, 4)) for y in labels], labels.astype(np.int64))

    return Dataset("toy-sst", "text-classification", {"train": split(n_train), "dev": split(n_dev)}, "dev", 2)


def digits_mod3(digits) -> Dataset:
    """Another 3-class task on the same images: the digit modulo 3."""
    tr, te = digits.split("train"), digits.split("test")
    return Dataset("digits-mod3", "image-classification", {"train": Split(tr.inputs, tr.labels % 3),
                                                            "test": Split(te.inputs, te.labels % 3)},
                   "test", 3, (1, 8, 8))


def state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(a: dict, b: dict, prefix: str) -> list[bool]:
    return [not torch.equal(a[k], b[k]) for k in a if k.startswith(prefix)]


# ------------------------------------------------------------------------------------------------------- heads --

def test_new_head_on_an_encoder_saves_and_reloads(tiny_bert_dir, tmp_path):
    loaded = sizewise.load(str(tiny_bert_dir))
    encoder = state(loaded.module)
    assert loaded.task == "feature-extraction"
    head = new_head(loaded, 3)
    assert type(loaded.module).__name__ == "BertForSequenceClassification" and head == ["classifier"]
    assert loaded.module.classifier.out_features == 3 and (loaded.task, loaded.num_classes) == ("text-classification", 3)
    assert all(torch.equal(v, loaded.module.bert.state_dict()[k]) for k, v in encoder.items())  # the same encoder
    data = toy_text()
    data.num_classes = 3
    accuracy = sizewise.evaluate(loaded, data)["accuracy"]
    sizewise.save_model(loaded, tmp_path / "model")
    back = sizewise.load(str(tmp_path))
    assert (back.task, back.num_classes) == ("text-classification", 3)
    assert sizewise.evaluate(back, data)["accuracy"] == accuracy
    inputs = loaded.example_inputs(2, 8)
    with torch.no_grad():
        assert torch.allclose(loaded.module(**inputs).logits, back.module(**inputs).logits, atol=1e-6)


def test_new_head_on_a_zoo_cnn_replaces_its_final_linear_and_reloads(pretrained_dir, tmp_path):
    loaded = sizewise.load(str(pretrained_dir))
    body = {k: v for k, v in state(loaded.module).items() if not k.startswith("fc2")}
    assert new_head(loaded, 3) == ["fc2"]
    assert tuple(loaded.module.fc2.weight.shape) == (3, 64) and loaded.num_classes == 3
    assert all(torch.equal(v, loaded.module.state_dict()[k]) for k, v in body.items())
    sizewise.save_model(loaded, tmp_path / "model")
    back = sizewise.load(str(tmp_path))  # rebuilt as zoo:digits-cnn (10 classes), head resized from the weights
    assert back.module.fc2.out_features == 3 and back.num_classes == 3
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded.module(x=x), back.module(x=x))


class ClassifierFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.classifier = nn.Linear(16, 10)  # defined first, runs last
        self.body = nn.Linear(64, 16)

    def forward(self, x):
        return self.classifier(torch.relu(self.body(x.flatten(1))))


def test_the_head_is_the_linear_that_makes_the_output_not_the_last_defined():
    loaded = LoadedModel(ClassifierFirst(), InputSpec("tensor", (1, 8, 8)), "test", "factory",
                         "image-classification", 10)
    assert final_linear(loaded) == "classifier" and head_names(loaded) == ["classifier"]


# ---------------------------------------------------------------------------------------------------- freezing --

def test_freeze_backbone_trains_only_the_new_head(pretrained_dir, digits):
    loaded = sizewise.load(str(pretrained_dir))
    before = state(loaded.module)
    task = digits_mod3(digits)
    result = finetune(loaded, task, FinetuneConfig(head="new", freeze="backbone"),
                      TrainConfig(epochs=2, lr=1e-2, seed=0))
    after = state(loaded.module)
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("fc2"))
    assert result.trainable_parameters == 64 * 3 + 3 and result.frozen_modules == ["conv1", "conv2", "fc1"]
    # the digit features transfer: a trained head on frozen features beats the untrained one by far
    assert result.metrics_after["accuracy"] > result.metrics_before["accuracy"] + 0.3
    assert all(p.requires_grad for p in loaded.module.parameters())  # handed back as an ordinary model


def test_frozen_batchnorm_keeps_its_running_statistics(digits):
    loaded = sizewise.load("transfer_models:conv_bn")
    before = state(loaded.module)
    result = finetune(loaded, digits, FinetuneConfig(freeze="backbone"), TrainConfig(epochs=1))
    after = state(loaded.module)
    assert result.head == ["6"] and result.frozen_modules == ["0", "1", "4"]
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("6."))  # running_mean/var too
    assert all(changed(before, after, "6."))


def test_freeze_n_layers_of_an_encoder(tiny_bert_dir):
    loaded = sizewise.load(str(tiny_bert_dir))
    before = state(loaded.module)
    result = finetune(loaded, toy_text(), FinetuneConfig(head="new", freeze="1-layers"),
                      TrainConfig(epochs=1, lr=1e-2, batch_size=16))
    after = {k.removeprefix("bert."): v for k, v in state(loaded.module).items()}
    assert result.frozen_modules == ["bert.embeddings", "bert.encoder.layer.0"]
    backbone = finetune(sizewise.load(str(tiny_bert_dir)), toy_text(), FinetuneConfig(head="new", freeze="backbone"),
                        TrainConfig(epochs=1))
    assert backbone.frozen_modules == ["bert"] and backbone.trainable_parameters == 32 * 2 + 2
    assert not any(changed(before, after, "embeddings")) and not any(changed(before, after, "encoder.layer.0."))
    assert all(changed(before, after, "encoder.layer.1.attention.self.query"))


def test_freeze_n_layers_of_a_cnn(pretrained_dir, digits):
    loaded = sizewise.load(str(pretrained_dir))
    before = state(loaded.module)
    result = finetune(loaded, digits_mod3(digits), FinetuneConfig(head="new", freeze=2), TrainConfig(epochs=1))
    after = state(loaded.module)
    assert result.frozen_modules == ["conv1", "conv2"]
    assert not any(changed(before, after, "conv")) and all(changed(before, after, "fc1"))


def test_unfreeze_after_trains_the_backbone_from_the_next_epoch(pretrained_dir, digits):
    loaded = sizewise.load(str(pretrained_dir))
    original = state(loaded.module)["conv1.weight"]
    seen = {}
    result = finetune(loaded, digits_mod3(digits), FinetuneConfig(head="new", freeze="backbone", unfreeze_after=1),
                      TrainConfig(epochs=3, lr=3e-3),
                      on_epoch=lambda s: seen.__setitem__(s.epoch, loaded.module.conv1.weight.detach().clone()))
    assert torch.equal(seen[1], original)  # frozen through epoch 1
    assert not torch.equal(seen[2], original) and not torch.equal(seen[3], seen[2])  # trained in epochs 2 and 3
    assert result.warnings == []


# ------------------------------------------------------------------------------------------------------- LoRA --

def test_lora_merge_gives_the_adapted_outputs(tiny_bert_dir):
    loaded = sizewise.load(str(tiny_bert_dir))
    head = new_head(loaded, 2)
    targets = lora_targets(loaded, head, [])
    assert "bert.encoder.layer.0.attention.self.query" in targets and "bert.encoder.layer.1.output.dense" in targets
    assert add_lora(loaded, 4, 8.0, targets, head) > 0
    torch.manual_seed(1)
    for name, p in loaded.module.named_parameters():
        if "lora_B" in name:  # as if trained: peft starts B at zero
            p.data.normal_(std=0.05)
    inputs = loaded.example_inputs(2, 8)
    loaded.module.eval()
    with torch.no_grad():
        adapted = loaded.module(**inputs).logits.clone()
        with loaded.module.disable_adapter():
            base = loaded.module(**inputs).logits.clone()
    assert not torch.allclose(adapted, base, atol=1e-4)  # the adapters do change the model
    merge_lora(loaded)
    assert type(loaded.module).__name__ == "BertForSequenceClassification"
    assert not any("lora" in k for k in loaded.module.state_dict())
    with torch.no_grad():
        assert torch.allclose(loaded.module(**inputs).logits, adapted, atol=1e-5)


def test_lora_finetune_saves_an_ordinary_model(tiny_bert_dir, tmp_path, fast_measure):
    loaded = sizewise.load(str(tiny_bert_dir))
    query = loaded.module.encoder.layer[0].attention.self.query.weight.detach().clone()
    data = toy_text()
    result = finetune(loaded, data, FinetuneConfig(head="new", lora=4), TrainConfig(epochs=2, lr=1e-2, batch_size=16),
                      out=tmp_path)
    sizewise.save_model(loaded, tmp_path / "model")
    assert result.lora["merged"] and result.lora["merge_max_abs_diff"] < 1e-4 and result.lora["target_layers"] == 13
    assert result.trainable_parameters == result.lora["adapter_parameters"] + 32 * 2 + 2  # adapters + classifier
    keys = load_file(str(tmp_path / "model" / "model.safetensors")).keys()
    assert keys and not any("lora" in k or "base_layer" in k for k in keys)
    back = sizewise.load(str(tmp_path))
    assert not torch.equal(back.module.bert.encoder.layer[0].attention.self.query.weight, query)  # merged in
    assert sizewise.evaluate(back, data)["accuracy"] == result.metrics_after["accuracy"]


def test_lora_on_a_cnn_adapts_its_hidden_linear(pretrained_dir, digits):
    loaded = sizewise.load(str(pretrained_dir))
    result = finetune(loaded, digits_mod3(digits), FinetuneConfig(head="new", lora=2), TrainConfig(epochs=1))
    assert result.lora["target_layers"] == 1 and type(loaded.module).__name__ == "DigitsCNN"


# conftest's tiny tokenizer maps every word to [UNK] under transformers 5, so all embeddings are equal and Spearman is
# undefined: this test checks which layers get adapters and that the similarity objective runs, not what it learns.
@pytest.mark.filterwarnings("ignore:An input array is constant")
def test_lora_above_frozen_layers_of_a_sentence_encoder(tiny_bert_dir):
    pairs = [(a, b) for a in POSITIVE for b in NEGATIVE[:3]]
    scores = np.linspace(0, 5, len(pairs)).astype(np.float32)
    sts = Dataset("sts-tiny", "sentence-similarity", {"train": Split(pairs, scores), "test": Split(pairs, scores)},
                  "test")
    loaded = sizewise.load(str(tiny_bert_dir))
    result = finetune(loaded, sts, FinetuneConfig(lora=2, freeze="1-layers"), TrainConfig(epochs=1, lr=1e-2))
    assert result.metric == "spearman" and "spearman" in result.metrics_after
    assert result.lora["target_layers"] == 7  # layer 1's six Linear layers and the pooler; layer 0 is frozen
    assert type(loaded.module).__name__ == "BertModel" and result.compute.examples_seen == len(pairs) - 2


# ------------------------------------------------------------------------------------------- labels and compute --

def test_labels_n_trains_on_exactly_the_first_n_examples(pretrained_dir, digits):
    loaded = sizewise.load(str(pretrained_dir))
    task = digits_mod3(digits)
    assert np.array_equal(labelled_train(task, 100).labels, task.split("train").labels[:100])
    rows = []
    hook = loaded.module.register_forward_pre_hook(lambda m, a, kw: rows.append(len(kw["x"])) if m.training else None,
                                                   with_kwargs=True)
    result = finetune(loaded, task, FinetuneConfig(head="new", labels=100), TrainConfig(epochs=2, val_fraction=0.1))
    hook.remove()
    assert (result.labelled_examples, result.train_examples, result.validation_examples) == (100, 90, 10)
    assert sum(rows) == 180 == result.compute.examples_seen


def test_compute_is_counted_from_the_forwards_that_ran(pretrained_dir, digits, tmp_path, fast_measure):
    loaded = sizewise.load(str(pretrained_dir))
    result = finetune(loaded, digits_mod3(digits), FinetuneConfig(head="new", freeze="backbone", labels=200),
                      TrainConfig(epochs=2, batch_size=32), out=tmp_path)
    c = result.compute
    per_example = count_flops(loaded.module, {"x": torch.zeros(1, 1, 8, 8)})[0].total
    assert c.examples_seen == 2 * 180 and c.forward_flops == per_example * 360
    assert c.training_flops_3x_forward == 3 * c.forward_flops and "backward = 2 x forward" in c.flops_method
    assert c.validation_flops == per_example * 20 * 2
    assert c.wall_seconds > 0 and c.cpu_seconds > 0 and c.energy_joules > 0 and c.gco2e > 0
    assert c.energy_method == "estimated:cpu-power-model" and c.energy_assumptions["watts_per_core"] > 0
    record = json.loads((tmp_path / "finetune-compute.json").read_text())  # what a resumed run adds up
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    assert sum(e["train_forward_flops"] for e in record["epochs"]) == c.forward_flops


def test_text_compute_counts_each_padded_batch(tiny_bert_dir):
    loaded = sizewise.load(str(tiny_bert_dir))
    result = finetune(loaded, toy_text(n_train=20), FinetuneConfig(head="new", freeze="backbone"),
                      TrainConfig(epochs=1, batch_size=8, val_fraction=0))
    # every toy sentence is 4 words = 6 tokens with [CLS]/[SEP], so every batch has that length
    per_example = count_flops(loaded.module, loaded.example_inputs(1, 6))[0].total
    assert result.compute.forward_flops == 20 * per_example


# --------------------------------------------------------------------------------------------------- bad input --

def conv_only() -> LoadedModel:
    module = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    return LoadedModel(module, InputSpec("tensor", (1, 8, 8), name="input"), "conv-only", "factory", "image-classification", 10)


@pytest.mark.parametrize("make, config, data, error, message", [
    ("bert", FinetuneConfig(head="new"), "digits", DataError, "a new head cannot change what a model reads"),
    ("bert", FinetuneConfig(), "text", DataError, "pass --head new"),
    ("bert", FinetuneConfig(head="new", freeze="12-layers"), "text", ConfigError, "has 2 encoder layers"),
    ("cnn", FinetuneConfig(head="new", freeze="5-layers"), "digits", ConfigError, "has 3 layers below its head"),
    ("cnn", FinetuneConfig(labels=5000), "digits", ConfigError, "has only 1,212 labelled training examples"),
    ("conv", FinetuneConfig(lora=2), "digits", ConfigError, "--lora needs nn.Linear layers"),
    ("cnn", FinetuneConfig(head="new"), "unlabelled", DataError, "have no label"),
    ("cnn", FinetuneConfig(), "no-train", DataError, "has no train split"),
    ("cnn", FinetuneConfig(task="text-classification"), "digits", ConfigError, "--task text-classification, but"),
    ("cnn", FinetuneConfig(freeze="backbone", unfreeze_after=3), "digits", ConfigError, "would never unfreeze"),
])
def test_bad_input_is_refused_before_training(make, config, data, error, message, tiny_bert_dir, digits):
    loaded = {"bert": lambda: sizewise.load(str(tiny_bert_dir)), "cnn": lambda: sizewise.load("zoo:digits-cnn"),
              "conv": conv_only}[make]()
    tr = digits.split("train")
    dataset = {"digits": digits, "text": toy_text(),
               "unlabelled": Dataset("d", "image-classification", {"train": Split(tr.inputs, -np.ones_like(tr.labels)),
                                                                   "test": digits.split("test")}, "test", 10, (1, 8, 8)),
               "no-train": Dataset("d", "image-classification", {"test": digits.split("test")}, "test", 10,
                                   (1, 8, 8))}[data]
    with pytest.raises(error, match=message.replace("(", r"\(")):
        finetune(loaded, dataset, config, TrainConfig(epochs=2))


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": 0}, "--labels must be a positive number"),
    ({"unfreeze_after": 1}, "--unfreeze-after needs something frozen"),
    ({"freeze": "banana"}, "--freeze must be none, backbone, or N-layers"),
    ({"head": "old"}, "--head must be one of keep, new"),
    ({"lora": 0}, "--lora must be a positive rank"),
    ({"lora": 4, "freeze": "backbone", "unfreeze_after": 1}, "does not combine with --lora"),
])
def test_config_validates_itself(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig(**kwargs)


# ------------------------------------------------------------------------------------------------------ resume --

def test_resume_across_the_unfreezing_epoch_equals_an_uninterrupted_run(pretrained_dir, digits, tmp_path,
                                                                          fast_measure):
    task = digits_mod3(digits)
    config = FinetuneConfig(head="new", freeze="backbone", unfreeze_after=1, labels=300)
    train_config = TrainConfig(epochs=3, seed=4, optimizer="sgd", lr=0.05)
    full = sizewise.load(str(pretrained_dir))
    finetune(full, task, config, train_config)

    class Interrupt(Exception):
        pass

    def die_after(epoch):
        def hook(stats):
            if stats.epoch == epoch:
                raise Interrupt
        return hook

    with pytest.raises(Interrupt):
        finetune(sizewise.load(str(pretrained_dir)), task, config, train_config, out=tmp_path,
                 on_epoch=die_after(1))
    resumed = sizewise.load(str(pretrained_dir))
    result = finetune(resumed, task, config, train_config, out=tmp_path, resume=True)
    assert result.training.resumed_from_epoch == 1 and result.compute.epochs == 3
    assert result.compute.examples_seen == 3 * result.train_examples and result.compute.notes == []
    assert all(torch.equal(a, b) for a, b in zip(state(full.module).values(), state(resumed.module).values(),
                                                  strict=True))
    with pytest.raises(ConfigError, match="was started with other settings"):
        finetune(sizewise.load(str(pretrained_dir)), task, FinetuneConfig(head="new", labels=300), train_config,
                 out=tmp_path, resume=True)
