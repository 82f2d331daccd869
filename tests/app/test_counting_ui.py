"""What the app shows of the counting: tied weights on both rows, the memory plan in the header."""

from __future__ import annotations

from dataclasses import replace

from app_helpers import builder_labels, lab_app, module_labels, settle

from tuilab.app.app import make_app
from tuilab.bench.zoo import TiedLM
from tuilab.core.lab import Lab
from tuilab.core.units import size_text

SIZE = (160, 48)


async def test_tied_weight_marked_in_inspector_and_builder() -> None:
    lab = Lab(module=TiedLM(), input_shape=(2, 16), name="TiedLM", takes_tokens=True,
              vocab_size=100)
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        modules = module_labels(app)
        assert "weight ⇄ embed.weight" in modules["head"]
        assert "weight ⇄ head.weight" in modules["embed"]
        assert "⇄" not in modules["block"]
        builder = builder_labels(app)
        assert "weight ⇄ embed.weight" in builder["head"]
        assert "weight ⇄ head.weight" in builder["embed"]


async def test_header_shows_the_training_step_peak_and_whether_it_fits() -> None:
    app = lab_app("lenet")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        plan = app.header.memory
        assert plan is not None and plan.params_bytes == 61_706 * 4
        text = app.header.text
        assert f"step {size_text(plan.train_peak_bytes)} fits" in text
        app.header.show_memory(replace(plan, free={"cpu": 1}))
        await pilot.pause()
        assert "too big" in app.header.text
