"""Spec → standalone PyTorch source: the model as a person would write it by hand.

The point of the lab is to learn PyTorch, so what it exports must be plain PyTorch that runs
where tuilab is not installed. The file holds the source of every tuilab block class the
model uses (read from ``tuilab/core/blocks`` with ``inspect``, together with the module-level
helpers and constants they use, transitively), then one ``nn.Module`` class written the way
the seed texts write theirs: ``__init__`` assigns each top-level block as an attribute
(``self.conv1 = nn.Conv2d(1, 6, 5)``) and ``forward`` calls them in order. A model whose
top-level blocks are numbered 0, 1, 2, … subclasses ``nn.Sequential`` instead, so the
``state_dict()`` keys stay ``0.weight`` rather than becoming ``net.0.weight``: weights saved
in the lab load into the exported class unchanged. A shared (tied) block is created once
as a local variable and placed twice, as seed 003 writes ``shared = nn.Linear(8, 8)``.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import keyword
import re
import textwrap
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from tuilab import __version__
from tuilab.core.spec import ModelSpec, Node, find, is_positional, shared_order, walk

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


__all__ = ["KNOWN_IMPORTS", "export_source", "model_section", "source_definitions"]

_INDENT = "    "
# Names the exported text imports; block code may use these and nothing else from outside.
_KNOWN_IMPORTS = {
    "torch": "import torch",
    "F": "import torch.nn.functional as F",
    "nn": "from torch import nn",
    "OrderedDict": "from collections import OrderedDict",
}
_IMPORT_ORDER = ("OrderedDict", "torch", "F", "nn")
KNOWN_IMPORTS = _KNOWN_IMPORTS


def export_source(spec: ModelSpec) -> str:
    """The whole spec as one runnable Python file (text), needing only ``torch``.

    It defines the model class, ``build_model()``, ``INPUT_SHAPE`` (batch included),
    ``make_input()`` and a ``__main__`` block that runs one forward pass.
    """
    return _Exporter(spec).source()


# --- block sources ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Definition:
    """One top-level statement of a block module: its text and the names it needs."""

    module: str
    order: int
    name: str
    text: str
    local_deps: frozenset[str]
    imported: frozenset[str]


@cache
def _module_definitions(module_name: str) -> dict[str, _Definition]:
    """Every top-level def/class/assignment of a module, with what each one uses."""
    return _read_module(module_name)[0]


@cache
def _module_imports(module_name: str) -> dict[str, str]:
    """Each name a module imports -> the one-name import statement that brings it."""
    return _read_module(module_name)[1]


@cache
def _read_module(module_name: str) -> tuple[dict[str, _Definition], dict[str, str]]:
    module = importlib.import_module(module_name)
    source = inspect.getsource(module)
    tree = ast.parse(source)
    lines = source.splitlines()
    imports: dict[str, tuple[str, str]] = {}  # name -> (statement, from-module or "")
    top: dict[str, ast.stmt] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                imports[alias.asname or alias.name.split(".")[0]] = (
                    ast.unparse(ast.Import([alias])), "")
        elif isinstance(stmt, ast.ImportFrom) and stmt.module != "__future__":
            for alias in stmt.names:
                imports[alias.asname or alias.name] = (
                    ast.unparse(ast.ImportFrom(stmt.module, [alias], stmt.level)),
                    stmt.module or "")
        for name in _defined_names(stmt):
            if name != "__all__":
                top[name] = stmt
    definitions = {}
    for order, (name, stmt) in enumerate(top.items()):
        used = _used_names(stmt)
        decorators = getattr(stmt, "decorator_list", [])
        start = min([stmt.lineno, *(d.lineno for d in decorators)])
        text = "\n".join(lines[start - 1 : stmt.end_lineno])
        definitions[name] = _Definition(
            module=module_name,
            order=order,
            name=name,
            text=text,
            local_deps=frozenset(n for n in used if n in top and n != name),
            imported=frozenset(n for n in used if n in imports),
        )
    return definitions, {name: statement for name, (statement, _) in imports.items()}


def _check_imports(definitions: Iterable[_Definition], known: Mapping[str, str]) -> None:
    """Refuse a definition that needs an import the exported file would not write."""
    for definition in definitions:
        for name in external_names(definition):
            statement = _module_imports(definition.module)[name]
            if known.get(name) != statement:
                raise RuntimeError(
                    f"{definition.module}.{definition.name} uses {statement!r}; the exporter "
                    f"only writes {sorted(known.values())} (add it to the known imports)"
                )


def _defined_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    if isinstance(stmt, ast.Assign):
        return [t.id for t in stmt.targets if isinstance(t, ast.Name)]
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return [stmt.target.id]
    return []


class _NameCollector(ast.NodeVisitor):
    """Names a statement reads at run time (annotations are skipped: the export defers them)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        self.names.add(node.id)

    def visit_arg(self, node: ast.arg) -> None:
        pass  # only the annotation lives here

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.visit(node.args)
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.target)
        if node.value is not None:
            self.visit(node.value)


