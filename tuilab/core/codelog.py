"""The code log as a script: every action's PyTorch, runnable on its own, replaying the session.

The lab echoes each action as the PyTorch that does the same (`net.append(nn.Linear(8, 1))`);
this module makes those lines add up to a script that, run with plain PyTorch where tuilab is
not installed, ends with the very model the lab holds: the same `state_dict`, bit for bit.

Two things make that true:

* **Random numbers.** Every action that draws from PyTorch's global generator (building the
  model, a new block, an init, a random input) is preceded by `torch.manual_seed(n)`: the lab
  seeds exactly there and logs the same line, and its constructors run in the order the line
  runs them (`Builder` makes shared blocks first, then the tree in order, as the code does).
  Nothing else the lab draws (a shape probe, a task's data) can shift what the script gets.
* **Module objects.** The lab reuses a module for as long as its node lives (undo brings back
  the very module, weights and all). So a block the script takes out of the model is kept in
  a variable (`removed1 = net.pop(2)`), and an undo puts that object back; where no single
  PyTorch call does what an edit did (a move in a named container, an indent, an undo), the
  line lays out the container's `_modules` anew, naming each child by where it is now.

`ScriptWriter` holds that state for one lab; `PREAMBLE` is what the script imports and the
helper functions its lines call (the hooks' print functions, the losses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tuilab.core.spec import Node, is_positional, shared_order, walk

if TYPE_CHECKING:
    from pathlib import Path

    from torch import nn

    from tuilab.core.spec import ModelSpec

__all__ = ["PREAMBLE", "ScriptWriter", "module_path_expr", "script_text"]

PREAMBLE = '''\
# tuilab code log: a script that replays this session with plain PyTorch.
import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


def _shapes(value):
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)):
        return [_shapes(v) for v in value]
    return value


def print_shapes(module, *tensors):
    """A hook (forward, forward_pre or backward) that prints the shapes it sees."""
    print(type(module).__name__, *[_shapes(t) for t in tensors])


def print_stats(module, *tensors):
    """A hook that prints the mean and standard deviation of the last tensor it sees."""
    value = tensors[-1]
    while isinstance(value, (tuple, list)) and value:
        value = value[0]
    if isinstance(value, torch.Tensor) and value.numel():
        value = value.detach().float()
        print(type(module).__name__, "mean", value.mean().item(), "std",
              value.std(correction=0).item())


def cross_entropy(out, y):
    if out.dim() > 2 and y.dim() == out.dim() - 1:  # (N, L, V) logits for (N, L) targets
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    return F.cross_entropy(out, y)


def mse(out, y):
    return F.mse_loss(out, y.reshape(out.shape) if y.numel() == out.numel() else y)


def bce_with_logits(out, y):
    return F.binary_cross_entropy_with_logits(
        out, y.reshape(out.shape) if y.numel() == out.numel() else y)
'''


def script_text(entries: list[str]) -> str:
    """The whole script: the preamble, then each action's code in order."""
    body = "\n".join(entry.rstrip() for entry in entries if entry.strip())
    return PREAMBLE + "\n\n" + body + ("\n" if body else "")


def module_path_expr(root: Node, path: str, var: str = "net") -> str:
    """`net.features[0]`: how PyTorch code reaches the module at `path`.

    `MySequential` (seed 000) has no `__getitem__`: its children are reached through the
    `_modules` dict it fills, `net._modules['0']`.
    """
    expr = var
    node = root
    if not path:
        return expr
    for part in path.split("."):
        expr += _child_expr(node, is_positional([c.name for c in node.children]), part)
        node = next(c for c in node.children if c.name == part)
    return expr


