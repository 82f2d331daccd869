"""Bad files: workspace/preset TOML, weights and the user's own Python modules.

Each is refused with the file, the field (or line) and the reason; the file on disk is left
byte for byte as it was, the model the user had open is untouched, and nothing is imported or
run that the user did not name.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from pathlib import Path

import pytest
import torch
from hardening_helpers import file_digest, folder_listing, lab_of, lab_state

from tuilab.core import autosave
from tuilab.core.errors import SpecFileError
from tuilab.core.lab import Lab
from tuilab.core.usercode import load_user_module
from tuilab.core.weights import WeightsError, load_weights, save_weights
from tuilab.core.workspace import MAX_DEPTH, MAX_FILE_BYTES

REPO = Path(__file__).resolve().parents[2]
MLP = (REPO / "presets" / "mlp.toml").read_text()
SHAPE = "input_shape = [\n    2,\n    20,\n]"
RELU = 'block = "ReLU"'


def nested(depth: int) -> str:
    inner = "{ name = 'x', block = 'ReLU' }"
    for _ in range(depth):
        inner = "{ name = 'x', block = 'Sequential', children = [" + inner + "] }"
    return ("[model]\nname = 'deep'\ninput_shape = [1, 4]\n[model.root]\nblock = 'Sequential'\n"
            f"children = [{inner}]\n")


# (id, file text or bytes, regexes the message must hold)
TOML_CASES: list[tuple[str, str | bytes, tuple[str, ...]]] = [
    ("not-toml", "this is = = not toml", (r"bad\.toml: not valid TOML", r"line 1, column")),
    ("truncated", MLP[: len(MLP) // 2], (r"not valid TOML", r"end of document")),
    ("binary", b"\xff\xfe\x00\x01garbage\x00", (r"is not UTF-8 text",)),
    ("empty", "", (r"missing the \[model\] table",)),
    ("model-not-a-table", "model = 3\n", (r"missing the \[model\] table",)),
    ("no-root", "[model]\nname = 'x'\ninput_shape = [1, 2]\n",
     (r"model: missing the \[model\.root\] table",)),
    ("unknown-table", MLP + "\n[plugins]\nload = 'x'\n", (r"unknown table \[plugins\]",)),
    ("unknown-model-field", MLP.replace('task = "teacher"', 'task = "teacher"\ncode = "x"'),
     (r"model: unknown field 'code'", r"allowed: description, input_shape, name, root, task")),
    ("unknown-node-field", MLP.replace(RELU, RELU + ', factory = "os.system"'),
     (r"model\.root\.children\[1\]: unknown field 'factory'",)),
    ("future-format", MLP.replace("format = 1", "format = 2"),
     (r"format 2 is not one this tuilab reads", r"it reads format 1")),
    ("shape-wrong-type", MLP.replace(SHAPE, 'input_shape = "two"'),
     (r"model\.input_shape: input shape 'two' is not a list of integers",)),
    ("shape-negative", MLP.replace(SHAPE, "input_shape = [2, -20]"),
     (r"model\.input_shape: .*must be 1 to 6 positive integers",)),
    ("arg-wrong-type", MLP.replace("in_features = 20", 'in_features = "twenty"'),
     (r"children\[0\]\.args: argument 'in_features' = 'twenty' is not allowed",
      r"expected an integer ≥ 1")),
    ("arg-out-of-range", MLP.replace("in_features = 20", "in_features = 0"),
     (r"'in_features' = 0 is not allowed", r"≥ 1")),
    ("arg-fraction", MLP.replace("in_features = 20", "in_features = 2.5"),
     (r"'in_features' = 2\.5 is not allowed",)),
    ("arg-nan", MLP.replace("in_features = 20", "in_features = nan"),
     (r"'in_features' = nan is not allowed",)),
    ("arg-unknown", MLP.replace("in_features = 20", "in_features = 20, units = 3"),
     (r"Linear has no argument 'units'",)),
    ("args-not-a-table", MLP.replace("args = { in_features = 20, out_features = 256, bias = "
                                     "true }", "args = 5"),
     (r"children\[0\]\.args: must be a table of argument values",)),
    ("block-os-system", MLP.replace(RELU, 'block = "os.system"'),
     (r"children\[1\]\.block: unknown block 'os\.system'", r"palette only")),
    ("block-builtins-eval", MLP.replace(RELU, 'block = "builtins.eval"'),
     (r"unknown block 'builtins\.eval'",)),
    ("block-import-path", MLP.replace(RELU, 'block = "torch.nn:ReLU"'),
     (r"unknown block 'torch\.nn:ReLU'",)),
    ("block-user-file", MLP.replace(RELU, 'block = "evil.py:Net"'),
     (r"unknown block 'evil\.py:Net'",)),
    ("block-typo", MLP.replace(RELU, 'block = "Relu"'),
     (r"unknown block 'Relu' \(did you mean ReLU",)),
    ("frozen-not-bool", MLP.replace(RELU, RELU + ", frozen = 'yes'"),
     (r"children\[1\]\.frozen: must be true or false",)),
    ("two-children-one-name", MLP.replace('name = "1"', 'name = "0"'),
     (r"two children are named '0'",)),
    ("share-missing", MLP.replace(RELU, RELU + ', share = "9"'),
     (r"a shared node takes no args|shares '9', which is not a block",)),
    ("share-not-text", MLP.replace('{ name = "1", block = "ReLU" }',
                                   '{ name = "1", block = "ReLU", share = 2 }'),
     (r"share: must be the path of the shared node",)),
    ("leaf-with-children", MLP.replace(RELU, RELU + ", children = [{ name = 'a', block = "
                                       "'ReLU' }]"),
     (r"ReLU is not a container",)),
    ("too-deep", nested(MAX_DEPTH + 2), (rf"nested more than {MAX_DEPTH} deep",)),
    ("toml-nested-arrays", "a = " + "[" * 3000 + "]" * 3000, (r"nested too deeply to read",)),
    ("toml-nested-tables", "a = " + "{b=" * 3000 + "1" + "}" * 3000,
     (r"nested too deeply to read",)),
    ("huge", "# " + "x" * (MAX_FILE_BYTES + 10),
     (r"is 8,388,620 bytes \(8\.00 MiB\); tuilab reads files of this kind up to 8 MiB",)),
    ("modes-wrong-type", MLP + "\n[modes]\ndevice = [1]\n",
     (r"modes\.device: must be text, a number or true/false",)),
    ("training-datetime", MLP + "\n[training]\nwhen = 1979-05-27T07:32:00Z\n",
     (r"training\.when: must be text, a number or true/false",)),
    ("runs-not-numbers", MLP + "\n[[runs]]\nsteps = [1]\nlosses = ['a']\n",
     (r"runs\[0\]\.losses: must be a list of numbers",)),
    ("runs-steps-not-list", MLP + "\n[[runs]]\nsteps = 5\n",
     (r"runs\[0\]\.steps: must be a list of numbers",)),
    ("runs-lengths-differ", MLP + "\n[[runs]]\nsteps = [1, 2]\nlosses = [0.5]\n",
     (r"runs\[0\]\.losses: steps and losses must have the same length \(2 and 1\)",)),
    ("runs-bad-status", MLP + "\n[[runs]]\nstatus = 'exploded'\n",
     (r"runs\[0\]\.status: must be one of running, finished, stopped, failed",)),
    ("runs-config-not-table", MLP + "\n[[runs]]\nconfig = 'fast'\n",
     (r"runs\[0\]\.config: must be a table",)),
    ("embedding-padding-idx", MLP.replace(
        RELU, 'block = "Embedding", args = { num_embeddings = 5, padding_idx = 5 }'),
     (r"padding_idx \(5\) must be a token id",)),
]


@pytest.mark.parametrize(("text",  "match"), [(t, m) for _, t, m in TOML_CASES],
                         ids=[c[0] for c in TOML_CASES])
def test_a_bad_workspace_file_is_refused_and_left_as_it_was(
        tmp_path: Path, _private_data_dir: Path, text: str | bytes, match: tuple[str, ...]
) -> None:
    path = tmp_path / "bad.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    on_disk = file_digest(path)
    lab = lab_of("mlp")  # the model the user has open while trying the file
    before = lab_state(lab)
    with pytest.raises(SpecFileError) as caught:
        Lab.open(path)
    message = str(caught.value)
    for pattern in match:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"
    assert "bad.toml" in message  # where: the file, then the field
    assert len(message) < 2000
    assert file_digest(path) == on_disk
    assert folder_listing(tmp_path) == ["bad.toml"]  # no temp or backup files
    assert lab_state(lab) == before
    assert autosave.pending_restore() is None and not _private_data_dir.exists()


def test_modes_that_do_not_apply_here_open_with_a_note_instead(tmp_path: Path) -> None:
    path = tmp_path / "modes.toml"
    path.write_text(MLP + "\n[modes]\ndevice = 'cuda:7'\ndtype = 'float8'\ntraining = 'no'\n")
    lab = Lab.open(path)
    notes = " | ".join(lab.load_messages)
    assert "'cuda:7'" in notes and "unknown dtype 'float8'" in notes
    assert "modes.training: must be true or false, got 'no'" in notes
    assert (lab.device, lab.dtype_name, lab.training) == ("cpu", "float32", True)
    assert not lab.dirty


# --------------------------------------------------------------------------------------------
# weights


class _Payload:
    """Unpickling this would create the marker file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_files(folder: Path, marker: Path) -> dict[str, Path]:
    files = {}
    files["zip-dict"] = folder / "dict.pt"
    torch.save({"0.weight": _Payload(marker)}, files["zip-dict"])
    files["zip-object"] = folder / "object.pth"
    torch.save(_Payload(marker), files["zip-object"])
    files["nested-state-dict"] = folder / "ckpt.ckpt"
    torch.save({"state_dict": {"0.weight": torch.zeros(1)}, "hook": _Payload(marker)},
               files["nested-state-dict"])
    files["plain-pickle"] = folder / "plain.bin"
    with open(files["plain-pickle"], "wb") as handle:
        pickle.dump({"w": _Payload(marker)}, handle)
    return files


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", ["zip-dict", "zip-object", "nested-state-dict",
                                  "plain-pickle"])
