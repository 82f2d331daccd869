"""Building a model with real keys: each action changes the spec, the live module and the
inspector's rows, and a refused action changes nothing and keeps the app up."""

from __future__ import annotations

from pathlib import Path

from app_helpers import (
    builder_labels,
    child_blocks,
    child_names,
    choose_block,
    lab_app,
    module_labels,
    select,
    settle,
    table_keys,
    type_into_field,
    type_into_focused,
)
from rich.text import Text
from torch import nn

from tuilab.app.app import TuilabApp
from tuilab.app.screens.dialogs import ChoiceScreen, TextPrompt, UnsavedScreen
from tuilab.app.widgets.arg_prompt import ArgPrompt

SIZE = (120, 40)


def _param_keys(app) -> list[str]:
    return list(app.lab.snapshot.parameters)


async def test_add_after_selection_updates_spec_module_and_inspector() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert table_keys(app, "parameters") == ["0.weight", "0.bias", "2.weight", "2.bias"]
        await select(pilot, "1")
        await choose_block(pilot, "Dropout")
        await pilot.press("a")
        await settle(pilot)
        assert child_blocks(app) == ["Linear", "ReLU", "Dropout", "Linear"]
        assert isinstance(app.lab.model[2], nn.Dropout)
        assert isinstance(app.lab.model[3], nn.Linear)
        # the inspector follows, in model order, without a rebuild
        assert table_keys(app, "parameters") == _param_keys(app) == [
            "0.weight", "0.bias", "3.weight", "3.bias"]
        labels = module_labels(app)
        assert "Dropout" in labels["2"] and "Linear" in labels["3"]
        # new rows are highlighted for a moment
        cell = app.inspector.params_table.get_cell("3.weight", "shape")
        assert isinstance(cell, Text) and cell.style
        assert "nn.Dropout" in app.code_log.last
        assert app.header.text.split()[1] == "•"  # dirty marker
        assert "Dropout" in builder_labels(app)["2"]


async def test_add_into_container_and_insert_before() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "")
        await choose_block(pilot, "Sequential")
        await pilot.press("a")  # at the root: appended to the model
        await settle(pilot)
        assert child_blocks(app) == ["Linear", "ReLU", "Linear", "Sequential"]
        await select(pilot, "3")
        await choose_block(pilot, "Tanh")
        await pilot.press("A")  # shift+a: into the selected container
        await settle(pilot)
        assert child_blocks(app, "3") == ["Tanh"]
        assert isinstance(app.lab.model[3][0], nn.Tanh)
        assert "3.0" in module_labels(app)
        # A on a block that is not a container is refused; nothing changes
        await select(pilot, "0")
        before = app.lab.spec
        await pilot.press("A")
        await settle(pilot)
        assert app.lab.spec is before
        # i inserts before the selection
        await choose_block(pilot, "Dropout")
        await select(pilot, "0")
        await pilot.press("i")
        await settle(pilot)
        assert child_blocks(app) == ["Dropout", "Linear", "ReLU", "Linear", "Sequential"]
        assert isinstance(app.lab.model[0], nn.Dropout)
        assert table_keys(app, "parameters")[0] == "1.weight"


async def test_move_up_and_down() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "1")
        await pilot.press("K")
        await settle(pilot)
        assert child_blocks(app) == ["ReLU", "Linear", "Linear"]
        assert isinstance(app.lab.model[0], nn.ReLU)
        assert table_keys(app, "parameters") == ["1.weight", "1.bias", "2.weight", "2.bias"]
        assert app.builder.selected_path == "0"  # the cursor follows the node
        await pilot.press("J")
        await settle(pilot)
        assert child_blocks(app) == ["Linear", "ReLU", "Linear"]
        await pilot.press("shift+down")
        await settle(pilot)
        assert child_blocks(app) == ["Linear", "Linear", "ReLU"]
        assert "ReLU" in module_labels(app)["2"]


async def test_indent_and_outdent() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "0")
        await choose_block(pilot, "Sequential")
        await select(pilot, "0")
        await pilot.press("a")
        await settle(pilot)
        assert child_blocks(app) == ["Linear", "Sequential", "ReLU", "Linear"]
        await select(pilot, "2")
        await pilot.press("greater_than_sign")
        await settle(pilot)
        assert child_blocks(app) == ["Linear", "Sequential", "Linear"]
        assert child_blocks(app, "1") == ["ReLU"]
        assert isinstance(app.lab.model[1][0], nn.ReLU)
        moved = "1." + child_names(app, "1")[0]
        assert moved in module_labels(app) and "ReLU" in module_labels(app)[moved]
        assert moved in builder_labels(app)
        await select(pilot, moved)
        await pilot.press("less_than_sign")
        await settle(pilot)
        assert child_blocks(app) == ["Linear", "Sequential", "ReLU", "Linear"]
        assert child_blocks(app, "1") == []
        assert moved not in module_labels(app)
        assert "ReLU" in module_labels(app)["2"]


