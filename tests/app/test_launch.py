"""Opening things: a spec argument loaded after the first frame, a user's own module after a
confirmation, `tuilab.show`, and the live-internals demo (BatchNorm buffers after a forward)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
import torch
from app_helpers import (
    child_blocks,
    choose_block,
    lab_app,
    module_labels,
    select,
    settle,
    type_into_field,
)
from rich.text import Text

from tuilab.app.app import TuilabApp, make_app
from tuilab.app.launch import launch
from tuilab.app.messages import LabChanged, LabReady, SummaryFailed, SummaryReady
from tuilab.app.screens.dialogs import ConfirmScreen
from tuilab.core.errors import SpecFileError
from tuilab.core.threads import intra_op_threads
from tuilab.core.usercode import describe, load_user_module

SIZE = (120, 40)

USER_MODULE = '''
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.bn(self.conv(x)).mean((2, 3)))

def make():
    return nn.Sequential(nn.Linear(5, 3))

def needs(width):
    return nn.Linear(width, 1)

def not_a_module():
    return 42

VALUE = 3
'''


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_model.py"
    path.write_text(USER_MODULE)
    return path


async def test_spec_argument_loads_in_a_worker() -> None:
    app = make_app("lenet")
    async with app.run_test(size=SIZE) as pilot:
        assert app.header.text.startswith("tuilab")
        await settle(pilot)
        assert app.lab is not None and app.lab.name == "lenet"
        assert "fc3" in module_labels(app)
        assert "lenet" in app.header.text


async def test_the_footers_lab_keys_come_alive_once_the_lab_loads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """While the lab loads its keys are off (dimmed in the footer); once it has loaded, with no
    key pressed, they are on (the footer stayed dimmed until the next key or focus change).
    The load is held until the footer has been drawn dimmed, so the order is certain."""
    import threading

    from textual.widgets._footer import FooterKey

    from tuilab.core.lab import Lab

    loaded = threading.Event()
    build = Lab.from_workspace.__func__

    def held_build(cls: type[Lab], *args: object, **kwargs: object) -> Lab:
        assert loaded.wait(60), "the test never released the load"
        return build(cls, *args, **kwargs)

    monkeypatch.setattr(Lab, "from_workspace", classmethod(held_build))

    def add_key_disabled() -> bool:
        keys = {key.action: key for key in app.screen.query(FooterKey)}
        return keys["add_after"].has_class("-disabled")

    app = make_app("lenet")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.lab is None and add_key_disabled()
        loaded.set()
        await settle(pilot)
        assert app.lab is not None
        assert not add_key_disabled()


async def test_unknown_spec_is_a_message_not_a_crash() -> None:
    app = make_app("no_such_preset")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.lab is None and app.is_running
        assert "unknown preset" in app.header.text
        assert any("unknown preset" in n.message for n in app._notifications)
        await pilot.press("a")  # no lab: the action is disabled, nothing raises
        await pilot.pause()
        assert app.is_running


@pytest.mark.parametrize("spec", ["mlp", "no_such_preset"])
async def test_the_collector_is_back_on_once_loading_ends(spec: str) -> None:
    """`launch` turns the garbage collector off for the start-up imports; loading, or failing
    to load, must turn it back on or a long session would never collect a cycle."""
    import gc

    gc.disable()
    try:
        app = make_app(spec)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert (app.lab is not None) == (spec == "mlp")
            assert gc.isenabled()
    finally:
        gc.enable()


async def test_a_result_landing_at_quit_is_dropped_not_raised() -> None:
    """A worker's result can arrive as the app shuts down, when its widgets are gone."""
    app = lab_app("mlp")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        summary, version = app.summary, app._summary_version
        app._on_summary_failed(SummaryFailed("boom", version))  # while running: shown
        assert app.summary is None
        assert "boom" in str(app.query_one("#builder-status").render())
        app._on_summary(SummaryReady(summary, version))
        assert app.summary is summary
    assert not app.is_running
    # after shutdown the same results find no builder to show them in: dropped quietly
    app._on_summary_failed(SummaryFailed("late", version))
    app._on_summary(SummaryReady(None, version))
    app._on_lab_ready(LabReady(app.lab))
    assert app.summary is summary


