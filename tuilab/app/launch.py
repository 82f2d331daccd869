"""`tuilab [SPEC]`: check the argument, then run the app (PyTorch loads after the first frame).

The argument is checked here, before the app starts, with the engine's plain-data readers (no
PyTorch import): an unknown preset, a broken .toml, a missing .py file or a bad
`--input-shape` prints one line and exits 2, as the other commands do, instead of opening an
app that can only show an error.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path


def launch(spec_arg: str, *, input_shape: str | None = None, lesson: str | None = None,
           lesson_step: int | None = None) -> int:
    """Run the lab on `spec_arg` (a preset, a workspace .toml, or file.py:NAME)."""
    from tuilab.core.errors import TuilabError
    from tuilab.core.usercode import describe, is_user_code_arg, split_arg

    workspace = None
    workspace_path = None
    try:
        if input_shape:
            from tuilab.core.edits import check_input_shape

            check_input_shape(input_shape)
        if is_user_code_arg(spec_arg):
            describe(split_arg(spec_arg)[0])  # the file exists and can be read
        else:
            from tuilab.app.app import _with_input_shape
            from tuilab.core.workspace import load_workspace_arg

            workspace = _with_input_shape(load_workspace_arg(spec_arg), input_shape)
            if spec_arg.endswith(".toml"):
                workspace_path = Path(spec_arg)
    except TuilabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {spec_arg}: {error.strerror or error}", file=sys.stderr)
        return 2

    # Importing textual and PyTorch allocates ~300k objects, and the collector would walk
    # them over and over while they all stay alive (~0.12 s of a 1.2 s torch import). The
    # app turns it back on once the lab is loaded or has failed to (`TuilabApp._lab_ready`).
    gc.disable()
    from tuilab.app.app import make_app

    app = make_app(spec_arg, workspace=workspace, workspace_path=workspace_path,
                   input_shape=input_shape, offer_restore=True, lesson=lesson,
                   lesson_step=lesson_step)
    app.run()
    code = app.return_code or 0
    abandonable = sys.modules.get("tuilab.core.abandonable")
    if abandonable is not None and abandonable.stuck_calls():
        # A user's forward that never returned still runs in its daemon thread, and PyTorch
        # or the thread pools could keep the interpreter's exit waiting: the app has shut
        # down and saved what it keeps, so end the process now.
        print("tuilab: your module's forward pass never returned; it was abandoned",
              file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
