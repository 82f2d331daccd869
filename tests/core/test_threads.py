"""The training run's thread count: chosen from the size of a step, overridable, shown, and
put back when the run ends."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from tuilab.core.tasks import make_task
from tuilab.core.threads import (
    SPLIT_FLOPS,
    ThreadChoice,
    choose_threads,
    intra_op_threads,
    one_thread_for_keys,
    resolve_threads,
    step_flops,
)
from tuilab.core.training import ConfigError, TrainConfig, check_config, train


def test_a_step_too_small_to_split_gets_one_thread() -> None:
    assert choose_threads(SPLIT_FLOPS - 1, available=8) == 1
    assert choose_threads(2_400_000, available=2) == 1  # the mlp preset's size


def test_a_big_step_keeps_torchs_default_and_an_unknown_one_too() -> None:
    assert choose_threads(SPLIT_FLOPS, available=8) == 8
    assert choose_threads(10**12, available=2) == 2
    assert choose_threads(None, available=4) == 4
    assert choose_threads(10**12, available=0) == 1


def test_step_flops_of_an_mlp_is_six_times_its_forward_macs() -> None:
    model = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))
    macs = 64 * (20 * 256 + 256 * 10)  # per batch of 64
    assert step_flops(model, torch.zeros(1, 20), 64) == 6 * macs


def test_step_flops_counts_a_conv_by_its_macs_not_its_parameters() -> None:
    conv = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1))
    flops = step_flops(conv, torch.zeros(1, 1, 28, 28), 32)
    assert flops == 6 * 32 * 28 * 28 * 8 * 9  # far more than 6 × params × batch
    assert flops > 6 * sum(p.numel() for p in conv.parameters()) * 32


def test_resolve_threads_auto_and_user() -> None:
    small = nn.Linear(4, 2)
    auto = resolve_threads(None, small, torch.zeros(1, 4), 8, available=2)
    assert auto == ThreadChoice(1, 6 * 8 * 4 * 2, "auto")
    assert auto.label() == "1 thread (auto, 384 FLOP/step)"
    user = resolve_threads(3, small, torch.zeros(1, 4), 8, available=2)
    assert user.threads == 3 and user.chosen_by == "user" and user.label() == "3 threads (set)"


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, 10_000])
def test_config_refuses_a_bad_thread_count(bad: object) -> None:
    with pytest.raises(ConfigError, match="threads must be an int") as info:
        check_config(TrainConfig(threads=bad))  # type: ignore[arg-type]
    assert info.value.where == "threads"


def _run_threads(config: TrainConfig, seen: list[int]) -> list[int]:
    """Train in a fresh thread (as the app's worker does); torch's thread count inside the
    run (read between steps) and after it, and what the batches say."""
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    data = make_task("moons", input_shape=(2,), vocab_size=None, model=model, seed=0)
    said: list[int] = []

    def worker() -> None:
        before = torch.get_num_threads()
        for batch in train(model, data, config, stop=threading.Event(), flush_every_s=0.0):
            seen.append(torch.get_num_threads())
            said.append(batch.threads)
        seen.append(-1)
        seen.append(torch.get_num_threads() - before)  # 0: put back

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    return said


def test_the_users_thread_count_is_used_during_the_run_and_put_back() -> None:
    seen: list[int] = []
    said = _run_threads(TrainConfig(task="moons", steps=3, val_every=0, threads=3), seen)
    assert seen == [3, 3, 3, -1, 0] and said == [3, 3, 3]


def test_a_small_model_trains_on_one_thread_by_default() -> None:
    seen: list[int] = []
    said = _run_threads(TrainConfig(task="moons", steps=2, val_every=0), seen)
    assert seen == [1, 1, -1, 0] and said == [1, 1]


def test_the_callers_thread_count_is_left_alone() -> None:
    main = torch.get_num_threads()
    _run_threads(TrainConfig(task="moons", steps=2, val_every=0, threads=1), [])
    assert torch.get_num_threads() == main


def test_a_users_own_forward_is_never_run_to_count_flops() -> None:
    """A user's forward may count its calls or print: the rule estimates from parameters."""
    calls: list[int] = []

    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            return self.fc(x)

    assert step_flops(Counting(), torch.zeros(1, 4), 8) == 6 * (4 * 3 + 3) * 8
    assert calls == []


def _in_a_new_thread() -> int:
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def test_the_keys_thread_computes_on_one_thread_and_new_threads_keep_the_number() -> None:
    with intra_op_threads(3):
        with one_thread_for_keys():
            assert torch.get_num_threads() == 1
            assert _in_a_new_thread() == 3  # a run, a summary, a values worker
        assert torch.get_num_threads() == 3
        assert _in_a_new_thread() == 3
