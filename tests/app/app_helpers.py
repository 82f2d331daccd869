"""Helpers for driving the app with real keys and reading its widgets as plain text."""

from __future__ import annotations

from textual.pilot import Pilot

from tuilab.app.app import TuilabApp, make_app
from tuilab.core.lab import Lab
from tuilab.core.workspace import load_workspace_arg


def lab_app(preset: str = "mlp") -> TuilabApp:
    return make_app(lab=Lab.from_workspace(load_workspace_arg(preset)))


async def settle(pilot: Pilot) -> None:
    """Let workers (the shape summary, loading) finish and the screen catch up."""
    app = pilot.app
    await pilot.pause()
    for _ in range(100):  # the summary starts shortly after an edit
        if not getattr(app, "summary_pending", False):
            break
        await pilot.pause(0.05)
    await app.workers.wait_for_complete()
    await pilot.pause()


async def select(pilot: Pilot, path: str) -> None:
    """Put the builder's cursor on `path` (the builder has focus, as after a click)."""
    app = pilot.app
    assert isinstance(app, TuilabApp)
    app.builder.focus()
    app.builder.select_path(path)
    assert app.builder.selected_path == path  # at once: a key pressed next acts on it
    await pilot.pause()


async def choose_block(pilot: Pilot, name: str) -> None:
    """Search the palette for `name` with real keys and highlight it."""
    app = pilot.app
    assert isinstance(app, TuilabApp)
    await pilot.press("slash")
    await pilot.press("home", "ctrl+k", *name.lower())
    await pilot.press("enter")  # search done: focus goes to the block list
    await pilot.pause()
    app.palette.select_block(name)
    assert app.palette.selected_block == name


async def type_into_focused(pilot: Pilot, text: str) -> None:
    await pilot.press("home", "ctrl+k", *text)


async def type_into_field(pilot: Pilot, name: str, text: str) -> None:
    """In the argument prompt (the header's line): tab to field `name`, clear it, type
    `text`, all with real keys."""
    prompt = pilot.app.header.prompt
    for _ in prompt.fields:
        if prompt.field.arg.name == name:
            break
        await pilot.press("tab")
    assert prompt.field.arg.name == name
    await pilot.press("ctrl+u", *text)


def child_names(app: TuilabApp, path: str = "") -> list[str]:
    from tuilab.core.spec import find

    assert app.lab is not None
    return [c.name for c in find(app.lab.spec.root, path).children]


def child_blocks(app: TuilabApp, path: str = "") -> list[str]:
    from tuilab.core.spec import find

    assert app.lab is not None
    return [c.block for c in find(app.lab.spec.root, path).children]


def table_keys(app: TuilabApp, table: str) -> list[str]:
    """Row keys of the inspector's `parameters` or `buffers` table, in display order."""
    inspector = app.inspector
    data = inspector.params_table if table == "parameters" else inspector.buffers_table
    return [str(data.coordinate_to_cell_key((i, 0)).row_key.value)
            for i in range(data.row_count)]


def module_labels(app: TuilabApp) -> dict[str, str]:
    """Every drawn `_modules` node: path -> plain label."""
    return {path: str(handle.label) for path, handle in app.inspector.modules_tree.handles.items()}


def builder_labels(app: TuilabApp) -> dict[str, str]:
    builder = app.builder
    return {builder._paths[key]: str(handle.label) for key, handle in builder._handles.items()}


def builder_structure(app: TuilabApp) -> list[str]:
    """The builder tree's paths in display order (walking the Tree's nodes)."""
    builder = app.builder
    out: list[str] = []

    def walk(node) -> None:
        out.append(builder._paths[node.data])
        for child in node.children:
            walk(child)

    walk(builder.root)
    return out


def modules_structure(app: TuilabApp) -> list[str]:
    """The `_modules` tree's paths in display order."""
    out: list[str] = []

    def walk(node) -> None:
        out.append(node.data)
        for child in node.children:
            walk(child)

    walk(app.inspector.modules_tree.root)
    return out