async def test_delete_then_undo_and_redo() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "1")
        await pilot.press("d")
        await settle(pilot)
        assert child_blocks(app) == ["Linear", "Linear"]
        assert len(app.lab.model) == 2
        assert table_keys(app, "parameters") == ["0.weight", "0.bias", "1.weight", "1.bias"]
        assert "2" not in module_labels(app)
        await pilot.press("ctrl+z")
        await settle(pilot)
        assert child_blocks(app) == ["Linear", "ReLU", "Linear"]
        assert isinstance(app.lab.model[1], nn.ReLU)
        assert table_keys(app, "parameters") == ["0.weight", "0.bias", "2.weight", "2.bias"]
        assert set(module_labels(app)) == {"", "0", "1", "2"}
        await pilot.press("ctrl+y")
        await settle(pilot)
        assert child_blocks(app) == ["Linear", "Linear"]
        await pilot.press("delete")  # the delete key too
        await settle(pilot)
        assert len(child_blocks(app)) == 1


async def test_duplicate_makes_new_weights() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "1")
        await pilot.press("D")
        await settle(pilot)
        assert child_blocks(app) == ["Linear", "ReLU", "ReLU", "Linear"]
        await select(pilot, "0")
        await pilot.press("D")
        await settle(pilot)
        model = app.lab.model
        assert isinstance(model[1], nn.Linear) and model[1] is not model[0]
        assert model[1].weight is not model[0].weight
        assert "1.weight" in table_keys(app, "parameters")
        assert app.lab.snapshot.total_params == 7946 + 20 * 256 + 256


async def test_rename_through_the_dialog() -> None:
    app = lab_app("lenet")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "fc1")
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        await type_into_focused(pilot, "dense")
        await pilot.press("enter")
        await settle(pilot)
        assert "dense" in child_names(app) and "fc1" not in child_names(app)
        assert isinstance(app.lab.model.dense, nn.Linear)
        keys = table_keys(app, "parameters")
        assert "dense.weight" in keys and "fc1.weight" not in keys
        assert "dense" in module_labels(app)
        # a name with a dot is refused: error, nothing changes
        spec = app.lab.spec
        await pilot.press("r")
        await pilot.pause()
        await type_into_focused(pilot, "a.b")
        await pilot.press("enter")
        await settle(pilot)
        assert app.lab.spec is spec
        assert any("dots" in n.message for n in app._notifications)


async def test_edit_arguments_and_a_bad_value_keeps_the_model() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "2")
        await pilot.press("e")
        await pilot.pause()
        prompt = app.header.prompt
        assert isinstance(prompt, ArgPrompt) and app.screen is app.screen_stack[0]
        assert "in_features=256" in app.header.text  # the model stays in view, below
        # a bad value: the message in the line, the model unchanged, the prompt still open
        spec, model = app.lab.spec, app.lab.model
        await type_into_field(pilot, "out_features", "ten")
        await pilot.press("enter")
        await pilot.pause()
        assert app.header.prompt is prompt and prompt.field.arg.name == "out_features"
        assert "✗ argument 'out_features'" in app.header.text
        assert any("out_features" in n.message for n in app._notifications)  # in full
        assert app.lab.spec is spec and app.lab.model is model
        assert app.lab.model[2].out_features == 10
        # a good value: applied, the live module rebuilt, the inspector shows the new shape
        await pilot.press("ctrl+u", "7")
        await pilot.press("enter")
        await settle(pilot)
        assert app.asking is None and app.builder.has_focus
        assert app.lab.model[2].out_features == 7
        assert app.inspector.row_text("parameters", "2.weight")[1] == "(7, 256)"
        assert "nn.Linear(256, 7)" in app.code_log.last
        assert "(2, 7)" in builder_labels(app)["2"]


async def test_shape_error_marks_the_failing_node() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "0")
        await pilot.press("enter")  # enter edits too
        await pilot.pause()
        assert isinstance(app.header.prompt, ArgPrompt)
        await type_into_field(pilot, "out_features", "128")
        await pilot.press("enter")
        await settle(pilot)
        assert app.lab.model[0].out_features == 128
        error_path, message = app.builder.error
        assert error_path == "2" and message
        label = app.builder.path_handle("2").label
        assert "✗" in str(label) and "red" in str(label.style or label.spans)
        assert str(app.query_one("#builder-status").render()).startswith("✗")


