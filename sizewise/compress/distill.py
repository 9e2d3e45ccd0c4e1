"""Knowledge distillation: a smaller student learns from a teacher's outputs (Hinton et al. 2015; DistilBERT; TinyBERT).

Students (``--student SPEC``):

- ``layers:K`` keeps K evenly spaced layers of a transformer encoder, the last one included, initialised from the
  teacher's (DistilBERT's initialisation; for 6 -> 3 layers: 2, 4 and 6);
- ``width:F`` a narrower copy: for CNNs/MLPs every hidden layer keeps a fraction F of its channels/neurons, chosen and
  initialised from the teacher's largest (L1) ones through Torch-Pruning; for transformers a fresh encoder with F of the
  hidden and FFN width (TinyBERT-style: hidden-state losses then go through a learned projection);
- any model reference (``zoo:lenet5``, a run directory, ...).

Losses: logits at temperature T (KL x T^2) mixed with the labels' cross-entropy by ``alpha``; for sentence encoders
the MSE to the teacher's mean-pooled embedding (needs no labels: ``--unlabeled FILE`` of sentences); optionally the MSE
of hidden states / features, through a learned linear projection where widths differ.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sizewise.compress.registry import SHARED, SPARSE, Method, StepContext, StepOutput, register
from sizewise.core.errors import ConfigError, DataError
from sizewise.data.dataset import Dataset, Split, take
from sizewise.models.loaded import LoadedModel
from sizewise.tasks.evaluate import mean_pool
from sizewise.train.objectives import Objective, objective_for

CLASSIFICATION = ("image-classification", "text-classification")


@dataclass(frozen=True)
class DistillConfig:
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the distillation loss; 1 - alpha goes to the labels (classification)
    hidden_loss: bool = False
    hidden_weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature!r}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha!r}", hint="1 = teacher only, 0 = labels only")
        if self.hidden_weight < 0:
            raise ConfigError(f"hidden_weight must be >= 0, got {self.hidden_weight!r}")


# -- students -----------------------------------------------------------------------------------------------------

def encoder_layers(module: nn.Module) -> tuple[nn.Module, str, nn.ModuleList] | None:
    """(parent, attribute, layers) of a transformer's stack of blocks: the ModuleList of config.num_hidden_layers."""
    n = getattr(getattr(module, "config", None), "num_hidden_layers", None)
    if not n:
        return None
    for parent in module.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.ModuleList) and len(child) == n:
                return parent, attr, child
    return None


def kept_layers(total: int, keep: int) -> list[int]:
    """Evenly spaced, ending with the last layer: 6 -> 3 keeps [1, 3, 5] (0-based)."""
    return [round((i + 1) * total / keep) - 1 for i in range(keep)]


def _layers_student(teacher: LoadedModel, keep: int) -> tuple[LoadedModel, list[int]]:
    found = encoder_layers(teacher.module)
    if found is None:
        raise ConfigError(f"layers:{keep} keeps layers of a transformer encoder, and '{teacher.reference}' is not one",
                          hint="use width:F for CNNs and MLPs")
    _, _, layers = found
    if not 1 <= keep < len(layers):
        raise ConfigError(f"layers:{keep} must keep between 1 and {len(layers) - 1} of the teacher's {len(layers)} layers")
    student = copy.deepcopy(teacher)
    module = student.module
    parent, attr, old = encoder_layers(module)
    chosen = kept_layers(len(old), keep)
    setattr(parent, attr, nn.ModuleList([old[i] for i in chosen]))
    module.config.num_hidden_layers = keep
    for i, layer in enumerate(getattr(parent, attr)):  # newer transformers record each block's index (caches)
        for sub in layer.modules():
            if hasattr(sub, "layer_idx"):
                sub.layer_idx = i
    student.reference = f"{teacher.reference} [layers:{keep}]"
    student.source = "distill-student"
    return student, chosen


def _hidden_units(module: nn.Module) -> list[tuple[str, nn.Module, int]]:
    from sizewise.compress.prune.structured import _output_layers

    last = set(map(id, _output_layers(module)))
    out = []
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear) and id(m) not in last:
            out.append((name, m, m.out_features))
        elif isinstance(m, nn.Conv2d) and id(m) not in last:
            out.append((name, m, m.out_channels))
    return out