def module_path_exprs(root: Node, var: str = "net") -> dict[str, str]:
    """`module_path_expr` of every path of the tree, in one walk.

    Each container's children are checked for positional names once, not once per path
    below it: asking `module_path_expr` path by path is O(n²) on a wide Sequential (17 s
    for an undo on a 10,000-row model).
    """
    exprs = {"": var}
    stack = [("", root)]
    while stack:
        path, node = stack.pop()
        if not node.children:
            continue
        positional = is_positional([c.name for c in node.children])
        dot = f"{path}." if path else ""
        for child in node.children:
            exprs[dot + child.name] = exprs[path] + _child_expr(node, positional, child.name)
            stack.append((dot + child.name, child))
    return exprs


def _child_expr(node: Node, positional: bool, part: str) -> str:
    """The accessor of `node`'s child `part` (`[0]`, `.fc`, `._modules['0']` ...)."""
    kind = node.definition.container if node.is_container else None
    if kind == "mysequential":
        return f"._modules[{part!r}]"
    if positional or kind == "dict":
        return f"[{part}]" if positional else f"[{part!r}]"
    if part.isidentifier():
        return f".{part}"
    return f".get_submodule({part!r})"


def _target(node: Node) -> str:
    return node.ref if node.ref is not None else node.id


def _places(root: Node) -> dict[str, str]:
    """Node id → the path where the module first appears (its own place before a reference)."""
    places: dict[str, str] = {}
    for path, node in walk(root):
        if node.ref is None:
            places[node.id] = path
    for path, node in walk(root):
        if node.ref is not None:
            places.setdefault(node.ref, path)
    return places


