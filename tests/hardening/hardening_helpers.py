"""Shared helpers for the hardening tests: a lab's whole state as comparable data, and
running the `tuilab` command in a subprocess."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parameter import is_lazy

from tuilab.core.lab import Lab
from tuilab.core.spec import ModelSpec, Node
from tuilab.core.workspace import Workspace, load_workspace_arg, workspace_to_text

REPO = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(REPO / "tests" / "app"))  # the app tests' helpers, shared, not copied
from app_helpers import select  # noqa: E402,F401  (re-exported for the hardening tests)


def lab_of(preset: str) -> Lab:
    return Lab.from_workspace(load_workspace_arg(preset))


def spec_of(children: list[Node], input_shape: tuple[int, ...], root: str = "Sequential",
            name: str = "m") -> ModelSpec:
    return ModelSpec(name=name, root=Node(name="", block=root, children=tuple(children)),
                     input_shape=input_shape)


def tensor_digest(t: torch.Tensor | None) -> Any:
    """Bit-exact identity of a tensor's values (None for meta / lazy / absent)."""
    if t is None:
        return None
    if is_lazy(t):
        return ("lazy", str(t.dtype))
    if t.is_meta:
        return ("meta", str(t.dtype), tuple(t.shape))
    data = t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
    return (str(t.dtype), tuple(t.shape), t.device.type,
            hashlib.sha256(bytes(data.numpy())).hexdigest())


def lab_state(lab: Lab) -> dict[str, Any]:
    """Everything a refused action must leave alone: the spec (as its file text), every
    tensor bit for bit (parameters, buffers, gradients), every module's mode, the lab's modes,
    code log, runs and input shape."""
    model = lab.model
    return {
        "spec": workspace_to_text(Workspace(spec=lab.spec)) if lab.editable else None,
        "tensors": {k: tensor_digest(v) for k, v in model.state_dict(keep_vars=True).items()},
        "grads": {n: tensor_digest(p.grad) for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "modules": [(n, type(m).__name__, m.training) for n, m in model.named_modules()],
        "modes": (lab.training, lab.device, lab.dtype_name, lab.input_shape),
        "code_log": list(lab.code_log),
        "runs": [r.to_data() for r in lab.runs],
        "busy": lab.busy_reason,
        "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks)
                     + len(m._backward_hooks) for m in model.modules()),
    }


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def error_lines(self) -> list[str]:
        return [line for line in self.text.splitlines()
                if line.startswith("error:") or ": error:" in line]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> CliResult:
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    done = subprocess.run([sys.executable, "-m", "tuilab", *args], capture_output=True,
                          text=True, cwd=cwd or REPO, env=full_env, timeout=timeout)
    return CliResult(done.returncode, done.stdout, done.stderr)


def file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def folder_listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def queue_key(app: Any, key: str) -> None:
    """Put a real key event in the app's queue, as the terminal driver does, and return at
    once (no wait for the app to handle it): keys queued this way arrive as fast as a user
    hammering them, or a terminal replaying buffered input."""
    from textual import events
    from textual.keys import _character_to_key

    if len(key) == 1 and not key.isalnum():
        key = _character_to_key(key)
    event = events.Key(key, key if len(key) == 1 else None)
    event.set_sender(app)
    app._driver.send_message(event)