def _width_student(teacher: LoadedModel, fraction: float) -> LoadedModel:
    if not 0 < fraction < 1:
        raise ConfigError(f"width:{fraction} must be a fraction in (0, 1)", hint="width:0.25 keeps a quarter")
    if teacher.inputs.kind == "tokens":
        return _narrow_transformer(teacher, fraction)
    if teacher.inputs.kind != "tensor":
        raise ConfigError(f"width:F needs a PyTorch teacher; '{teacher.reference}' is {teacher.inputs.kind}")
    for name, _, units in _hidden_units(teacher.module):
        if round(units * fraction) < 1:
            raise ConfigError(f"width:{fraction} leaves no units in layer '{name}' ({units} x {fraction} < 0.5)",
                              hint=f"use at least width:{0.5 / units:.3g}")
    from sizewise.compress.prune.config import ChannelPrune
    from sizewise.compress.prune.structured import channel

    student = _trainable(copy.deepcopy(teacher))  # the dependency graph is traced through autograd
    channel(student, ChannelPrune(round(1 - fraction, 6), skip_unprunable=True), StepContext())
    student.reference = f"{teacher.reference} [width:{fraction}]"
    return student


def _narrow_transformer(teacher: LoadedModel, fraction: float) -> LoadedModel:
    config = copy.deepcopy(teacher.module.config)
    heads = config.num_attention_heads
    hidden = round(config.hidden_size * fraction / heads) * heads  # keeps the head count, narrows each head
    ffn = round(config.intermediate_size * fraction)
    if hidden < heads or ffn < 1:
        raise ConfigError(f"width:{fraction} leaves no units: hidden {config.hidden_size} x {fraction} over "
                          f"{heads} heads rounds to {hidden}, FFN {config.intermediate_size} x {fraction} to {ffn}",
                          hint=f"use at least width:{heads / config.hidden_size:.3g}")
    config.hidden_size, config.intermediate_size = hidden, ffn
    student = copy.copy(teacher)
    student.module = type(teacher.module)(config).eval()  # fresh weights: nothing of a different width to copy
    student.metadata = dict(teacher.metadata)
    student.reference = f"{teacher.reference} [width:{fraction}]"
    return student


def build_student(teacher: LoadedModel, spec: str, seed: int = 0) -> tuple[LoadedModel, dict]:
    """The student a SPEC names, and what was done (kept layers, widths)."""
    from sizewise.models.loader import load

    torch.manual_seed(seed)  # a width transformer starts from random weights: the same ones on resume
    kind, _, value = spec.partition(":")
    if kind == "layers" and value:
        try:
            keep = int(value)
        except ValueError:
            raise ConfigError(f"layers:K needs an integer K, got '{value}'") from None
        student, chosen = _layers_student(teacher, keep)
        return _trainable(student), {"spec": spec, "kept_layers": chosen}
    if kind == "width" and value:
        try:
            fraction = float(value)
        except ValueError:
            raise ConfigError(f"width:F needs a number F, got '{value}'") from None
        return _trainable(_width_student(teacher, fraction)), {"spec": spec, "width": fraction}
    student = load(spec)
    check_student(teacher, student)
    return student, {"spec": spec}


def _trainable(student: LoadedModel) -> LoadedModel:
    """A copy of a frozen (e.g. partly fine-tuned) teacher must still learn: every student weight trains."""
    for p in student.module.parameters():
        p.requires_grad_(True)
    return student


def check_student(teacher: LoadedModel, student: LoadedModel) -> None:
    """A student must take the teacher's inputs (the same examples are fed to both)."""
    if student.inputs.kind != teacher.inputs.kind or (
            student.inputs.kind == "tensor" and tuple(student.inputs.shape) != tuple(teacher.inputs.shape)):
        what = lambda m: m.inputs.kind + (f" {tuple(m.inputs.shape)}" if m.inputs.kind == "tensor" else "")  # noqa: E731
        raise ConfigError(f"the student '{student.reference}' takes {what(student)} inputs, the teacher "
                          f"'{teacher.reference}' takes {what(teacher)}: they cannot see the same examples",
                          hint="pick a student built for the teacher's data (or use layers:K / width:F)")


# -- the objective ---------------------------------------------------------------------------------------------------

class _FeatureTap:
    """Outputs of named layers, captured by forward hooks (features of CNN/MLP students and teachers)."""

    def __init__(self, module: nn.Module, names: list[str]):
        self.values: dict[str, torch.Tensor] = {}
        modules = dict(module.named_modules())
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            self.values[name] = output
        return hook


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1) if x.dim() > 2 else x


