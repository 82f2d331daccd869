"""tuilab.core.training: the trainer against a hand-written PyTorch loop, and its contract.

The oracle is the loop a user writes: the same seed, the same batch order (one seeded
``randperm`` per epoch, consecutive batches, the last partial one dropped), the same
optimizer. After N steps the parameters must agree to 1e-6 and every loss must match.
"""

from __future__ import annotations

import copy
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tuilab.core.errors import ModeError
from tuilab.core.tasks import TaskData, make_task
from tuilab.core.training import (
    TASK_DEFAULTS,
    ConfigError,
    MetricsBatch,
    TrainConfig,
    check_config,
    evaluate,
    train,
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def moons() -> TaskData:
    return make_task("moons", samples=320, seed=0)


def small_net(seed: int = 0, out: int = 2) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, out))


def run(model, data, config, **kwargs) -> list[MetricsBatch]:
    stop = kwargs.pop("stop", threading.Event())
    return list(train(model, data, config, stop=stop, **kwargs))


def all_steps(batches):
    return [s for b in batches for s in b.steps]


def all_losses(batches):
    return [v for b in batches for v in b.losses]


def hand_loop(model, data, config, loss_fn=F.cross_entropy):
    """The loop from the tutorials, written out; returns every step's loss."""
    torch.manual_seed(config.seed)
    order = torch.Generator().manual_seed(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                              weight_decay=config.weight_decay)
    elif config.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    x, y = data.x_train, data.y_train
    n = x.shape[0]
    batch = min(config.batch_size, n)
    losses, step = [], 0
    model.train()
    while step < config.steps:
        perm = torch.randperm(n, generator=order)
        for lo in range(0, n - batch + 1, batch):
            idx = perm[lo:lo + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            losses.append(loss.item())
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            step += 1
            if step == config.steps:
                break
    return losses


# --- PyTorch as the oracle ------------------------------------------------------------------
@pytest.mark.parametrize(("optimizer", "extra"), [
    ("sgd", {}),
    ("sgd", {"weight_decay": 1e-3, "momentum": 0.5, "grad_clip": 0.5}),
    ("adam", {}),
    ("adamw", {"weight_decay": 0.1}),
])
def test_train_equals_a_hand_written_loop(moons, optimizer, extra):
    config = TrainConfig(task="moons", optimizer=optimizer, lr=0.05, batch_size=48, steps=25,
                         seed=3, val_every=0, **extra)
    ours = small_net()
    oracle = copy.deepcopy(ours)
    batches = run(ours, moons, config)
    expected = hand_loop(oracle, moons, config)
    assert all_losses(batches) == pytest.approx(expected, abs=1e-6)
    for (name, p), q in zip(ours.named_parameters(), oracle.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), name


def test_a_large_training_set_gathered_per_batch_gives_the_same_run(moons, monkeypatch):
    """Above EPOCH_COPY_BYTES batches are gathered from the permutation instead of sliced
    from a shuffled copy: the same batches, so the same losses and weights as the hand loop."""
    import tuilab.core.training as training

    monkeypatch.setattr(training, "EPOCH_COPY_BYTES", 0)  # moons now counts as large
    config = TrainConfig(task="moons", optimizer="adam", lr=0.05, batch_size=48, steps=40,
                         seed=3, val_every=0)
    ours = small_net()
    oracle = copy.deepcopy(ours)
    assert all_losses(run(ours, moons, config)) == pytest.approx(
        hand_loop(oracle, moons, config), abs=1e-6)
    for p, q in zip(ours.parameters(), oracle.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_regression_and_token_tasks_match_the_hand_loop():
    data = make_task("sine", samples=200)
    config = TrainConfig(task="sine", optimizer="adam", lr=1e-2, batch_size=32, steps=12,
                         val_every=0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
    oracle = copy.deepcopy(net)
    got = all_losses(run(net, data, config))
    assert got == pytest.approx(hand_loop(oracle, data, config, F.mse_loss), abs=1e-6)

    tokens = make_task("tokens", samples=64, vocab_size=11)
    config = replace_config(config, task="tokens", steps=6, batch_size=16)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(11, 8), nn.Linear(8, 11))
    oracle = copy.deepcopy(net)
    got = all_losses(run(net, tokens, config))

    def flat(out, y):
        return F.cross_entropy(out.reshape(-1, 11), y.reshape(-1))

    assert got == pytest.approx(hand_loop(oracle, tokens, config, flat), abs=1e-6)


def replace_config(config: TrainConfig, **changes) -> TrainConfig:
    from dataclasses import replace

    return replace(config, **changes)


def test_bfloat16_autocast_equals_a_hand_written_autocast_loop(moons):
    """The run keeps one autocast region over many steps: the weights it uses must still be
    the current ones (autocast's weight cache would hand out stale bfloat16 copies)."""
    config = TrainConfig(task="moons", lr=1e-2, batch_size=32, steps=60, dtype="bfloat16",
                         val_every=0)
    ours = small_net(5)
    oracle = copy.deepcopy(ours)
    got = all_losses(run(ours, moons, config, flush_every_s=10.0))

    def autocast_loss(out, y):
        return F.cross_entropy(out.float(), y)

    class PerStep(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.inner(x)

    expected = hand_loop(PerStep(oracle), moons, config, autocast_loss)
    assert got == pytest.approx(expected, abs=1e-5)
    assert sum(got[-10:]) < 0.5 * sum(got[:10])
    assert all(p.dtype is torch.float32 for p in ours.parameters())


def test_weights_already_in_low_precision_are_trained_as_they_are(moons):
    """The user cast the model (seed 002's .half()): bfloat16 trains; float16 with Adam is
    refused (eps=1e-8 is 0 in float16: NaN from step 2), float16 with SGD trains."""
    net = small_net().bfloat16()
    batches = run(net, moons, TrainConfig(task="moons", dtype="bfloat16", lr=1e-2, steps=80))
    losses = all_losses(batches)
    assert batches[-1].error is None and sum(losses[-10:]) < 0.6 * sum(losses[:10])
    assert all(p.dtype is torch.bfloat16 for p in net.parameters())
    assert evaluate(net, moons)[0] < losses[0]
    with pytest.raises(ModeError, match="eps") as info:
        train(small_net().half(), moons, TrainConfig(task="moons", dtype="float16"),
              stop=threading.Event())
    assert info.value.where == "optimizer"
    half = small_net().half()
    batches = run(half, moons, TrainConfig(task="moons", dtype="float16", optimizer="sgd",
                                           lr=0.1, steps=60))
    losses = all_losses(batches)
    assert batches[-1].error is None and losses[-1] < losses[0]
    assert half[0].weight.dtype is torch.float16


def test_float64_run_and_determinism(moons):
    config = TrainConfig(task="moons", steps=30, lr=1e-2, dtype="float64", val_every=10)
    a, b = small_net().double(), small_net().double()
    rng = torch.get_rng_state()
    first, second = run(a, moons, config), run(b, moons, config)
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left as it was
    assert all_losses(first) == all_losses(second)
    assert a[0].weight.dtype is torch.float64 and torch.equal(a[0].weight, b[0].weight)


# --- metrics batching -----------------------------------------------------------------------
def test_every_step_once_in_order_in_few_batches(moons):
    config = TrainConfig(task="moons", steps=400, lr=1e-2, batch_size=32, val_every=100)
    batches = run(small_net(), moons, config)
    assert all_steps(batches) == list(range(1, 401))
    assert len(all_losses(batches)) == 400
    assert [b.done for b in batches] == [False] * (len(batches) - 1) + [True]
    last = batches[-1]
    assert last.step == last.total_steps == 400 and last.error is None and not last.stopped
    assert last.eta_s == 0.0 and last.steps_per_s > 0
    assert [s for b in batches for s in b.val_steps] == [100, 200, 300, 400]
    accuracy = [a for b in batches for a in b.val_accuracy]
    assert len(accuracy) == 4 and accuracy[-1] > 0.8
    losses = all_losses(batches)
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20


def test_metrics_are_batched_by_the_flush_interval_not_per_step(moons):
    """An interval longer than the run: all 400 steps (and their validations) arrive in the
    one final batch. How many batches a 0.2 s interval gives depends on the machine's speed,
    so the count is asserted only where the interval makes it certain."""
    config = TrainConfig(task="moons", steps=400, lr=1e-2, batch_size=32, val_every=100)
    (only,) = run(small_net(), moons, config, flush_every_s=3600.0)
    assert only.done and only.steps == tuple(range(1, 401))
    assert only.val_steps == (100, 200, 300, 400)


def test_flush_every_zero_yields_each_step(moons):
    batches = run(small_net(), moons, TrainConfig(task="moons", steps=7, val_every=0),
                  flush_every_s=0.0)
    assert [b.steps for b in batches] == [(i,) for i in range(1, 8)]
    assert batches[2].step == 3 and batches[2].eta_s >= 0


def test_validation_runs_in_eval_mode_and_training_flags_are_restored(moons):
    seen: list[bool] = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return x

    net = nn.Sequential(nn.Linear(2, 8), Spy(), nn.ReLU(), nn.Linear(8, 2), nn.Dropout(0.1))
    net.eval()
    net[4].train()  # mixed flags must come back exactly
    flags = [m.training for m in net.modules()]
    batches = run(net, moons, TrainConfig(task="moons", steps=10, batch_size=64, val_every=5))
    # 10 training steps; each validation is one pass over 64 validation samples
    assert seen.count(True) == 10 and seen.count(False) == 2
    assert [m.training for m in net.modules()] == flags
    val = [v for b in batches for v in b.val_losses]
    loss, acc = evaluate(net, moons)
    assert val[-1] == pytest.approx(loss, rel=1e-5) and 0 <= acc <= 1


def test_evaluate_matches_pytorch(moons):
    net = small_net()
    loss, acc = evaluate(net, moons, batch_size=7)
    with torch.no_grad():
        out = net(moons.x_val)
    assert loss == pytest.approx(F.cross_entropy(out, moons.y_val).item(), rel=1e-5)
    assert acc == pytest.approx((out.argmax(1) == moons.y_val).float().mean().item())
    sine = make_task("sine", samples=50)
    assert evaluate(nn.Linear(1, 1), sine)[1] is None


# --- stop, pause, threads -------------------------------------------------------------------
def test_stop_ends_the_run_quickly_and_keeps_the_history(moons):
    """Stop is checked before every step: once it is set, no further step runs and the next
    batch is the last one (behaviour, not a wall-clock bound: the machine may be busy)."""
    stop = threading.Event()
    batches = []
    for batch in train(small_net(), moons, TrainConfig(task="moons", steps=10**7), stop=stop,
                       flush_every_s=0.05):
        batches.append(batch)
        if len(batches) == 2:
            stop.set()
    assert len(batches) == 3
    last = batches[-1]
    assert last.done and last.stopped and last.error is None
    assert last.steps == () and last.step == batches[1].step  # nothing ran after the stop
    assert all_steps(batches) == list(range(1, last.step + 1)) and last.step > 0


def test_stop_before_the_first_step(moons):
    stop = threading.Event()
    stop.set()
    (only,) = run(small_net(), moons, TrainConfig(task="moons"), stop=stop)
    assert only.done and only.stopped and only.step == 0 and only.steps == ()


def test_pause_waits_and_resumes_without_losing_steps(moons):
    """While paused no step runs: every step after the pause arrives only once the pause
    was lifted (the order of events is asserted, never how long anything took)."""
    pause, resumed = threading.Event(), threading.Event()
    batches = []
    after_resume: list[bool] = []

    def resume() -> None:
        resumed.set()
        pause.clear()

    for batch in train(small_net(), moons, TrainConfig(task="moons", steps=20, val_every=0),
                       stop=threading.Event(), pause=pause, flush_every_s=0.0):
        batches.append(batch)
        if batch.steps and batch.steps[0] > 5:
            after_resume.append(resumed.is_set())
        if batch.step == 5 and not pause.is_set():
            pause.set()
            threading.Timer(0.3, resume).start()
    assert after_resume and all(after_resume)
    assert all_steps(batches) == list(range(1, 21)) and batches[-1].done


def test_runs_in_a_worker_thread_and_leaves_the_callers_modes_alone(moons):
    """autocast and grad mode are thread-local: the consumer's no_grad and the absence of
    autocast hold between batches, while the run itself trains under autocast."""
    batches: list[MetricsBatch] = []
    between: list[tuple[bool, bool]] = []

    def worker() -> None:
        with torch.no_grad():
            for batch in train(small_net(), moons, TrainConfig(task="moons", steps=40,
                                                                  dtype="bfloat16", lr=1e-2),
                               stop=threading.Event(), flush_every_s=0.0):
                between.append((torch.is_grad_enabled(), torch.is_autocast_enabled("cpu")))
                batches.append(batch)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert batches[-1].done and batches[-1].error is None
    assert set(between) == {(False, False)}
    losses = all_losses(batches)
    assert len(losses) == 40 and losses[-1] < losses[0]


# --- faults ---------------------------------------------------------------------------------
def test_huge_learning_rate_names_the_step_and_the_layer(moons):
    net = small_net()
    batches = run(net, moons, TrainConfig(task="moons", optimizer="sgd", lr=1e6, steps=200))
    last = batches[-1]
    assert last.done and last.error is not None and "step " in last.error
    assert last.error_path in {"0", "1", "2"} and last.error_path in last.error
    failed_at = int(last.error.split()[1].rstrip(":"))
    assert last.step == failed_at - 1 < 200
    assert all_steps(batches) == list(range(1, failed_at))
    assert "Traceback" not in last.error and "lr" in last.error


def test_an_exception_in_a_step_becomes_one_line_naming_the_module(moons):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    (last,) = run(net, moons, TrainConfig(task="moons", steps=5))
    assert last.done and last.step == 0
    assert last.error.startswith("step 1: RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    assert "\n" not in last.error and last.error_path == "0"
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_out_of_memory_keeps_history_and_model(moons):
    class Boom(nn.Module):
        calls = 0

        def forward(self, x):
            Boom.calls += 1
            if Boom.calls == 4:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
            return x

    net = nn.Sequential(nn.Linear(2, 2), Boom())
    batches = run(net, moons, TrainConfig(task="moons", steps=10, val_every=0),
                  flush_every_s=0.0)
    last = batches[-1]
    assert "out of memory" in last.error and last.error.startswith("step 4")
    assert all_steps(batches) == [1, 2, 3] and last.step == 3
    assert all(p.grad is None for p in net.parameters())


# --- setup errors ---------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value"), [
    ("task", "imagenet"), ("optimizer", "lbfgs"), ("lr", 0.0), ("lr", float("nan")),
    ("batch_size", 0), ("batch_size", 2.5), ("steps", 0), ("weight_decay", -1.0),
    ("momentum", 1.0), ("grad_clip", 0.0), ("loss", "hinge"), ("seed", -1), ("val_every", -1),
])
def test_check_config_names_the_field(field, value):
    with pytest.raises(ConfigError) as info:
        check_config(TrainConfig(**{field: value}))
    assert info.value.where == field and isinstance(info.value, ValueError)


def test_check_config_devices_and_dtypes():
    assert check_config(TrainConfig(dtype="bf16")).dtype == "bfloat16"
    for field, value in (("device", "tpu"), ("dtype", "int8")):
        with pytest.raises(ModeError) as info:
            check_config(TrainConfig(**{field: value}))
        assert info.value.where == field
    assert set(TASK_DEFAULTS) <= {t for t in __import__("tuilab.core.tasks").core.tasks.TASKS}


def test_setup_refuses_a_model_in_the_wrong_mode(moons):
    with pytest.raises(ModeError, match="float64"):
        train(small_net().double(), moons, TrainConfig(task="moons"), stop=threading.Event())
    with pytest.raises(ModeError, match="float32"):
        train(small_net().double(), moons, TrainConfig(task="moons", dtype="bfloat16"),
              stop=threading.Event())
    with pytest.raises(ModeError, match="bfloat16") as info:  # float16 autocast: GPU only
        train(small_net(), moons, TrainConfig(task="moons", dtype="float16"),
              stop=threading.Event())
    assert info.value.where == "dtype"
    with torch.device("meta"):
        meta = small_net()
    with pytest.raises(ModeError, match="meta"):
        train(meta, moons, TrainConfig(task="moons"), stop=threading.Event())
    frozen = small_net().requires_grad_(False)
    with pytest.raises(ConfigError, match="nothing to train"):
        train(frozen, moons, TrainConfig(task="moons"), stop=threading.Event())


def test_lazy_layers_and_a_scalar_model(moons):
    net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(2))
    batches = run(net, moons, TrainConfig(task="moons", steps=5))
    assert batches[-1].error is None and net[0].weight.shape == (8, 2)

    class Scalar(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, x):
            return self.fc(x).sum()

    data = make_task("teacher", model=Scalar(), input_shape=(2,), samples=40)
    (last,) = run(Scalar(), data, TrainConfig(task="teacher", steps=3, batch_size=8))
    assert "batch_size=1" in last.error
    ok = run(Scalar(), data, TrainConfig(task="teacher", steps=3, batch_size=1))
    assert ok[-1].error is None


# --- CUDA -----------------------------------------------------------------------------------
@pytest.mark.cuda
@cuda
def test_cuda_train_step_matches_the_cpu_hand_loop(moons):
    config = TrainConfig(task="moons", optimizer="sgd", lr=0.05, steps=10, val_every=5,
                         device="cuda")
    net = small_net()
    oracle = copy.deepcopy(net)
    batches = run(net.cuda(), moons, config)
    expected = hand_loop(oracle, moons, config)
    assert all_losses(batches) == pytest.approx(expected, abs=1e-4)
    for p, q in zip(net.parameters(), oracle.parameters(), strict=True):
        assert p.is_cuda and torch.allclose(p.cpu(), q, atol=1e-4)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_mixed_precision_trains_with_float32_weights(moons, dtype):
    net = small_net().cuda()
    batches = run(net, moons, TrainConfig(task="moons", steps=150, lr=1e-2, device="cuda:0",
                                          dtype=dtype, grad_clip=1.0))
    losses = all_losses(batches)
    assert batches[-1].error is None and len(losses) == 150
    assert sum(losses[-10:]) < 0.6 * sum(losses[:10])
    assert all(p.dtype is torch.float32 for p in net.parameters())


@pytest.mark.cuda
@cuda
def test_mode_change_to_cuda_train_and_back(moons):
    from tuilab.core.runtime import change_mode

    net = small_net()
    change_mode(net, device="cuda", probe_input=moons.x_val[:2])
    with pytest.raises(ModeError, match="cuda"):
        train(net, moons, TrainConfig(task="moons"), stop=threading.Event())
    batches = run(net, moons, TrainConfig(task="moons", steps=20, device="cuda"))
    assert batches[-1].error is None
    change_mode(net, device="cpu")
    assert evaluate(net, moons)[0] < 1.0
