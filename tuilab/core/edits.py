"""Editing a model spec: each edit is checked, echoed as PyTorch, and can be undone.

`SpecEditor` owns the current spec and the undo/redo history. Every edit builds a new tree,
checks it (names, arguments, references, and that the changed block's constructor accepts
its arguments, tried on the meta device so nothing is allocated), and only then becomes the
current spec; a refusal raises `EditError` naming the node, the argument, the value and what
is allowed, and the spec is exactly what it was. Each accepted edit comes back with the line
of PyTorch that does the same to a live `net`, which the app shows in its code log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tuilab.core.errors import ArgumentError, EditError
from tuilab.core.infer import inferred_args
from tuilab.core.spec import (
    POSITIONAL_CONTAINERS,
    ModelSpec,
    Node,
    check_model_name,
    check_name,
    check_tree,
    find,
    fresh_copy,
    is_positional,
    join,
    leaf_name,
    make_node,
    parent_path,
    path_of,
    renumber,
    replace_at,
    resolve,
    unique_name,
    walk,
)

HISTORY_LIMIT = 500


@dataclass(frozen=True)
class EditResult:
    """What an accepted edit did: a sentence, its PyTorch line, and the node it is about."""

    description: str
    code: str
    path: str | None
    spec: ModelSpec


def module_expr(root: Node, path: str, var: str = "net") -> str:
    """`net.features[0]`: how PyTorch code reaches the module at `path`."""
    from tuilab.core.codelog import module_path_expr

    return module_path_expr(root, path, var)


class SpecEditor:
    """The current spec plus undo/redo. Not thread-safe: the app edits from its UI thread."""

    def __init__(self, spec: ModelSpec) -> None:
        check_tree(spec.root)
        self._spec = spec
        self._undo: list[tuple[ModelSpec, str]] = []
        self._redo: list[tuple[ModelSpec, str]] = []

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # --- history --------------------------------------------------------------------------
    def _commit(self, spec: ModelSpec, description: str, code: str, path: str | None
                ) -> EditResult:
        check_tree(spec.root)
        self._undo.append((self._spec, description))
        del self._undo[:-HISTORY_LIMIT]
        self._redo.clear()
        self._spec = spec
        return EditResult(description, code, path, spec)

    def undo(self) -> EditResult:
        if not self._undo:
            raise EditError("nothing to undo")
        previous, description = self._undo.pop()
        self._redo.append((self._spec, description))
        self._spec = previous
        return EditResult(f"undo: {description}", f"# undo: {description}", None, previous)

    def redo(self) -> EditResult:
        if not self._redo:
            raise EditError("nothing to redo")
        following, description = self._redo.pop()
        self._undo.append((self._spec, description))
        self._spec = following
        return EditResult(f"redo: {description}", f"# redo: {description}", None, following)

    def checkpoint(self) -> tuple[ModelSpec, tuple, tuple]:
        """The spec and both histories, for `rollback` when a later step refuses the edit."""
        return self._spec, tuple(self._undo), tuple(self._redo)

    def rollback(self, checkpoint: tuple[ModelSpec, tuple, tuple]) -> None:
        """Back to exactly `checkpoint`: whatever edit came since (undo and redo included)
        never happened."""
        spec, undo, redo = checkpoint
        self._spec, self._undo, self._redo = spec, list(undo), list(redo)

    def reset(self, spec: ModelSpec, description: str = "load model") -> EditResult:
        """Replace the whole spec (a loaded preset or file) as one undoable step."""
        return self._commit(spec, description, f"# {description}", "")

    # --- helpers --------------------------------------------------------------------------
    def _root(self) -> Node:
        return self._spec.root

    def _with_root(self, root: Node) -> ModelSpec:
        return replace(self._spec, root=root)

    def _container(self, path: str) -> Node:
        node = find(self._root(), path)
        if not node.is_container:
            what = "a shared reference" if node.ref else f"a {node.block}"
            raise EditError(f"'{path or '(root)'}' is {what}, not a container", where=path)
        return node

    def _expr(self, path: str, root: Node | None = None) -> str:
        return module_expr(root or self._root(), path)

    def _place(self, root: Node, parent_path_: str, node: Node, index: int | None
               ) -> tuple[Node, str, int]:
        """Insert `node` into the container at `parent_path_` (end when `index` is None).

        Children named 0, 1, 2, … stay positional, as in PyTorch's Sequential.insert.
        """
        parent = find(root, parent_path_)
        names = [c.name for c in parent.children]
        children = list(parent.children)
        index = len(children) if index is None else max(0, min(index, len(children)))
        positional = parent.definition.container in POSITIONAL_CONTAINERS or (
            bool(names) and is_positional(names) and node.name.isdigit()
        )
        children.insert(index, node)
        new_children = renumber(tuple(children), positional)
        placed = new_children[index]
        root = replace_at(root, parent_path_, replace(parent, children=new_children))
        return root, join(parent_path_, placed.name), index

    def _default_name(self, parent: Node, block: str) -> str:
        names = [c.name for c in parent.children]
        if is_positional(names) or parent.definition.container in POSITIONAL_CONTAINERS:
            return str(len(names))
        return unique_name(set(names), block.lower())

    def _try_construct(self, node: Node, where: str) -> None:
        """Build the block on the meta device, so a constructor's own refusal is an edit error."""
        if node.ref is not None or node.is_container:
            return
        import torch

        try:
            with torch.device("meta"):
                node.definition.make(node.args)
        except Exception as error:  # the constructor's message is what the user must see
            raise EditError(f"{node.block} refuses these arguments: {error}", where=where) from None

    # --- edits ----------------------------------------------------------------------------
    def add(self, block: str, parent: str = "", index: int | None = None, *,
            name: str | None = None, args: dict[str, Any] | None = None,
            shapes: Mapping[str, tuple[int, ...] | None] | None = None) -> EditResult:
        """Add a palette block into the container at `parent` (at the end unless `index`).

        `shapes` (each path's output shape, as the lab last computed them) lets the block
        take arguments from its input, e.g. a Linear's `in_features` (core/infer.py).
        """
        container = self._container(parent)
        if shapes is not None:
            args = inferred_args(block, self.spec, shapes, parent, index, args)
        name = name if name is not None else self._default_name(container, block)
        where = join(parent, name)
        check_name(name, where=where)
        try:
            node = make_node(block, name, args, where=where)
        except ArgumentError as error:
            raise EditError(error.message, where=error.where or where) from None
        self._try_construct(node, where)
        if any(c.name == name for c in container.children) and not is_positional(
            [c.name for c in container.children]
        ):
            raise EditError(f"there is already a block named '{name}' here", where=where)
        root, path, position = self._place(self._root(), parent, node, index)
        call = node.definition.call_code(node.args)
        code = self._insert_code(parent, container, leaf_name(path), call, position)
        return self._commit(self._with_root(root), f"add {block} at {path}", code, path)

    def _insert_code(self, parent: str, container: Node, name: str, call: str,
                     position: int) -> str:
        target = self._expr(parent)
        kind = container.definition.container
        at_end = position == len(container.children)
        positional = name.isdigit() and is_positional([c.name for c in container.children])
        if kind in ("sequential", "list") and positional:
            if at_end:
                return f"{target}.append({call})"
            return f"{target}.insert({position}, {call})"
        if not at_end:
            return ""  # no single call inserts here: the lab logs the new `_modules` layout
        if kind == "mysequential":
            return f"{target}._modules[{name!r}] = {call}"
        if kind == "dict":
            return f"{target}[{name!r}] = {call}"
        return f"{target}.add_module({name!r}, {call})"

    def remove(self, path: str) -> EditResult:
        _not_root(path, "removed")
        node = find(self._root(), path)
        removed_ids = {n.id for _, n in walk(node)}
        for other_path, other in walk(self._root()):
            if other.ref in removed_ids and other.id not in removed_ids:
                raise EditError(
                    f"'{other_path}' shares this block; remove that reference first "
                    "(or it would point at nothing)",
                    where=path,
                )
        parent = find(self._root(), parent_path(path))
        positional = is_positional([c.name for c in parent.children])
        children = renumber(tuple(c for c in parent.children if c.name != node.name), positional)
        root = replace_at(self._root(), parent_path(path), replace(parent, children=children))
        index = [c.name for c in parent.children].index(node.name)
        code = (f"del {self._expr(parent_path(path))}[{index}]" if positional
                else f"del {self._expr(path)}")
        return self._commit(self._with_root(root), f"remove {path}", code, parent_path(path))

    def move(self, path: str, delta: int) -> EditResult:
        """Move a node up (delta < 0) or down among its siblings."""
        _not_root(path, "moved")
        parent_p = parent_path(path)
        parent = find(self._root(), parent_p)
        names = [c.name for c in parent.children]
        index = names.index(leaf_name(path))
        target = index + delta
        if not 0 <= target < len(names):
            raise EditError("already at the " + ("top" if delta < 0 else "bottom"), where=path)
        children = list(parent.children)
        children.insert(target, children.pop(index))
        positional = is_positional(names)
        new_children = renumber(tuple(children), positional)
        root = replace_at(self._root(), parent_p, replace(parent, children=new_children))
        moved = new_children[target].name
        expr = self._expr(parent_p)
        code = (f"{expr}.insert({target}, {expr}.pop({index}))" if positional
                else f"# reorder {expr}._modules: '{leaf_name(path)}' to position {target}")
        return self._commit(self._with_root(root), f"move {path} to position {target}", code,
                            join(parent_p, moved))

    def indent(self, path: str) -> EditResult:
        """Move a node into the container just above it (as its last child)."""
        _not_root(path, "moved")
        parent_p = parent_path(path)
        parent = find(self._root(), parent_p)
        names = [c.name for c in parent.children]
        index = names.index(leaf_name(path))
        if index == 0 or not parent.children[index - 1].is_container:
            raise EditError("the block above is not a container to move into", where=path)
        return self._relocate(path, join(parent_p, names[index - 1]), None)

    def outdent(self, path: str) -> EditResult:
        """Move a node out of its container, to just after that container."""
        _not_root(path, "moved")
        parent_p = parent_path(path)
        if parent_p == "" and "." not in path:
            raise EditError("already at the top level", where=path)
        grand = parent_path(parent_p)
        siblings = [c.name for c in find(self._root(), grand).children]
        return self._relocate(path, grand, siblings.index(leaf_name(parent_p)) + 1)

    def _relocate(self, path: str, destination: str, index: int | None) -> EditResult:
        node = find(self._root(), path)
        destination_id = find(self._root(), destination).id
        old_parent_p = parent_path(path)
        old_parent = find(self._root(), old_parent_p)
        positional = is_positional([c.name for c in old_parent.children])
        kept = renumber(tuple(c for c in old_parent.children if c.id != node.id), positional)
        root = replace_at(self._root(), old_parent_p, replace(old_parent, children=kept))
        dest_path = path_of(root, destination_id) or ""  # removal may renumber it
        container = find(root, dest_path)
        names = [c.name for c in container.children]
        positional_home = (is_positional(names) and (bool(names) or node.name.isdigit())) or (
            container.definition.container in POSITIONAL_CONTAINERS)
        name = str(len(names)) if positional_home else unique_name(set(names), node.name)
        new_root, new_path, _ = self._place(root, dest_path, replace(node, name=name), index)
        code = f"# move {self._expr(path)} into {self._expr(destination)}"
        return self._commit(self._with_root(new_root), f"move {path} to {new_path}", code,
                            new_path)

    def duplicate(self, path: str) -> EditResult:
        _not_root(path, "duplicated")
        node = find(self._root(), path)
        parent_p = parent_path(path)
        parent = find(self._root(), parent_p)
        names = [c.name for c in parent.children]
        copy = fresh_copy(node)
        if not is_positional(names):
            copy = replace(copy, name=unique_name(set(names), node.name))
        root, new_path, _ = self._place(self._root(), parent_p, copy,
                                        names.index(node.name) + 1)
        code = f"copy.deepcopy({self._expr(path)})  # a new module with its own weights"
        return self._commit(self._with_root(root), f"duplicate {path} as {new_path}", code,
                            new_path)

    def rename(self, path: str, new_name: str) -> EditResult:
        if path == "":
            check_model_name(new_name, where="model")
            return self._commit(replace(self._spec, name=new_name), f"rename model to {new_name}",
                                f"# model name: {new_name}", "")
        check_name(new_name, where=path)
        node = find(self._root(), path)
        parent = find(self._root(), parent_path(path))
        if any(c.name == new_name and c.id != node.id for c in parent.children):
            raise EditError(f"there is already a block named '{new_name}' here", where=path)
        root = replace_at(self._root(), path, replace(node, name=new_name))
        expr = self._expr(parent_path(path))
        old = leaf_name(path)
        code = (f"{expr}._modules = OrderedDict(({new_name!r} if k == {old!r} else k, m) "
                f"for k, m in {expr}._modules.items())")
        new_path = join(parent_path(path), new_name)
        return self._commit(self._with_root(root), f"rename {path} to {new_name}", code, new_path)

    def set_arg(self, path: str, arg: str, value: Any) -> EditResult:
        """Change one argument; the module at `path` is rebuilt with fresh weights."""
        return self.set_args(path, {arg: value})

    def set_args(self, path: str, values: dict[str, Any]) -> EditResult:
        shown = find(self._root(), path)
        node = resolve(self._root(), shown)
        where = path or "(root)"
        target_path = next(p for p, n in walk(self._root()) if n.id == node.id)
        definition = node.definition
        merged = {**dict(node.args), **values}
        try:
            checked = definition.validate(merged, where=where)  # unknown names refused too
        except ArgumentError as error:
            raise EditError(error.message, where=error.where or where) from None
        updated = replace(node, args=checked)
        self._try_construct(updated, where)
        root = replace_at(self._root(), target_path, updated)
        changes = ", ".join(f"{k}={definition.arg(k).python(checked[k])}" for k in values)
        code = f"{self._expr(target_path)} = {definition.call_code(checked)}"
        return self._commit(self._with_root(root), f"set {changes} on {target_path or 'root'}",
                            code, path)

    def share(self, target: str, parent: str, index: int | None = None,
              name: str | None = None) -> EditResult:
        """Use the module at `target` a second time, inside `parent` (a tied layer)."""
        target_node = resolve(self._root(), find(self._root(), target))
        if target == "" or target_node is self._root():
            raise EditError("the root model cannot be shared inside itself", where="(root)")
        container = self._container(parent)
        name = name if name is not None else self._default_name(container, target_node.block)
        reference = Node(name=name, block=target_node.block, ref=target_node.id)
        root, path, position = self._place(self._root(), parent, reference, index)
        target_path = next(p for p, n in walk(root) if n.id == target_node.id)
        old_target = next(p for p, n in walk(self._root()) if n.id == target_node.id)
        code = self._insert_code(parent, container, leaf_name(path), self._expr(old_target),
                                 position)
        return self._commit(self._with_root(root), f"share {target_path} at {path}", code, path)

    def set_frozen(self, path: str, frozen: bool) -> EditResult:
        node = resolve(self._root(), find(self._root(), path))
        target_path = next(p for p, n in walk(self._root()) if n.id == node.id)
        root = replace_at(self._root(), target_path, replace(node, frozen=frozen))
        verb = "freeze" if frozen else "unfreeze"
        code = (f"for p in {self._expr(target_path)}.parameters(): "
                f"p.requires_grad_({not frozen})")
        return self._commit(self._with_root(root), f"{verb} {target_path or 'the model'}", code,
                            path)

    def set_input_shape(self, shape: tuple[int, ...]) -> EditResult:
        checked = check_input_shape(shape)
        spec = replace(self._spec, input_shape=checked)
        text = ", ".join(str(d) for d in checked)
        return self._commit(spec, f"input shape ({text})", input_code(
            checked, takes_tokens=spec.takes_tokens, vocab_size=spec.vocab_size), None)


