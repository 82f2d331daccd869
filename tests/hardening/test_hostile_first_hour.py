"""Issue 13's hostile cases (4a, 4b, 4d, 4e, 4h) and the first commands (6, 7, 8).

Each case was a crash, a hang, a terminal injection or an unclear message before its fix:
control characters and markup in names, special files (/dev/zero, a FIFO), memory guards that
forgot buffers, inputs and compressed archives, `tuilab train` paths that ended in a
traceback, and messages a newcomer could not act on.
"""

from __future__ import annotations

import io
import os
import re
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hardening_helpers import REPO, run_cli, spec_of
from rich.console import Console

from tuilab.core.errors import EditError, SpecFileError
from tuilab.core.lab import Lab
from tuilab.core.spec import make_node
from tuilab.core.weights import WeightsError, read_weights, save_weights
from tuilab.core.workspace import Workspace, load_workspace, save_workspace

MLP = (REPO / "presets" / "mlp.toml").read_text()
ESCAPES = "\x1b[2J\x1b]0;pwned\x07"


def _named(folder: Path, name: str, file: str = "named.toml") -> Path:
    path = folder / file
    path.write_text(MLP.replace('name = "mlp"', f"name = {_toml_string(name)}", 1))
    return path


def _toml_string(text: str) -> str:
    import tomli_w

    return tomli_w.dumps({"x": text}).split(" = ", 1)[1].strip()


# --- 4a: terminal injection -------------------------------------------------------------------
@pytest.mark.parametrize("name", [ESCAPES, "a\x9bb", "right\u202eleft", "tab\tname"])
def test_a_model_name_with_control_characters_is_refused_on_load(tmp_path: Path,
                                                                 name: str) -> None:
    with pytest.raises(SpecFileError, match=r"model\.name: .*control character"):
        load_workspace(_named(tmp_path, name))


def test_a_node_name_with_an_escape_is_refused_on_load_and_on_edit(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(MLP.replace('{ name = "1", block = "ReLU" }',
                                '{ name = "\\u001b[2J", block = "ReLU" }'))
    with pytest.raises(SpecFileError, match=r"control character \\x1b"):
        load_workspace(path)
    lab = Lab.from_workspace(load_workspace(REPO / "presets" / "mlp.toml"))
    with pytest.raises(EditError, match="control character"):
        lab.edit("rename", "1", "\x1b]0;title\x07")
    with pytest.raises(EditError, match="control character"):
        lab.edit("rename", "", ESCAPES)
    assert lab.name == "mlp" and [c.name for c in lab.spec.root.children] == ["0", "1", "2"]


def test_the_cli_never_sends_a_control_character_it_was_given(tmp_path: Path) -> None:
    result = run_cli("summary", str(_named(tmp_path, ESCAPES)))
    assert result.code == 2 and "\x1b" not in result.text and "\x07" not in result.text
    assert "\\x1b[2J" in result.err  # shown escaped, so the user sees what the file holds


@pytest.mark.parametrize("name", ["[/bold]", "[link=https://example.com]click[/link]",
                                  "[red]x"])
def test_a_name_that_looks_like_markup_is_printed_as_it_is(tmp_path: Path, name: str) -> None:
    result = run_cli("summary", str(_named(tmp_path, name)))
    assert result.code == 0, result.text
    assert "Traceback" not in result.text and "MarkupError" not in result.text
    assert result.out.splitlines()[0].startswith(f"{name} · input (2, 20)")


def test_printable_escapes_what_a_terminal_would_obey() -> None:
    from tuilab.core.safe_text import printable

    assert printable(ESCAPES) == "\\x1b[2J\\x1b]0;pwned\\x07"
    assert printable("a\u202eb\x9b") == "a\\u202eb\\x9b"
    assert printable("two\nlines\ttab", lines=True) == "two\nlines\ttab"
    assert printable("plain [bold] · ünïcode") == "plain [bold] · ünïcode"


def test_the_app_labels_show_a_user_modules_odd_names_escaped() -> None:
    from tuilab.app.widgets.inspector import module_label
    from tuilab.core.introspect import snapshot

    net = torch.nn.Sequential()
    net.add_module("\x1b[2J", torch.nn.ReLU())
    row = snapshot(net).modules["\x1b[2J"]
    assert module_label(row).plain.startswith("\\x1b[2J  ReLU")


# --- 4b: special files ------------------------------------------------------------------------
@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.toml"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("args", [["summary", "{f}"], ["export", "{f}"],
                                  ["train", "{f}", "--steps", "1"], ["{f}"]],
                         ids=["summary", "export", "train", "app"])