def test_launch_rejects_bad_arguments_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert launch("no_such_preset") == 2
    assert "unknown preset" in capsys.readouterr().err
    assert launch("missing_file.py:Net") == 2
    assert launch("mlp", input_shape="two") == 2


async def test_user_module_after_confirmation(user_file: Path) -> None:
    app = make_app(f"{user_file}:Net")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        digest = hashlib.sha256(user_file.read_bytes()).hexdigest()
        assert digest in dialog.body and str(user_file.resolve()) in dialog.body
        assert app.lab is None  # nothing imported before the answer
        await pilot.press("y")
        await settle(pilot)
        lab = app.lab
        assert lab is not None and not lab.editable
        assert lab.input_shape == (2, 3, 32, 32)  # the first Conv2d; BatchNorm trains: 2
        assert app.builder.read_only
        assert {"", "conv", "bn", "head"} <= set(module_labels(app))
        assert "bn.running_mean" in app.lab.snapshot.buffers
        # palette edits are off, with the reason
        await select(pilot, "conv")
        await pilot.press("a")
        await pilot.pause()
        assert any("palette edits are off" in n.message for n in app._notifications)
        # modes work
        await pilot.press("T")
        await settle(pilot)
        assert not lab.model.bn.training
        assert "training=False" in module_labels(app)["bn"]


async def test_user_module_declined_exits(user_file: Path) -> None:
    app = make_app(f"{user_file}:Net")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
    assert app.return_code == 1
    assert app.lab is None