def input_code(input_shape: tuple[int, ...], *, takes_tokens: bool = False,
               vocab_size: int | None = None) -> str:
    """The lab's default input for this shape as PyTorch (`x = torch.rand(2, 4,
    generator=g)` after its seeded generator): floats in [0, 1), or token ids."""
    from tuilab.core.expressions import assignment_source, parse_expression
    from tuilab.core.inputs import DEFAULT_SEED, default_input_text

    text = default_input_text(input_shape, takes_tokens=takes_tokens, vocab_size=vocab_size)
    return assignment_source("x", parse_expression(text), seed=DEFAULT_SEED)


def _not_root(path: str, verb: str) -> None:
    if path == "":
        raise EditError(f"the model itself (the root) cannot be {verb}; select a block inside it",
                        where="(root)")


# The largest input tuilab makes: 1 GiB as float32, 2 GiB as float64 (a forward's activations
# are several times that). `107374182,20` would otherwise try 8 GB on forward, 17 GB in float64.
MAX_INPUT_ELEMENTS = 2**28


def check_input_shape(shape: Any) -> tuple[int, ...]:
    """A batch-first input shape: 1 to 6 positive integers."""
    if isinstance(shape, str):
        parts = [p.strip() for p in shape.strip().strip("()[]").split(",") if p.strip()]
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            raise EditError(f"input shape {shape!r} is not a list of integers, e.g. 1,1,32,32",
                            where="input_shape") from None
    if (not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= 6
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape)):
        raise EditError(
            f"input shape {shape!r} must be 1 to 6 positive integers, batch first (e.g. 1,1,32,32)",
            where="input_shape",
        )
    if _product(shape) > MAX_INPUT_ELEMENTS:
        raise EditError(
            f"input shape {tuple(shape)} has {_product(shape):,} elements, more than the "
            f"{MAX_INPUT_ELEMENTS:,} (1 GiB as float32) tuilab makes an input of; it is refused "
            f"before anything is allocated", where="input_shape")
    return tuple(shape)


def _product(values: Any) -> int:
    total = 1
    for v in values:
        total *= v
    return total