def test_a_pt_pickle_with_code_in_it_is_refused_and_its_code_never_runs(
        tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "MARKER"
    # the payload is real: unpickled without the safe loader, it makes the marker
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()
    path = _evil_files(tmp_path, marker)[kind]
    lab = lab_of("mlp")
    before = lab_state(lab)
    with pytest.raises(WeightsError) as caught:
        load_weights(lab.model, path)
    message = str(caught.value)
    assert "holds more than tensors, and tuilab refuses to run code from it" in message
    assert re.search(r"the Python object posix\.system|Unsupported operand|unsupported", message)
    assert "weights_only` set to `False`" not in message  # no advice to load it unsafely
    assert not marker.exists()
    assert lab_state(lab) == before


def test_weights_of_another_model_are_reported_and_nothing_is_loaded(tmp_path: Path) -> None:
    save_weights(lab_of("lenet").model, tmp_path / "lenet.safetensors")
    lab = lab_of("mlp")
    before = lab_state(lab)
    with pytest.raises(WeightsError) as caught:
        load_weights(lab.model, tmp_path / "lenet.safetensors")
    message = str(caught.value)
    assert "do not fit this model: 4 missing, 10 unexpected; 0 of the model's 4" in message
    assert "missing from the file: 0.weight, 0.bias, 2.weight, 2.bias" in message
    assert lab_state(lab) == before


def test_weights_with_one_wrong_shape_load_nothing_at_all(tmp_path: Path) -> None:
    """load_state_dict copies every matching tensor before it raises on a size mismatch;
    tuilab checks first, so the model keeps every value it had."""
    other = lab_of("mlp")
    other.edit("set_arg", "2", "out_features", 7)
    save_weights(other.model, tmp_path / "w.safetensors")
    lab = lab_of("mlp")
    before = lab_state(lab)
    with pytest.raises(WeightsError, match=r"2\.weight is \(10, 256\) in the model, \(7, 256\)"):
        load_weights(lab.model, tmp_path / "w.safetensors")
    assert lab_state(lab) == before


@pytest.mark.parametrize(("name", "data", "match"), [
    ("cut.safetensors", None, r"not a valid safetensors file \(truncated or corrupt\?\)"),
    ("junk.safetensors", b"\x00" * 64, r"not a valid safetensors file"),
    ("cut.pt", b"PK\x03\x04broken", r"cannot be read as a PyTorch file"),
    ("model.onnx", b"onnx", r"reads \.safetensors files.*not \.onnx"),
], ids=["truncated", "zeros", "broken-zip", "wrong-suffix"])
def test_broken_weights_files_are_refused(tmp_path: Path, name: str, data: bytes | None,
                                          match: str) -> None:
    lab = lab_of("mlp")
    path = tmp_path / name
    if data is None:
        save_weights(lab.model, tmp_path / "whole.safetensors")
        data = (tmp_path / "whole.safetensors").read_bytes()[:100]
    path.write_bytes(data)
    before = lab_state(lab)
    with pytest.raises(WeightsError, match=match):
        load_weights(lab.model, path)
    assert lab_state(lab) == before


# --------------------------------------------------------------------------------------------
# the user's own module (tuilab file.py:NAME)

USER_FILE = """\
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)

def not_a_module():
    return 42

COUNT = 5

def raises():
    raise RuntimeError("boom")

def needs(width):
    return nn.Linear(width, 1)
"""


@pytest.mark.parametrize(("arg", "match"), [
    ("missing.py:Net", r"missing\.py: no such file"),
    ("syntax.py:Net", r"syntax\.py:2: syntax error"),
    ("imports.py:Net", r"imports\.py:1: importing it raised ModuleNotFoundError: No module "
                       r"named 'no_such_package_xyz'"),
    ("exits.py:Net", r"exits\.py:2: importing it raised SystemExit: 4"),
    ("user.py:Missing", r"user\.py: the file has no 'Missing' \(it defines: Net, needs, "
                        r"not_a_module, raises\)"),
    ("user.py:not_a_module", r"not_a_module\(\) returned a int, not an nn\.Module"),
    ("user.py:COUNT", r"COUNT is a int, not a class or function"),
    ("user.py:raises", r"user\.py:18: raises\(\) raised RuntimeError: boom"),
    ("user.py:needs", r"needs arguments \(width\); give them defaults"),
    ("user.py", r"name the module to open after a colon, e\.g\. my_model\.py:Net"),
    ("user.py:1bad", r"'1bad' is not a Python name"),
], ids=["path-missing", "syntax-error", "import-error", "system-exit", "name-missing",
        "returns-int", "not-callable", "constructor-raises", "needs-arguments", "no-name",
        "bad-name"])
def test_a_user_module_that_cannot_be_used_is_refused_with_file_and_line(
        tmp_path: Path, arg: str, match: str) -> None:
    (tmp_path / "user.py").write_text(USER_FILE)
    (tmp_path / "syntax.py").write_text("import torch\ndef broken(:\n")
    (tmp_path / "imports.py").write_text("import no_such_package_xyz\n")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(4)\n")
    modules = set(sys.modules)
    with pytest.raises(SpecFileError) as caught:
        load_user_module(str(tmp_path / arg))
    assert re.search(match, str(caught.value)), str(caught.value)
    # a failed import leaves nothing behind in sys.modules
    assert not [m for m in set(sys.modules) - modules if m.startswith("tuilab_user_")]


def test_a_good_user_module_loads() -> None:
    """The counterpart: the same file's Net is what `tuilab user.py:Net` opens."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "user.py"
        path.write_text(USER_FILE)
        module, name = load_user_module(f"{path}:Net")
    assert name == "Net" and isinstance(module, torch.nn.Module)
