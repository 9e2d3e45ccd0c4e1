"""Fuzzing the recipe parser (:func:`sizewise.pipeline.plan.parse_plan` and :func:`load_plan`).

A recipe is a YAML file a user may have been sent. Any structure must give a Plan or one ``ConfigError`` line, and
no YAML tag may build a Python object (``yaml.safe_load``): the tests that try ``!!python/...`` tags check that
nothing they name ran.
"""

from __future__ import annotations

import sys
import typing

import pytest
from hypothesis import strategies as st

from sizewise.compress.registry import get_method, list_methods
from sizewise.core.errors import ConfigError
from sizewise.pipeline.plan import FAMILY_DEFAULTS, TRAIN_FIELDS, Plan, _fields_of, load_plan, parse_plan

from fuzzing import expect_sizewise_error, run_target

METHODS = list_methods()
FIELDS = sorted({f for m in METHODS for f in _fields_of(get_method(m).config)} | set(TRAIN_FIELDS) | {"method"})

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=12),
                    st.sampled_from([0, 1, 0.5, 0.9, 1.5, -1, 2**31, "magnitude", "gradual", "l1", "global",
                                     "torch", "onnxruntime", "fp16", "", "nan", "inf", "a\nb", "[/x]"]))
KEYS = st.one_of(st.sampled_from(["name", "description", "steps", *METHODS, *FAMILY_DEFAULTS, *FIELDS]),
                 st.text(max_size=8), st.integers(-2, 2), st.none(), st.booleans(), st.floats(allow_nan=False))


def _children(inner):
    return st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4))


ANY = st.recursive(SCALARS, _children, max_leaves=20)  # what YAML can hold: scalars, lists and mappings of them
STEP_KEY = st.one_of(st.sampled_from([*METHODS, *FAMILY_DEFAULTS]), KEYS)
OPTIONS = st.one_of(st.none(), st.dictionaries(st.sampled_from(FIELDS) | KEYS, SCALARS | ANY, max_size=4), ANY)


def _method_step(method: str):
    """A step of ``method`` whose options are drawn from its own fields (so values reach its config's checks)."""
    fields = sorted(_fields_of(get_method(method).config)) + list(TRAIN_FIELDS)
    values = st.one_of(SCALARS, st.floats(0, 1), st.integers(0, 10), st.sampled_from(["a\nb", "x" * 200]))
    return st.dictionaries(st.sampled_from(fields), values, max_size=5).map(lambda options: {method: options})


STEP = st.one_of(st.dictionaries(STEP_KEY, OPTIONS, min_size=1, max_size=1), ANY,
                 st.sampled_from(METHODS).flatmap(_method_step), st.sampled_from(METHODS).flatmap(_method_step))
RECIPE = st.one_of(
    st.fixed_dictionaries({"steps": st.lists(STEP, max_size=4)},
                          optional={"name": SCALARS | ANY, "description": SCALARS, "extra": ANY}),
    ANY)

# YAML-ish text: tokens of real recipes, tags, anchors and aliases, flow and block syntax, and random text
TOKENS = st.sampled_from(["steps:", "name:", "\n", "\n  ", "\n    ", "- ", "-", ":", ": ", "{", "}", "[", "]", ",",
                          "'", '"', "#", "&a ", "*a", "<<: *a", "!!str ", "!!int ", "!!float ", "!!binary ",
                          "!!python/object:os.system ", "!!python/name:os.system ", "!custom ", "? ", "|", ">",
                          "%YAML 1.1\n", "---\n", "...\n", "prune", "magnitude", "gradual", "sparsity", "0.9",
                          "epochs", "3", "1e309", ".nan", "~", "null", "yes", "2001-12-14", "\t", "\x00", "\ufeff",
                          *METHODS[:6]])


@st.composite
def dumped_recipe(draw) -> str:
    """A generated recipe written as YAML (block or flow style), then 0-3 tokens spliced in."""
    import yaml

    text = yaml.safe_dump(draw(RECIPE), default_flow_style=draw(st.sampled_from([False, True, None])),
                          allow_unicode=True)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(TOKENS) + text[at:]
    return text


YAML_TEXT = st.one_of(st.lists(TOKENS, max_size=40).map("".join), st.text(max_size=200),
                      st.lists(st.one_of(TOKENS, st.text(max_size=4)), max_size=30).map("".join), dumped_recipe())