@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_device_or_fifo_is_refused_without_reading_it(fifo: Path, args: list[str],
                                                       special: str) -> None:
    target = "/dev/zero" if special == "/dev/zero" else str(fifo)
    result = run_cli(*[a.replace("{f}", target) for a in args], timeout=60)
    assert result.code == 2, result.text
    kind = "a device" if special == "/dev/zero" else r"a named pipe \(FIFO\)"
    assert re.search(rf"is {kind}; tuilab reads regular files only", result.err), result.text
    assert "Traceback" not in result.text


def test_the_apps_open_and_the_weights_reader_refuse_a_fifo(fifo: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecFileError, match=r"named pipe"):
        Lab.open(fifo)  # what the app's open (ctrl+o) calls, in a worker that would block
    weights = tmp_path / "w.safetensors"
    os.mkfifo(weights)
    with pytest.raises(WeightsError, match=r"named pipe"):
        read_weights(weights)
    with pytest.raises(WeightsError, match=r"is a device"):
        read_weights("/dev/zero")
    code = tmp_path / "net.py"
    os.mkfifo(code)
    from tuilab.core.usercode import describe

    with pytest.raises(SpecFileError, match=r"named pipe"):
        describe(code)


def test_a_file_that_grows_past_the_limit_is_cut_off_at_the_limit(tmp_path: Path) -> None:
    from tuilab.core.files import read_regular_file

    path = tmp_path / "x.toml"
    path.write_bytes(b"x" * 101)
    with pytest.raises(SpecFileError, match=r"is 101 bytes"):
        read_regular_file(path, limit=100)
    assert read_regular_file(path, limit=101) == b"x" * 101


def test_a_toml_with_a_utf8_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MLP.encode())
    assert load_workspace(path).spec.name == "mlp"


# --- 4d: memory guards ------------------------------------------------------------------------
def test_buffers_count_toward_the_size_guard() -> None:
    bn = make_node("BatchNorm1d", "0", {"num_features": 10**9, "affine": False})
    lab = Lab(spec_of([bn], (2, 10)))  # no parameter, 8 GB of running statistics
    assert lab.on_meta and lab.too_large_bytes >= 8 * 10**9
    assert "parameters and buffers" in lab.too_large_message()


def test_an_edit_adding_huge_buffers_is_refused() -> None:
    from tuilab.core.errors import ModeError

    lab = Lab.from_workspace(load_workspace(REPO / "presets" / "mlp.toml"))
    with pytest.raises(ModeError, match=r"parameters and buffers"):
        lab.edit("add", "BatchNorm1d", "", None,
                 args={"num_features": 10**9, "affine": False})


@pytest.mark.parametrize("shape", ["107374182,20", "1,2000000000"])
def test_an_input_too_large_to_make_is_refused_before_allocating(shape: str) -> None:
    lab = Lab.from_workspace(load_workspace(REPO / "presets" / "mlp.toml"))
    with pytest.raises(EditError, match=r"more than the 268,435,456 \(1 GiB as float32\)"):
        lab.set_input_shape(shape)
    assert lab.input_shape == (2, 20)


def test_train_refuses_a_workspace_whose_input_cannot_be_made(tmp_path: Path) -> None:
    path = tmp_path / "wide.toml"
    path.write_text(MLP.replace("input_shape = [\n    2,\n    20,\n]",
                                "input_shape = [1, 2000000000]"))
    result = run_cli("train", str(path), "--steps", "1")
    assert result.code == 2 and "Traceback" not in result.text
    assert "has 2,000,000,000 elements" in result.err


