"""Real-ish models in the app, opened as a user opens them (`tuilab file.py:NAME`, confirmed
with a key): each opens without an error, `T` recomputes the shapes, a model that says
nothing usable about its input is asked about, and quitting after training it asks to save
the weights (default: keep them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from app_helpers import settle
from safetensors.torch import load_file
from test_runs import ready, start_run, text_of, wait_for
from textual.pilot import Pilot

from tuilab.app.app import TuilabApp, make_app
from tuilab.app.screens.dialogs import ConfirmScreen, TextPrompt, UnsavedScreen

SIZE = (120, 40)
MODELS = Path(__file__).parents[1] / "core" / "realish_models.py"


async def _open(pilot: Pilot[Any]) -> TuilabApp:
    """Confirm the import with a key and wait for the model and its shapes."""
    app = pilot.app
    assert isinstance(app, TuilabApp)
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirm")
    await pilot.press("y")
    await wait_for(pilot, lambda: app.lab is not None, what="the lab")
    await settle(pilot)
    await wait_for(pilot, lambda: app.summary is not None, what="the shapes")
    return app


@pytest.mark.parametrize("name", ["ResNetish", "ViTish", "ConfigViTish", "TinyLM", "DictNet",
                                  "TupleNet"])
async def test_each_real_model_opens_without_an_error(name: str) -> None:
    app = make_app(f"{MODELS}:{name}")
    async with app.run_test(size=SIZE) as pilot:
        await _open(pilot)
        assert app.lab is not None and app.lab.input_guess is not None
        assert app.lab.input_guess.ok
        assert app.summary.ok, app.summary.error
        assert not isinstance(app.screen, TextPrompt)  # nothing to ask
        before = app.summary
        await pilot.press("T")  # eval: the shapes are computed again
        await settle(pilot)
        assert app.summary is not before and app.summary.ok


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama"])
async def test_transformers_models_open_without_an_error(name: str) -> None:
    """GPT-2, BERT and Llama from transformers (small configs, offline): token ids guessed,
    shapes and MACs computed, `T` recomputes them; GPT-2's tied lm_head is marked."""
    pytest.importorskip("transformers")
    app = make_app(f"{MODELS}:{name}")
    async with app.run_test(size=SIZE) as pilot:
        await _open(pilot)
        assert app.lab is not None and app.lab.takes_tokens
        assert app.summary.ok, app.summary.error
        assert app.summary.total_macs > 0
        assert not isinstance(app.screen, TextPrompt)
        before = app.summary
        await pilot.press("T")
        await settle(pilot)
        assert not app.lab.training
        assert app.summary is not before and app.summary.ok
        if name == "gpt2":
            assert app.lab.snapshot.parameters["lm_head.weight"].shared_with == (
                "transformer.wte.weight",)


async def test_t_recomputes_the_shapes_and_clears_the_error() -> None:
    """A ResNet on a batch of one fails in train mode; `T` (the hint's own advice) switches
    to eval, and the shapes are computed again: the error goes (it stayed before)."""
    app = make_app(f"{MODELS}:ResNetish", input_shape="1,3,32,32")
    async with app.run_test(size=SIZE) as pilot:
        await _open(pilot)
        assert app.summary.error is not None
        assert "more than 1 value per channel" in app.summary.error.message
        await pilot.press("T")
        await settle(pilot)
        assert not app.lab.training
        assert app.summary.ok and app.summary.output_shape == (1, 10)
        await pilot.press("T")  # back to train mode: the error is back, as it should be
        await settle(pilot)
        assert app.summary.error is not None


async def test_a_model_that_tells_nothing_is_asked_about_showing_the_failure() -> None:
    app = make_app(f"{MODELS}:Pickyish")
    async with app.run_test(size=SIZE) as pilot:
        await _open(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt), what="the question")
        prompt = app.screen
        assert isinstance(prompt, TextPrompt)
        assert "invalid for input of size" in prompt.hint
        await pilot.press("home", "ctrl+k", *"2,7,9", "enter")
        await settle(pilot)
        assert app.lab.input_shape == (2, 7, 9)
        assert app.summary.ok and app.summary.output_shape == (2, 7)


async def _train_then_quit(pilot: Pilot[Any]) -> TuilabApp:
    """Open DictNet, train it 5 steps with real keys, press q: the weights question shows."""
    app = await _open(pilot)
    panel = await ready(pilot)
    await start_run(pilot, 5)
    await wait_for(pilot, lambda: bool(app.lab.runs) and app.lab.runs[-1].status != "running"
                   and not app.lab.busy_reason, what="the run")
    await settle(pilot)
    assert app.lab.runs[-1].status == "finished"
    assert "on output['logits']" in text_of(panel, "#run-status")  # says what it trained on
    assert app.lab.weights_unsaved
    await pilot.press("q")
    await pilot.pause()
    assert isinstance(app.screen, UnsavedScreen)
    return app


async def test_quitting_after_training_a_user_module_asks_to_save_its_weights(
        tmp_path: Path) -> None:
    target = tmp_path / "trained.safetensors"
    app = make_app(f"{MODELS}:DictNet")
    async with app.run_test(size=SIZE) as pilot:
        await _train_then_quit(pilot)
        await pilot.press("enter")  # the default is Cancel: nothing lost, still running
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, UnsavedScreen)
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("s")  # save
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt), what="the file name")
        assert app.screen.query_one("Input").value == "DictNet.safetensors"
        await pilot.press("home", "ctrl+k", *str(target.with_suffix("")), "enter")
        await pilot.pause()
    assert app.return_value == 0
    state = load_file(target)
    model = app.lab.model
    assert set(state) == set(model.state_dict())
    assert all((state[k] == v).all() for k, v in model.state_dict().items())


async def test_discarding_trained_weights_is_a_deliberate_key(tmp_path: Path,
                                                              monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app(f"{MODELS}:DictNet")
    async with app.run_test(size=SIZE) as pilot:
        await _train_then_quit(pilot)
        await pilot.press("d")
        await pilot.pause()
    assert app.return_value == 0
    assert not list(tmp_path.glob("*.safetensors"))


async def test_an_untrained_user_module_quits_without_asking() -> None:
    app = make_app(f"{MODELS}:DictNet")
    async with app.run_test(size=SIZE) as pilot:
        await _open(pilot)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 0