def test_usercode_errors_are_clear(user_file: Path, tmp_path: Path) -> None:
    module, name = load_user_module(f"{user_file}:make")
    assert name == "make" and type(module).__name__ == "Sequential"
    with pytest.raises(SpecFileError, match=r"has no 'Nope'.*Net"):
        load_user_module(f"{user_file}:Nope")
    with pytest.raises(SpecFileError, match=r"needs arguments \(width\)"):
        load_user_module(f"{user_file}:needs")
    with pytest.raises(SpecFileError, match=r"returned a int, not an nn\.Module"):
        load_user_module(f"{user_file}:not_a_module")
    with pytest.raises(SpecFileError, match="not a class or function"):
        load_user_module(f"{user_file}:VALUE")
    with pytest.raises(SpecFileError, match="no such file"):
        describe(tmp_path / "absent.py")
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\nraise RuntimeError('boom')\n")
    with pytest.raises(SpecFileError, match="boom") as caught:
        load_user_module(f"{broken}:x")
    assert caught.value.where.endswith(":2")  # the line that raised
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def f(:\n")
    with pytest.raises(SpecFileError, match="syntax error") as caught:
        load_user_module(f"{syntax}:f")
    assert caught.value.where.endswith(":1")


def test_show_opens_the_app_on_a_live_module(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch import nn

    import tuilab

    shown: list[TuilabApp] = []
    monkeypatch.setattr(TuilabApp, "run", lambda self, *a, **k: shown.append(self))
    model = nn.Sequential(nn.Embedding(100, 8), nn.Linear(8, 2))
    tuilab.show(model, name="tiny")
    (app,) = shown
    assert app.lab is not None and app.lab.model is model and app.lab.name == "tiny"
    assert app.lab.takes_tokens and app.lab.vocab_size == 100
    tuilab.show(nn.Linear(3, 1), input_shape=(4, 3))
    assert shown[-1].lab.input_shape == (4, 3)


async def test_forward_in_train_mode_moves_batchnorm_buffers_in_place() -> None:
    app = lab_app("mlp")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "0")
        await choose_block(pilot, "BatchNorm1d")
        await select(pilot, "0")
        await pilot.press("a")
        await settle(pilot)
        assert child_blocks(app) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
        await select(pilot, "1")
        await pilot.press("e")
        await pilot.pause()
        await type_into_field(pilot, "num_features", "256")
        await pilot.press("enter")
        await settle(pilot)
        table = app.inspector.buffers_table
        before = str(table.get_cell("1.running_mean", "value"))
        assert before.startswith("mean 0 ")
        assert str(table.get_cell("1.num_batches_tracked", "value")) == "= 0"
        # a forward pass (what the run panel does on f), announced with LabChanged
        _, update = app.lab.forward()
        app.post_message(LabChanged(update))
        await pilot.pause()
        assert set(update.diff.buffers.changed) >= {"1.running_mean", "1.running_var",
                                                     "1.num_batches_tracked"}
        after = table.get_cell("1.running_mean", "value")
        assert isinstance(after, Text) and after.style  # flashed
        assert str(after) != before
        assert str(table.get_cell("1.num_batches_tracked", "value")) == "= 1"
        await pilot.pause(1.3)  # the highlight fades
        assert not isinstance(table.get_cell("1.running_mean", "value"), Text)


async def test_forward_key_reaches_the_run_panel() -> None:
    app = lab_app("mlp")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        if app.run_panel() is None:
            pytest.skip("the run panel is not installed")
        before = app.lab.code_log[:]
        await pilot.press("f")
        await settle(pilot)
        first = app.lab.code_log[len(before):]
        assert len(first) == 1 and first[0].splitlines()[-1] == "out = net(x)"
        assert "x = torch.rand(2, 20" in first[0]  # the seeded input, written once
        before = app.lab.code_log[:]
        await pilot.press("f")
        await settle(pilot)
        again = app.lab.code_log[len(before):]  # the same x again: the seeded pass alone
        assert len(again) == 1 and again[0].startswith("torch.manual_seed(")
        assert again[0].endswith("\nout = net(x)")


async def test_a_dialog_over_the_lab_leaves_the_lab_footer_as_it_was(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A dialog draws its own footer over the lab's. Textual's Footer rebuilt the lab's keys
    under it (for nobody to see) and again for each "bindings changed" signal when it closed,
    in the frames right after the dialog's edit. The lab's footer is left as it was, its keys
    live again at once, and they are what a rebuild shows."""
    from textual.widgets._footer import FooterKey

    from tuilab.app.widgets.footer import LabFooter

    app = make_app("mlp")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        footer = app.screen.query_one(LabFooter)
        rebuilds = [0]
        real = LabFooter.recompose

        async def counted(self: LabFooter) -> None:
            if self is footer:
                rebuilds[0] += 1
            await real(self)

        def keys() -> list[tuple[str, bool, str]]:
            return [(key.action, key.has_class("-disabled"), str(key.render()))
                    for key in footer.query(FooterKey)]

        monkeypatch.setattr(LabFooter, "recompose", counted)
        await select(pilot, "0")
        before = keys()
        assert ("add_after", False) in [(action, off) for action, off, _ in before]
        await pilot.press("r")  # the rename dialog
        await settle(pilot)
        dialog = app.screen
        assert dialog is not app.screen_stack[0]
        bottom, _ = dialog.get_widget_at(1, SIZE[1] - 1)
        assert dialog.query_one(LabFooter) in (bottom, *bottom.ancestors)  # its own keys
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is app.screen_stack[0]
        assert rebuilds[0] == 0
        assert keys() == before
        footer.refresh(recompose=True)  # what Textual's own rebuild shows
        await settle(pilot)
        assert rebuilds[0] == 1 and keys() == before


async def test_the_apps_own_thread_computes_on_one_thread_while_the_lab_is_open() -> None:
    """Edits run torch on the app's thread after a pause: with one thread no operator waits
    for OpenMP to wake a second (core/threads.py); workers keep the number, and the caller
    has its own back once the app ends."""
    seen: list[int] = []
    with intra_op_threads(3):
        app = lab_app()
        async with app.run_test() as pilot:
            await settle(pilot)
            worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
            worker.start()
            worker.join()
            assert app.lab is not None and torch.get_num_threads() == 1
        assert seen == [3] and torch.get_num_threads() == 3
