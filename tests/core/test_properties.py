"""Property tests: random edit sequences, undo/redo, and file round trips."""

from __future__ import annotations

import contextlib
import string

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuilab.core.build import build
from tuilab.core.edits import SpecEditor
from tuilab.core.errors import SpecFileError, TuilabError
from tuilab.core.spec import ModelSpec, Node, walk
from tuilab.core.workspace import Workspace, parse_toml, spec_from_data, workspace_to_text

BLOCKS = ["Linear", "ReLU", "Dropout", "Sequential", "ModuleList", "Tanh", "LayerNorm",
          "Conv2d", "ModuleDict", "Identity"]

edit = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(BLOCKS), st.integers(0, 8)),
    st.tuples(st.just("remove"), st.integers(0, 20)),
    st.tuples(st.just("move"), st.integers(0, 20), st.sampled_from([-1, 1])),
    st.tuples(st.just("indent"), st.integers(0, 20)),
    st.tuples(st.just("outdent"), st.integers(0, 20)),
    st.tuples(st.just("duplicate"), st.integers(0, 20)),
    st.tuples(st.just("share"), st.integers(0, 20), st.integers(0, 20)),
    st.tuples(st.just("set_arg"), st.integers(0, 20), st.integers(-2, 300)),
    st.tuples(st.just("rename"), st.integers(0, 20),
              st.text(string.ascii_letters + ".", max_size=4)),
    st.tuples(st.just("undo")),
    st.tuples(st.just("redo")),
)


def paths(spec: ModelSpec) -> list[str]:
    return [path for path, _ in walk(spec.root)]


def module_paths(spec: ModelSpec) -> list[str]:
    """What named_modules(remove_duplicate=False) must list: a shared container's children
    appear under every path that uses it."""
    by_id = {node.id: node for _, node in walk(spec.root)}
    out: list[str] = []

    def visit(node: Node, path: str) -> None:
        out.append(path)
        target = by_id[node.ref] if node.ref else node
        for child in target.children:
            visit(child, f"{path}.{child.name}" if path else child.name)

    visit(spec.root, "")
    return out


def containers(spec: ModelSpec) -> list[str]:
    return [path for path, node in walk(spec.root) if node.is_container]


def apply(editor: SpecEditor, step: tuple) -> None:
    kind = step[0]
    all_paths = paths(editor.spec)
    pick = lambda i: all_paths[i % len(all_paths)]  # noqa: E731
    if kind == "add":
        parents = containers(editor.spec)
        editor.add(step[1], parent=parents[step[2] % len(parents)])
    elif kind in ("remove", "indent", "outdent", "duplicate"):
        getattr(editor, kind)(pick(step[1]))
    elif kind == "move":
        editor.move(pick(step[1]), step[2])
    elif kind == "share":
        parents = containers(editor.spec)
        editor.share(pick(step[1]), parents[step[2] % len(parents)])
    elif kind == "set_arg":
        editor.set_arg(pick(step[1]), "out_features", step[2])
    elif kind == "rename":
        editor.rename(pick(step[1]), step[2])
    else:
        getattr(editor, kind)()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edit, max_size=25))
def test_random_edits_always_build_or_are_refused_unchanged(steps: list[tuple]) -> None:
    editor = SpecEditor(ModelSpec("p", Node("", "Sequential"), (2, 4)))
    history = [editor.spec]
    for step in steps:
        before = editor.spec
        try:
            apply(editor, step)
        except TuilabError as error:
            assert str(error)  # a refusal always says why
            assert editor.spec is before  # and changes nothing
            continue
        history.append(editor.spec)
        with torch.device("meta"):
            module = build(editor.spec, device="meta")
        names = [name for name, _ in module.named_modules(remove_duplicate=False)]
        assert names == module_paths(editor.spec)
    while editor.can_undo:
        editor.undo()
    assert editor.spec == history[0]


@settings(max_examples=40, deadline=None)
@given(st.lists(edit, max_size=15))
def test_save_then_load_round_trips_exactly(steps: list[tuple]) -> None:
    editor = SpecEditor(ModelSpec("p", Node("", "Sequential"), (2, 4), description="d"))
    for step in steps:
        with contextlib.suppress(TuilabError):
            apply(editor, step)
    text = workspace_to_text(Workspace(editor.spec))
    loaded = spec_from_data(parse_toml(text, source="x.toml"), source="x.toml")
    assert workspace_to_text(Workspace(loaded)) == text
    assert paths(loaded) == paths(editor.spec)
    original = build(editor.spec, device="meta")
    again = build(loaded, device="meta")
    assert {k: v.shape for k, v in original.state_dict().items()} == {
        k: v.shape for k, v in again.state_dict().items()}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_loader(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    try:
        spec_from_data(parse_toml(text, source="r.toml"), source="r.toml")
    except SpecFileError as error:
        assert "r.toml" in str(error)


toml_value = st.recursive(
    st.one_of(st.integers(-5, 5), st.text(max_size=6), st.booleans(), st.floats(allow_nan=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(
                                ["name", "block", "args", "children", "share", "root",
                                 "input_shape", "in_features", "x"]), inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["model", "tuilab", "modes"]), toml_value, max_size=3))
def test_random_toml_documents_are_refused_cleanly(document: dict) -> None:
    try:
        spec_from_data(document, source="t.toml")
    except SpecFileError as error:
        assert "t.toml" in str(error)