class Distillation(Objective):
    """The student's loss against the teacher (and the labels); validation is the task's own metric."""

    def __init__(self, student: LoadedModel, teacher: LoadedModel, dataset: Dataset, config: DistillConfig,
                 labelled: bool = True, layer_map: list[tuple[int, int]] | None = None):
        super().__init__(student, dataset)
        self.teacher, self.config, self.labelled = teacher, config, labelled
        self.task_objective = objective_for(student, dataset)
        self.metric, self.higher_is_better = self.task_objective.metric, self.task_objective.higher_is_better
        if dataset.task == "causal-lm":
            self.max_length = self.task_objective.max_length
        self.teacher.module.eval()  # its forward runs under no_grad: it never gets gradients, and stays trainable
        self.projections = nn.ModuleDict()
        self.layer_map = layer_map or []
        self.taps: tuple[_FeatureTap, _FeatureTap] | None = None
        if config.hidden_loss:
            self._prepare_hidden()
        if dataset.task == "sentence-similarity":  # a narrower student's embedding is projected to the teacher's
            s_dim, t_dim = student.module.config.hidden_size, teacher.module.config.hidden_size
            if s_dim != t_dim:
                self.projections["embedding"] = nn.Linear(s_dim, t_dim)

    # hidden-state pairs and their projections
    def _prepare_hidden(self) -> None:
        if self.loaded.inputs.kind == "tokens":
            s_layers, t_layers = (encoder_layers(m.module) for m in (self.loaded, self.teacher))
            if s_layers is None or t_layers is None:
                raise ConfigError("--hidden-loss pairs transformer layers; a model here has no encoder layer stack")
            if not self.layer_map:  # uniform: student layer i <- teacher layer kept_layers(...)[i]
                chosen = kept_layers(len(t_layers[2]), len(s_layers[2]))
                self.layer_map = [(0, 0)] + [(i + 1, t + 1) for i, t in enumerate(chosen)]
            s_dim, t_dim = self.loaded.module.config.hidden_size, self.teacher.module.config.hidden_size
            if s_dim != t_dim:
                self.projections["hidden"] = nn.Linear(s_dim, t_dim)
            return
        s_units = {n: u for n, _, u in _hidden_units(self.loaded.module)}
        t_units = {n: u for n, _, u in _hidden_units(self.teacher.module)}
        names = [n for n in s_units if n in t_units]
        if not names:
            raise ConfigError("--hidden-loss pairs layers by name, and the student and teacher share none",
                              hint="use a width:F student, or drop --hidden-loss")
        for n in names:
            if s_units[n] != t_units[n]:
                self.projections[n.replace(".", "__")] = nn.Linear(s_units[n], t_units[n])
        self.taps = (_FeatureTap(self.loaded.module, names), _FeatureTap(self.teacher.module, names))

    def extra_parameters(self) -> list[nn.Parameter]:
        return list(self.projections.parameters())

    def state_dict(self) -> dict:
        return self.projections.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.projections.load_state_dict(state)

    def _project(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """Student features mapped to the teacher's width (features last); unchanged where widths agree."""
        return self.projections[key](x) if key in self.projections else x

    def _hidden_mse(self, s_states, t_states) -> torch.Tensor:
        if self.taps is not None:  # CNN/MLP features: channels moved last so one Linear projects every position
            s_vals, t_vals = self.taps[0].values, self.taps[1].values
            terms = [nn.functional.mse_loss(self._project(n.replace(".", "__"), _channels_last(s_vals[n])),
                                            _channels_last(t_vals[n])) for n in s_vals]
        else:
            terms = [nn.functional.mse_loss(self._project("hidden", s_states[i]), t_states[j])
                     for i, j in self.layer_map]
        return torch.stack(terms).mean()

    # forward passes
    def _run(self, model: LoadedModel, batch, grad: bool):
        with torch.set_grad_enabled(grad):
            if model.inputs.kind == "tokens":
                enc = self._tokens_for(model, batch)
                out = model.module(**enc, output_hidden_states=self.config.hidden_loss)
                return out, enc
            return model.module(**{model.inputs.name: torch.from_numpy(batch)}), None

    def _tokens_for(self, model: LoadedModel, texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(model.inputs.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                           return_tensors="pt"))

    def loss(self, split: Split, idx: np.ndarray):
        batch = take(split.inputs, idx)
        if self.dataset.task == "sentence-similarity":
            return self._embedding_loss(batch), None
        if self.dataset.task == "causal-lm":
            return self._next_token_loss(batch), None
        s_out, _ = self._run(self.loaded, batch, grad=True)
        t_out, _ = self._run(self.teacher, batch, grad=False)
        s_logits = getattr(s_out, "logits", s_out)
        t_logits = getattr(t_out, "logits", t_out)
        if s_logits.shape != t_logits.shape:
            raise ConfigError(f"the student gives {tuple(s_logits.shape[1:])} outputs, the teacher "
                              f"{tuple(t_logits.shape[1:])}: logits cannot be matched")
        t = self.config.temperature
        # The losses in float32 even under bf16 autocast: KL between two nearly equal bf16 softmaxes is off by about
        # 1e-2 near convergence (measured: 0.01573 vs 0.01436), the size of what is being learned.
        with torch.autocast(s_logits.device.type, enabled=False):
            s32, t32 = s_logits.float(), t_logits.float()
            kd = nn.functional.kl_div(nn.functional.log_softmax(s32 / t, -1), nn.functional.softmax(t32 / t, -1),
                                      reduction="batchmean") * t * t
            loss = kd
            if self.labelled and self.config.alpha < 1:
                y = torch.from_numpy(split.labels[idx])
                loss = self.config.alpha * kd + (1 - self.config.alpha) * nn.functional.cross_entropy(s32, y)
        if self.config.hidden_loss:
            loss = loss + self.config.hidden_weight * self._hidden_mse(getattr(s_out, "hidden_states", None),
                                                                       getattr(t_out, "hidden_states", None))
        right = None
        if self.labelled:
            right = int((s_logits.argmax(-1) == torch.from_numpy(split.labels[idx])).sum())
        return loss, right

    def _next_token_loss(self, texts) -> torch.Tensor:
        """A causal LM learns each real position's next-token distribution from the teacher: KL(teacher || student)
        per token (the recovery loss of Minitron, Muralidharan et al. 2024), plus 1 - alpha of the next-token
        cross-entropy. Both models read the student's tokenization: a pruned student shares its teacher's vocabulary."""
        from sizewise.train.objectives import lm_batch, next_token_targets

        batch = lm_batch(self.loaded, texts, self.max_length)
        s_logits = self.loaded.module(**batch).logits[:, :-1]
        with torch.no_grad():
            t_logits = self.teacher.module(**batch).logits[:, :-1]
        if s_logits.shape != t_logits.shape:
            raise ConfigError(f"the student predicts over {s_logits.shape[-1]} tokens, the teacher over "
                              f"{t_logits.shape[-1]}: a causal LM distils from a teacher with its vocabulary")
        targets = next_token_targets(batch)
        real = targets != -100
        t = self.config.temperature
        with torch.autocast(s_logits.device.type, enabled=False):  # float32, as in loss()
            s32, t32 = s_logits[real].float(), t_logits[real].float()
            loss = nn.functional.kl_div(nn.functional.log_softmax(s32 / t, -1), nn.functional.softmax(t32 / t, -1),
                                        reduction="batchmean") * t * t
            if self.labelled and self.config.alpha < 1:
                loss = self.config.alpha * loss + (1 - self.config.alpha) * nn.functional.cross_entropy(
                    s32, targets[real])
        return loss

    def _embedding_loss(self, batch) -> torch.Tensor:
        texts = [t for item in batch for t in (item if isinstance(item, (tuple, list)) else (item,))]
        s_out, s_enc = self._run(self.loaded, texts, grad=True)
        t_out, t_enc = self._run(self.teacher, texts, grad=False)
        s_emb = mean_pool(s_out.last_hidden_state, s_enc["attention_mask"])
        t_emb = mean_pool(t_out.last_hidden_state, t_enc["attention_mask"])
        with torch.autocast(s_emb.device.type, enabled=False):  # the loss in float32 (see loss())
            loss = nn.functional.mse_loss(self._project("embedding", s_emb).float(), t_emb.float())
        if self.config.hidden_loss:
            loss = loss + self.config.hidden_weight * self._hidden_mse(s_out.hidden_states, t_out.hidden_states)
        return loss

    def close(self) -> None:
        """Remove the feature hooks from both models (the student is handed back as an ordinary module)."""
        for tap in self.taps or ():
            for handle in tap.handles:
                handle.remove()

    def validate(self, split: Split) -> float:
        return self.task_objective.validate(split)


# -- the job -------------------------------------------------------------------------------------------------------

def read_unlabeled(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise DataError(f"cannot read the unlabeled file {path}: {exc.strerror or exc}") from exc
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"{path} holds no sentences", hint="one sentence per line")
    return lines


def training_data(dataset: Dataset, config: DistillConfig, unlabeled: list[str] | None) -> tuple[Dataset, bool]:
    """The split the student trains on, and whether it has labels to mix in."""
    if unlabeled is not None:
        if dataset.task == "image-classification":
            raise DataError("--unlabeled takes a text file of sentences; image students learn from the train split")
        split = Split(unlabeled, np.zeros(len(unlabeled), dtype=np.int64))
        return dataclasses.replace(dataset, splits={**dataset.splits, "train": split}), False
    if "train" not in dataset.splits:
        raise DataError(f"dataset '{dataset.name}' has no train split to distil on", hint="or pass --unlabeled FILE")
    if dataset.task == "sentence-similarity":  # embedding KD needs no scores: both sentences of every pair
        pairs = dataset.split("train").inputs
        return dataclasses.replace(dataset, splits={**dataset.splits, "train": Split(
            [s for pair in pairs for s in pair], np.zeros(2 * len(pairs), dtype=np.int64))}), False
    labels = dataset.split("train").labels
    if dataset.task in CLASSIFICATION and config.alpha < 1 and (labels is None or len(labels) == 0):
        raise DataError(f"dataset '{dataset.name}' has no labels, and alpha {config.alpha} < 1 asks for them",
                        hint="pass --alpha 1 to learn from the teacher alone")
    return dataset, dataset.task in CLASSIFICATION


def distill(teacher: LoadedModel, student: LoadedModel, dataset: Dataset, config: DistillConfig, train_config,
            out: str | Path | None = None, resume: bool = False, unlabeled: list[str] | None = None,
            layer_map: list[tuple[int, int]] | None = None, bar: bool = True, on_epoch=None):
    """Train ``student`` in place to imitate ``teacher``; resumable through ``out``/``resume`` like ``train``."""
    from sizewise.tasks import check_compatible
    from sizewise.train import train

    check_compatible(teacher, dataset)
    check_student(teacher, student)
    data, labelled = training_data(dataset, config, unlabeled)
    objective = Distillation(student, teacher, data, config, labelled=labelled, layer_map=layer_map)
    if dataset.task == "sentence-similarity":
        # the train split is sentences, not scored pairs: no validation split can be cut from it (the Spearman on
        # the held-out split is measured afterwards)
        train_config = dataclasses.replace(train_config, val_fraction=0.0, patience=None)
    try:
        return train(student, data, train_config, out=out, resume=resume, bar=bar, objective=objective,
                     on_epoch=on_epoch)
    finally:
        objective.close()


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())



