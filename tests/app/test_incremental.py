"""The builder and inspector are updated in place, never rebuilt: after any sequence of edits
they must still show exactly the spec and the live module, row for row and in order."""

from __future__ import annotations

import random

import pytest
from app_helpers import builder_structure, lab_app, modules_structure, select, settle, table_keys

from tuilab.app.widgets.inspector import module_label
from tuilab.core.spec import find, parent_path, walk


def _random_edit(app, rng: random.Random) -> None:
    lab = app.lab
    paths = [p for p, _ in walk(lab.spec.root)]
    path = rng.choice(paths)
    containers = [p for p, n in walk(lab.spec.root) if n.is_container]
    action = rng.choice(["add", "add", "add_seq", "remove", "move", "indent", "outdent",
                         "duplicate", "undo", "redo", "rename", "share"])
    if action == "add":
        app._edit("add", rng.choice(["Linear", "ReLU", "Dropout", "BatchNorm1d"]),
                  rng.choice(containers), None)
    elif action == "add_seq":
        app._edit("add", "Sequential", rng.choice(containers), 0)
    elif action == "remove" and path:
        app._edit("remove", path)
    elif action == "move" and path:
        app._edit("move", path, rng.choice([-1, 1]))
    elif action == "indent" and path:
        app._edit("indent", path)
    elif action == "outdent" and path:
        app._edit("outdent", path)
    elif action == "duplicate" and path:
        app._edit("duplicate", path)
    elif action == "rename" and path:
        parent = find(lab.spec.root, parent_path(path))
        if not all(c.name.isdigit() for c in parent.children):
            app._edit("rename", path, f"r{rng.randrange(1000)}")
    elif action == "share" and path:
        target = rng.choice(paths[1:])
        app._edit("share", target, rng.choice(containers), None)  # refusals are notified
    elif action in ("undo", "redo"):
        app._edit(action)


@pytest.mark.parametrize("seed", [7, 2])
async def test_random_edits_keep_builder_and_inspector_in_step(seed: int) -> None:
    app = lab_app("mlp")
    rng = random.Random(seed)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for _ in range(60):
            _random_edit(app, rng)
            await pilot.pause()
            lab = app.lab
            assert builder_structure(app) == [p for p, _ in walk(lab.spec.root)]
            assert modules_structure(app) == list(lab.snapshot.modules)
            assert table_keys(app, "parameters") == list(lab.snapshot.parameters)
            assert table_keys(app, "buffers") == list(lab.snapshot.buffers)
        await settle(pilot)
        assert app.is_running
        assert len(app.code_log.lines_text) > 20  # most of the random edits were accepted
        rows = app.lab.snapshot.modules
        for path, handle in app.inspector.modules_tree.handles.items():
            assert str(handle.label) == module_label(rows[path]).plain
        for path, node in walk(app.lab.spec.root):
            label = str(app.builder.path_handle(path).label)
            assert label.startswith(node.name or app.lab.name)


async def test_an_edit_keeps_every_untouched_row_object() -> None:
    """In place means in place: the tree nodes and table rows that the diff does not name are
    the very same objects after the edit (a rebuild would make new ones)."""
    app = lab_app("lenet")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        modules_before = dict(app.inspector.modules_tree.handles)
        builder_before = {app.builder._paths[k]: h for k, h in app.builder._handles.items()}
        rows_before = {key: app.inspector.params_table.rows[key]
                       for key in app.inspector.params_table.rows}
        await select(pilot, "relu3")
        await pilot.press("D")  # duplicate relu3: one module added
        await settle(pilot)
        update = app.last_update
        assert update.diff.modules.added == ("relu3_2",)
        touched = set(update.diff.modules.changed)
        for path, handle in modules_before.items():
            if path not in touched:
                assert app.inspector.modules_tree.handles[path] is handle, path
        for path, handle in builder_before.items():
            if path:
                assert app.builder.path_handle(path) is handle, path
        for key, row in rows_before.items():
            assert app.inspector.params_table.rows[key] is row, key


async def test_the_code_log_keeps_a_burst_of_lines_at_once_and_draws_them_in_order() -> None:
    """The log's text is current as soon as an edit returns; its drawing waits for the frame
    after the edit's own (a new line lays the screen out again). Lines from a burst of keys
    are all drawn, in the order they were written."""
    app = lab_app("mlp")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        log = app.code_log
        drawn_before = len(log.lines)
        await select(pilot, "0")
        for _ in range(3):  # three duplicates in one go: no frame comes between them
            app.action_duplicate()
        written = log.lines_text[-3:]
        assert written == [code.rstrip() for code in app.lab.code_log[-3:]]  # text at once
        assert log.undrawn == 3 and len(log.lines) == drawn_before  # drawing: not yet
        await settle(pilot)
        assert log.undrawn == 0
        drawn = ["".join(segment.text for segment in strip).rstrip()
                 for strip in log.lines[drawn_before:]]
        assert drawn == "\n".join(written).split("\n")


async def test_inspector_rows_off_screen_are_relabelled_right_after_the_frame() -> None:
    """Train/eval relabels every module row: the rows within a screen of the view get their
    label in the key's frame, the others just after it, and all of them end up right."""
    from tuilab.core.spec import ModelSpec, Node, make_node

    children = tuple(make_node("Linear", str(i), {"in_features": 4, "out_features": 4})
                     for i in range(150))
    lab_spec = ModelSpec("long", Node(name="", block="Sequential", children=children), (2, 4))
    from tuilab.app.app import make_app
    from tuilab.core.lab import Lab

    app = make_app(lab=Lab(lab_spec))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        tree = app.inspector.modules_tree
        app.action_toggle_training()  # the key's handler, without the frame that follows it
        assert 0 < tree.relabel.pending < 150  # the far rows wait for the frame
        assert "training=False" in str(tree.handles["0"].label)  # on screen: at once
        assert "training=True" in str(tree.handles["149"].label)  # far below: not yet
        await settle(pilot)
        assert tree.relabel.pending == 0
        rows = app.lab.snapshot.modules
        for path, handle in tree.handles.items():
            assert str(handle.label) == module_label(rows[path]).plain
            assert not rows[path].training


async def test_the_trees_draw_what_textuals_tree_draws_reading_their_style_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """LeanTree reads its style once per repaint instead of once per line; the lines it draws
    must be exactly Textual's own."""
    from textual.geometry import Region
    from textual.widgets import Tree

    from tuilab.app.widgets.inspector import ModulesTree

    app = lab_app("lenet")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        tree = app.inspector.modules_tree
        tree.root.expand_all()
        await settle(pilot)
        region = Region(0, 0, tree.size.width, tree.size.height)
        reads = [0]
        real_style = Tree.rich_style

        def counted(self: Tree) -> object:
            reads[0] += 1
            return real_style.fget(self)

        monkeypatch.setattr(ModulesTree, "rich_style", property(counted))

        def draw() -> list[str]:
            tree._line_cache.clear()
            tree._styles_cache.clear()
            tree._forget_drawn()
            reads[0] = 0
            return [repr(list(strip)) for strip in tree.render_lines(region)]

        lean, lean_reads = draw(), reads[0]
        monkeypatch.setattr(ModulesTree, "render_line", Tree.render_line)
        plain, plain_reads = draw(), reads[0]
        assert lean == plain
        assert lean_reads < plain_reads and plain_reads >= tree.size.height