@dataclass
class ScriptWriter:
    """What the script knows beyond the lab's spec: seeds used, modules kept, classes defined.

    `suffix` is what the builder applies to each module it makes (`.to(torch.float16)`,
    `.eval()`), so a constructor in the script makes the same module.
    """

    seed: int = 0
    kept: dict[str, str] = field(default_factory=dict)
    defined: set[str] = field(default_factory=set)
    suffix: str = ""
    _names: int = 0

    def next_seed(self) -> int:
        value = self.seed
        self.seed += 1
        return value

    # --- constructors ------------------------------------------------------------------
    def _ctor(self, node: Node, by_id: dict[str, Node], fresh: set[str],
              ref_expr: dict[str, str]) -> str:
        """Python that constructs the fresh `node`, its fresh children inline."""
        definition = node.definition
        if not node.is_container:
            return definition.call_code(node.args) + self.suffix
        parts = [(c.name, self._child_expr(c, by_id, fresh, ref_expr)) for c in node.children]
        code = definition.code_name
        kind = definition.container
        names = [name for name, _ in parts]
        if kind == "dict":
            text = _wrapped(f"{code}({{", [f"{n!r}: {e}" for n, e in parts], "})")
        elif kind == "list":
            text = _wrapped(f"{code}([", [e for _, e in parts], "])")
        elif is_positional(names) or not parts:
            text = _wrapped(f"{code}(", [e for _, e in parts], ")")
        else:
            text = _wrapped(f"{code}(OrderedDict([", [f"({n!r}, {e})" for n, e in parts],
                            "]))")
        return text + self.suffix

    def _child_expr(self, child: Node, by_id: dict[str, Node], fresh: set[str],
                    ref_expr: dict[str, str]) -> str:
        target = _target(child)
        if target in ref_expr:
            return ref_expr[target]
        if target in fresh:
            return self._ctor(by_id[target], by_id, fresh, ref_expr)
        raise KeyError(target)

    def block_definitions(self, nodes: list[Node]) -> str:
        """The source of each tuilab block class these nodes use that the script lacks."""
        from tuilab.core.export import block_sources

        targets = {n.definition.target for n in nodes if n.ref is None}
        targets = {t for t in targets if not t.startswith("torch.nn:") and t not in self.defined}
        if not targets:
            return ""
        text, names = block_sources(sorted(targets), self.defined)
        self.defined |= names | targets
        return text

    def load(self, spec: ModelSpec, seed: int) -> str:
        """The script part that builds `spec` as the lab's builder does, seeded with `seed`.

        `build_model()` makes shared blocks first (as variables), then the model in tree
        order; the displayed line `net = build_model()` is the one that runs it.
        """
        root = spec.root
        by_id = {node.id: node for _, node in walk(root)}
        fresh = set(by_id)
        ref_expr: dict[str, str] = {}
        lines = [self.block_definitions(list(by_id.values()))] if by_id else []
        body = [f"torch.manual_seed({seed})"]
        taken: set[str] = set()
        for target_id in shared_order(root):
            node = by_id[target_id]
            name = node.name if node.name.isidentifier() else "shared"
            while name in taken or name in ("net", "torch", "nn", "F", "copy", "OrderedDict"):
                name = f"{name}_"
            taken.add(name)
            body.append(f"{name} = {self._ctor(node, by_id, fresh, ref_expr)}")
            ref_expr[target_id] = name
        body.append(f"return {self._ctor(root, by_id, fresh, ref_expr)}")
        lines.append(f"def build_model():\n    \"\"\"{_doc(spec.name)}, as tuilab built it.\"\"\"\n"
                     + "\n".join("    " + line.replace("\n", "\n    ") for line in body)
                     + "\n")
        return "\n\n\n".join(line for line in lines if line)

    # --- an edit ------------------------------------------------------------------------
    def relayout(self, before: Node, after: Node, created: list[str]) -> str:
        """PyTorch that turns the model `before` into `after` (lines, no seed).

        `created` are the node ids the builder constructed for `after`, in its order.
        Modules that leave the model are kept in variables (an undo may bring them back);
        every container whose children changed gets its `_modules` laid out anew, all in one
        assignment so each child is named by where it is before any of them moves.
        """
        before_places = _places(before)
        after_by_id = {node.id: node for _, node in walk(after)}
        fresh = [i for i in created if i in after_by_id]
        fresh_set = set(fresh)
        lines = [self.block_definitions([after_by_id[i] for i in fresh])]
        # what leaves the model: keep it (its subtree goes with it)
        after_ids = {_target(n) for _, n in walk(after)}
        before_exprs = module_path_exprs(before)
        for path, node in walk(before):
            if node.ref is not None or node.id in after_ids or node.id in self.kept:
                continue
            if any(path.startswith(p + ".") for p in _dropped_paths(before, after_ids, path)):
                continue
            self._names += 1
            name = f"removed{self._names}"
            self.kept[node.id] = name
            lines.append(f"{name} = {before_exprs[path]}")
        ref_expr = {i: before_exprs[p] for i, p in before_places.items()}
        for node_id, name in self.kept.items():
            ref_expr.setdefault(node_id, name)
        if after.id in fresh_set or after.ref is not None:
            lines.append(f"net = {self._ctor(after, after_by_id, fresh_set, ref_expr)}")
            return "\n".join(line for line in lines if line)
        before_children = {node.id: [(c.name, _target(c)) for c in node.children]
                           for _, node in walk(before) if node.is_container}
        changed: list[tuple[str, Node]] = []
        for _, node in walk(after):
            if not node.is_container or node.id in fresh_set:
                continue
            children = [(c.name, _target(c)) for c in node.children]
            old = before_children.get(node.id)
            if old is None and node.id in self.kept:
                continue  # back from the kept variable, as it was
            if old != children or any(t in fresh_set for _, t in children):
                where = ref_expr.get(node.id)
                if where is None:
                    raise KeyError(node.id)
                changed.append((where, node))
        # deepest first, so each container's own expression is read before its parent moves
        changed.sort(key=lambda item: -item[0].count("[") - item[0].count("."))
        targets, values = [], []
        for where, node in changed:
            items = []
            for child in node.children:
                target = _target(child)
                if target in fresh_set:
                    expr = self._ctor(after_by_id[target], after_by_id, fresh_set, ref_expr)
                    ref_expr[target] = module_path_expr(after, next(
                        p for p, n in walk(after) if n.id == target))
                else:
                    expr = ref_expr[target]
                items.append(f"({child.name!r}, {expr})")
            targets.append(f"{where}._modules")
            values.append(_wrapped("OrderedDict([", items, "])"))
        if len(targets) == 1:
            lines.append(f"{targets[0]} = {values[0]}")
        elif targets:
            lines.append(f"{', '.join(targets)} = (\n"
                         + "".join(f"    {v},\n" for v in values) + ")")
        return "\n".join(line for line in lines if line)


