"""Bad input on the command line: `python -m tuilab ...` in a subprocess exits 2 with one
`error: …` line (what, where, what is allowed), never a traceback, and leaves every file it
was given — and every file it was asked to write — as it was."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest
from hardening_helpers import REPO, file_digest, folder_listing, run_cli

MLP = (REPO / "presets" / "mlp.toml").read_text()


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _files(folder: Path) -> None:
    """The inputs the cases name: {tmp}/bad.toml, {tmp}/evil.pt, ..."""
    import torch

    (folder / "bad.toml").write_text("this is = = not toml")
    (folder / "os_system.toml").write_text(MLP.replace('block = "ReLU"', 'block = "os.system"'))
    (folder / "dir.toml").mkdir()
    torch.save({"0.weight": _Payload(folder / "MARKER")}, folder / "evil.pt")
    with open(folder / "lenet.safetensors", "wb") as handle:
        handle.write(_lenet_weights())


def _lenet_weights() -> bytes:
    from safetensors.torch import save

    from tuilab.core.build import build
    from tuilab.core.workspace import load_preset

    return save({k: v.contiguous() for k, v in build(load_preset("lenet")).state_dict().items()})


# (id, arguments, regexes for the error line); {tmp} is the test's folder
CASES: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("summary-unknown-preset", ["summary", "nope"],
     (r"unknown preset 'nope'", r"`tuilab presets` lists them")),
    ("summary-preset-typo", ["summary", "lenett"], (r"did you mean lenet",)),
    ("summary-shape-zero", ["summary", "lenet", "--input-shape", "0,1"],
     (r"input_shape: input shape \(0, 1\) must be 1 to 6 positive integers",)),
    ("summary-shape-words", ["summary", "lenet", "--input-shape", "a,b"],
     (r"input shape 'a,b' is not a list of integers, e\.g\. 1,1,32,32",)),
    ("summary-not-toml", ["summary", "{tmp}/bad.toml"],
     (r"bad\.toml: not valid TOML", r"line 1, column 6")),
    ("summary-block-os-system", ["summary", "{tmp}/os_system.toml"],
     (r"children\[1\]\.block: unknown block 'os\.system'", r"palette only")),
    ("summary-missing-file", ["summary", "{tmp}/absent.toml"], (r"absent\.toml: no such file",)),
    ("summary-folder", ["summary", "{tmp}/dir.toml"], (r"is a folder, not a \.toml file",)),
    ("export-missing-folder", ["export", "lenet", "-o", "{tmp}/no/such/dir/x.py"],
     (r"folder '.*/no/such/dir' does not exist",)),
    ("export-onto-a-folder", ["export", "lenet", "-o", "{tmp}/dir.toml"],
     (r"is a folder; give a file name",)),
    ("export-bad-file", ["export", "{tmp}/bad.toml"], (r"not valid TOML",)),
    ("train-steps-zero", ["train", "mlp", "--steps", "0"],
     (r"argument --steps: 0 is out of range: give 1 to 10,000,000",)),
    ("train-steps-word", ["train", "mlp", "--steps", "x"],
     (r"argument --steps: invalid int value: 'x'",)),
    ("train-lr-negative", ["train", "mlp", "--lr", "-1"], (r"lr must be a positive number",)),
    ("train-batch-zero", ["train", "mlp", "--batch-size", "0"],
     (r"argument --batch-size: 0 is out of range: give 1 to 1,048,576",)),
    ("train-optimizer", ["train", "mlp", "--optimizer", "lbfgs"],
     (r"invalid choice: 'lbfgs'", r"'sgd', 'adam', 'adamw'")),
    ("train-task", ["train", "mlp", "--task", "imagenet"],
     (r"unknown task 'imagenet'; choose one of: .*teacher",)),
    ("train-device-cuda", ["train", "mlp", "--device", "cuda"],
     (r"device 'cuda' is not available", r"choose one of: cpu")),
    ("train-device-cuda-7", ["train", "mlp", "--device", "cuda:7"],
     (r"'cuda:7'", r"choose one of: cpu")),
    ("train-device-mps", ["train", "mlp", "--device", "mps"],
     (r"device 'mps' is not available",)),
    ("train-dtype", ["train", "mlp", "--dtype", "float8"],
     (r"invalid choice: 'float8'", r"'float32', 'float16', 'bfloat16', 'float64'")),
    ("train-weights-with-code", ["train", "mlp", "--load-weights", "{tmp}/evil.pt"],
     (r"evil\.pt: holds more than tensors, and tuilab refuses to run code from it",)),
    ("train-weights-of-another-model", ["train", "mlp", "--load-weights",
                                        "{tmp}/lenet.safetensors"],
     (r"do not fit this model: 4 missing, 10 unexpected",)),
    ("train-save-as-pickle", ["train", "mlp", "--save-weights", "{tmp}/out.pt"],
     (r"out\.pt: tuilab saves weights as safetensors",)),
    ("train-too-large", ["train", "gpt2_xl", "--steps", "1"],
     (r"gpt2_xl has 1,638 M parameters: training needs about 24\.4 GiB",)),
    ("train-not-toml", ["train", "{tmp}/bad.toml"], (r"bad\.toml: not valid TOML",)),
]

# `tuilab SPEC` checks SPEC before the app starts, with the same "error: …" line
LAUNCH_CASES: list[tuple[str, list[str], str]] = [
    ("launch-not-toml", ["{tmp}/bad.toml"], r"bad\.toml: not valid TOML"),
    ("launch-block-os-system", ["{tmp}/os_system.toml"], r"unknown block 'os\.system'"),
    ("launch-unknown-preset", ["nope"], r"unknown preset 'nope'"),
    ("launch-missing-user-file", ["{tmp}/absent.py:Net"], r"absent\.py: no such file"),
    ("launch-user-file-without-name", ["{tmp}/bad.py"],
     r"name the module to open after a colon"),
    ("launch-bad-shape", ["mlp", "--input-shape", "0"], r"must be 1 to 6 positive integers"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    _files(folder)
    (folder / "bad.py").write_text("raise SystemExit('imported!')\n")
    return folder


def _snapshot(folder: Path) -> dict[str, str | None]:
    return {name: file_digest(folder / name) for name in folder_listing(folder)
            if (folder / name).is_file()}


@pytest.mark.parametrize(("args", "match"), [(a, m) for _, a, m in CASES],
                         ids=[c[0] for c in CASES])
def test_a_bad_command_line_exits_2_with_one_error_line(inputs: Path, tmp_path: Path,
                                                          args: list[str],
                                                          match: tuple[str, ...]) -> None:
    before = _snapshot(inputs)
    result = run_cli(*[a.replace("{tmp}", str(inputs)) for a in args], cwd=tmp_path)
    assert result.code == 2, result.text
    assert "Traceback" not in result.text
    lines = result.error_lines()
    assert len(lines) == 1, result.text
    text = result.text.replace("\n", " ")
    for pattern in match:
        assert re.search(pattern, text), f"{pattern!r} not in {result.text!r}"
    assert _snapshot(inputs) == before  # inputs untouched, nothing written beside them
    assert folder_listing(tmp_path) == []  # nothing written where it ran
    assert not (inputs / "MARKER").exists()


@pytest.mark.parametrize(("args", "match"), [(a, m) for _, a, m in LAUNCH_CASES],
                         ids=[c[0] for c in LAUNCH_CASES])
def test_a_bad_spec_for_the_app_exits_2_before_the_app_starts(inputs: Path, tmp_path: Path,
                                                                args: list[str],
                                                                match: str) -> None:
    before = _snapshot(inputs)
    result = run_cli(*[a.replace("{tmp}", str(inputs)) for a in args], cwd=tmp_path)
    assert result.code == 2, result.text
    assert "Traceback" not in result.text and "imported!" not in result.text
    lines = [line for line in result.text.splitlines() if line.strip()]
    assert len(lines) == 1 and re.match(r"^(error|tuilab): ", lines[0]), result.text
    assert re.search(match, lines[0]), lines[0]
    assert "\x1b[?1049h" not in result.out  # the app never took over the terminal
    assert _snapshot(inputs) == before


def test_a_run_that_blows_up_exits_1_naming_the_step_and_layer(tmp_path: Path) -> None:
    result = run_cli("train", "mlp", "--optimizer", "sgd", "--lr", "1e6", "--steps", "100",
                     "--batch-size", "16", "--json", cwd=tmp_path)
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    import json

    data = json.loads(result.out)
    assert re.match(r"step \d+: the loss is (nan|inf)", data["error"])
    assert data["error_path"] in {"0", "1", "2"}
    assert len(data["losses"]) == data["steps"] > 0  # the history before the NaN is kept


def test_the_payload_would_have_run(tmp_path: Path) -> None:
    """The `evil.pt` cases prove something only if unpickling it for real runs its code."""
    marker = tmp_path / "MARKER"
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


def test_cli_case_count() -> None:
    assert len(CASES) + len(LAUNCH_CASES) >= 30
