"""The model as data: a tree of named nodes, and the edits a user makes to it.

Nodes are immutable; an edit returns a new tree that shares every untouched subtree with the
old one. That makes undo a matter of keeping old roots, lets the builder reuse the live
module of every node that did not change (trained weights survive an edit elsewhere), and
means a refused edit cannot have half-happened.

A node's path is its qualified module name ("features.0"), exactly what `named_modules()`
reports for the module built from it, so the builder tree and the inspector speak of the same
things. A *reference* node (`ref` set) is a second place where another node's module is used:
seed 003's `shared = nn.Linear(8, 8)` appearing twice in one Sequential.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tuilab.core.catalog import BlockDef, get_block
from tuilab.core.errors import ArgumentError, EditError
from tuilab.core.safe_text import check_printable

_ids = itertools.count(1)

# Containers whose children can only be named by position.
POSITIONAL_CONTAINERS = ("mysequential", "list")


def new_id() -> str:
    return f"n{next(_ids)}"


@dataclass(frozen=True)
class Node:
    """One block in the model. `args` holds only validated values; never mutate it."""

    name: str
    block: str
    args: Mapping[str, Any] = field(default_factory=dict)
    children: tuple[Node, ...] = ()
    ref: str | None = None
    frozen: bool = False
    id: str = field(default_factory=new_id)

    @property
    def definition(self) -> BlockDef:
        return get_block(self.block)

    @property
    def is_container(self) -> bool:
        return self.ref is None and self.definition.is_container


@dataclass(frozen=True)
class ModelSpec:
    """A whole model: the tree, and what its input looks like (batch dimension included)."""

    name: str
    root: Node
    input_shape: tuple[int, ...]
    description: str = ""
    task: str = "teacher"

    @property
    def takes_tokens(self) -> bool:
        """True when the first block that sees the input is an Embedding: feed token ids."""
        node = self.root
        while node.is_container and node.children:
            node = node.children[0]
        return node.ref is None and node.definition.takes_tokens

    @property
    def vocab_size(self) -> int | None:
        node = self.root
        while node.is_container and node.children:
            node = node.children[0]
        if node.ref is None and node.definition.takes_tokens:
            return int(node.args["num_embeddings"])
        return None


# --- walking the tree ---------------------------------------------------------------------
def join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def walk(node: Node, path: str = "") -> Iterator[tuple[str, Node]]:
    """Every (path, node) pair in tree order, the root first with path ""."""
    yield path, node
    for child in node.children:
        yield from walk(child, join(path, child.name))


def find(root: Node, path: str) -> Node:
    node = root
    if path == "":
        return node
    for part in path.split("."):
        for child in node.children:
            if child.name == part:
                node = child
                break
        else:
            raise EditError(f"there is no node '{path}' in the model", where=path)
    return node


def parent_path(path: str) -> str:
    return path.rpartition(".")[0]


def leaf_name(path: str) -> str:
    return path.rpartition(".")[2]


def path_of(root: Node, node_id: str) -> str | None:
    for path, node in walk(root):
        if node.id == node_id:
            return path
    return None


def resolve(root: Node, node: Node) -> Node:
    """The node whose module `node` stands for (itself, or the target of a reference)."""
    if node.ref is None:
        return node
    for _, candidate in walk(root):
        if candidate.id == node.ref:
            return candidate
    raise EditError(f"'{node.name}' shares a node that no longer exists", where=node.name)


def replace_at(root: Node, path: str, new: Node | None) -> Node:
    """A copy of the tree with the node at `path` replaced (or removed when `new` is None)."""
    if path == "":
        if new is None:
            raise EditError("the root of the model cannot be removed", where="(root)")
        return new
    head, _, rest = path.partition(".")
    children = []
    found = False
    for child in root.children:
        if child.name == head:
            found = True
            updated = (new if not rest else replace_at(child, rest, new))
            if updated is not None:
                children.append(updated)
        else:
            children.append(child)
    if not found:
        raise EditError(f"there is no node '{path}' in the model", where=path)
    return replace(root, children=tuple(children))


# --- validity -----------------------------------------------------------------------------
def check_tree(root: Node) -> None:
    """Raise EditError at the first thing that would stop the tree from building."""
    ids: dict[str, str] = {}
    for path, node in walk(root):
        if node.id in ids:
            raise EditError(f"node id {node.id} appears twice", where=path or "(root)")
        ids[node.id] = path
    for path, node in walk(root):
        where = path or "(root)"
        names = [child.name for child in node.children]
        if len(set(names)) != len(names):
            duplicate = next(n for n in names if names.count(n) > 1)
            raise EditError(f"two children are named '{duplicate}'", where=where)
        for name in names:
            check_name(name, where=join(path, name))
        if node.children and not node.is_container:
            raise EditError(f"{node.block} is not a container and cannot hold blocks", where=where)
        if node.ref is not None:
            target_path = ids.get(node.ref)
            if target_path is None:
                raise EditError("shares a node that is not in the model", where=where)
            target = find(root, target_path)
            if target.ref is not None:
                raise EditError("shares a node that is itself a reference", where=where)
            if _is_within(path, target_path) or _is_within(target_path, path):
                raise EditError(
                    f"cannot share '{target_path}' inside itself (a module cannot contain itself)",
                    where=where,
                )
        elif node.definition.container in POSITIONAL_CONTAINERS and not is_positional(names):
            raise EditError(
                f"{node.block} names its children 0, 1, 2, … (it indexes self._modules[str(i)])",
                where=where,
            )


def _is_within(path: str, ancestor: str) -> bool:
    return ancestor == "" or path == ancestor or path.startswith(ancestor + ".")


def check_name(name: str, *, where: str) -> None:
    if not isinstance(name, str) or not name:
        raise EditError("a block needs a non-empty name", where=where)
    if "." in name or any(ch.isspace() for ch in name):
        raise EditError(
            f"name {name!r} may not contain dots or spaces (dots separate nested names)",
            where=where,
        )
    if len(name) > 64:
        raise EditError(f"name {name[:20]!r}… is longer than 64 characters", where=where)
    check_printable(name, what="name", where=where)


def check_model_name(name: str, *, where: str) -> None:
    """A model's name is shown in the header, the CLI and file names: plain, one line."""
    if not isinstance(name, str) or not name.strip():
        raise EditError("the model needs a non-empty name", where=where)
    if len(name) > 128:
        raise EditError(f"name {name[:20]!r}… is longer than 128 characters", where=where)
    check_printable(name, what="model name", where=where)