def _dropped_paths(before: Node, after_ids: set[str], path: str) -> list[str]:
    """Paths above `path` whose node also leaves the model (its subtree leaves with it)."""
    found = []
    parts = path.split(".") if path else []
    for i in range(1, len(parts)):
        prefix = ".".join(parts[:i])
        node = before
        for part in prefix.split("."):
            node = next(c for c in node.children if c.name == part)
        if node.ref is None and node.id not in after_ids:
            found.append(prefix)
    return found


def _wrapped(start: str, items: list[str], end: str, width: int = 88) -> str:
    """`start a, b end` on one line, or one item a line when that runs past `width`."""
    line = f"{start}{', '.join(items)}{end}"
    if len(line) <= width - 20 or not items:
        return line
    return start + "\n" + "".join(f"    {item},\n" for item in items) + end


def save_weights_code(expr: str, path: Path) -> str:
    """`save_model(net[2], '…')`: safetensors' own writer, which keeps tied tensors once."""
    return f"from safetensors.torch import save_model\nsave_model({expr}, {str(path)!r})"


def load_weights_code(module: nn.Module, expr: str, path: Path) -> str:
    """`net[2].load_state_dict(load_file('…'))`; `load_model` where tied tensors are stored
    once; `torch.load(..., weights_only=True)` for a `.pt` file."""
    if path.suffix.lower() != ".safetensors":
        return f"{expr}.load_state_dict(torch.load({str(path)!r}, weights_only=True))"
    state = module.state_dict(keep_vars=True)
    if len({id(t) for t in state.values()}) < len(state):
        return f"from safetensors.torch import load_model\nload_model({expr}, {str(path)!r})"
    return (f"from safetensors.torch import load_file\n"
            f"{expr}.load_state_dict(load_file({str(path)!r}))")


def _doc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "'")


# Edits whose own line (from SpecEditor) is the PyTorch that does them, where it is not "".
_OWN_LINE = ("add", "share", "rename", "set_frozen", "set_input_shape")


def edit_code(writer: ScriptWriter, action: str, before: ModelSpec, after: ModelSpec,
              own: str, created: list[str], description: str) -> str:
    """The script lines for one accepted edit (no seed line; the lab adds it).

    The editor's own line where it is right for the live module (`net.append(...)`), the
    readable form of a removal, move or new arguments where PyTorch has one, and otherwise
    the `_modules` layout from `ScriptWriter.relayout`.
    """
    old, new = before.root, after.root
    fresh_nodes = [n for _, n in walk(new) if n.id in set(created)]
    own = _with_suffix(writer, own, fresh_nodes)
    if action in _OWN_LINE and own:
        definitions = writer.block_definitions(fresh_nodes)
        return "\n\n".join(part for part in (definitions, own) if part)
    if action == "remove" and not writer.suffix:
        line = _pop_line(writer, old, new)
        if line:
            return line
    if action == "move" and own and not own.startswith("#") and _positional_parent(old, own):
        return own
    if action == "duplicate" and len(fresh_nodes) == 1 and not fresh_nodes[0].is_container:
        line = _insert_line(writer, new, fresh_nodes[0])
        if line:
            return line
    if action == "set_args" and len(fresh_nodes) == 1:
        line = _replace_line(writer, new, fresh_nodes[0])
        if line:
            return line
    code = writer.relayout(old, new, created)
    if action in ("undo", "redo"):
        code = f"# {description}\n{code}" if code else f"# {description}: nothing to do"
    return code