def _deflated(source: Path, target: Path) -> None:
    with zipfile.ZipFile(source) as plain, zipfile.ZipFile(
            target, "w", compression=zipfile.ZIP_DEFLATED) as packed:
        for info in plain.infolist():
            packed.writestr(info.filename, plain.read(info.filename))


def test_a_compressed_pt_is_refused_before_anything_is_inflated(tmp_path: Path) -> None:
    torch.save({"0.weight": torch.zeros(2**20)}, tmp_path / "plain.pt")  # 4 MiB of zeros
    _deflated(tmp_path / "plain.pt", tmp_path / "bomb.pt")
    assert (tmp_path / "bomb.pt").stat().st_size < 64 * 1024
    with pytest.raises(WeightsError, match=r"holds compressed members"):
        read_weights(tmp_path / "bomb.pt")
    from tuilab.core.tasks import load_user_data

    torch.save({"x": torch.zeros(2**18, 2), "y": torch.zeros(2**18)}, tmp_path / "d.pt")
    _deflated(tmp_path / "d.pt", tmp_path / "dbomb.pt")
    with pytest.raises(ValueError, match=r"holds compressed members"):
        load_user_data(tmp_path / "dbomb.pt")


def test_a_pt_over_the_limit_is_refused_before_torch_reads_it(tmp_path: Path) -> None:
    from tuilab.core.files import check_torch_archive

    torch.save({"w": torch.zeros(1000)}, tmp_path / "w.pt")
    assert check_torch_archive(tmp_path / "w.pt", limit=10**6) is True
    with pytest.raises(SpecFileError, match=r"is 5,\d{3} bytes .*up to 3 KiB"):
        check_torch_archive(tmp_path / "w.pt", limit=3000)


