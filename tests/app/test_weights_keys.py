"""Weights from the app: `w` saves the selected node's state_dict, `W` loads one, all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from app_helpers import lab_app, select, settle, type_into_focused

from tuilab.app.screens.dialogs import ConfirmScreen, TextPrompt
from tuilab.app.weights_flow import free_name


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


async def test_save_then_load_one_block_brings_its_weights_back(tmp_path: Path) -> None:
    app = lab_app("mlp")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await select(pilot, "2")
        saved = _state(app.lab.model[2])
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        await pilot.press("enter")  # the default: a new file
        await pilot.pause()
        path = tmp_path / "mlp-2.safetensors"
        assert path.exists()
        with torch.no_grad():
            app.lab.model[2].weight.fill_(42)
        await pilot.press("W")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        await pilot.press("enter")  # the default: the file saved last
        await settle(pilot)
        after = _state(app.lab.model[2])
        assert all(torch.equal(after[k], saved[k]) for k in saved)
        assert app.code_log.last.endswith(
            f"net[2].load_state_dict(load_file({str(path.resolve())!r}))")


async def test_a_file_that_does_not_fit_loads_nothing_and_names_the_mismatch(
        tmp_path: Path) -> None:
    app = lab_app("mlp")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        from safetensors.torch import save_file

        save_file({"weight": torch.ones(3, 3), "bias": torch.ones(3)}, "wrong.safetensors")
        await select(pilot, "2")
        before = _state(app.lab.model)
        lines = len(app.code_log.lines_text)
        await pilot.press("W")
        await pilot.pause()
        await type_into_focused(pilot, "wrong.safetensors")
        await pilot.press("enter")
        await settle(pilot)
        after = _state(app.lab.model)
        assert all(torch.equal(after[k], before[k]) for k in before)  # nothing half-loaded
        assert len(app.code_log.lines_text) == lines  # nothing logged
        messages = " ".join(str(n.message) for n in app._notifications)
        assert "weight is (10, 256) in the model, (3, 3) in the file" in messages


async def test_saving_over_an_existing_file_asks_and_cancel_keeps_it(tmp_path: Path) -> None:
    app = lab_app("mlp")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        Path("keep.safetensors").write_bytes(b"precious")
        await select(pilot, "")
        await pilot.press("w")
        await pilot.pause()
        assert app.screen.query_one("#prompt-input").value == str(tmp_path / "mlp.safetensors")
        await type_into_focused(pilot, "keep.safetensors")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")  # the focused answer is Cancel
        await pilot.pause()
        assert Path("keep.safetensors").read_bytes() == b"precious"
        await pilot.press("w")
        await pilot.pause()
        await type_into_focused(pilot, "keep.safetensors")
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("y")  # yes, overwrite
        await settle(pilot)
        assert Path("keep.safetensors").read_bytes() != b"precious"


def test_the_default_name_never_names_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "lenet.safetensors").write_bytes(b"")
    (tmp_path / "lenet-2.safetensors").write_bytes(b"")
    assert free_name("lenet", folder=tmp_path) == tmp_path / "lenet-3.safetensors"