def make_node(block: str, name: str, args: Mapping[str, Any] | None = None,
              children: tuple[Node, ...] = (), *, where: str = "") -> Node:
    """A validated node: unknown blocks and bad arguments are refused here."""
    definition = get_block(block)
    values = definition.validate(args or {}, where=where or name)
    return Node(name=name, block=block, args=values, children=children)


def is_positional(names: list[str]) -> bool:
    """Children named 0, 1, 2, … are positions, renumbered as PyTorch's Sequential does."""
    return names == [str(i) for i in range(len(names))]


def renumber(children: tuple[Node, ...], was_positional: bool) -> tuple[Node, ...]:
    if not was_positional:
        return children
    return tuple(
        child if child.name == str(i) else replace(child, name=str(i))
        for i, child in enumerate(children)
    )


def unique_name(taken: set[str], base: str) -> str:
    if base not in taken:
        return base
    for i in itertools.count(2):
        candidate = f"{base}_{i}"
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable")


def fresh_copy(node: Node) -> Node:
    """A deep copy with new ids: a duplicated block is a new module with its own weights."""
    return replace(node, id=new_id(), children=tuple(fresh_copy(c) for c in node.children))


def argument_error_to_edit(error: ArgumentError, where: str) -> EditError:
    return EditError(error.message, where=error.where or where)


def shared_order(root: Node) -> list[str]:
    """The ids of shared (referenced) nodes, each after the shared nodes inside it.

    Both the builder and the exporter construct these first, in this order, then the rest
    of the tree in tree order: the same order of constructors draws the same random numbers,
    so a seeded replay of the code log (or the exported file) makes the very same weights.
    """
    by_id = {node.id: node for _, node in walk(root)}
    path_of = {node.id: path for path, node in walk(root)}
    targets = {node.ref for _, node in walk(root) if node.ref is not None and node.ref in by_id}
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(target_id: str) -> None:
        if target_id in ordered:
            return
        if target_id in visiting:
            raise ValueError("shared blocks contain each other; cannot export a cycle")
        visiting.add(target_id)
        for _, inner in walk(by_id[target_id]):
            if inner.id != target_id:
                inner_target = inner.ref or (inner.id if inner.id in targets else None)
                if inner_target is not None:
                    visit(inner_target)
        visiting.discard(target_id)
        ordered.append(target_id)

    for target_id in sorted(targets, key=lambda i: path_of[i]):
        visit(target_id)
    return ordered
