"""The code log replays: scripted sessions' logs, run with plain PyTorch (tuilab cannot be
imported there), end with the lab's model, state_dict bit for bit and output alike.

Each action kind is one entry of ACTIONS (a name and what it does to a Lab); a session is a
preset and a list of action names. A new action kind is one more entry, and the last test
fails until some session uses it.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tuilab.core.codelog import script_text
from tuilab.core.lab import Lab
from tuilab.core.workspace import load_workspace_arg

# The script runs in `python -I` with tuilab made unimportable, then the check below.
_RUNNER = """
import sys
sys.modules["tuilab"] = None  # the log must not need tuilab
import torch
namespace = {"__name__": "__main__"}
source = open(sys.argv[1]).read()
exec(compile(source, sys.argv[1], "exec"), namespace)
net = namespace["net"]
x = torch.load(sys.argv[2], weights_only=True)
torch.manual_seed(1234)
with torch.no_grad():
    out = net(x)
torch.save({"state": net.state_dict(), "out": out}, sys.argv[3])
"""


def _first_leaf_path(lab: Lab, block: str) -> str:
    return next(path for path, node in _walk(lab) if node.block == block and node.ref is None)


def _walk(lab: Lab):
    from tuilab.core.spec import walk

    return walk(lab.spec.root)


def _train(lab: Lab) -> None:
    run = lab.start_run({"steps": 3, "batch_size": 4, "val_every": 100})
    for _ in lab.train(run, threading.Event()):
        pass
    lab.after_run(run)


def _grad_cam(lab: Lab) -> None:
    from tuilab.core import views

    data = lab.task_data(views.grad_cam_task(lab))
    lab.grad_cam_code(data, views.grad_cam_view(lab.model, data, 0))


def _hooks(lab: Lab) -> None:
    first, _ = lab.add_hook(_first_leaf_path(lab, lab.spec.root.children[0].block), "forward",
                            "shapes")
    lab.add_hook("", "forward_pre", "stats")
    lab.forward()
    lab.remove_hook(first)


def _width(lab: Lab) -> int:
    """The last Linear's out_features: a Linear(k, k) added at the end keeps the model whole."""
    return [n.args["out_features"] for _, n in _walk(lab) if n.block == "Linear"
            and n.ref is None][-1]


def _square_linear(lab: Lab) -> str:
    return next(p for p, n in _walk(lab) if n.block == "Linear" and n.ref is None
                and n.args["in_features"] == n.args["out_features"])


def _weights(lab: Lab) -> None:
    """Save the first Linear's weights, overwrite them with an init, load them back; and the
    whole model's, through a .pt file written by PyTorch itself."""
    node = _first_leaf_path(lab, "Linear")
    folder = Path(lab._save_data("dir", {})).parent
    lab.save_state_dict(folder / "block.safetensors", node)
    lab.initialise(node, "constant")
    lab.load_state_dict(folder / "block.safetensors", node)
    torch.save(lab.model.state_dict(), folder / "whole.pt")
    lab.initialise("", "normal")
    lab.load_state_dict(folder / "whole.pt")


ACTIONS: dict[str, Callable[[Lab], object]] = {
    "add": lambda lab: lab.edit("add", "Linear", args={"in_features": _width(lab),
                                                       "out_features": _width(lab)}),
    "add_at": lambda lab: lab.edit("add", "Dropout", "", 1),
    "add_into": lambda lab: lab.edit("add", "Sequential"),
    "indent": lambda lab: lab.edit("indent", lab.spec.root.children[-1].name),
    "outdent": lambda lab: lab.edit(
        "outdent", f"{lab.spec.root.children[-1].name}."
        f"{lab.spec.root.children[-1].children[0].name}"),
    "remove": lambda lab: lab.edit("remove", lab.spec.root.children[1].name),
    "remove_last": lambda lab: lab.edit("remove", lab.spec.root.children[-1].name),
    "move_up": lambda lab: lab.edit("move", lab.spec.root.children[2].name, -1),
    "move_down": lambda lab: lab.edit("move", lab.spec.root.children[0].name, 1),
    "duplicate": lambda lab: lab.edit("duplicate", _square_linear(lab)),
    "rename": lambda lab: lab.edit("rename", lab.spec.root.children[1].name, "act"),
    "set_args": lambda lab: lab.edit("set_args", _first_leaf_path(lab, "Linear"),
                                     {"bias": False}),
    "set_args_shared": lambda lab: lab.edit("set_args", "4", {"bias": False}),
    "share": lambda lab: lab.edit("share", _first_leaf_path(lab, "Dropout"), "", 0),
    "freeze": lambda lab: lab.edit("set_frozen", lab.spec.root.children[0].name, True),
    "input_shape": lambda lab: lab.set_input_shape(",".join(map(str, lab.input_shape))),
    "undo": lambda lab: lab.edit("undo"),
    "redo": lambda lab: lab.edit("redo"),
    "forward": lambda lab: lab.forward(),
    "backward": lambda lab: lab.backward(),
    "zero_grad": lambda lab: lab.zero_grad(),
    "eval": lambda lab: lab.set_training(False),
    "train": lambda lab: lab.set_training(True),
    "float64": lambda lab: lab.set_dtype("float64"),
    "init_normal": lambda lab: lab.initialise("", "normal"),
    "init_42": lambda lab: lab.initialise("", "constant"),
    "init_my": lambda lab: lab.initialise(_first_leaf_path(lab, "Linear"), "my_init"),
    "init_xavier": lambda lab: lab.initialise("", "xavier_uniform"),
    "init_kaiming": lambda lab: lab.initialise("", "kaiming_normal"),
    "hooks": _hooks,
    "grad_cam": _grad_cam,
    "training": _train,
    "weights": _weights,
    "set_input": lambda lab: lab.set_input(
        f"torch.rand({', '.join(map(str, lab.input_shape))}) * 2 - 1"),
    "set_value": lambda lab: lab.set_value(f"{_first_leaf_path(lab, 'Linear')}.weight[0, 0] = 100"),
    "backward_grad": lambda lab: lab.backward("torch.ones_like(out) / 2"),
}

