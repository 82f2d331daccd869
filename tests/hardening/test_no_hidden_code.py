"""Nothing runs behind the user's back: a preset or workspace can only name palette blocks
(nothing is imported for a name like `os.system`), a workspace never imports code by itself,
the user's own file is imported only after they saw its path and SHA-256 and said yes, and
nothing — the app from start to quit, `summary`, `train` — opens a network connection.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest
from hardening_helpers import REPO, lab_of, run_cli

from tuilab.core.errors import SpecFileError
from tuilab.core.lab import Lab
from tuilab.core.workspace import load_workspace

MLP = (REPO / "presets" / "mlp.toml").read_text()
NAMES = ["os.system", "builtins.eval", "subprocess.run", "antigravity", "this",
         "webbrowser.open", "importlib.import_module", "torch.hub.load", "pickle.loads",
         "http.server:HTTPServer", "tuilab_user_deadbeef:Net", "evil.py:Net", "__import__"]


def _marker_file(folder: Path) -> tuple[Path, Path]:
    """A user file whose import creates a marker: proof of whether it was imported."""
    marker = folder / "IMPORTED"
    source = folder / "evil.py"
    source.write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
                      "from torch import nn\nclass Net(nn.Sequential):\n"
                      "    def __init__(self):\n        super().__init__(nn.Linear(2, 2))\n")
    return source, marker


@pytest.mark.parametrize("name", NAMES)
def test_a_file_naming_code_as_a_block_is_refused_and_nothing_is_imported(
        tmp_path: Path, name: str) -> None:
    path = tmp_path / "work.toml"
    path.write_text(MLP.replace('block = "ReLU"', f'block = "{name}"'))
    load_workspace(REPO / "presets" / "mlp.toml")  # warm: what a good file imports
    before = set(sys.modules)
    with pytest.raises(SpecFileError, match=r"unknown block .*blocks come from tuilab's palette"):
        Lab.open(path)
    assert set(sys.modules) - before == set()


def test_the_refused_names_import_nothing_in_a_fresh_process(tmp_path: Path) -> None:
    """The same in a process that has imported nothing else (sys.modules is honest there)."""
    import subprocess

    for i, name in enumerate(NAMES):
        (tmp_path / f"w{i}.toml").write_text(MLP.replace('block = "ReLU"', f'block = "{name}"'))
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tuilab.core.errors import SpecFileError\n"
        "from tuilab.core.workspace import load_workspace\n"
        f"load_workspace(Path({str(REPO / 'presets' / 'mlp.toml')!r}))\n"
        "before = set(sys.modules)\n"
        "refused = 0\n"
        f"for path in sorted(Path({str(tmp_path)!r}).glob('w*.toml')):\n"
        "    try:\n"
        "        load_workspace(path)\n"
        "    except SpecFileError:\n"
        "        refused += 1\n"
        "print(refused, sorted(set(sys.modules) - before), 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert done.stdout.split(maxsplit=1) == [str(len(NAMES)), "[] False\n"], done.stderr


def test_a_workspace_never_imports_code_by_itself(tmp_path: Path) -> None:
    """A workspace mentioning a user file (as its name, description or task) is data."""
    source, marker = _marker_file(tmp_path)
    text = MLP.replace('name = "mlp"', f'name = "{source}:Net"').replace(
        'task = "teacher"', f'task = "{source}"')
    path = tmp_path / "work.toml"
    path.write_text(text)
    lab = Lab.open(path)
    assert lab.name == f"{source}:Net" and not marker.exists()
    lab.summary()
    lab.forward()
    assert not marker.exists()


async def test_the_app_shows_the_users_file_before_importing_it(tmp_path: Path) -> None:
    from tuilab.app.app import make_app
    from tuilab.app.screens.dialogs import ConfirmScreen

    source, marker = _marker_file(tmp_path)
    import hashlib

    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    app = make_app(f"{source}:Net")
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 10
        while not isinstance(app.screen, ConfirmScreen) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert isinstance(app.screen, ConfirmScreen)
        assert str(source.resolve()) in app.screen.body and digest in app.screen.body
        assert not marker.exists()
        await pilot.press("n")  # no: quit without importing
        await pilot.pause()
    assert app.return_code == 1 and not marker.exists()
    # the counterpart: saying yes imports it (so the marker does prove an import)
    app = make_app(f"{source}:Net")
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 10
        while not isinstance(app.screen, ConfirmScreen) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.press("y")
        deadline = time.monotonic() + 60
        while app.lab is None and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert app.lab is not None and marker.exists()


# --------------------------------------------------------------------------------------------
# no network


class _Network:
    """Every way out to the network, replaced by a recorder that fails loudly."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.attempts: list[str] = []

        def refuse(what: str):
            def call(*args: object, **kwargs: object) -> None:
                self.attempts.append(f"{what}{args[1:] if what.startswith('socket.') else args}")
                raise OSError(f"tuilab tried the network: {what}")
            return call

        monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
        monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
        monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
        monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))


