"""A catalogue of bad inputs to the engine: each one is refused with a message that says what
is wrong, where, and what is allowed, and each one leaves everything exactly as it was — the
spec, every tensor bit for bit, every mode, the code log and the run history.

The lab (`tuilab.core.lab.Lab`) is the app's one door into the engine, so every case goes
through it (or through the file, weights and user-code readers the app and CLI call).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hardening_helpers import lab_of, lab_state, spec_of
from kernel_faults import refusing
from torch import nn

from tuilab.core.errors import (
    EditError,
    ModeError,
    RunError,
    TuilabError,
)
from tuilab.core.lab import MATERIALISE_LIMIT_BYTES, Lab
from tuilab.core.spec import make_node
from tuilab.core.training import ConfigError


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[], Lab]
    act: Callable[[Lab], Any]
    error: type[BaseException]
    match: tuple[str, ...]  # regexes the message must contain (what, where, what is allowed)
    where: str | None = None  # the error's `where`, when the error has one


def mlp() -> Lab:
    return lab_of("mlp")


def lenet() -> Lab:
    return lab_of("lenet")


def shared() -> Lab:
    return lab_of("shared_mlp")


def conv_on_tiny_input() -> Lab:
    return Lab(spec_of([make_node("Conv2d", "0", {"in_channels": 1, "out_channels": 2,
                                                  "kernel_size": 7})], (1, 1, 4, 4)))


def chain_that_does_not_fit() -> Lab:
    return Lab(spec_of([make_node("Linear", "0", {"in_features": 20, "out_features": 5}),
                        make_node("ReLU", "1"),
                        make_node("Linear", "2", {"in_features": 7, "out_features": 2})],
                       (2, 20)))


def batchnorm_batch_of_one() -> Lab:
    return Lab(spec_of([make_node("Linear", "0", {"in_features": 4, "out_features": 3}),
                        make_node("BatchNorm1d", "1", {"num_features": 3})], (1, 4)))


def batchnorm_then_failure() -> Lab:
    """BatchNorm runs (and would update its statistics) before a later layer fails."""
    return Lab(spec_of([make_node("BatchNorm1d", "0", {"num_features": 4}),
                        make_node("Linear", "1", {"in_features": 5, "out_features": 3})],
                       (8, 4)))


def gpt2_xl() -> Lab:
    return lab_of("gpt2_xl")


class HalfUnfriendly(nn.Module):
    """A user's module whose forward uses an op the CPU has no float16 kernel for."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.fc(x).reshape(-1, 2, 2)
        return torch.linalg.inv(m @ m.transpose(-1, -2) + torch.eye(2, dtype=m.dtype))


def half_unfriendly() -> Lab:
    return Lab(module=HalfUnfriendly(), input_shape=(2, 4), name="inv")


def lstm() -> Lab:
    return lab_of("lstm")


def lstm_bfloat16() -> Lab:
    lab = lstm()
    lab.set_dtype("bfloat16")
    return lab


def without_kernel(act: Callable[[Lab], Any], stage: str = "forward") -> Callable[[Lab], Any]:
    """`act` on a PyTorch build whose LSTM has no bfloat16 kernel (in `stage`), as oneDNN on
    some CPUs; this machine's torch has one, so the build is made (tests/kernel_faults.py)."""
    def run(lab: Lab) -> Any:
        with refusing(torch.bfloat16, stage=stage):
            return act(lab)

    return run


def busy_mlp() -> Lab:
    lab = mlp()
    lab.start_run({"steps": 5})
    return lab


def user_module() -> Lab:
    return Lab(module=nn.Sequential(nn.Linear(3, 2)), input_shape=(1, 3), name="net")


