"""Recipes: a chain of compression steps run as one job (``sizewise compress MODEL --recipe NAME|FILE.yaml``).

A recipe is YAML: a ``name`` and a list of one-key ``steps`` (``sizewise compress --help`` shows an example). Every
step's fields are checked against the config dataclass it builds (a pruning method's config, ``ClusterWeights``,
``Factorize``, ``TrainConfig``) before anything runs, so a typo fails in the first second with the step and field
named. A ``finetune`` step keeps what earlier steps established: pruned weights stay zero and shared weights stay
shared (their centroids train). Each finished step saves its model under ``OUT/steps/`` and is logged in
``OUT/steps.json``; re-running the same recipe with the same ``--out`` continues after the last finished step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sizewise.core.errors import ConfigError

STEP_KINDS = ("prune", "finetune", "cluster", "factorize", "encode")
ENCODINGS = ("deep-compression",)
_TRAIN_FIELDS = ("epochs", "lr", "batch_size", "optimizer", "momentum", "weight_decay", "schedule", "val_fraction",
                 "patience", "seed")


@dataclass(frozen=True)
class Step:
    kind: str
    options: dict[str, Any]

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.kind}({shown})"


@dataclass(frozen=True)
class Recipe:
    name: str
    steps: tuple[Step, ...]
    source: str = ""

    def fingerprint(self) -> str:
        text = json.dumps([[s.kind, s.options] for s in self.steps], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def builtin_recipes() -> list[str]:
    folder = resources.files("sizewise.pipeline") / "recipe_files"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_recipe(name_or_path: str) -> Recipe:
    """A built-in recipe by name, or a YAML file; validated completely before it is returned."""
    import yaml

    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read recipe file {path}: {exc.strerror or exc}") from exc
        source = str(path)
    elif name_or_path in builtin_recipes():
        text = (resources.files("sizewise.pipeline") / "recipe_files" / f"{name_or_path}.yaml").read_text("utf-8")
        source = f"built-in:{name_or_path}"
    else:
        raise ConfigError(f"unknown recipe '{name_or_path}'",
                          hint=f"built-in recipes: {', '.join(builtin_recipes())}; or give a .yaml file")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {source} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    return parse_recipe(raw, source)


def parse_recipe(raw: Any, source: str = "recipe") -> Recipe:
    if not isinstance(raw, dict) or not isinstance(raw.get("steps"), list) or not raw["steps"]:
        raise ConfigError(f"{source}: a recipe is a mapping with a non-empty 'steps' list",
                          hint="see `sizewise compress --help` for an example")
    unknown = set(raw) - {"name", "description", "steps"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level field(s) {sorted(unknown)}", hint="known: name, description, steps")
    steps = []
    for i, item in enumerate(raw["steps"], 1):
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(f"{source}: step {i} must be a one-key mapping like `- prune: {{sparsity: 0.9}}`")
        (kind, options), = item.items()
        if kind not in STEP_KINDS:
            raise ConfigError(f"{source}: step {i} has unknown kind '{kind}'", hint=f"known steps: {', '.join(STEP_KINDS)}")
        options = options or {}
        if not isinstance(options, dict):
            raise ConfigError(f"{source}: step {i} ({kind}) needs a mapping of options, got {options!r}")
        step = Step(kind, dict(options))
        _validate(step, f"{source}: step {i} ({kind})")
        steps.append(step)
    return Recipe(str(raw.get("name") or source), tuple(steps), source)


# -- validation ---------------------------------------------------------------------------------------------------

def _type_ok(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is dict:
        key_type, value_type = typing.get_args(hint) or (Any, Any)
        return isinstance(value, dict) and all(_type_ok(k, key_type) and _type_ok(v, value_type)
                                               for k, v in value.items())
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is dict:
        return "a mapping of " + " to ".join(_type_name(h) for h in typing.get_args(hint))
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _fields_of(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _step_schema(step: Step) -> tuple[dict[str, Any], type | None]:
    """Allowed fields -> type hints, and the method config class the step builds."""
    from sizewise.compress.registry import METHODS
    from sizewise.train import TrainConfig

    train = {k: v for k, v in _fields_of(TrainConfig).items() if k in _TRAIN_FIELDS}
    if step.kind == "finetune":
        return train, None
    if step.kind == "encode":
        return {"format": str}, None
    if step.kind == "prune":
        method = step.options.get("method", "magnitude")
        pruners = [n for n in METHODS.names() if n not in ("cluster", "factorize")]
        if method not in pruners:
            raise ConfigError(f"unknown pruning method '{method}'", hint=f"known: {', '.join(pruners)}")
        cls = METHODS.get(method).config
        return {"method": str, **_fields_of(cls), **train}, cls
    cls = METHODS.get(step.kind).config  # cluster, factorize
    return {**_fields_of(cls), **train}, cls


def _validate(step: Step, where: str) -> None:
    schema, _ = _step_schema(step)
    for key, value in step.options.items():
        if key not in schema:
            raise ConfigError(f"{where}: unknown field '{key}'", hint=f"known fields: {', '.join(schema)}")
        if not _type_ok(value, schema[key]):
            raise ConfigError(f"{where}: field '{key}' must be {_type_name(schema[key])}, got {value!r}")
    if step.kind == "encode" and step.options.get("format", ENCODINGS[0]) not in ENCODINGS:
        raise ConfigError(f"{where}: unknown format '{step.options['format']}'", hint=f"known: {', '.join(ENCODINGS)}")
    _method_config(step)  # the config's own checks (ranges, combinations) run now, not mid-recipe
    if _train_config(step) is None and step.kind == "prune" and step.options.get("method") in ("gradual", "lottery"):
        raise ConfigError(f"{where}: {step.options['method']} pruning trains while it prunes",
                          hint="give it epochs: N (and usually lr)")


def _method_config(step: Step):
    schema, cls = _step_schema(step)
    if cls is None:
        return None
    own = {k: v for k, v in step.options.items() if k in _fields_of(cls)}
    try:
        return cls(**own)
    except TypeError as exc:  # a required field missing
        raise ConfigError(f"step {step.kind}: {exc}") from exc


def _train_config(step: Step):
    from sizewise.train import TrainConfig

    own = {k: v for k, v in step.options.items() if k in _TRAIN_FIELDS}
    if step.kind == "finetune":
        return TrainConfig(**{"epochs": 1, **own})
    return TrainConfig(**own) if "epochs" in own else None


# -- running ------------------------------------------------------------------------------------------------------

@dataclass
class StepRecord:
    index: int
    kind: str
    description: str
    metric: float
    seconds: float
    details: dict[str, Any]
    model: str
    flags: dict[str, bool] = field(default_factory=dict)


@dataclass
class RecipeResult:
    recipe: Recipe
    metric: str
    before: Any  # ModelCard
    after: Any  # ModelCard
    steps: list[StepRecord]
    model_dir: Path
    resumed_from: int = 0


def _apply_step(loaded, step: Step, dataset, flags: dict[str, bool]) -> dict[str, Any]:
    """Run one step in place; ``flags`` carries what later fine-tuning must preserve."""
    from sizewise.compress.api import method_for
    from sizewise.compress.cluster import finetune_centroids
    from sizewise.compress.prune.masks import MaskKeeper, prunable_weights
    from sizewise.train import train

    if step.kind == "encode":
        flags["encode"] = True
        return {"format": step.options.get("format", ENCODINGS[0])}
    finetune = _train_config(step)
    if step.kind == "finetune":
        if flags.get("shared"):
            return {"shared_layers": finetune_centroids(loaded, dataset, finetune)}
        keeper = None
        if flags.get("sparse"):  # keep every pruned weight at zero
            weights = prunable_weights(loaded.module)
            keeper = MaskKeeper(weights, {n: w.detach() != 0 for n, w in weights.items()})
        result = train(loaded, dataset, finetune, after_step=keeper.apply if keeper else None, progress=True)
        return {"epochs": len(result.epochs)}
    config = _method_config(step)
    method = method_for(config)
    details = method.apply(loaded, config, dataset, finetune)
    if step.kind == "prune" and not method.structured:
        flags["sparse"] = True
    if step.kind == "cluster":
        flags["shared"] = True
    if method.structured:
        flags["shared"] = False  # new shapes: codebooks of removed layers no longer apply
    return details


def run_recipe(loaded, recipe: Recipe, dataset, out: str | Path, measure_config=None, progress=None) -> RecipeResult:
    """Run ``recipe`` on ``loaded`` (changed in place), save ``OUT/model`` and write ``OUT/card.json``."""
    import sizewise
    from sizewise.core.serialize import to_dict, write_json_atomic
    from sizewise.measure import MeasureConfig, ModelCard, measure
    from sizewise.models.artifact import ENCODING_DEEP_COMPRESSION, save_model
    from sizewise.tasks import check_compatible

    say = progress or (lambda _msg: None)
    out = Path(out)
    check_compatible(loaded, dataset)
    mc = measure_config or MeasureConfig()
    log_path = out / "steps.json"
    done: list[StepRecord] = []
    if log_path.is_file():
        log = json.loads(log_path.read_text(encoding="utf-8"))
        if log.get("fingerprint") == recipe.fingerprint():
            done = [StepRecord(**r) for r in log["steps"]]
        else:
            raise ConfigError(f"{out} holds a run of a different recipe",
                              hint="use a new --out, or delete the folder to start over")
    if (out / "before.json").is_file():  # resuming: the input model was measured by the first run
        before = ModelCard.from_json(out / "before.json")
    else:
        say("measuring the model before")
        out.mkdir(parents=True, exist_ok=True)
        before = measure(loaded, mc, dataset=dataset)
        before.to_json(out / "before.json")
    metric = next(k for k in before.metrics if k != "examples")
    flags: dict[str, bool] = dict(done[-1].flags) if done else {}
    resumed_from = len(done)
    if done:
        say(f"resuming after step {resumed_from} ({done[-1].description})")
        loaded = sizewise.load(done[-1].model)
    for index, step in enumerate(recipe.steps):
        if index < len(done):
            continue
        say(f"step {index + 1}/{len(recipe.steps)}: {step.describe()}")
        started = time.perf_counter()
        details = _apply_step(loaded, step, dataset, flags)
        loaded.module.eval()
        value = sizewise.evaluate(loaded, dataset)[metric]
        model_dir = save_model(loaded, out / "steps" / f"{index + 1:02d}-{step.kind}" / "model")
        done.append(StepRecord(index, step.kind, step.describe(), value, time.perf_counter() - started,
                               to_dict(details), str(model_dir), dict(flags)))
        write_json_atomic(log_path, {"recipe": recipe.name, "source": recipe.source,
                                     "fingerprint": recipe.fingerprint(), "steps": [dataclasses.asdict(r) for r in done]})
    say("saving and measuring the result")
    encoding = ENCODING_DEEP_COMPRESSION if flags.get("encode") else None
    model_dir = save_model(loaded, out / "model", encoding=encoding)
    after = measure(sizewise.load(str(out)), mc, dataset=dataset)
    result = RecipeResult(recipe, metric, before, after, done, model_dir, resumed_from)
    write_json_atomic(out / "card.json", {"schema": "sizewise.recipe/1", "recipe": recipe.name, "source": recipe.source,
                                          "steps": [dataclasses.asdict(r) for r in done], "before": before.to_dict(),
                                          "after": after.to_dict(), "model_dir": str(model_dir)})
    return result
