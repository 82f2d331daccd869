"""Make the README's screenshots: `python tests/snapshots/screenshots.py` (writes assets/*.svg).

Not a test (pytest does not collect it): the SVGs are pictures for people, regenerated when
the look changes, from the same app factory the tests use.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from textual.widgets import TabbedContent

from tuilab.app.app import TuilabApp, make_app
from tuilab.app.messages import LabChanged
from tuilab.core.lab import Lab
from tuilab.core.workspace import load_workspace_arg

ASSETS = Path(__file__).resolve().parents[2] / "assets"
SIZE = (150, 44)


async def _settle(app: TuilabApp, pilot) -> None:
    await pilot.pause()
    while app.summary_pending:
        await pilot.pause(0.05)
    await app.workers.wait_for_complete()
    await pilot.pause()


async def mlp() -> None:
    app = make_app(lab=Lab.from_workspace(load_workspace_arg("mlp")))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        app.builder.select_path("1")
        await pilot.pause()
        await pilot.press("slash", *"batchnorm1d", "enter")
        app.builder.focus()
        app.builder.select_path("0")
        await pilot.pause()
        await pilot.press("a")
        await _settle(app, pilot)
        app.inspector.query_one(TabbedContent).active = "parameters"
        await pilot.pause(0.2)
        app.save_screenshot("tuilab-mlp.svg", str(ASSETS))


async def resnet_forward() -> None:
    app = make_app(lab=Lab.from_workspace(load_workspace_arg("resnet")))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        app.inspector.query_one(TabbedContent).active = "buffers"
        await pilot.pause()
        _, update = app.lab.forward()
        app.post_message(LabChanged(update))
        app.code_log.add("out = net(x)")
        await pilot.pause(0.2)
        app.save_screenshot("tuilab-resnet-buffers.svg", str(ASSETS))


async def lenet_shape_error() -> None:
    app = make_app(lab=Lab.from_workspace(load_workspace_arg("lenet")))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        app._edit("remove", "flatten")
        await _settle(app, pilot)
        app.builder.select_path("fc1")
        await pilot.pause(1.2)
        app.save_screenshot("tuilab-lenet-shape-error.svg", str(ASSETS))


async def lesson_corr2d() -> None:
    app = make_app("mlp", lesson="001", lesson_step=6)
    async with app.run_test(size=SIZE) as pilot:
        while app.lessons.lab is None or app.lab is not app.lessons.lab:
            await pilot.pause(0.05)
        await _settle(app, pilot)
        await pilot.press("n")
        while app.lessons.result is None or not app.lessons.result.ok:
            await pilot.pause(0.05)
        await _settle(app, pilot)
        app.inspector.query_one(TabbedContent).active = "parameters"
        await pilot.pause(0.2)
        app.save_screenshot("tuilab-lesson.svg", str(ASSETS))


async def values_view() -> None:
    """The values view on shared_mlp's tied layer: the input chosen, a backward pass for its
    .grad, then net[2].weight[0, 0] = 100 set from the view (it shows at 4.weight too)."""
    app = make_app(lab=Lab.from_workspace(load_workspace_arg("shared_mlp")))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        await pilot.press("X")
        await pilot.press("home", "ctrl+k", *"torch.arange(8.).view(2, 4) / 8", "enter")
        await _settle(app, pilot)
        await pilot.press("b")
        await _settle(app, pilot)
        app.builder.select_path("2")
        await pilot.pause()
        await pilot.press("V")
        await _settle(app, pilot)
        app.screen.query_one("#values-set").focus()
        await pilot.press(*"[0, 0] = 100", "enter")
        await _settle(app, pilot)
        for widget in app.screen.query("Input"):
            widget.cursor_blink = False
        await pilot.pause(0.2)
        app.save_screenshot("tuilab-values.svg", str(ASSETS))


async def main() -> None:
    os.environ.setdefault("TUILAB_DATA_DIR", tempfile.mkdtemp())
    await mlp()
    await resnet_forward()
    await lenet_shape_error()
    await lesson_corr2d()
    await values_view()


if __name__ == "__main__":
    asyncio.run(main())
