"""Property tests for the readers and checkers that face user input (the edit sequences,
undo/redo, save→load round trip and random TOML live in tests/core/test_properties.py).

Whatever comes in, each one either returns a checked value or raises its own TuilabError (or
WeightsError) — never a TypeError, KeyError, RecursionError or a torch error from deeper in.
"""

from __future__ import annotations

import math
import string
import tempfile
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from tuilab.core.arguments import Arg
from tuilab.core.catalog import CATALOG
from tuilab.core.errors import ArgumentError, BuildError, EditError, SpecFileError
from tuilab.core.lab import RunRecord
from tuilab.core.usercode import is_user_code_arg, split_arg
from tuilab.core.workspace import (
    load_workspace,
    parse_toml,
    spec_from_data,
    workspace_to_text,
)

ARGS = [(block.name, arg) for block in CATALOG.values() for arg in block.args]
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

text_values = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="0123456789-+.,()[] eE", max_size=20),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "9" * 5000, "(1, 2)", "[3]", "()", "none",
                     "true", "0x10", "٣", "1_000", " 7 ", "(,,)", "1,", "-0"]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), text_values)
values = st.one_of(scalars, st.lists(scalars, max_size=5), st.tuples(scalars, scalars),
                   st.dictionaries(st.text(max_size=3), scalars, max_size=2))


def _is_valid(arg: Arg, value: Any) -> bool:
    """What a coerced value must look like for its kind."""
    if value is None:
        return arg.nullable
    if arg.kind == "bool":
        return isinstance(value, bool)
    if arg.kind in ("int", "float"):
        ok = isinstance(value, int if arg.kind == "int" else (int, float)) and not isinstance(
            value, bool) and math.isfinite(value)
        return ok and (arg.minimum is None or value >= arg.minimum) and (
            arg.maximum is None or value <= arg.maximum)
    if arg.kind == "choice":
        return value in arg.choices
    if arg.kind == "str":
        return isinstance(value, str)
    items = value if isinstance(value, tuple) else (value,)
    return all(isinstance(v, int) and not isinstance(v, bool) for v in items) and (
        arg.kind == "ints" or len(items) in (1, arg.dims))


@FAST
@given(st.sampled_from(ARGS), values)
def test_any_value_through_arg_coerce_is_checked_or_an_argument_error(
        entry: tuple[str, Arg], value: Any) -> None:
    block, arg = entry
    try:
        result = arg.coerce(value, where=block)
    except ArgumentError as error:
        assert f"argument '{arg.name}'" in error.message and "expected" in error.message
        assert error.where == block
        return
    assert _is_valid(arg, result), (arg, value, result)
    # what the form shows is read back as the same value
    assert arg.coerce(arg.text(result)) == result


@FAST
@given(st.sampled_from(sorted(CATALOG)),
       st.dictionaries(st.one_of(st.sampled_from([a.name for _, a in ARGS]),
                                 st.text(max_size=8)), values, max_size=4))
def test_any_arguments_through_validate_are_checked_or_an_argument_error(
        block: str, args: dict[str, Any]) -> None:
    definition = CATALOG[block]
    try:
        checked = definition.validate(args, where="net.0")
    except ArgumentError as error:
        assert error.where == "net.0"
        return
    assert set(checked) == {a.name for a in definition.args}


@FAST
@given(st.one_of(text_values, st.lists(st.one_of(st.integers(-5, 2**40), st.booleans(),
                                                  st.floats(), st.text(max_size=2)),
                                        max_size=8), scalars))
def test_any_input_shape_is_checked_or_an_edit_error(shape: Any) -> None:
    from tuilab.core.edits import check_input_shape

    try:
        checked = check_input_shape(shape)
    except EditError as error:
        assert error.where == "input_shape"
        return
    assert 1 <= len(checked) <= 6 and all(type(d) is int and d >= 1 for d in checked)


@FAST
@given(st.text(alphabet=string.printable + "é✓", max_size=40))
def test_any_user_code_argument_is_split_or_a_spec_file_error(text: str) -> None:
    try:
        path, name = split_arg(text)
    except SpecFileError:
        return
    assert is_user_code_arg(text) and str(path).endswith(".py") and name.isidentifier()


# --- random workspace documents --------------------------------------------------------------
BLOCKS = sorted(CATALOG)
keys = st.sampled_from(["name", "block", "args", "children", "share", "frozen", "code"])


def node_strategy() -> st.SearchStrategy[dict[str, Any]]:
    leaf_args = st.dictionaries(st.sampled_from([a.name for _, a in ARGS][:60]),
                                st.one_of(st.integers(-3, 300), st.booleans(),
                                          st.floats(-2, 300), st.text(max_size=4),
                                          st.lists(st.integers(0, 9), max_size=3)),
                                max_size=3)
    leaf = st.fixed_dictionaries(
        {"name": st.one_of(st.sampled_from(["0", "1", "a", "fc"]), st.text(max_size=4)),
         "block": st.one_of(st.sampled_from(BLOCKS), st.sampled_from(["os.system", "eval",
                                                                      "Relu", ""]))},
        optional={"args": leaf_args, "frozen": st.one_of(st.booleans(), st.integers(0, 1)),
                  "share": st.sampled_from(["0", "1", "a", "9", ""])})
    return st.recursive(
        leaf,
        lambda children: st.fixed_dictionaries(
            {"name": st.sampled_from(["0", "1", "2", "body"]),
             "block": st.sampled_from(["Sequential", "ModuleList", "ModuleDict", "Linear",
                                       "MySequential"])},
            optional={"children": st.lists(children, max_size=4)}),
        max_leaves=12)