SESSIONS: dict[str, tuple[str, list[str]]] = {
    "mlp": ("mlp", ["add", "add_at", "set_args", "duplicate", "move_up", "move_down", "undo",
                    "remove", "undo", "redo", "rename", "freeze", "input_shape", "share",
                    "forward", "backward", "zero_grad", "init_normal", "init_42", "init_my",
                    "hooks", "add_into", "add", "indent", "outdent", "undo", "undo", "redo",
                    "training", "eval", "add", "forward", "train", "float64", "add",
                    "init_xavier", "forward"]),
    "mysequential": ("mysequential", ["add", "add_at", "remove", "move_up", "undo",
                                      "set_args", "duplicate", "undo", "redo", "remove_last",
                                      "undo", "forward", "init_kaiming", "weights",
                                      "add_into", "add", "indent", "undo", "redo",
                                      "forward"]),
    "shared_mlp": ("shared_mlp", ["weights", "set_value", "undo", "set_value", "set_input",
                                  "forward", "backward_grad", "set_args_shared", "forward",
                                  "remove", "undo",
                                  "duplicate", "init_my", "undo", "redo", "backward"]),
    "lenet": ("lenet", ["add_at", "move_up", "undo", "rename", "remove", "undo", "set_args",
                        "forward", "backward", "grad_cam", "training", "eval", "init_kaiming",
                        "add", "forward"]),
}


def _replay(lab: Lab, tmp_path: Path) -> dict:
    script = tmp_path / "session.py"
    script.write_text(script_text(lab.code_log))
    runner = tmp_path / "runner.py"
    runner.write_text(_RUNNER)
    x = lab.make_input()
    torch.save(x, tmp_path / "x.pt")
    result = subprocess.run(
        [sys.executable, "-I", str(runner), str(script), str(tmp_path / "x.pt"),
         str(tmp_path / "out.pt")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:] + "\n---\n" + script.read_text()[-3000:]
    return torch.load(tmp_path / "out.pt", weights_only=True) | {"x": x}


@pytest.mark.parametrize("session", sorted(SESSIONS))
def test_the_log_of_a_session_replays_to_the_same_model(session: str, tmp_path: Path) -> None:
    preset, steps = SESSIONS[session]
    lab = Lab.from_workspace(load_workspace_arg(preset))
    for step in steps:
        ACTIONS[step](lab)
    replayed = _replay(lab, tmp_path)
    state = lab.model.state_dict()
    assert list(replayed["state"]) == list(state)
    for key, value in state.items():
        got = replayed["state"][key]
        assert got.dtype == value.dtype and got.shape == value.shape, key
        assert torch.equal(got, value), f"{key} differs after replaying {session}"
    model = copy.deepcopy(lab.model)
    torch.manual_seed(1234)
    with torch.no_grad():
        out = model(replayed["x"])
    assert torch.equal(replayed["out"], out)


def test_every_action_kind_is_replayed_in_some_session() -> None:
    used = {step for _, steps in SESSIONS.values() for step in steps}
    assert set(ACTIONS) - used == set()


def test_mysequential_is_edited_through_its_modules_dict() -> None:
    """MySequential has no __getitem__/__setitem__/__delitem__: no line may index it."""
    preset, steps = SESSIONS["mysequential"]
    lab = Lab.from_workspace(load_workspace_arg(preset))
    for step in steps:
        if step != "weights":
            ACTIONS[step](lab)
    body = "\n".join(lab.code_log[1:])
    assert "net._modules[" in body
    assert "net[" not in body and "del net" not in body


def test_undo_and_redo_are_operations_not_comments() -> None:
    lab = Lab.from_workspace(load_workspace_arg("mlp"))
    lab.edit("remove", "1")
    undo = lab.edit("undo").code.splitlines()
    redo = lab.edit("redo").code.splitlines()
    assert undo[0] == "# undo: remove 1" and "removed1" in undo[1]
    assert redo[0] == "# redo: remove 1" and not redo[1].startswith("#")