def _used_names(stmt: ast.stmt) -> set[str]:
    collector = _NameCollector()
    collector.visit(stmt)
    return collector.names


def _tuilab_source(definition: _Definition, name: str) -> str | None:
    """The tuilab module ``name`` is imported from in the definition's module, if any."""
    statement = _module_imports(definition.module)[name]
    module = statement.split()[1]
    return module if statement.startswith("from tuilab.") else None


def external_names(definition: _Definition) -> set[str]:
    """The names a definition imports from outside tuilab (tuilab's own are copied too)."""
    return {n for n in definition.imported if _tuilab_source(definition, n) is None}


def source_definitions(targets: Iterable[str], *, known_imports: Mapping[str, str],
                       provided: Iterable[str] = ()) -> list[_Definition]:
    """The definitions behind these ``module:name`` targets and everything they use.

    In source order, module by module. ``provided`` names are defined by the caller's file
    and not copied; every import the definitions need must be one of ``known_imports``.
    """
    skip = set(provided)
    wanted: dict[tuple[str, str], _Definition] = {}
    pending = [tuple(target.rsplit(":", 1)) for target in targets]
    while pending:
        module_name, name = pending.pop()
        if (module_name, name) in wanted or name in skip:
            continue
        definition = _module_definitions(module_name)[name]
        wanted[(module_name, name)] = definition
        pending.extend((module_name, dep) for dep in definition.local_deps)
        for imported in definition.imported:  # a helper from another tuilab module
            source = _tuilab_source(definition, imported)
            if source is not None:
                pending.append((source, imported))
    chosen = sorted(wanted.values(), key=lambda d: (d.module, d.order))
    _check_imports(chosen, known_imports)
    return chosen


def _block_definitions(targets: Iterable[str]) -> list[_Definition]:
    return source_definitions(targets, known_imports=_KNOWN_IMPORTS)


def block_sources(targets: Iterable[str], skip: set[str] = frozenset()) -> tuple[str, set[str]]:
    """The source of these ``module:Class`` blocks and what they use, leaving out the
    definitions named in ``skip`` (a script that already has them); also the names defined."""
    definitions = [d for d in _block_definitions(targets) if d.name not in skip]
    return "\n\n\n".join(d.text for d in definitions), {d.name for d in definitions}


# --- the model class --------------------------------------------------------------------------
def _camel(name: str) -> str:
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    text = "".join(p[0].upper() + p[1:] for p in parts)
    if not text or not text[0].isalpha():
        text = "Model" + text
    return text


@cache
def _is_attribute_name(name: str) -> bool:
    """Usable as ``self.name``: an identifier that nn.Module does not already define."""
    from torch import nn

    return (name.isidentifier() and not keyword.iskeyword(name)
            and not hasattr(nn.Module(), name))


@cache
def _add_module_accepts(target: str, name: str) -> bool:
    """Whether a container built by ``Cls(OrderedDict(...))`` will take this child name."""
    module_name, cls_name = target.rsplit(":", 1)
    container = getattr(importlib.import_module(module_name), cls_name)()
    return bool(name) and "." not in name and not hasattr(container, name)