toml_scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1),
                         st.floats(allow_nan=False), st.text(max_size=8))
workspace_docs = st.fixed_dictionaries(
    {"model": st.fixed_dictionaries(
        {"root": node_strategy()},
        optional={"name": st.one_of(st.text(max_size=8), st.integers()),
                  "input_shape": st.one_of(st.lists(st.integers(-1, 40), max_size=7),
                                           st.text(max_size=5)),
                  "task": st.sampled_from(["teacher", "moons", "nope"]),
                  "color": st.just("red")})},
    optional={
        "tuilab": st.fixed_dictionaries({}, optional={"format": st.integers(0, 3)}),
        "modes": st.dictionaries(st.sampled_from(["training", "device", "dtype"]), toml_scalars,
                                 max_size=3),
        "training": st.dictionaries(st.sampled_from(["lr", "steps", "task", "x"]),
                                    toml_scalars, max_size=3),
        "runs": st.lists(st.dictionaries(
            st.sampled_from(["name", "status", "steps", "losses", "val_steps", "val_losses",
                             "config", "steps_per_s", "error", "extra"]),
            st.one_of(toml_scalars, st.lists(st.one_of(st.integers(0, 9), st.floats(0, 1)),
                                             max_size=4),
                      st.dictionaries(st.sampled_from(["lr", "steps"]), toml_scalars,
                                      max_size=2)),
            max_size=6), max_size=3),
        "plugins": st.just({"load": "x"}),
    })


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(workspace_docs)
def test_any_workspace_document_loads_checked_or_is_a_spec_file_error(
        doc: dict[str, Any]) -> None:
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        assume(False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "random.toml"
        path.write_text(text)
        try:
            workspace = load_workspace(path)
        except SpecFileError as error:
            assert error.where.startswith("random.toml") or str(path) in error.where
            event("refused")
            return
        event("loaded")
        assert Path(folder, "random.toml").read_text() == text  # reading never writes
    # what loads is usable: its runs become records, it writes back and reads the same, and
    # building it on the meta device either works or names the node that refused
    for run in workspace.runs:
        record = RunRecord.from_data(dict(run))
        assert len(record.steps) == len(record.losses)
        assert record.status in ("finished", "stopped", "failed")
    again = spec_from_data(parse_toml(workspace_to_text(workspace), source="again"),
                           source="again")
    assert workspace_to_text(workspace) == workspace_to_text(
        type(workspace)(spec=again, modes=workspace.modes, training=workspace.training,
                        runs=workspace.runs))
    from tuilab.core.build import build

    try:
        build(workspace.spec, device="meta")
    except BuildError as error:
        assert error.where and "cannot be built" in error.message


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@FAST
@given(st.binary(max_size=300), st.sampled_from([".safetensors", ".pt", ".pth", ".bin"]))
def test_random_bytes_as_weights_are_a_weights_error(data: bytes, suffix: str) -> None:
    from tuilab.core.weights import WeightsError, read_weights

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"w{suffix}"
        path.write_bytes(data)
        try:
            state = read_weights(path)
        except WeightsError as error:
            assert str(path) in str(error)
            return
    assert isinstance(state, dict)


# --- presets with a few random changes: near-valid documents, the realistic kind -------------
PRESETS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "presets").glob("*.toml")
                 if p.stem != "gpt2_xl")


def _places(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indexes) into a parsed TOML document."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _places(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out += _places(value, (*prefix, index))
    return out


mutation = st.tuples(st.integers(0, 10**6), st.sampled_from(["set", "delete", "add"]),
                     st.one_of(toml_scalars, st.lists(st.integers(-2, 70), max_size=4),
                               st.sampled_from(["Sequential", "Linear", "os.system", "0", "",
                                                "ReLU", "Conv2d", "BatchNorm2d"]),
                               st.just({"name": "x", "block": "ReLU"})))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PRESETS), st.lists(mutation, min_size=1, max_size=3))
def test_a_preset_with_random_changes_loads_checked_or_is_refused(
        preset: str, changes: list[tuple[int, str, Any]]) -> None:
    import copy

    root = Path(__file__).resolve().parents[2] / "presets"
    doc = parse_toml((root / f"{preset}.toml").read_text(), source=preset)
    for pick, action, value in changes:
        places = [p for p in _places(doc) if p]
        if not places:  # an earlier change replaced everything with a scalar
            break
        place = places[pick % len(places)]
        parent = doc
        for key in place[:-1]:
            parent = parent[key]
        last = place[-1]
        if action == "set":
            parent[last] = copy.deepcopy(value)
        elif action == "delete":
            del parent[last]
        elif isinstance(parent, list):
            parent.insert(last, copy.deepcopy(value))
        else:
            parent[f"{last}_extra"] = copy.deepcopy(value)
    test_any_workspace_document_loads_checked_or_is_a_spec_file_error.hypothesis.inner_test(doc)