# -- the registered method -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Distill:
    """Distil the step's input model (the teacher) into ``student``: ``layers:K`` (K evenly spaced transformer layers,
    initialised from the teacher's), ``width:F`` (a narrower copy), or any model reference."""

    student: str
    temperature: float = 2.0
    alpha: float = 0.5
    hidden_loss: bool = False
    hidden_weight: float = 1.0
    unlabeled: str | None = None  # a text file of sentences to distil on instead of the labelled train split

    def __post_init__(self) -> None:
        if not isinstance(self.student, str) or not self.student.strip():
            raise ConfigError("distillation needs a student", hint="e.g. layers:3, width:0.5, or a model reference")
        self.loss()  # its own checks

    def loss(self) -> DistillConfig:
        return DistillConfig(self.temperature, self.alpha, self.hidden_loss, self.hidden_weight)


def distill_step(teacher: LoadedModel, config: Distill, ctx: StepContext) -> StepOutput:
    from sizewise.train import TrainConfig

    train_config = ctx.train or TrainConfig(epochs=3)
    data = ctx.need_data("distillation")
    student, info = build_student(teacher, config.student, seed=train_config.seed)
    info = info | {"teacher_params": params(teacher.module), "student_params": params(student.module)}
    ctx.progress(f"teacher {info['teacher_params']:,} parameters → student {info['student_params']:,}")
    sentences = read_unlabeled(config.unlabeled) if config.unlabeled else None
    result = distill(teacher, student, data, config.loss(), train_config, out=ctx.workdir,
                     resume=ctx.resume and ctx.workdir is not None, unlabeled=sentences)
    return StepOutput(student, {"student": info, "training": result})


def _search(trial, space) -> Distill:
    if space.input_kind == "tokens":
        return Distill(f"layers:{trial.suggest_int('distill.layers', 2, 4)}", alpha=1.0)
    return Distill(f"width:{trial.suggest_categorical('distill.width', [0.25, 0.5, 0.75])}")


register(Method("distill", "distill", Distill, distill_step, "knowledge distillation into a smaller student",
                needs_data=True, trains=True, structured=True, breaks=frozenset({SHARED, SPARSE}),
                options=("student", "temperature", "alpha", "hidden_loss", "hidden_weight", "unlabeled"),
                search=_search, stronger={"distill.layers": -1, "distill.width": -1}))