async def test_share_ties_the_module() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        # a square layer to tie: 256 -> 256 after the ReLU
        await select(pilot, "1")
        await choose_block(pilot, "Linear")
        await select(pilot, "1")
        await pilot.press("a")
        await settle(pilot)
        await select(pilot, "2")
        await pilot.press("e")
        await pilot.pause()
        await type_into_field(pilot, "in_features", "256")
        await type_into_field(pilot, "out_features", "256")
        await pilot.press("enter")
        await settle(pilot)
        await select(pilot, "2")
        await pilot.press("m")
        await pilot.pause()
        assert "marked" in builder_labels(app)["2"]
        await pilot.press("s")  # share it right after itself
        await settle(pilot)
        model = app.lab.model
        assert model[3] is model[2]
        row = app.inspector.row_text("parameters", "3.weight")
        assert "shared with 2.weight" in row[-1]
        assert "shares 2" in builder_labels(app)["3"]
        # tied weights count once
        assert app.lab.snapshot.total_params == 7946 + 256 * 256 + 256


async def test_freeze_changes_trainable_count_in_header() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "(7,946 trainable)" in app.header.text
        await select(pilot, "0")
        await pilot.press("z")
        await settle(pilot)
        assert not app.lab.model[0].weight.requires_grad
        assert "(2,570 trainable)" in app.header.text
        assert app.inspector.row_text("parameters", "0.weight")[4] == "False"
        assert "frozen" in builder_labels(app)["0"]
        await pilot.press("z")
        await settle(pilot)
        assert "(7,946 trainable)" in app.header.text


async def test_train_eval_toggle_shows_every_training_flag() -> None:
    app = lab_app("lenet")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert all("training=True" in label for label in module_labels(app).values())
        await pilot.press("T")
        await settle(pilot)
        assert not any(m.training for m in app.lab.model.modules())
        labels = module_labels(app)
        assert len(labels) == len(list(app.lab.model.modules()))
        assert all("training=False" in label for label in labels.values())
        assert " eval " in app.header.text
        assert app.code_log.last == "net.eval()"


async def test_precision_picker_changes_parameter_dtype() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("P")
        await pilot.pause()
        assert app.asking is app.header and app.screen is app.screen_stack[0]
        assert "Precision" in app.header.text and "▸float32✓◂" in app.header.text
        assert "⏎ apply  esc cancel" in app.header.text  # its own keys, where it is asked
        await pilot.press("down", "down", "down", "enter")  # float32 -> float64
        await settle(pilot)
        assert app.asking is None and app.builder.has_focus  # the focus never moved
        assert app.lab.model[0].weight.dtype.__str__() == "torch.float64"
        for key in table_keys(app, "parameters"):
            assert app.inspector.row_text("parameters", key)[2] == "float64"
        assert "float64" in app.header.text


async def test_device_picker_lists_devices_and_refuses_absent_ones() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await pilot.pause()
        prompt = app.header.prompt
        assert prompt is not None
        names = [choice.value for choice in prompt.choices]
        assert names[0] == "cpu" and "cuda" in names
        absent = [index for index, choice in enumerate(prompt.choices) if not choice.available]
        if absent:  # enter on a device absent here: the prompt stays, saying why
            await pilot.press(*["right"] * absent[0], "enter")
            choice = prompt.choices[absent[0]]
            assert app.asking is app.header and f"{choice.value}: {choice.description}" in (
                app.header.text)
        await pilot.press("escape")
        await pilot.pause()
        assert app.asking is None and app.lab.device == "cpu"
        # a device that cannot be used: a clear message, nothing changed
        before = app.lab.snapshot
        app._mode(lambda: app.lab.set_device("cuda:7"))
        await settle(pilot)
        assert app.lab.snapshot is before and app.lab.device == "cpu"
        assert app._notifications and app.is_running


async def test_refused_edit_changes_nothing_and_app_stays_up() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "")
        spec, model = app.lab.spec, app.lab.model
        await pilot.press("d")  # the root cannot be removed
        await pilot.press("K")
        await pilot.press("D")
        await settle(pilot)
        assert app.lab.spec is spec and app.lab.model is model
        assert app.is_running
        messages = [n.message for n in app._notifications]
        assert any("root" in m for m in messages)