class _Exporter:
    def __init__(self, spec: ModelSpec, reserved_names: Iterable[str] = ()) -> None:
        self.spec = spec
        self.root = spec.root
        self.by_id = {node.id: node for _, node in walk(self.root)}
        self.path_of = {node.id: path for path, node in walk(self.root)}
        self.targets = {node.ref for _, node in walk(self.root) if node.ref is not None}
        self.uses: set[str] = set()
        self.needs_children_helper = False
        used_targets = {self.by_id[n.ref].definition.target if n.ref else n.definition.target
                        for _, n in walk(self.root)}
        self.blocks = _block_definitions(
            t for t in used_targets if not t.startswith("torch.nn:")
        )
        reserved = {d.name for d in self.blocks} | set(_KNOWN_IMPORTS) | set(dir(builtins))
        reserved |= {"self", "x", "INPUT_SHAPE", "VOCAB_SIZE", "build_model", "make_input",
                     "_with_children", *reserved_names}
        self.class_name = _camel(spec.name)
        while self.class_name in reserved:
            self.class_name += "Model"
        reserved.add(self.class_name)
        self.variables: dict[str, str] = {}
        for target_id in sorted(self.targets, key=lambda i: self.path_of[i]):
            self.variables[target_id] = self._variable(self.by_id[target_id], reserved)
            reserved.add(self.variables[target_id])

    @staticmethod
    def _variable(node: Node, taken: set[str]) -> str:
        base = node.name
        if not base.isidentifier() or keyword.iskeyword(base) or base in taken:
            base = "shared" if "shared" not in taken else "shared_" + re.sub(r"\W", "_", base)
        name, n = base, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        return name

    # --- expressions --------------------------------------------------------------------
    def expr(self, node: Node, indent: int, *, defining: bool = False) -> str:
        """Python that constructs ``node`` (a variable for a shared node, unless defining it)."""
        if node.ref is not None:
            return self.variables[node.ref]
        if node.id in self.targets and not defining:
            return self.variables[node.id]
        definition = node.definition
        if not node.is_container:
            return _wrap_call(definition.call_code(node.args), indent)
        code = definition.code_name
        if code.startswith("nn."):
            self.uses.add("nn")
        if not node.children:
            return f"{code}()"
        inner = _INDENT * (indent + 1)
        close = _INDENT * indent
        names = [child.name for child in node.children]
        if definition.container == "dict":
            items = [f"{inner}{c.name!r}: {self.expr(c, indent + 1)}," for c in node.children]
            return f"{code}({{\n" + "\n".join(items) + f"\n{close}}})"
        if is_positional(names):
            items = [f"{inner}{self.expr(c, indent + 1)}," for c in node.children]
            return f"{code}(\n" + "\n".join(items) + f"\n{close})"
        pairs = [f"{inner}({c.name!r}, {self.expr(c, indent + 1)})," for c in node.children]
        body = "\n".join(pairs)
        if all(_add_module_accepts(definition.target, name) for name in names):
            self.uses.add("OrderedDict")
            return f"{code}(OrderedDict([\n{body}\n{close}]))"
        self.needs_children_helper = True
        return f"_with_children({code}(), [\n{body}\n{close}])"

    def target_order(self) -> list[str]:
        """Shared nodes in an order where each is defined after the shared nodes inside it."""
        return shared_order(self.root)

    def reach(self, path: str) -> str:
        if path == "":
            return "self"
        if "." not in path and _is_attribute_name(path):
            return f"self.{path}"
        return f"self.get_submodule({path!r})"

    def freeze_lines(self) -> list[str]:
        """requires_grad as the builder sets it: a frozen node freezes all that it holds.

        The builder skips shared places ("the target decides"), so a trainable shared block
        placed inside a frozen container gets its gradients back, and any frozen block
        inside it is frozen again.
        """
        frozen_roots: list[str] = []
        effective: dict[str, bool] = {}

        def visit(node: Node, path: str, inherited: bool) -> None:
            if node.ref is not None:
                return
            frozen = inherited or node.frozen
            effective[node.id] = frozen
            if frozen and not inherited:
                frozen_roots.append(path)
            for child in node.children:
                visit(child, f"{path}.{child.name}" if path else child.name, frozen)

        visit(self.root, "", False)
        lines = [f"{self.reach(p)}.requires_grad_(False)" for p in frozen_roots]
        thawed: dict[str, None] = {}
        for frozen_path in frozen_roots:
            subtree = find(self.root, frozen_path)
            for _, inner in walk(subtree):
                if inner.ref is not None and not effective.get(inner.ref, False):
                    thawed[self.path_of[inner.ref]] = None
        for path in thawed:
            lines.append(f"{self.reach(path)}.requires_grad_(True)")
            lines.extend(f"{self.reach(p)}.requires_grad_(False)" for p in frozen_roots
                         if path == "" or p.startswith(path + "."))
        return lines

    # --- the file -----------------------------------------------------------------------
    def model_class(self) -> list[str]:
        root = self.root
        body: list[str] = []
        locals_ = [f"{self.variables[t]} = {self.expr(self.by_id[t], 2, defining=True)}"
                   for t in self.target_order()]
        doc = f'"""{_doc_text(self.spec.name)}, exported from tuilab."""'
        if not root.is_container:
            call = root.definition.call_code(root.args)
            base = root.definition.code_name
            arguments = call[len(base) + 1 : -1]
            header = f"class {self.class_name}({base}):"
            body += ["def __init__(self) -> None:", f"{_INDENT}super().__init__({arguments})"]
            init_tail: list[str] = []
            forward: list[str] = []
        else:
            names = [c.name for c in root.children]
            attributes = all(_is_attribute_name(n) for n in names) or not (
                is_positional(names))
            if attributes:
                header = f"class {self.class_name}(nn.Module):"
                self.uses.add("nn")
                init = ["def __init__(self) -> None:", f"{_INDENT}super().__init__()"]
                init += [_INDENT + line for line in locals_]
                for child in root.children:
                    value = self.expr(child, 2)
                    if _is_attribute_name(child.name):
                        init.append(f"{_INDENT}self.{child.name} = {value}")
                    else:
                        init.append(f"{_INDENT}self._modules[{child.name!r}] = {value}")
                body += init
                forward = ["", "def forward(self, x: torch.Tensor) -> torch.Tensor:"]
                for child in root.children:
                    call = (f"self.{child.name}" if _is_attribute_name(child.name)
                            else f"self._modules[{child.name!r}]")
                    forward.append(f"{_INDENT}x = {call}(x)")
                forward.append(f"{_INDENT}return x")
            else:
                base = root.definition.code_name
                if base.startswith("nn."):
                    self.uses.add("nn")
                header = f"class {self.class_name}({base}):"
                init = ["def __init__(self) -> None:"] + [_INDENT + line for line in locals_]
                # Body lines get one more indent when the class is assembled; the
                # continuation lines of an expression are already absolute.
                children = [f"{_INDENT * 2}{self.expr(c, 3)}," for c in root.children]
                init += [f"{_INDENT}super().__init__(", *children, f"{_INDENT})"]
                body += init
                forward = []
            init_tail = []
        init_tail += [_INDENT + line for line in self.freeze_lines()]
        body += init_tail + forward
        return [header, _INDENT + doc, "", *(_INDENT + line if line else "" for line in body)]

    def model_lines(self) -> list[str]:
        """Block sources, the model class, INPUT_SHAPE, build_model() and make_input()."""
        spec = self.spec
        self.uses.update(("torch", "nn"))
        class_lines = self.model_class()
        out: list[str] = []
        for block in self.blocks:
            self.uses.update(external_names(block))
            out += [block.text, "", ""]
        if self.needs_children_helper:
            out += [*_CHILDREN_HELPER, "", ""]
        shape = ", ".join(str(d) for d in spec.input_shape)
        shape_text = f"({shape},)" if len(spec.input_shape) == 1 else f"({shape})"
        out += [*class_lines, "", ""]
        out += [f"INPUT_SHAPE = {shape_text}  # batch first"]
        vocab = spec.vocab_size if spec.takes_tokens else None
        if vocab is not None:
            out += [f"VOCAB_SIZE = {vocab}  # the first Embedding's num_embeddings"]
        out += [
            "",
            "",
            "def build_model() -> nn.Module:",
            f"{_INDENT}return {self.class_name}()",
            "",
            "",
            "def make_input() -> torch.Tensor:",
        ]
        if vocab is not None:
            out += [f'{_INDENT}"""Random token ids in [0, VOCAB_SIZE), shaped INPUT_SHAPE."""',
                    f"{_INDENT}return torch.randint(0, VOCAB_SIZE, INPUT_SHAPE)"]
        else:
            out += [f'{_INDENT}"""A random input of INPUT_SHAPE, values in [0, 1)."""',
                    f"{_INDENT}return torch.rand(INPUT_SHAPE)"]
        return out

    def source(self) -> str:
        spec = self.spec
        model = self.model_lines()
        # The docstring opens with what the model is; where it came from comes after.
        describe = _doc_text(spec.description) or "a model built in tuilab's palette"
        first = textwrap.wrap(f"{_doc_text(spec.name)}: {describe}", width=88) or [""]
        out = [
            '"""' + first[0], *first[1:], "",
            f"Standalone PyTorch source exported by tuilab {__version__}.",
            "",
            "Needs only PyTorch. `python this_file.py` builds the model and runs one forward",
            "pass on a random input of INPUT_SHAPE; `build_model()` returns a fresh model whose",
            "state_dict() keys match the lab's, so weights saved there load here.",
            '"""',
            "",
            "from __future__ import annotations",
            "",
        ]
        if "OrderedDict" in self.uses:
            out += [_KNOWN_IMPORTS["OrderedDict"], ""]
        out += [_KNOWN_IMPORTS[n] for n in _IMPORT_ORDER if n != "OrderedDict" and n in self.uses]
        out += ["", "", *model]
        out += [
            "",
            "",
            'if __name__ == "__main__":',
            f"{_INDENT}model = build_model()",
            f"{_INDENT}with torch.no_grad():",
            f"{_INDENT * 2}output = model(make_input())",
            f"{_INDENT}print(model)",
            f"{_INDENT}shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None",
            f'{_INDENT}print("output shape:", shape)',
        ]
        return "\n".join(out) + "\n"