async def test_the_app_from_start_to_quit_opens_no_connection(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tuilab.app.app import make_app
    from tuilab.app.screens.dialogs import UnsavedScreen

    network = _Network(monkeypatch)
    # the recorder works: a connection attempt is caught and refused
    with pytest.raises(OSError, match="tried the network"):
        socket.create_connection(("example.com", 80))
    assert network.attempts
    network.attempts.clear()
    app = make_app("mlp")  # the CLI's way: PyTorch and the lab load in a worker
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 60
        while app.lab is None and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert app.lab is not None
        for key in ["f", "T", "f", "b", "a", "ctrl+z", "question_mark", "escape"]:
            await pilot.press(key)
        await app.workers.wait_for_complete()
        await pilot.press("q")
        await pilot.pause()
        if isinstance(app.screen, UnsavedScreen):
            await pilot.press("d")
        await pilot.pause()
    assert app.return_code == 0
    assert network.attempts == []


SITECUSTOMIZE = """\
import socket
from pathlib import Path

_log = Path({log!r})
_log.write_text("loaded\\n")


def _refuse(what):
    def call(*args, **kwargs):
        with _log.open("a") as handle:
            handle.write(f"ATTEMPT {{what}} {{args[1:]!r}}\\n")
        raise OSError(f"network attempt: {{what}}")
    return call


socket.socket.connect = _refuse("connect")
socket.socket.connect_ex = _refuse("connect_ex")
socket.create_connection = _refuse("create_connection")
socket.getaddrinfo = _refuse("getaddrinfo")
"""


@pytest.mark.parametrize("args", [["summary", "lenet"], ["train", "mlp", "--steps", "20"]],
                         ids=["summary", "train"])
def test_the_cli_opens_no_connection(tmp_path: Path, args: list[str]) -> None:
    log = tmp_path / "network.log"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(log=str(log)))
    result = run_cli(*args, cwd=tmp_path, env={"PYTHONPATH": f"{site}:{REPO}"})
    assert result.code == 0, result.text
    lines = log.read_text().splitlines()
    assert lines[0] == "loaded"  # the guard was in place in that process
    assert [line for line in lines if line.startswith("ATTEMPT")] == []


def test_the_guard_would_catch_a_connection(tmp_path: Path) -> None:
    """The sitecustomize guard is real: a process that connects is caught and logged."""
    import subprocess

    log = tmp_path / "network.log"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(log=str(log)))
    subprocess.run([sys.executable, "-c", "import socket\ntry:\n socket.create_connection("
                    "('example.com', 80))\nexcept OSError:\n pass"],
                   env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, timeout=60,
                   check=True)
    assert "ATTEMPT create_connection" in log.read_text()


def test_loading_the_lab_itself_opens_no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    network = _Network(monkeypatch)
    lab = lab_of("lenet")
    lab.forward()
    lab.summary()
    assert network.attempts == []
