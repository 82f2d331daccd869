"""Spec → live `nn.Module`, reusing the module of every node that did not change.

The app rebuilds after every edit. Rebuilding from scratch would re-initialise every weight
(the user's training lost because they renamed a layer) and cost seconds on a big model, so a
`Builder` remembers the module it made for each node id: a node whose block and arguments are
unchanged gets the very same module object back, and containers keep their identity and only
have their `_modules` re-laid, which is exactly what `add_module` and `del` do in PyTorch.
A reference node (a tied layer) gets the same object as its target, so `net[2] is net[4]`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from tuilab.core.errors import BuildError
from tuilab.core.spec import ModelSpec, Node, shared_order, walk

if TYPE_CHECKING:
    import torch
    from torch import nn

# A node's module is kept this many builds after it last appeared (so undo brings back the
# very module, weights and all), then forgotten.
KEEP_UNUSED_BUILDS = 200


def _signature(node: Node) -> tuple[Any, ...]:
    return (node.block, tuple(sorted((k, repr(v)) for k, v in node.args.items())))


class Builder:
    """Builds specs into modules on one device and dtype, remembering modules by node id."""

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 training: bool = True) -> None:
        self.device = device
        self.dtype = dtype
        self.training = training
        self._cache: dict[str, tuple[tuple[Any, ...], nn.Module, int]] = {}
        self._generation = 0
        self.created: list[str] = []
        """The node ids the last build constructed, in the order it constructed them."""

    def module_for(self, node_id: str) -> nn.Module | None:
        entry = self._cache.get(node_id)
        return entry[1] if entry else None

    def new_nodes(self, spec: ModelSpec | Node) -> list[Node]:
        """The nodes the next `build(spec)` would construct afresh (no module to reuse)."""
        root = spec.root if isinstance(spec, ModelSpec) else spec
        return [node for _, node in walk(root) if node.ref is None and self._reuse(node) is None]

    def forget(self) -> None:
        """Drop every remembered module: the next build makes all of them afresh."""
        self._cache.clear()

    def build(self, spec: ModelSpec | Node) -> nn.Module:
        import torch

        root = spec.root if isinstance(spec, ModelSpec) else spec
        self._generation += 1
        by_id = {node.id: node for _, node in walk(root)}
        made: dict[str, nn.Module] = {}

        def assemble(node: Node, path: str) -> nn.Module:
            if node.ref is not None:
                return assemble(by_id[node.ref], path)
            if node.id in made:
                return made[node.id]
            children = [(child.name, assemble(child, f"{path}.{child.name}" if path
                                              else child.name)) for child in node.children]
            module = self._reuse(node)
            if module is None:
                self.created.append(node.id)
                try:
                    module = self._create(node, children, torch)
                except BuildError:
                    raise
                except Exception as error:  # the constructor's refusal, said for this node
                    raise BuildError(
                        f"{node.block} cannot be built with these arguments: "
                        f"{str(error).strip() or type(error).__name__}",
                        where=path or "(root)") from error
            elif node.is_container:
                _relay(module, children)
            self._cache[node.id] = (_signature(node), module, self._generation)
            made[node.id] = module
            return module

        self.created = []
        for target_id in shared_order(root):  # first, as the exported code makes them
            assemble(by_id[target_id], "")
        model = assemble(root, "")
        _apply_frozen(root, made)
        self._prune()
        return model

    def _reuse(self, node: Node) -> nn.Module | None:
        entry = self._cache.get(node.id)
        if entry is None or entry[0] != _signature(node):
            return None
        return entry[1]

    def _create(self, node: Node, children: list[tuple[str, nn.Module]], torch: Any
                ) -> nn.Module:
        definition = node.definition
        with torch.device(self.device):
            if definition.container == "dict":
                module = definition.make(node.args, children)
            elif definition.is_container:
                module = definition.make(node.args, [m for _, m in children])
                _relay(module, children)
            else:
                module = definition.make(node.args)
        if self.dtype is not None:
            module.to(self.dtype)
        module.train(self.training)
        return module

    def _prune(self) -> None:
        cutoff = self._generation - KEEP_UNUSED_BUILDS
        stale = [key for key, (_, _, seen) in self._cache.items() if seen < cutoff]
        for key in stale:
            del self._cache[key]


def _relay(container: nn.Module, children: list[tuple[str, nn.Module]]) -> None:
    """Give a container exactly these children, in this order, under these names."""
    container._modules = OrderedDict(children)


def _apply_frozen(root: Node, made: dict[str, nn.Module]) -> None:
    """requires_grad follows the spec: a frozen node freezes everything inside it."""

    def visit(node: Node, inherited: bool) -> None:
        if node.ref is not None:
            return  # the target decides
        frozen = inherited or node.frozen
        module = made[node.id]
        # plain assignment, not requires_grad_(): a Lazy module's UninitializedParameter
        # refuses the method but keeps the flag when it later gets its size
        for param in module._parameters.values():
            if param is not None:
                param.requires_grad = not frozen
        if node.is_container:
            for child in node.children:
                visit(child, frozen)
        else:
            for param in module.parameters():
                param.requires_grad = not frozen

    visit(root, False)


def build(spec: ModelSpec | Node, device: str | torch.device = "cpu",
          dtype: torch.dtype | None = None) -> nn.Module:
    """A fresh module for `spec` (no reuse): what the CLI and the exporter's tests want."""
    return Builder(device=device, dtype=dtype).build(spec)
