"""Arguments a new block can take from the shapes the lab already knows.

Why: a Linear added after `Flatten` needs the flattened size as its `in_features`, which a
newcomer has to compute by hand (16·5·5 = 400 in LeNet) and which the palette's default (20)
gets wrong almost every time. The lab's last shape summary already holds the output shape of
every node, so the add edit fills it in; an argument the user gave is never overridden, and
where no shape is known (a summary not yet computed, a failed node) the palette's default
stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuilab.core.spec import ModelSpec, find, join, leaf_name, parent_path

# Containers whose children run one after another, each on the previous one's output.
_CHAINS = ("sequential", "list", "dict", "mysequential")


def input_shape_at(spec: ModelSpec, shapes: Mapping[str, tuple[int, ...] | None], parent: str,
                   index: int | None) -> tuple[int, ...] | None:
    """The shape a block inserted at `index` of the container `parent` would receive.

    `shapes` maps a node's path to its output shape (the lab's last summary). The first
    block of a chain receives the chain's own input: the model's input at the root, else
    whatever precedes the chain in its own parent.
    """
    try:
        container = find(spec.root, parent)
    except Exception:
        return None
    if container.ref is not None or container.definition.container not in _CHAINS:
        return None
    children = container.children
    position = len(children) if index is None else max(0, min(index, len(children)))
    if position > 0:
        return shapes.get(join(parent, children[position - 1].name))
    if parent == "":
        return None if spec.takes_tokens else tuple(spec.input_shape)
    grand = parent_path(parent)
    siblings = [c.name for c in find(spec.root, grand).children]
    return input_shape_at(spec, shapes, grand, siblings.index(leaf_name(parent)))


def inferred_args(block: str, spec: ModelSpec, shapes: Mapping[str, tuple[int, ...] | None],
                  parent: str, index: int | None,
                  given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`given` plus what the known shapes decide: today a Linear's `in_features` (the last
    dim of its input), unless the user gave one."""
    args = dict(given or {})
    if block == "Linear" and "in_features" not in args:
        shape = input_shape_at(spec, shapes, parent, index)
        if shape and shape[-1] >= 1:
            args["in_features"] = int(shape[-1])
    return args