CASES = [
    # --- argument values: out of range and wrong types -----------------------------------
    Case("int-zero", mlp, lambda lab: lab.edit("set_arg", "0", "out_features", 0), EditError,
         (r"argument 'out_features' = 0 is not allowed", r"expected an integer ≥ 1"), "0"),
    Case("int-negative", mlp, lambda lab: lab.edit("set_arg", "2", "in_features", -3),
         EditError, (r"'in_features' = -3", r"an integer ≥ 1"), "2"),
    Case("int-as-word", mlp, lambda lab: lab.edit("set_arg", "0", "out_features", "many"),
         EditError, (r"'out_features' = 'many' is not allowed", r"an integer"), "0"),
    Case("int-as-fraction", mlp, lambda lab: lab.edit("set_arg", "0", "out_features", 2.5),
         EditError, (r"= 2\.5 is not allowed", r"an integer ≥ 1"), "0"),
    Case("int-as-bool", mlp, lambda lab: lab.edit("set_arg", "0", "out_features", True),
         EditError, (r"= True is not allowed",), "0"),
    Case("int-huge-text", mlp, lambda lab: lab.edit("set_arg", "0", "out_features", "9" * 5000),
         EditError, (r"is not allowed: expected an integer",), "0"),
    Case("bool-as-word", mlp, lambda lab: lab.edit("set_arg", "0", "bias", "maybe"), EditError,
         (r"'bias' = 'maybe' is not allowed", r"true or false"), "0"),
    Case("probability-above-one", lenet,
         lambda lab: lab.edit("add", "Dropout", "", None, args={"p": 1.5}),
         EditError, (r"'p' = 1\.5 is not allowed", r"from 0 to 1")),
    Case("float-nan", lenet, lambda lab: lab.edit("add", "Dropout", "", None, args={"p": "nan"}),
         EditError, (r"'p' = 'nan' is not allowed", r"a number from 0 to 1")),
    Case("kernel-wrong-dims", lenet,
         lambda lab: lab.edit("set_arg", "conv1", "kernel_size", (3, 3, 3)), EditError,
         (r"'kernel_size' = \(3, 3, 3\)", r"an integer or a tuple of 2 integers"), "conv1"),
    Case("choice-not-listed", lenet,
         lambda lab: lab.edit("add", "GELU", "", None, args={"approximate": "fast"}),
         EditError, (r"'approximate' = 'fast' is not allowed", r"one of 'none', 'tanh'")),
    Case("argument-unknown", mlp, lambda lab: lab.edit("set_arg", "0", "units", 3), EditError,
         (r"Linear has no argument 'units'", r"its arguments: in_features, out_features, bias")),
    Case("divisibility", lenet,
         lambda lab: lab.edit("add", "GroupNorm", "", None,
                              args={"num_groups": 4, "num_channels": 6}),
         EditError, (r"num_channels \(6\) must be divisible by num_groups \(4\)",)),
    Case("padding-idx-outside-vocabulary", lenet,
         lambda lab: lab.edit("add", "Embedding", "", None,
                              args={"num_embeddings": 5, "padding_idx": 5}),
         EditError, (r"padding_idx \(5\) must be a token id", r"from -5 to 4")),
    Case("residual-skip-mismatch", lenet,
         lambda lab: lab.edit("add", "Residual", "", None,
                              args={"in_channels": 3, "out_channels": 8}),
         EditError, (r"skip path adds the input unchanged", r"use_1x1conv")),
    # --- edits ----------------------------------------------------------------------------
    Case("delete-a-shared-node", shared, lambda lab: lab.edit("remove", "2"), EditError,
         (r"'4' shares this block", r"remove that reference first"), "2"),
    Case("delete-the-root", mlp, lambda lab: lab.edit("remove", ""), EditError,
         (r"the root\) cannot be removed",), "(root)"),
    Case("delete-missing-node", mlp, lambda lab: lab.edit("remove", "9"), EditError,
         (r"there is no node '9'",), "9"),
    Case("move-past-the-top", mlp, lambda lab: lab.edit("move", "0", -1), EditError,
         (r"already at the top",), "0"),
    Case("indent-under-a-leaf", mlp, lambda lab: lab.edit("indent", "1"), EditError,
         (r"the block above is not a container",), "1"),
    Case("outdent-at-top-level", mlp, lambda lab: lab.edit("outdent", "1"), EditError,
         (r"already at the top level",), "1"),
    Case("rename-with-a-dot", lenet, lambda lab: lab.edit("rename", "conv1", "a.b"),
         EditError, (r"may not contain dots or spaces",), "conv1"),
    Case("rename-onto-a-sibling", lenet, lambda lab: lab.edit("rename", "conv1", "conv2"),
         EditError, (r"already a block named 'conv2'",), "conv1"),
    Case("add-unknown-block", mlp, lambda lab: lab.edit("add", "os.system"), EditError,
         (r"unknown block 'os\.system'",)),
    Case("add-into-a-leaf", mlp, lambda lab: lab.edit("add", "ReLU", "0"), EditError,
         (r"'0' is a Linear, not a container",), "0"),
    Case("share-the-root", mlp, lambda lab: lab.edit("share", "", ""), EditError,
         (r"root model cannot be shared",)),
    Case("undo-with-no-history", mlp, lambda lab: lab.edit("undo"), EditError,
         (r"nothing to undo",)),
    Case("private-edit-name", mlp, lambda lab: lab.edit("_commit"), EditError,
         (r"unknown edit '_commit'",)),
    Case("edit-a-user-module", user_module, lambda lab: lab.edit("remove", "0"), EditError,
         (r"your own module", r"palette edits are off")),
    Case("input-shape-zero", mlp, lambda lab: lab.set_input_shape("0, 20"), EditError,
         (r"must be 1 to 6 positive integers",), "input_shape"),
    Case("input-shape-words", mlp, lambda lab: lab.set_input_shape("two, twenty"), EditError,
         (r"is not a list of integers",), "input_shape"),
    Case("input-shape-seven-dims", mlp, lambda lab: lab.set_input_shape("1,1,1,1,1,1,1"),
         EditError, (r"1 to 6 positive integers",), "input_shape"),
    Case("input-shape-too-many-elements", mlp,
         lambda lab: lab.set_input_shape("65536, 65536, 2"), EditError,
         (r"more than the 268,435,456 \(1 GiB as float32\)",), "input_shape"),
    Case("edit-too-large-for-memory", mlp,
         lambda lab: lab.edit("add", "Linear", "", None,
                              args={"in_features": 50_000, "out_features": 50_000}),
         ModeError, (r"would make mlp need 9\.3 GiB", r"more than tuilab materialises \(2 GiB\)",
                     r"left as it was"), "3"),
    Case("edit-while-training", busy_mlp, lambda lab: lab.edit("remove", "1"), EditError,
         (r"a training run is going: stop it first",)),
    # --- modes ----------------------------------------------------------------------------
    Case("device-cuda-absent", mlp, lambda lab: lab.set_device("cuda"), ModeError,
         (r"device 'cuda' is not available", r"choose one of: cpu"), "device"),
    Case("device-cuda-7", mlp, lambda lab: lab.set_device("cuda:7"), ModeError,
         (r"'cuda:7'", r"choose one of: cpu"), "device"),
    Case("device-mps-absent", mlp, lambda lab: lab.set_device("mps"), ModeError,
         (r"device 'mps' is not available", r"choose one of: cpu"), "device"),
    Case("device-unknown", mlp, lambda lab: lab.set_device("tpu"), ModeError,
         (r"unknown device 'tpu'", r"choose one of: cpu"), "device"),
    Case("device-meta", mlp, lambda lab: lab.set_device("meta"), ModeError,
         (r"'meta' is not supported here",), "device"),
    Case("dtype-unknown", mlp, lambda lab: lab.set_dtype("float8"), ModeError,
         (r"unknown dtype 'float8'", r"float32, float16, bfloat16, float64"), "dtype"),
    Case("float16-op-missing-on-cpu", half_unfriendly, lambda lab: lab.set_dtype("float16"),
         ModeError, (r"cannot run in torch\.float16", r"Low precision dtypes not supported",
                     r"left as it was"), "mode"),
    Case("bfloat16-lstm-without-kernel", lstm,
         without_kernel(lambda lab: lab.set_dtype("bfloat16")), ModeError,
         (r"^dtype: rnn \(LSTM\) cannot run in bfloat16 on cpu in this PyTorch build "
          r"\(oneDNN\): could not create a primitive descriptor", r"Use float32"), "dtype"),
    Case("bfloat16-lstm-cannot-train", lstm_bfloat16,
         without_kernel(lambda lab: lab.start_run({"steps": 5}), stage="backward"), ModeError,
         (r"rnn \(LSTM\) runs forward but cannot train \(backward\) in bfloat16 on cpu",
          r"not implemented for 'BFloat16'"), "dtype"),
    Case("too-large-to-move", gpt2_xl, lambda lab: lab.set_device("cpu"), ModeError,
         (r"gpt2_xl needs 6\.1 GiB", r"meta device"), "device"),
    # --- runs -----------------------------------------------------------------------------
    Case("kernel-larger-than-input", conv_on_tiny_input, lambda lab: lab.forward(), RunError,
         (r"forward pass failed in Conv2d", r"Kernel size can't be greater"), "0"),
    Case("shape-chain-does-not-fit", chain_that_does_not_fit, lambda lab: lab.forward(),
         RunError, (r"failed in Linear", r"2x5 and 7x2|\[2, 5\] X \[7, 2\]"), "2"),
    Case("batchnorm-batch-of-one", batchnorm_batch_of_one, lambda lab: lab.forward(),
         RunError, (r"failed in BatchNorm1d", r"more than 1 value per channel",
                    r"batch of 2 or more, or switch to eval mode"), "1"),
    Case("batchnorm-batch-of-one-backward", batchnorm_batch_of_one, lambda lab: lab.backward(),
         RunError, (r"backward pass failed in BatchNorm1d", r"more than 1 value per channel"),
         "1"),
    Case("failure-after-batchnorm-updated", batchnorm_then_failure, lambda lab: lab.forward(),
         RunError, (r"failed in Linear",), "1"),
    Case("forward-too-large", gpt2_xl, lambda lab: lab.forward(), ModeError,
         (r"needs 6\.1 GiB for its parameters and buffers", r"more than tuilab materialises"),
         "run"),
    Case("backward-too-large", gpt2_xl, lambda lab: lab.backward(), ModeError,
         (r"needs 6\.1 GiB",), "run"),
    Case("train-too-large", gpt2_xl, lambda lab: lab.start_run({"steps": 1}), ModeError,
         (r"needs 6\.1 GiB",), "run"),
    Case("train-steps-zero", mlp, lambda lab: lab.start_run({"steps": 0}), ConfigError,
         (r"steps must be an int >= 1, got 0",), "steps"),
    Case("train-lr-negative", mlp, lambda lab: lab.start_run({"lr": -1.0}), ConfigError,
         (r"lr must be a positive number",), "lr"),
    Case("train-unknown-setting", mlp, lambda lab: lab.start_run({"epochs": 3}), ConfigError,
         (r"unknown training setting 'epochs'", r"allowed: .*steps"), "epochs"),
    Case("train-unknown-optimizer", mlp, lambda lab: lab.start_run({"optimizer": "lbfgs"}),
         ConfigError, (r"unknown optimizer 'lbfgs'",), "optimizer"),
    Case("train-while-training", busy_mlp, lambda lab: lab.start_run({"steps": 5}), EditError,
         (r"a training run is going",)),
    Case("init-unknown-scheme", mlp, lambda lab: lab.initialise("0", "magic"), ValueError,
         (r"unknown init scheme 'magic'",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_input_is_refused_with_its_reason_and_changes_nothing(case: Case) -> None:
    lab = case.setup()
    before = lab_state(lab)
    dirty = lab.dirty
    with pytest.raises(case.error) as caught:
        case.act(lab)
    message = str(caught.value)
    for pattern in case.match:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"
    assert "Traceback" not in message
    if case.where is not None:
        assert isinstance(caught.value, TuilabError) and caught.value.where == case.where
    assert lab_state(lab) == before, "a refused action changed the lab"
    assert lab.dirty == dirty


def test_case_count_is_what_the_readme_reports() -> None:
    assert len(CASES) >= 59


# --------------------------------------------------------------------------------------------
# the summary names the failing node (no exception: a partial table)


@pytest.mark.parametrize(("setup", "path", "message", "hint"), [
    (conv_on_tiny_input, "0", r"Kernel size can't be greater than actual input size",
     r"the kernel spans 7×7"),
    (chain_that_does_not_fit, "2", r"\[2, 5\] X \[7, 2\]",
     r"in_features should be 5"),
    (batchnorm_batch_of_one, "1", r"Expected more than 1 value per channel when training",
     r"batch of 2 or more, or switch to eval mode"),
], ids=["kernel", "chain", "batchnorm"])
def test_the_summary_names_the_failing_node_and_keeps_the_shapes_before_it(
        setup: Callable[[], Lab], path: str, message: str, hint: str) -> None:
    lab = setup()
    before = lab_state(lab)
    summary = lab.summary()
    assert summary.error is not None and summary.error.path == path
    assert re.search(message, summary.error.message)
    assert summary.error.hint and re.search(hint, summary.error.hint)
    shapes = {layer.path: layer.output_shape for layer in summary.layers}
    earlier = [p for p in shapes if p and p < path]
    assert all(shapes[p] is not None for p in earlier)
    assert lab_state(lab) == before


def test_batchnorm_in_eval_mode_takes_a_batch_of_one() -> None:
    lab = batchnorm_batch_of_one()
    lab.set_training(False)
    assert lab.summary().error is None
    report, _ = lab.forward()
    assert report.output_shape == (1, 3)


# --------------------------------------------------------------------------------------------
# empty containers, precision, lazy modules, size


@pytest.mark.parametrize("root", ["Sequential", "ModuleList", "ModuleDict", "ParameterList",
                                  "ParameterDict"])
def test_an_empty_container_is_a_model_that_passes_its_input_through(root: str) -> None:
    lab = Lab(spec_of([], (2, 4), root=root))
    summary = lab.summary()
    assert summary.error is None and summary.output_shape == (2, 4)
    report, _ = lab.forward()
    assert report.output_shape == (2, 4)
    if list(lab.model.parameters()):
        return  # ParameterList/ParameterDict hold matrices of their own
    with pytest.raises(ConfigError, match="nothing to train"):
        for _ in lab.train(lab.start_run({"steps": 2}), threading.Event()):
            pass
    assert lab.runs[-1].status == "failed" and lab.busy_reason == ""


@pytest.mark.parametrize("preset", ["mlp", "lenet", "lstm", "transformer", "resnet"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_runs_on_this_cpu(preset: str, dtype: str) -> None:
    """torch 2.13's CPU has float16 and bfloat16 kernels for every preset's ops (the case
    where an op has none is `float16-op-missing-on-cpu` above: refused, nothing changed)."""
    lab = lab_of(preset)
    lab.set_dtype(dtype)
    assert all(str(p.dtype) == f"torch.{dtype}" for p in lab.model.parameters())
    report, _ = lab.forward()
    assert report.output_shape is not None


def test_an_uninitialised_lazy_module_is_shown_as_such_and_not_saved(tmp_path) -> None:
    from tuilab.core.weights import WeightsError, save_weights

    lab = mlp()
    lab.edit("add", "LazyLinear", "", None)
    params = lab.snapshot.parameters
    assert params["3.weight"].lazy and params["3.weight"].numel == 0
    before = lab_state(lab)
    with pytest.raises(WeightsError, match=r"3\.weight is not materialised yet.*forward pass"):
        save_weights(lab.model, tmp_path / "w.safetensors")
    assert not list(tmp_path.iterdir())
    assert lab_state(lab) == before
    # the workspace with a lazy block saves and opens again (its size counts as nothing)
    lab.save(tmp_path / "lazy.toml")
    again = Lab.open(tmp_path / "lazy.toml")
    assert again.spec.root.children[3].block == "LazyLinear"
    lab.forward()  # the first forward gives it a shape; now it saves
    save_weights(lab.model, tmp_path / "w.safetensors")


def test_a_model_too_large_for_memory_stays_on_meta_and_says_what_it_needs() -> None:
    lab = gpt2_xl()
    assert lab.on_meta and lab.too_large_bytes > MATERIALISE_LIMIT_BYTES
    assert all(p.is_meta for p in lab.model.parameters())
    assert "needs 6.1 GiB for its parameters and buffers" in lab.too_large_message()
    assert lab.summary().total_params == 1_638_022_400  # inspected without allocating it


def test_a_workspace_with_a_40_gb_layer_opens_on_meta_and_refuses_to_run(tmp_path) -> None:
    from tuilab.core.workspace import Workspace, save_workspace

    spec = spec_of([make_node("Linear", "0", {"in_features": 100_000,
                                              "out_features": 100_000})], (1, 100_000))
    path = save_workspace(Workspace(spec=spec), tmp_path / "huge.toml")
    lab = Lab.open(path)  # would allocate 37 GiB (and initialise it) on the CPU otherwise
    assert lab.on_meta
    assert "m needs 37.3 GiB for its parameters and buffers" in lab.too_large_message()
    with pytest.raises(ModeError, match=r"needs 37\.3 GiB"):
        lab.forward()
    assert lab.summary().output_shape == (1, 100_000)


# --------------------------------------------------------------------------------------------
# a learning rate of 1e6: the run stops at the NaN, names the step and layer, keeps history


def test_a_huge_learning_rate_stops_the_run_naming_the_step_and_layer() -> None:
    lab = mlp()
    run = lab.start_run({"optimizer": "sgd", "lr": 1e6, "steps": 200, "batch_size": 16,
                         "val_every": 0})
    batches = list(lab.train(run, threading.Event()))
    last = batches[-1]
    assert run.status == "failed" and last.done
    assert re.search(r"^step \d+: the loss is (nan|inf)", run.error)
    assert "the first module whose output was not finite is" in run.error
    assert last.error_path in {"0", "1", "2"}
    assert f"is {last.error_path}" in run.error
    assert "lower the learning rate (lr=1e+06)" in run.error
    step = int(run.error.split(":")[0].split()[1])
    assert run.steps == list(range(1, step)) and len(run.losses) == step - 1  # history kept
    assert all(loss == loss for loss in run.losses)  # only the finite losses before the NaN
    assert lab.busy_reason == "" and lab.runs == [run]
    # the lab carries on: the model still runs, and the run stays in the workspace
    lab.set_training(False)
    assert any(r["status"] == "failed" for r in lab.workspace().runs)
