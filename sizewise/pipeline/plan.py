"""A plan: the ordered steps (method + config, and the training settings of a step that trains) one executor runs.

``sizewise prune`` is a one-step plan, ``compress --recipe`` a plan read from YAML, and ``shrink`` samples plans from
the registry's search spaces. A recipe file is a ``name`` and a list of one-key ``steps``; the key is a method name
(``- gradual: {sparsity: 0.9, epochs: 3}``) or a family with its method (``- prune: {method: gradual, ...}``; a
family alone means its usual method). Training fields (``epochs``, ``lr``, ...) sit beside the method's own. Every
field is checked against the dataclass it builds before anything runs, so a typo fails in the first second with
the step and field named; nothing in a recipe can name a Python object (only registered methods and plain values).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import reprlib
import types
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sizewise.core.errors import ConfigError
from sizewise.core.serialize import to_dict

# the method a family name alone means in a recipe
FAMILY_DEFAULTS = {"prune": "magnitude", "quantize": "int8-dynamic", "distill": "distill", "finetune": "finetune",
                   "factorize": "factorize", "cluster": "cluster", "encode": "huffman", "train": "train"}
TRAIN_FIELDS = ("epochs", "lr", "batch_size", "optimizer", "momentum", "weight_decay", "schedule", "val_fraction",
                "patience", "seed", "augment", "label_smoothing", "warmup_epochs", "precision")


@dataclass(frozen=True)
class Step:
    method: str
    config: Any
    train: Any = None  # TrainConfig of a step that trains (recovery, distillation, fine-tuning), or None

    @classmethod
    def of(cls, config: Any, train: Any = None) -> Step:
        """The step that applies ``config`` (its method is looked up in the registry)."""
        from sizewise.compress.registry import method_for

        return cls(method_for(config).name, config, train)

    def describe(self) -> str:
        fields = {k: v for k, v in to_dict(self.config).items()} if dataclasses.is_dataclass(self.config) else {}
        defaults = _defaults(type(self.config))
        shown = ", ".join(f"{k}={v}" for k, v in fields.items() if defaults.get(k, object()) != v)
        if self.train is not None:
            shown += ("; " if shown else "") + f"{self.train.epochs} epoch{'s' if self.train.epochs != 1 else ''}"
        return f"{self.method}({shown})"

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "config": to_dict(self.config),
                "train": None if self.train is None else to_dict(self.train)}


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    name: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if not self.steps:
            raise ConfigError("a plan needs at least one step")
        for step in self.steps:
            if not isinstance(step, Step):
                raise TypeError(f"a plan's steps are sizewise.Step objects (Step.of(config)), got {step!r}")

    @classmethod
    def of(cls, *configs: Any, name: str = "") -> Plan:
        """``Plan.of(MagnitudePrune(0.5), Int8Dynamic())``; a ``Step`` passes through as it is."""
        return cls(tuple(c if isinstance(c, Step) else Step.of(c) for c in configs), name=name)

    def fingerprint(self) -> str:
        return steps_fingerprint([s.to_dict() for s in self.steps])

    def describe(self) -> str:
        return " → ".join(s.describe() for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "steps": [s.to_dict() for s in self.steps]}


def steps_fingerprint(steps: list[dict[str, Any]]) -> str:
    """What a plan does, as a short hash of its steps (``Step.to_dict()``): not its name or source, and the same for a
    plan's steps read back from JSON (tuples come back as lists and dump alike)."""
    text = json.dumps(steps, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _defaults(cls: type) -> dict[str, Any]:
    if not dataclasses.is_dataclass(cls):
        return {}
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


# -- recipes: YAML -> Plan --------------------------------------------------------------------------------------------

def builtin_recipes() -> list[str]:
    folder = resources.files("sizewise.pipeline") / "recipe_files"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_plan(name_or_path: str, trust_remote_code: bool = False) -> Plan:
    """A built-in recipe by name, or a YAML file; validated completely before it is returned. A file that names a
    ``package.module:factory`` (a distillation student) is refused unless ``trust_remote_code``: running the recipe
    would import and call it."""
    import yaml

    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read recipe file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
        source = str(path)
    elif name_or_path in builtin_recipes():
        text = (resources.files("sizewise.pipeline") / "recipe_files" / f"{name_or_path}.yaml").read_text("utf-8")
        source = f"built-in:{name_or_path}"
    else:
        raise ConfigError(f"unknown recipe '{name_or_path}'",
                          hint=f"built-in recipes: {', '.join(builtin_recipes())}; or give a .yaml file")
    try:
        raw = yaml.safe_load(text)  # safe_load: no tag can build a Python object
    # PyYAML's constructors raise plain Python errors on a bad scalar (`!!int ;`, `!!bool x`), and its composer
    # recurses once per nesting level
    except (yaml.YAMLError, ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"recipe {source} is not valid YAML: {first}") from exc
    plan = parse_plan(raw, source)
    _check_named_code(plan, trust_remote_code)
    return plan


def _check_named_code(plan: Plan, trusted: bool) -> None:
    """A model reference in a recipe (a student) that is a factory runs code the file chose: it needs consent."""
    from sizewise.models.loader import check_factory_consent, is_factory_reference

    for i, step in enumerate(plan.steps, 1):
        student = getattr(step.config, "student", None)
        if isinstance(student, str) and is_factory_reference(student):
            check_factory_consent(student.strip(), named_in=f"recipe {plan.source} step {i} ({step.method})",
                                  role="student", trusted=trusted, python="sizewise.load_plan")


def parse_plan(raw: Any, source: str = "recipe") -> Plan:
    from sizewise.compress.registry import list_methods

    if not isinstance(raw, dict) or not isinstance(raw.get("steps"), list) or not raw["steps"]:
        raise ConfigError(f"{source}: a recipe is a mapping with a non-empty 'steps' list",
                          hint="see `sizewise compress --help` for an example")
    unknown = set(raw) - {"name", "description", "steps"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level field(s) {sorted(map(str, unknown))}",
                          hint="known: name, description, steps")
    steps = []
    for i, item in enumerate(raw["steps"], 1):
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(f"{source}: step {i} must be a one-key mapping like `- prune: {{sparsity: 0.9}}`")
        (key, options), = item.items()
        options = {} if options is None else options
        known = list_methods()
        if not isinstance(key, str) or (key not in known and key not in FAMILY_DEFAULTS):
            raise ConfigError(f"{source}: step {i} has unknown method {_shown(key)}",
                              hint=f"methods: {', '.join(known)}; families: {', '.join(FAMILY_DEFAULTS)}")
        if not isinstance(options, dict):
            raise ConfigError(f"{source}: step {i} ({key}) needs a mapping of options, got {_shown(options)}")
        steps.append(build_step(key, dict(options), f"{source}: step {i} ({key})"))
    return Plan(tuple(steps), name=str(raw.get("name") or source), source=source)


def build_step(key: str, options: dict[str, Any], where: str) -> Step:
    """A validated step from a method (or family) name and plain option values."""
    from sizewise.compress.registry import get_method, list_methods
    from sizewise.train import TrainConfig

    name = key
    if key in FAMILY_DEFAULTS and key not in list_methods():
        name = options.pop("method", FAMILY_DEFAULTS[key])
        family = list_methods(key)
        if name not in family:
            raise ConfigError(f"{where}: unknown {key} method {_shown(name)}", hint=f"known: {', '.join(family)}")
    elif "method" in options:
        raise ConfigError(f"{where}: 'method' goes with a family key (e.g. `- prune: {{method: gradual}}`)")
    method = get_method(name)
    own_fields = _fields_of(method.config)
    train_fields = _fields_of(TrainConfig)
    is_train = method.config is TrainConfig
    schema = own_fields if is_train else {**own_fields, **{k: train_fields[k] for k in TRAIN_FIELDS}}
    for field_name in list(method.preset):
        schema.pop(field_name, None)
    for field_name, value in options.items():
        if field_name not in schema:
            raise ConfigError(f"{where}: unknown field {_shown(field_name)}", hint=f"known fields: {', '.join(schema)}")
        if not _type_ok(value, schema[field_name]):
            raise ConfigError(f"{where}: field {_shown(field_name)} must be {_type_name(schema[field_name])}, "
                              f"got {_shown(value)}")
    own = {k: v for k, v in options.items() if k in own_fields}
    training = {k: v for k, v in options.items() if k in TRAIN_FIELDS and not is_train}
    config = method.make(**own)
    train = TrainConfig(**training) if training else None
    if method.trains and train is None and not is_train and method.family in ("prune",):
        raise ConfigError(f"{where}: {name} pruning trains while it prunes", hint="give it epochs: N (and usually lr)")
    return Step(name, config, train)


def _shown(value: Any) -> str:
    """A value from a recipe, shortened: YAML aliases can nest a few bytes into billions of items when printed."""
    return _REPR.repr(value)


_REPR = reprlib.Repr()  # (its limits are keywords only from Python 3.12)
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 6, 6, 80, 80, 40


def _fields_of(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


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
    if origin is tuple:
        return isinstance(value, (list, tuple))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else False


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is dict:
        return "a mapping of " + " to ".join(_type_name(h) for h in typing.get_args(hint))
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))