async def test_save_then_open_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "work.toml"
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "1")
        await pilot.press("D")
        await settle(pilot)
        await pilot.press("ctrl+s")  # no file yet: save as
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        await type_into_focused(pilot, str(target))
        await pilot.press("enter")
        await settle(pilot)
        assert target.is_file()
        assert not app.lab.dirty and "•" not in app.header.text
        saved_blocks = child_blocks(app)
        # change it, then open the saved file: asks about the unsaved change first
        await select(pilot, "0")
        await pilot.press("d")
        await settle(pilot)
        assert child_blocks(app) != saved_blocks
        await pilot.press("ctrl+o")
        await pilot.pause()
        await type_into_focused(pilot, str(target))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, UnsavedScreen)
        await pilot.press("d")  # discard
        await settle(pilot)
        assert app.lab.path == target
        assert child_blocks(app) == saved_blocks == ["Linear", "ReLU", "ReLU", "Linear"]
        assert table_keys(app, "parameters") == list(app.lab.snapshot.parameters)
        assert set(module_labels(app)) == {"", "0", "1", "2", "3"}


async def test_quit_with_unsaved_changes_asks() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "1")
        await pilot.press("D")
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, UnsavedScreen)
        await pilot.press("escape")  # cancel
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, UnsavedScreen)
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("d")  # discard
        await pilot.pause()
    assert app.return_value == 0


async def test_code_log_copy() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("T")
        await settle(pilot)
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == "net.eval()"
        await pilot.press("Y")
        await pilot.pause()
        assert app.clipboard.splitlines()[-1] == "net.eval()"
        assert app.clipboard.startswith("# tuilab code log")  # a script, preamble first
        assert "\nnet = build_model()  # " in app.clipboard


async def test_help_screen_and_command_palette_list_the_actions() -> None:
    from tuilab.app.screens.help import HelpScreen

    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for wanted in ("Add block after", "Edit arguments", "Share marked node", "Undo",
                       "Train / eval mode", "Precision", "Save workspace", "Load preset"):
            assert any(t.startswith(wanted) for t in titles), wanted
        assert all(c.help for c in app.get_system_commands(app.screen))


def test_the_key_table_binds_each_key_once_to_an_action_that_exists() -> None:
    """The bindings, footer, help and palette all come from `KEY_GROUPS`: check the table."""
    from tuilab.app.keys import KEY_GROUPS, app_bindings

    bound: dict[str, str] = {}
    for binding in app_bindings():
        for key in binding.key.split(","):
            assert key not in bound or bound[key] == binding.action, key
            bound[key] = binding.action
        assert callable(getattr(TuilabApp, f"action_{binding.action}", None)), binding.action
    rows = [key for _, keys in KEY_GROUPS for key in keys]
    assert all(key.bind for key in rows if key.footer)  # a footer label needs a binding
    assert bound["delete"] == "remove" and bound["f1"] == "help" and bound["ctrl+q"] == "quit"
    footer = [b.description for b in app_bindings() if b.show]
    assert footer == ["Add", "Delete", "Edit", "Undo", "Train/eval", "Save", "Help", "Quit"]


def test_the_readmes_key_table_matches_the_apps_keys() -> None:
    """The README's table is written by hand: every key it names must be one the app shows,
    and every key of the app but help, quit and ctrl+p (named above it) must be in it."""
    import re

    from tuilab.app.keys import KEY_GROUPS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("Keys (also in the command palette"):readme.index("## Opening")]
    in_readme = {key for cell in re.findall(r"`([^`]+)`", table) for key in cell.split(" / ")}
    in_readme -= {"ctrl+p", "?"}  # the command palette and help, named in the line above
    in_app = {key.strip() for _, keys in KEY_GROUPS for row in keys if row.action
              for key in re.split(r" / |, ", row.keys)}
    assert in_readme <= in_app, in_readme - in_app
    # named elsewhere in the README, or second keys for an action the table already has
    shown_elsewhere = {"?", "f1", "q", "ctrl+q", "ctrl+p", "delete", "shift+up", "shift+down"}
    assert in_app - shown_elsewhere <= in_readme, (in_app - shown_elsewhere) - in_readme


async def test_command_palette_runs_an_action() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"train / eval")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await settle(pilot)
        assert app.lab.training is False
        assert all("training=False" in label for label in module_labels(app).values())


async def test_load_preset_from_the_picker() -> None:
    from textual.widgets import OptionList

    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        first = app.lab
        await pilot.press("l")
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, ChoiceScreen)
        options = picker.query_one(OptionList)
        options.highlighted = options.get_option_index("lenet")
        await pilot.press("enter")
        await settle(pilot)
        assert app.lab is not first and app.lab.name == "lenet"
        assert "conv1.weight" in table_keys(app, "parameters")
        assert "conv1" in builder_labels(app) and "0" not in builder_labels(app)
        assert "lenet" in app.header.text
        panel = app.run_panel()
        assert panel is None or panel.lab is app.lab