def _check_plan(raw: typing.Any) -> None:
    out = []
    if expect_sizewise_error(lambda: out.append(parse_plan(raw, "fuzz.yaml")), ConfigError) is None:
        assert isinstance(out[0], Plan) and out[0].steps
        out[0].describe()  # a plan that parsed can be shown
        out[0].fingerprint()


# Found by the fuzzer: the configs' checks quote a bad value as '{value}', so a value with a line break gave a
# ConfigError of two lines. Fixed where every error is made (core/errors.py escapes control characters).
KNOWN_RECIPE_CRASHES: frozenset = frozenset()  # the multi-line messages it found are fixed (core/errors.py escapes)


def test_fuzz_parse_plan_structures():
    run_target("recipe-structures", _check_plan, {"raw": RECIPE}, ci_examples=400, known=KNOWN_RECIPE_CRASHES)


def test_fuzz_load_plan_text(tmp_path):
    path = tmp_path / "recipe.yaml"

    def body(text: str, raw_bytes: bytes | None) -> None:
        if raw_bytes is None:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        else:
            path.write_bytes(raw_bytes)
        expect_sizewise_error(lambda: load_plan(str(path)), ConfigError)

    run_target("recipe-text", body, {"text": YAML_TEXT, "raw_bytes": st.none() | st.binary(max_size=200)},
               ci_examples=300, known=KNOWN_RECIPE_CRASHES)


# -- named cases ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/apply:builtins.exec [\"open(r'{marker}', 'w').close()\"]",
    "!!python/object/new:builtins.exec [\"open(r'{marker}', 'w').close()\"]",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/object:fuzz_side_effect.Marker {{}}",
])
def test_python_tags_in_a_recipe_are_refused_and_run_nothing(tag, tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.yaml"
    path.write_text(f"name: evil\nsteps:\n  - prune: {{sparsity: {tag.format(marker=marker)}}}\n", encoding="utf-8")
    before = set(sys.modules)
    with pytest.raises(ConfigError) as info:
        load_plan(str(path))
    assert "is not valid YAML" in info.value.message and "\n" not in str(info.value)
    assert not marker.exists()  # nothing was executed
    assert "fuzz_side_effect" not in set(sys.modules) - before  # nothing was imported


def test_billion_laughs_recipe_is_refused_in_one_short_line(tmp_path):
    """YAML aliases share one object, so nine levels of nine references are cheap to load, but 9**9 items to
    print: the error that quotes the value must not expand it."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(["name: laughs", "anchors:", *("  " + line for line in lines),
                               "steps:", "  - prune: {sparsity: *a9}"]) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_plan(str(path))
    assert len(str(info.value)) < 2000  # "unknown top-level field(s) ['anchors']", not 387 million x's

    path.write_text("\n".join(["name: laughs", "steps:", f"  - prune: {{sparsity: {_inline_laughs()}}}"]) + "\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_plan(str(path))
    assert "field 'sparsity' must be float" in info.value.message and len(str(info.value)) < 2000


def _inline_laughs() -> str:
    """A flow-style value whose anchors nest nine deep: ``&a0 [x, ...]`` inside ``&a1 [*a0, ...]`` and so on."""
    text = "&a0 [x, x, x, x, x, x, x, x, x]"
    for i in range(1, 10):
        text = f"&a{i} [{text}, {', '.join([f'*a{i - 1}'] * 8)}]"
    return text


# -- regressions: recipe texts that crashed load_plan before (kept as the file's bytes) -------------------------------

RECIPE_REGRESSIONS = {
    "int_tag_on_punctuation": (b"!!int ;", "ValueError from PyYAML's int constructor, plan.py:119"),
    "empty_int_tag": (b"!!int", "IndexError from PyYAML's int constructor, plan.py:119"),
    "bool_tag_on_a_word": (b"steps: !!bool x", "KeyError from PyYAML's bool constructor, plan.py:119"),
    "timestamp_of_month_13": (b"name: !!timestamp 2001-13-45", "ValueError from PyYAML, plan.py:119"),
    "nesting_5000_deep": (b"[" * 5000, "RecursionError in PyYAML's composer, plan.py:119"),
}


@pytest.mark.parametrize("name", RECIPE_REGRESSIONS)
def test_recipe_regression_is_a_one_line_config_error(name, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(RECIPE_REGRESSIONS[name][0])
    with pytest.raises(ConfigError, match="is not valid YAML") as info:
        load_plan(str(path))
    assert "\n" not in str(info.value)