# --- 4e: tuilab train ---------------------------------------------------------------------
def test_saving_weights_where_the_temp_file_cannot_be_made_is_a_weights_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # a read-only folder (root ignores modes)
    with pytest.raises(WeightsError, match=r"could not be written: Permission denied"):
        save_weights(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_saving_weights_is_a_weights_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors import SafetensorError

    import tuilab.core.weights as weights

    def full(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(weights, "save_file", full)
    with pytest.raises(WeightsError, match=r"No space left on device"):
        save_weights(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


@pytest.mark.parametrize("losses", [[0.1, float("inf")], [float("inf")],
                                    [0.1, 1e19, float("nan")]])
def test_the_loss_plot_of_a_diverged_run_draws_what_is_finite(losses: list[float]) -> None:
    from tuilab.cli_train import _plot

    console = Console(file=io.StringIO(), width=100)
    _plot(console, list(range(len(losses))), losses, [], [])  # raised "cannot convert NaN"


def test_a_diverging_run_prints_the_nan_message_not_a_traceback(tmp_path: Path) -> None:
    result = run_cli("train", "mlp", "--lr", "1e6", "--optimizer", "sgd", "--steps", "100",
                     cwd=tmp_path)
    assert result.code == 1 and "Traceback" not in result.text
    assert re.search(r"error: step \d+: the loss is (nan|inf)", result.err)


def test_a_workspace_with_a_lazy_module_trains(tmp_path: Path) -> None:
    path = save_workspace(Workspace(spec=spec_of(
        [make_node("LazyLinear", "0", {"out_features": 10})], (4, 20))), tmp_path / "lazy.toml")
    result = run_cli("train", str(path), "--steps", "5", "--json")
    assert result.code == 0, result.text
    assert '"steps": 5' in result.out


# --- 4h: messages -----------------------------------------------------------------------------
def test_a_refused_pt_names_the_global_without_torchs_unsafe_advice(tmp_path: Path) -> None:
    import numpy as np

    torch.save({"0.weight": np.zeros(3)}, tmp_path / "np.pt")
    with pytest.raises(WeightsError) as caught:
        read_weights(tmp_path / "np.pt")
    message = str(caught.value)
    assert re.search(r"needs the Python object numpy\.(_)?core\.multiarray\._reconstruct",
                     message)
    assert "weights_only` set to `False`" not in message and "\x1b" not in message
    from tuilab.core.tasks import load_user_data

    torch.save({"x": np.zeros(3), "y": np.zeros(3)}, tmp_path / "data.pt")
    with pytest.raises(ValueError) as caught_data:
        load_user_data(tmp_path / "data.pt")
    assert "weights_only` set to `False`" not in str(caught_data.value)
    assert "Weights only load failed" not in str(caught_data.value)


def test_a_huge_block_argument_is_refused_by_the_argument_check(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text(MLP.replace("out_features = 256", "out_features = 100000000000000000000"))
    result = run_cli("summary", str(path))
    assert result.code == 2, result.text
    assert "is too large: expected an integer up to 1,099,511,627,776" in result.err
    assert "frame #" not in result.text and "Traceback" not in result.text


@pytest.mark.parametrize("option", ["--steps", "--batch-size", "--seed"])
def test_a_huge_cli_integer_is_refused_by_argparse(option: str) -> None:
    result = run_cli("train", "mlp", option, "100000000000000000000", timeout=60)
    assert result.code == 2 and "is out of range" in result.err


def test_a_workspace_task_naming_a_data_file_trains_on_it(tmp_path: Path) -> None:
    rows = [",".join(f"{(i * 7 + j) % 10 / 10:.1f}" for j in range(20)) + f",{i % 3}"
            for i in range(40)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    workspace = tmp_path / "ws.toml"
    workspace.write_text(MLP.replace('task = "teacher"', 'task = "data.csv"'))
    result = run_cli("train", str(workspace), "--steps", "3", "--json", cwd=REPO)
    assert result.code == 0, result.text  # found beside the workspace, not in the cwd
    assert '"task": "data.csv"' in result.out and '"final_val_accuracy"' in result.out
    lab = Lab.open(workspace)  # the app's runs take their data through the lab
    assert tuple(lab.task_data("data.csv").x_train.shape[1:]) == (20,)


def test_a_shape_error_leads_with_our_sentence() -> None:
    from tuilab.core.shapes import summarize_spec

    spec = spec_of([make_node("Linear", "0", {"in_features": 5, "out_features": 2})], (2, 7))
    message = summarize_spec(spec).error.message
    assert message.startswith("Linear cannot take its input of shape (2, 7): ")


# --- 7: help, stderr, one prefix --------------------------------------------------------------
def test_every_option_of_every_subcommand_says_its_default() -> None:
    import argparse

    from tuilab.cli import _command_parser

    parser = _command_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            where = f"{name} {action.option_strings[-1]}"
            assert action.help and "default" in action.help, where
            for choice in action.choices or ():
                assert choice in action.help, f"{where} does not name {choice}"


def test_the_help_lists_the_real_tasks_and_dtypes() -> None:
    from tuilab.cli import DTYPE_CHOICES, TASK_NAMES
    from tuilab.core.runtime import DTYPES
    from tuilab.core.tasks import TASKS

    assert set(TASK_NAMES) == set(TASKS)
    assert set(DTYPE_CHOICES) == set(DTYPES)


def test_errors_have_one_prefix_and_go_to_stderr(tmp_path: Path) -> None:
    result = run_cli("summary", "nope")
    assert result.out == "" and result.err.startswith("error: unknown preset 'nope'")
    result = run_cli("train", "mlp", "--lr", "-1")
    assert result.err.startswith("error: lr must be a positive number")
    path = tmp_path / "bad.toml"
    path.write_text(MLP.replace("in_features = 256", "in_features = 255"))
    result = run_cli("summary", str(path))
    assert result.code == 1
    assert "error at 2:" in result.err and "error at" not in result.out
    assert "hint: in_features should be 256" in result.err
    result = run_cli("summary", str(path), "--json")
    assert result.code == 1 and '"error"' in result.out  # scripts still read it on stdout


def test_the_licence_matches_pyproject() -> None:
    assert "MIT License" in (REPO / "LICENSE").read_text()
    assert 'license = { text = "MIT" }' in (REPO / "pyproject.toml").read_text()


# --- 6 and 8: first commands, words a newcomer knows ------------------------------------------
def test_the_readme_activates_the_venv_before_its_bare_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert readme.index(". .venv/bin/activate") < readme.index("\ntuilab lenet")
    assert re.search(r"^python3 -m venv \.venv && .*pytest", readme, re.M)  # what .ci/run runs


def test_export_says_which_python_runs_the_file(tmp_path: Path) -> None:
    result = run_cli("export", "mlp", "-o", str(tmp_path / "m.py"))
    assert result.code == 0
    assert f"run it with: {sys.executable} {tmp_path / 'm.py'}" in result.out.replace("\n", "")


def test_presets_and_the_exported_docstring_lead_with_what_the_model_is() -> None:
    from tuilab.core.export import export_source
    from tuilab.core.workspace import list_presets, load_preset

    for preset in list_presets():
        assert not preset.description.startswith("Seed"), preset.name
    first = export_source(load_preset("mlp")).splitlines()[0]
    assert first.startswith('"""mlp: A two-layer perceptron (MLP)')


def test_train_says_what_the_teacher_task_is() -> None:
    result = run_cli("train", "mlp", "--steps", "1")
    assert "task teacher: learning to copy the outputs of the same model" in result.out.replace(
        "\n", " ")


# --- 4c: a user module whose forward never returns ------------------------------------------
LOOPING_MODULE = """
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        while True:  # never returns
            pass
"""


def test_a_forward_that_never_returns_warns_and_quit_ends_the_process(
        tmp_path: Path, terminal_factory) -> None:
    """The real command in a real pseudo-terminal: f on a module whose forward loops for
    ever warns while it runs, and q ends the process (it used to keep a core busy until
    SIGKILL, its thread joined at exit)."""
    pytest.importorskip("pexpect")
    (tmp_path / "loop.py").write_text(LOOPING_MODULE)
    env = {**os.environ, "TUILAB_DATA_DIR": str(tmp_path / "data")}
    # --input-shape: the lab opens without guessing an input (which would run the forward)
    terminal = terminal_factory([f"{tmp_path / 'loop.py'}:Net", "--input-shape", "1,4"], env)
    try:
        terminal.wait_for(lambda s: "Import and run" in s)
        terminal.child.send("y")
        terminal.wait_for(lambda s: "(your module)" in s)
        terminal.child.send("f")
        terminal.wait_for(lambda s: "may never" in s and "return; q quits tuilab" in s)
        terminal.child.send("q")
        terminal.wait_for(lambda s: not terminal.child.isalive(), timeout=60)
    except AssertionError:
        if not terminal.child.isalive():
            pass  # it exited between two reads of the screen: what the test wants
        else:
            raise
    finally:
        alive = terminal.child.isalive()
        if alive:
            terminal.child.kill(9)
    assert not alive, f"still running after q; the screen shows:\n{terminal.text()}"
    terminal.child.close()
    assert terminal.child.signalstatus is None and terminal.child.exitstatus == 0


def test_an_abandoned_call_is_counted_until_it_returns() -> None:
    import threading

    from tuilab.core.abandonable import Abandoned, call_abandonable, stuck_calls

    release = threading.Event()
    cancelled = threading.Event()
    cancelled.set()
    before = stuck_calls()
    with pytest.raises(Abandoned):
        call_abandonable(release.wait, cancelled=cancelled, poll_s=0.01)
    assert stuck_calls() == before + 1  # left behind, still running in its daemon thread
    release.set()
    assert call_abandonable(lambda: 42, cancelled=threading.Event()) == 42


@pytest.mark.parametrize(("fill", "expected"), [
    (float("nan"), r"the weights themselves hold NaN or inf values before the first update "
                   r"\(0\.weight\)"),
    (1e30, r"before any update, so the learning rate is not the cause"),
], ids=["nan-weights", "reinterpreted-huge-weights"])
def test_bad_weights_are_reported_as_such_not_as_a_learning_rate(fill: float,
                                                                 expected: str) -> None:
    import threading

    lab = Lab.from_workspace(load_workspace(REPO / "presets" / "mlp.toml"))
    with torch.no_grad():
        lab.model[0].weight.fill_(fill)
        if fill == 1e30:
            lab.model[2].weight.fill_(fill)
    run = lab.start_run({"optimizer": "adam", "lr": 1e-3, "steps": 20, "val_every": 0})
    list(lab.train(run, threading.Event()))
    assert run.status == "failed" and run.error.startswith("step 1: the loss is")
    assert re.search(expected, run.error), run.error
    assert "lower the learning rate" not in run.error


def test_a_user_modules_error_names_its_file_and_line(tmp_path: Path) -> None:
    from tuilab.core.errors import RunError
    from tuilab.core.usercode import load_user_module

    (tmp_path / "bad.py").write_text(
        "from torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.fc = nn.Linear(4, 2)\n\n"
        "    def forward(self, x):\n        y = self.fc(x)\n        return y[:, 5]\n")
    module, name = load_user_module(f"{tmp_path / 'bad.py'}:Net")
    lab = Lab(module=module, name=name, input_shape=(1, 4))
    where = re.escape(f"(at {tmp_path / 'bad.py'}:11)")
    with pytest.raises(RunError, match=rf"index 5 is out of bounds .* {where}"):
        lab.forward()


def test_an_unknown_block_points_to_tuilab_blocks(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(MLP.replace('block = "ReLU"', 'block = "Relu6x"'))
    result = run_cli("summary", str(path))
    assert result.code == 2 and "(`tuilab blocks` lists them)" in result.err
    listing = run_cli("blocks")
    assert listing.code == 0
    assert re.search(r"│ activation\s+│ LeakyReLU\s+│", listing.out), listing.out


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_the_training_forms_error_is_on_screen(size: tuple[int, int]) -> None:
    """A refused setting must be readable where the form is: at 120×40 the error line sat
    below the fields, cut off by the dialog's height."""
    import time

    from textual.widgets import Input, Static

    from tuilab.app.app import make_app
    from tuilab.app.screens.train_settings import TrainSettingsScreen

    app = make_app(lab=Lab.from_workspace(load_workspace(REPO / "presets" / "mlp.toml")))
    async with app.run_test(size=size) as pilot:
        deadline = time.monotonic() + 30
        while not isinstance(app.screen, TrainSettingsScreen) and time.monotonic() < deadline:
            await pilot.press("t")
            await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, TrainSettingsScreen)
        steps = screen.query_one("#steps", Input)
        steps.value = "0"
        await pilot.press("enter")
        await pilot.pause(0.2)
        error = screen.query_one("#error", Static)
        assert "steps" in str(error.render())
        region = error.region
        visible = screen.query_one("#form").region
        assert region.height >= 1 and region.y >= 0 and region.bottom <= size[1]
        assert visible.contains_region(region), (region, visible)


# --- 4h: a bfloat16 LSTM that this build cannot run is refused before the run -----------------
# The tester's CPU had no oneDNN bfloat16 LSTM; this machine's torch has one, so the build that
# lacks it is made on demand (`refusing_kernels`, tests/kernel_faults.py).
NO_KERNEL = (r"rnn \(LSTM\) {what} {how} on cpu in this PyTorch build \(oneDNN\): "
             r"{message}.* Use float32, or run it on cuda\.")


def test_train_refuses_a_bfloat16_lstm_without_a_kernel_before_the_run(
        refusing_kernels, capsys: pytest.CaptureFixture[str]) -> None:
    from tuilab.cli import main

    fake = refusing_kernels(torch.bfloat16)
    assert main(["train", "lstm", "--dtype", "bfloat16", "--steps", "5"]) == 2
    out, err = capsys.readouterr()
    assert re.fullmatch("error: dtype: " + NO_KERNEL.format(
        what="cannot train", how="under bfloat16 autocast",
        message="could not create a primitive descriptor for the LSTM forward"), err.strip()), err
    assert "5/5" not in out and "step 1" not in err  # no run started
    assert fake.calls == 1  # the probe's one tiny layer, not the model


@pytest.mark.parametrize(("stage", "args", "what"), [
    ("forward", [], "cannot run"),
    ("backward", ["--backward"], r"runs forward but cannot train \(backward\)"),
])
def test_forward_refuses_a_bfloat16_lstm_without_a_kernel_with_exit_2(
        refusing_kernels, capsys: pytest.CaptureFixture[str], stage: str, args: list[str],
        what: str) -> None:
    from tuilab.cli import main

    refusing_kernels(torch.bfloat16, stage=stage)
    assert main(["forward", "lstm", "--dtype", "bfloat16", *args]) == 2
    out, err = capsys.readouterr()
    message = ("could not create" if stage == "forward"
               else "\"mkldnn_rnn_layer_backward\" not implemented for 'BFloat16'")
    assert re.search(NO_KERNEL.format(what=what, how="in bfloat16", message=message), err), err
    assert out == ""


async def _press_until(pilot, key: str, done) -> None:
    import time

    deadline = time.monotonic() + 30
    while not done() and time.monotonic() < deadline:
        await pilot.press(key)
        await pilot.pause(0.2)
    assert done()


async def test_the_apps_precision_key_refuses_it_visibly_and_changes_nothing(
        refusing_kernels) -> None:
    from hardening_helpers import lab_state

    from tuilab.app.app import make_app

    refusing_kernels(torch.bfloat16)
    lab = Lab.from_workspace(load_workspace(REPO / "presets" / "lstm.toml"))
    app = make_app(lab=lab)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        before = lab_state(lab)
        await _press_until(pilot, "P", lambda: app.asking is not None)
        await pilot.press("down", "down", "enter")  # float32 -> float16 -> bfloat16
        await pilot.pause(0.2)
        messages = [n.message for n in app._notifications]
        assert any(re.search(NO_KERNEL.format(what="cannot run", how="in bfloat16",
                                              message="could not create"), m)
                   for m in messages), messages
        assert lab_state(lab) == before and lab.dtype_name == "float32"
        assert app.is_running


async def test_the_apps_run_refuses_a_bfloat16_lstm_that_cannot_train(refusing_kernels) -> None:
    from textual.widgets import Input

    from tuilab.app.app import make_app
    from tuilab.app.screens.train_settings import TrainSettingsScreen

    lab = Lab.from_workspace(load_workspace(REPO / "presets" / "lstm.toml"))
    lab.set_dtype("bfloat16")  # its forward runs: the precision change is allowed
    refusing_kernels(torch.bfloat16, stage="backward")
    app = make_app(lab=lab)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        weights = {k: v.clone() for k, v in lab.model.state_dict().items()}
        await _press_until(pilot, "t", lambda: isinstance(app.screen, TrainSettingsScreen))
        app.screen.query_one("#steps", Input).value = "5"
        await pilot.press("enter")
        await pilot.pause(0.2)
        await app.workers.wait_for_complete()
        messages = [n.message for n in app._notifications]
        assert any(re.search(NO_KERNEL.format(
            what=r"runs forward but cannot train \(backward\)", how="in bfloat16",
            message="\"mkldnn_rnn_layer_backward\" not implemented"), m)
            for m in messages), messages
        assert lab.runs == [] and lab.busy_reason == "" and lab.dtype_name == "bfloat16"
        assert all(torch.equal(v, weights[k]) for k, v in lab.model.state_dict().items())
        assert app.is_running
