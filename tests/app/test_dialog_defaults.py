"""Every dialog's default answer (Enter, as the dialog opens) keeps the work: restoring an
autosave restores it, the unsaved-changes question cancels, an overwrite does not happen, a
re-initialisation of trained weights does not happen, and a choice keeps what is current."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from app_helpers import lab_app, select, settle
from textual.pilot import Pilot

from tuilab.app.app import MainScreen, make_app
from tuilab.app.screens.dialogs import ConfirmScreen
from tuilab.core import autosave
from tuilab.core.lab import RunRecord
from tuilab.core.workspace import Workspace, load_preset, workspace_to_text, write_atomic

SIZE = (120, 40)


async def until(pilot: Pilot, done: Any, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        await pilot.pause(0.05)
    assert done(), f"timed out waiting for {what}"


async def dialog(pilot: Pilot) -> Any:
    """Wait for a dialog, or a choice asked in the header's line (precision, device)."""
    app = pilot.app
    await until(pilot, lambda: not isinstance(app.screen, MainScreen) or app.asking is not None,
                "a dialog")
    await pilot.pause()
    return pilot.app.screen


def _lost_session(folder: Path, preset: str = "lenet") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / "autosave-111-1.toml"  # no lock: its session is gone, as after a SIGKILL
    write_atomic(copy, workspace_to_text(Workspace(spec=load_preset(preset))))
    return copy


async def test_enter_on_the_restore_offer_restores(_private_data_dir: Path) -> None:
    _lost_session(_private_data_dir)
    app = make_app("mlp", offer_restore=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await dialog(pilot)
        assert isinstance(screen, ConfirmScreen)
        footer = [(getattr(k, "key", ""), getattr(k, "description", ""))
                  for k in screen.query("FooterKey")]
        assert footer == [("escape", "Cancel"), ("y", "Restore"), ("n", "Discard it")]
        await pilot.press("enter")
        await until(pilot, lambda: app.lab is not None, "the lab", 60)
        assert app.lab is not None and app.lab.name == "lenet" and app.lab.dirty


async def test_a_discarded_copy_stays_until_this_sessions_first_autosave(
        _private_data_dir: Path) -> None:
    copy = _lost_session(_private_data_dir)
    app = make_app("mlp", offer_restore=True)
    async with app.run_test(size=SIZE) as pilot:
        await dialog(pilot)
        await pilot.press("n")  # discard it, deliberately
        await until(pilot, lambda: app.lab is not None, "the lab", 60)
        await settle(pilot)
        assert copy.exists(), "a declined copy went before anything replaced it"
    # the session ended with no change autosaved (a slip, then a kill): offered again
    app = make_app("mlp", offer_restore=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await dialog(pilot)
        assert isinstance(screen, ConfirmScreen) and str(copy) in screen.body
        await pilot.press("n")
        await until(pilot, lambda: app.lab is not None, "the lab", 60)
        await settle(pilot)
        await select(pilot, "1")
        await pilot.press("d")  # a change: its autosave replaces the declined copy
        await until(pilot, lambda: autosave.autosave_path().exists(), "the autosave", 30)
        assert not copy.exists()


async def test_enter_on_unsaved_changes_cancels_the_quit() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "1")
        await pilot.press("d")
        await settle(pilot)
        assert app.lab is not None and app.lab.dirty
        await pilot.press("q")
        await dialog(pilot)
        await pilot.press("enter")
        await pilot.pause()
        assert app.is_running and app.return_value is None and app.lab.dirty
        assert isinstance(app.screen, MainScreen)


async def test_enter_on_save_as_over_a_file_tuilab_did_not_open_keeps_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    theirs = tmp_path / "mlp.toml"
    theirs.write_text("# someone's notes, not a workspace\n")
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("S")
        await dialog(pilot)
        await pilot.press("enter")  # the suggested name: mlp.toml, which exists
        screen = await dialog(pilot)
        assert isinstance(screen, ConfirmScreen) and "already exists" in screen.body
        await pilot.press("enter")
        await pilot.pause()
        assert theirs.read_text() == "# someone's notes, not a workspace\n"
        assert isinstance(app.screen, MainScreen)
        await pilot.press("S", "enter")
        await dialog(pilot)
        await pilot.press("y")  # deliberately: overwritten
        await pilot.pause()
        assert "[model]" in theirs.read_text() or "model" in theirs.read_text()
        assert app.lab is not None and app.lab.path == Path("mlp.toml")


def test_the_suggested_save_as_name_stays_in_the_folder() -> None:
    from tuilab.core.filenames import default_save_path, safe_stem

    assert default_save_path("../../etc/passwd") == "etc_passwd.toml"
    assert default_save_path("a/b\\c") == "a_b_c.toml"
    assert default_save_path("..") == "model.toml"
    assert default_save_path("lenet") == "lenet.toml"
    assert "/" not in safe_stem("/" * 300) and safe_stem("x" * 300) == "x" * 100


async def test_save_as_suggests_a_name_inside_the_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from textual.widgets import Input

    from tuilab.core.lab import Lab
    from tuilab.core.workspace import load_workspace_arg

    monkeypatch.chdir(tmp_path)
    workspace = load_workspace_arg("mlp")
    hostile = replace(workspace.spec, name="../../outside")
    app = make_app(lab=Lab.from_workspace(Workspace(spec=hostile)))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("S")
        screen = await dialog(pilot)
        assert screen.query_one(Input).value == "outside.toml"


async def test_enter_on_reinitialising_trained_weights_keeps_them() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.lab is not None
        app.lab.runs.append(RunRecord(name="run 1", config={}, steps=[1], losses=[1.0],
                                      status="finished"))
        before = app.lab.model[0].weight.clone()
        await pilot.press("I")
        await dialog(pilot)
        await pilot.press("enter")  # a scheme
        screen = await dialog(pilot)
        assert isinstance(screen, ConfirmScreen)
        await pilot.press("enter")
        await pilot.pause()
        assert torch.equal(app.lab.model[0].weight, before)
        await pilot.press("I", "enter")
        await dialog(pilot)
        await pilot.press("y")  # deliberately
        await pilot.pause()
        assert not torch.equal(app.lab.model[0].weight, before)


@pytest.mark.parametrize("key", ["P", "c", "r", "ctrl+n", "l"])
async def test_enter_on_a_choice_or_prompt_keeps_what_is_current(key: str) -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        lab = app.lab
        assert lab is not None
        app.builder.focus()
        before = (workspace_to_text(lab.workspace()), lab.dtype_name, lab.device,
                  lab.model[0].weight.clone())
        await pilot.press(key)
        await dialog(pilot)
        await pilot.press("enter")
        await settle(pilot)
        after = (workspace_to_text(lab.workspace()), lab.dtype_name, lab.device)
        assert app.lab is lab, "the lab was replaced"
        assert after == before[:3]
        assert torch.equal(lab.model[0].weight, before[3])