def _with_suffix(writer: ScriptWriter, own: str, fresh: list[Node]) -> str:
    """The editor's line with the builder's `.to(dtype)` / `.eval()` on its new block ("" when
    that cannot be said in the line: the caller lays out `_modules` instead)."""
    if not writer.suffix or not fresh:
        return own
    if len(fresh) != 1 or fresh[0].is_container:
        return ""
    call = fresh[0].definition.call_code(fresh[0].args)
    return own.replace(call, call + writer.suffix) if own.count(call) == 1 else ""


def _positional_parent(root: Node, own: str) -> bool:
    """A move's `x.insert(t, x.pop(i))` works on nn.Sequential and nn.ModuleList only."""
    for path, node in walk(root):
        if node.is_container and own.startswith(module_path_expr(root, path) + ".insert("):
            return node.definition.container in ("sequential", "list")
    return False


def _pop_line(writer: ScriptWriter, old: Node, new: Node) -> str:
    """`removed1 = net.pop(2)`: the removed block kept (an undo puts it back)."""
    new_ids = {_target(n) for _, n in walk(new)}
    gone = [(p, n) for p, n in walk(old) if n.ref is None and n.id not in new_ids and p]
    if not gone:
        return ""
    path, node = gone[0]  # the top of the removed subtree
    parent_path, _, name = path.rpartition(".")
    parent = old
    for part in parent_path.split(".") if parent_path else []:
        parent = next(c for c in parent.children if c.name == part)
    kind = parent.definition.container
    names = [c.name for c in parent.children]
    where = module_path_expr(old, parent_path)
    if kind in ("sequential", "list") and is_positional(names):
        take = f"{where}.pop({names.index(name)})"
    elif kind == "dict":
        take = f"{where}.pop({name!r})"
    elif kind == "sequential" and name.isidentifier() and not is_positional(names):
        writer._names += 1
        var = f"removed{writer._names}"
        writer.kept[node.id] = var
        return f"{var} = {where}.{name}\ndel {where}.{name}"
    else:
        return ""
    writer._names += 1
    var = f"removed{writer._names}"
    writer.kept[node.id] = var
    return f"{var} = {take}"


def _insert_line(writer: ScriptWriter, new: Node, node: Node) -> str:
    """`net.insert(3, nn.Linear(8, 8))`: one new block placed where one call places it."""
    path = next(p for p, n in walk(new) if n.id == node.id)
    parent_path, _, name = path.rpartition(".")
    parent = new
    for part in parent_path.split(".") if parent_path else []:
        parent = next(c for c in parent.children if c.name == part)
    names = [c.name for c in parent.children]
    call = node.definition.call_code(node.args) + writer.suffix
    where = module_path_expr(new, parent_path)
    at_end = names[-1] == name
    kind = parent.definition.container
    if kind in ("sequential", "list") and is_positional(names):
        return (f"{where}.append({call})" if at_end
                else f"{where}.insert({names.index(name)}, {call})")
    if at_end and kind == "mysequential":
        return f"{where}._modules[{name!r}] = {call}"
    if at_end and kind == "sequential" and name.isidentifier():
        return f"{where}.add_module({name!r}, {call})"
    return ""


def _replace_line(writer: ScriptWriter, new: Node, node: Node) -> str:
    """`net[2] = net[4] = nn.Linear(8, 4)`: a block rebuilt with new arguments, in every
    place it is used (a shared block is one module in two places)."""
    if node.is_container:
        return ""
    places = [p for p, n in walk(new) if _target(n) == node.id]
    call = node.definition.call_code(node.args) + writer.suffix
    definitions = writer.block_definitions([node])
    if places == [""]:
        line = f"net = {call}"
    elif any("get_submodule" in module_path_expr(new, p) for p in places):
        return ""  # not a target Python can assign to
    else:
        line = " = ".join(module_path_expr(new, p) for p in places) + f" = {call}"
    return "\n\n".join(part for part in (definitions, line) if part)