def model_section(spec: ModelSpec, reserved_names: Iterable[str] = ()
                  ) -> tuple[list[str], dict[str, str]]:
    """The model part of an exported file and the imports it needs (name -> statement).

    ``reserved_names`` are the names the rest of the file defines: the model class keeps
    clear of them.
    """
    exporter = _Exporter(spec, reserved_names)
    lines = exporter.model_lines()
    return lines, {name: KNOWN_IMPORTS[name] for name in exporter.uses}


def _doc_text(text: str) -> str:
    """Text that cannot end or escape out of a triple-quoted docstring."""
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _wrap_call(call: str, indent: int, width: int = 88) -> str:
    """A constructor call, one argument a line when it would run past ``width`` columns."""
    if len(_INDENT * (indent + 1)) + len(call) <= width:
        return call
    parsed = ast.parse(call, mode="eval").body
    if not isinstance(parsed, ast.Call) or not (parsed.args or parsed.keywords):
        return call
    inner = _INDENT * (indent + 1)
    items = [ast.unparse(a) for a in parsed.args]
    items += [f"{k.arg}={ast.unparse(k.value)}" for k in parsed.keywords]
    lines = "".join(f"{inner}{item},\n" for item in items)
    return f"{ast.unparse(parsed.func)}(\n{lines}{_INDENT * indent})"


_CHILDREN_HELPER = [
    "def _with_children(container: nn.Module, children: list[tuple[str, nn.Module]]"
    ") -> nn.Module:",
    f'{_INDENT}"""Register children under names add_module refuses (they shadow methods)."""',
    f"{_INDENT}for name, child in children:",
    f"{_INDENT * 2}container._modules[name] = child",
    f"{_INDENT}return container",
]
