"""tuilab.core.tasks: every task checked against torch/numpy or a hand computation."""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tuilab.core.paths import assets_dir
from tuilab.core.tasks import (
    MAX_TASK_BYTES,
    TASKS,
    TaskData,
    list_tasks,
    load_user_data,
    make_task,
)

DATA_TASKS = ["spirals", "moons", "circles", "xor", "blobs", "sine", "sine_seq", "tokens", "digits"]


def _all(task: TaskData) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([task.x_train, task.x_val]), torch.cat([task.y_train, task.y_val])


def _same(a: TaskData, b: TaskData) -> bool:
    return all(
        torch.equal(getattr(a, f), getattr(b, f)) for f in ("x_train", "y_train", "x_val", "y_val")
    )


def test_registry_lists_every_task_once() -> None:
    assert [t.name for t in list_tasks()] == list(TASKS)
    assert set(TASKS) == {*DATA_TASKS, "teacher"}
    for info in list_tasks():
        assert info.kind in {"classification", "regression", "tokens"}
        assert info.description


@pytest.mark.parametrize("name", DATA_TASKS)
def test_same_seed_same_tensors_other_seed_others(name: str) -> None:
    a = make_task(name, seed=3, samples=200)
    b = make_task(name, seed=3, samples=200)
    c = make_task(name, seed=4, samples=200)
    assert _same(a, b)
    assert not torch.equal(a.x_train, c.x_train)
    # Nothing shared between calls: changing one task's tensors leaves the next call alone.
    a.x_train.zero_()
    assert _same(b, make_task(name, seed=3, samples=200))


@pytest.mark.parametrize("name", DATA_TASKS)
def test_global_rng_is_left_alone(name: str) -> None:
    before = torch.get_rng_state()
    make_task(name, samples=50)
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize(
    ("name", "x_shape", "x_dtype", "y_shape", "y_dtype", "kind", "loss", "classes"),
    [
        ("spirals", (2,), torch.float32, (), torch.int64, "classification", "cross_entropy", 2),
        ("moons", (2,), torch.float32, (), torch.int64, "classification", "cross_entropy", 2),
        ("circles", (2,), torch.float32, (), torch.int64, "classification", "cross_entropy", 2),
        ("xor", (2,), torch.float32, (), torch.int64, "classification", "cross_entropy", 2),
        ("blobs", (2,), torch.float32, (), torch.int64, "classification", "cross_entropy", 3),
        ("sine", (1,), torch.float32, (1,), torch.float32, "regression", "mse", None),
        ("sine_seq", (20, 1), torch.float32, (1,), torch.float32, "regression", "mse", None),
        ("tokens", (16,), torch.int64, (16,), torch.int64, "tokens", "cross_entropy", 16),
        ("digits", (1, 8, 8), torch.float32, (), torch.int64, "classification",
         "cross_entropy", 10),
    ],
)
def test_shapes_dtypes_and_defaults(
    name, x_shape, x_dtype, y_shape, y_dtype, kind, loss, classes
) -> None:
    task = make_task(name)
    n = 1797 if name == "digits" else 1024
    n_val = round(n * 0.2)
    assert task.x_train.shape == (n - n_val, *x_shape)
    assert task.x_val.shape == (n_val, *x_shape)
    assert task.y_train.shape == (n - n_val, *y_shape)
    assert task.y_val.shape == (n_val, *y_shape)
    for t in (task.x_train, task.x_val):
        assert t.dtype == x_dtype and t.device.type == "cpu"
    for t in (task.y_train, task.y_val):
        assert t.dtype == y_dtype
    assert (task.kind, task.loss, task.num_classes) == (kind, loss, classes)
    assert task.input_shape == x_shape
    assert task.name == name and task.description
    if classes is not None:
        _, y = _all(task)
        assert int(y.min()) >= 0 and int(y.max()) == classes - 1


@pytest.mark.parametrize(
    ("samples", "fraction", "n_val"), [(100, 0.25, 25), (10, 0.33, 3), (2, 0.01, 1), (2, 0.99, 1)]
)
def test_split_sizes(samples: int, fraction: float, n_val: int) -> None:
    task = make_task("sine", samples=samples, val_fraction=fraction)
    assert (task.train_size, task.val_size) == (samples - n_val, n_val)


def test_split_is_a_partition_of_one_draw() -> None:
    """Changing only val_fraction reshuffles the same points: the union does not change."""
    a, b = make_task("moons", val_fraction=0.2), make_task("moons", val_fraction=0.5)
    xa, xb = _all(a)[0], _all(b)[0]
    sort = lambda x: x[torch.argsort(x[:, 0] * 1000 + x[:, 1])]  # noqa: E731
    assert torch.equal(sort(xa), sort(xb))


@pytest.mark.parametrize(("name", "k"), [("spirals", 2), ("moons", 2), ("blobs", 5)])
def test_classes_balanced_and_split_stratified(name: str, k: int) -> None:
    task = make_task(name, samples=500, num_classes=k if name != "moons" else None)
    counts = torch.bincount(_all(task)[1], minlength=k)
    assert counts.tolist() == [500 // k] * k
    val_counts = torch.bincount(task.y_val, minlength=k)
    assert (val_counts - counts * 0.2).abs().max() <= 1


def test_noise_free_geometry() -> None:
    circles = make_task("circles", noise=0.0)
    x, y = _all(circles)
    radius = x.norm(dim=1)
    torch.testing.assert_close(radius[y == 0], torch.ones(int((y == 0).sum())))
    torch.testing.assert_close(radius[y == 1], torch.full((int((y == 1).sum()),), 0.5))

    xor_x, xor_y = _all(make_task("xor", noise=0.0))
    assert torch.equal(xor_y, ((xor_x[:, 0] > 0) != (xor_x[:, 1] > 0)).long())

    moons_x, moons_y = _all(make_task("moons", noise=0.0))
    upper = moons_x[moons_y == 0] + torch.tensor([0.5, 0.25])  # back on the unit circle
    torch.testing.assert_close(upper.norm(dim=1), torch.ones(len(upper)))
    lower = moons_x[moons_y == 1] + torch.tensor([0.5, 0.25]) - torch.tensor([1.0, 0.5])
    torch.testing.assert_close(lower.norm(dim=1), torch.ones(len(lower)))

    spiral_x, _ = _all(make_task("spirals", noise=0.0))
    r = spiral_x.norm(dim=1)
    assert float(r.min()) >= 0.1 - 1e-6 and float(r.max()) <= 1.0 + 1e-6


@pytest.mark.parametrize("noise", [0.0, 0.05, 0.2])
def test_noise_scales_the_jitter(noise: float) -> None:
    """Distance to the clean ring is |N(0, noise^2 I)| projected: mean ~ noise * sqrt(2/pi)."""
    x, y = _all(make_task("circles", noise=noise, samples=4000))
    off_ring = x.norm(dim=1) - torch.where(y == 0, 1.0, 0.5)
    assert float(off_ring.abs().mean()) == pytest.approx(noise * math.sqrt(2 / math.pi),
                                                         rel=0.15, abs=1e-6)


def test_sine_is_sin_of_x() -> None:
    x, y = _all(make_task("sine", noise=0.0))
    torch.testing.assert_close(y, torch.sin(x))
    assert float(x.min()) >= -math.pi and float(x.max()) <= math.pi
    noisy_x, noisy_y = _all(make_task("sine", noise=0.1))
    residual = noisy_y - torch.sin(noisy_x)
    assert 0.07 < float(residual.std()) < 0.13


def test_sine_seq_target_is_the_next_sine_value() -> None:
    task = make_task("sine_seq", noise=0.0, input_shape=(12, 1))
    x, y = _all(task)
    assert x.shape[1:] == (12, 1) and y.shape[1:] == (1,)
    # sin(a + 2h) = 2 cos(h) sin(a + h) - sin(a): the next value from the last two.
    h = 0.25
    torch.testing.assert_close(y[:, 0], 2 * math.cos(h) * x[:, -1, 0] - x[:, -2, 0],
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(x[:, 2:, 0], 2 * math.cos(h) * x[:, 1:-1, 0] - x[:, :-2, 0],
                               atol=1e-5, rtol=0)


def test_sine_seq_layouts() -> None:
    rnn = make_task("sine_seq", input_shape=(10, 1), samples=30)
    tcn = make_task("sine_seq", input_shape=(1, 10), samples=30)
    flat = make_task("sine_seq", input_shape=(10,), samples=30)
    assert tcn.x_train.shape == (24, 1, 10) and flat.x_train.shape == (24, 10)
    assert torch.equal(rnn.x_train[:, :, 0], tcn.x_train[:, 0, :])
    assert torch.equal(rnn.x_train[:, :, 0], flat.x_train)


def test_tokens_are_shifted_and_noise_free_is_an_arithmetic_progression() -> None:
    task = make_task("tokens", noise=0.0, vocab_size=11, input_shape=(9,))
    x, y = _all(task)
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert int(x.min()) >= 0 and int(torch.cat([x, y]).max()) < 11
    full = torch.cat([x, y[:, -1:]], dim=1)
    steps = (full[:, 1:] - full[:, :-1]) % 11
    assert torch.equal(steps, steps[:, :1].expand_as(steps))
    assert set(steps[:, 0].tolist()) == {1, 2, 3}


def _count_model_nll(
    train_ctx: torch.Tensor, train_next: torch.Tensor, val_ctx: torch.Tensor,
    val_next: torch.Tensor, contexts: int, vocab: int,
) -> float:
    counts = torch.full((contexts, vocab), 0.1)  # smoothed counts
    counts.index_put_((train_ctx, train_next), torch.ones(train_ctx.numel()), accumulate=True)
    log_p = (counts / counts.sum(1, keepdim=True)).log()
    return float(-log_p[val_ctx, val_next].mean())


def test_tokens_learnable_far_beyond_chance() -> None:
    """Count models fitted on train beat the uniform guess (log V) by a wide margin on val,
    and two tokens of context beat one: there is structure for a sequence model to learn."""
    vocab = 16
    task = make_task("tokens", vocab_size=vocab, samples=2000, noise=0.1)
    xt, yt, xv, yv = task.x_train, task.y_train, task.x_val, task.y_val
    bigram = _count_model_nll(xt.reshape(-1), yt.reshape(-1), xv.reshape(-1), yv.reshape(-1),
                              vocab, vocab)
    pairs = lambda x: (x[:, :-1] * vocab + x[:, 1:]).reshape(-1)  # noqa: E731
    trigram = _count_model_nll(pairs(xt), yt[:, 1:].reshape(-1), pairs(xv),
                               yv[:, 1:].reshape(-1), vocab * vocab, vocab)
    assert bigram < 0.7 * math.log(vocab)
    assert trigram < 0.4 * math.log(vocab)
    counts = torch.zeros(vocab, vocab).index_put_(
        (xt.reshape(-1), yt.reshape(-1)), torch.ones(xt.numel()), accumulate=True)
    accuracy = (counts.argmax(1)[xv] == yv).float().mean()
    assert float(accuracy) > 4 / vocab


def test_tokens_noise_replaces_about_that_fraction() -> None:
    clean = make_task("tokens", noise=0.0, samples=500)
    noisy = make_task("tokens", noise=0.5, samples=500)
    # Same seed, same draws up to the noise: the fraction changed is ~0.5 * 15/16.
    changed = (clean.x_train != noisy.x_train).float().mean()
    assert 0.4 < float(changed) < 0.53


def _digits_npz() -> tuple[np.ndarray, np.ndarray]:
    with np.load(assets_dir() / "digits.npz") as data:
        return data["images"], data["labels"]


def test_digits_asset_is_the_uci_test_set() -> None:
    images, labels = _digits_npz()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert labels.shape == (1797,) and labels.dtype == np.uint8
    assert int(images.max()) == 16 and int(labels.max()) == 9
    assert int(images.sum(dtype=np.int64)) == 561_718  # recorded in digits-LICENSE.txt
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert (assets_dir() / "digits-LICENSE.txt").is_file()


def test_digits_task_holds_exactly_the_npz_images_and_labels() -> None:
    images, labels = _digits_npz()
    task = make_task("digits")
    x, y = _all(task)
    assert x.shape == (1797, 1, 8, 8)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    rows = np.concatenate([(x.reshape(-1, 64) * 16).round().numpy().astype(np.int64),
                           y.numpy()[:, None]], axis=1)
    want = np.concatenate([images.reshape(-1, 64).astype(np.int64), labels[:, None]], axis=1)
    order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    assert np.array_equal(order(rows), order(want))
    # Stratified split: each class's validation share is within one image of 20 %.
    counts = np.bincount(labels)
    val_counts = torch.bincount(task.y_val, minlength=10).numpy()
    assert np.abs(val_counts - counts * 0.2).max() <= 1


def test_digits_subset_is_balanced() -> None:
    task = make_task("digits", samples=200)
    counts = torch.bincount(_all(task)[1], minlength=10)
    assert counts.min() >= 19 and counts.max() <= 21


@pytest.mark.parametrize(
    ("shape", "samples"), [((1, 32, 32), None), ((1, 224, 224), 10), ((3, 16, 16), 30)]
)
def test_digits_resized_bilinearly(shape: tuple[int, ...], samples: int | None) -> None:
    small = make_task("digits", samples=samples)
    big = make_task("digits", input_shape=shape, samples=samples)
    assert big.x_train.shape == (small.train_size, *shape)
    assert torch.equal(big.y_train, small.y_train)
    want = F.interpolate(small.x_val, size=shape[1:], mode="bilinear", align_corners=False)
    torch.testing.assert_close(big.x_val, want.expand(-1, shape[0], -1, -1))


def test_digits_flat_shapes() -> None:
    small = make_task("digits", samples=100)
    flat = make_task("digits", input_shape=(64,), samples=100)
    mnist_like = make_task("digits", input_shape=(784,), samples=100)
    assert torch.equal(flat.x_train, small.x_train.reshape(-1, 64))
    want = F.interpolate(small.x_train, size=(28, 28), mode="bilinear", align_corners=False)
    torch.testing.assert_close(mnist_like.x_train, want.reshape(-1, 784))


def test_digits_big_inputs_are_capped_by_default_and_refused_when_asked() -> None:
    per_sample = 224 * 224 * 4 + 8
    with pytest.raises(ValueError, match=r"digits.*1797 samples.*at most \d+ fit in 200 MB"):
        make_task("digits", input_shape=(1, 224, 224), samples=1797)
    with pytest.raises(ValueError, match="the data set has 1797 images"):
        make_task("digits", samples=1798)
    assert 1797 * per_sample > MAX_TASK_BYTES


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "nope"}, r"unknown task 'nope'; choose one of: spirals"),
        ({"name": "moons", "input_shape": (3,)}, r"'moons' has inputs of shape \(2,\)"),
        ({"name": "moons", "num_classes": 3}, r"num_classes must be 2 \(or None\), got 3"),
        ({"name": "blobs", "num_classes": 1}, r"num_classes must be an int from 2 to 100"),
        ({"name": "sine", "val_fraction": 1.0}, r"val_fraction must be between 0 and 1"),
        ({"name": "sine", "samples": 1}, r"samples must be an int >= 2"),
        ({"name": "sine", "noise": -0.1}, r"noise must be a finite number >= 0"),
        ({"name": "sine", "seed": -1}, r"seed must be an int"),
        ({"name": "sine", "input_shape": (0,)}, r"input_shape must be a non-empty tuple"),
        ({"name": "tokens", "noise": 1.5}, r"probability .* must be in \[0, 1\]"),
        ({"name": "tokens", "vocab_size": 1}, r"vocab_size must be an int from 2"),
        ({"name": "tokens", "input_shape": (4, 4)}, r"input_shape must be \(L,\)"),
        ({"name": "sine_seq", "input_shape": (3, 4)}, r"use \(L, 1\) for RNN"),
        ({"name": "digits", "input_shape": (2, 8, 8)}, r"'digits': input_shape \(2, 8, 8\)"),
        ({"name": "digits", "input_shape": (63,)}, r"\(D,\) with D a square number"),
        ({"name": "sine", "samples": 10**9}, r"at most \d+ fit in 200 MB"),
        ({"name": "teacher"}, r"'teacher' needs the model"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict, message: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message):
        make_task(name, **kwargs)


# ---------------------------------------------------------------------------------------
# teacher


def _hand_teacher(model: nn.Module, seed: int) -> nn.Module:
    teacher = copy.deepcopy(model)
    torch.manual_seed(seed + 1)
    for module in teacher.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return teacher.eval()


def test_teacher_targets_equal_a_hand_computation() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    task = make_task("teacher", model=model, seed=7, samples=300)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training  # the student is not switched to eval

    with torch.random.fork_rng():
        teacher = _hand_teacher(model, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(task.y_train, teacher(task.x_train))
        torch.testing.assert_close(task.y_val, teacher(task.x_val))
        assert not torch.allclose(task.y_val, model.eval()(task.x_val))  # re-initialised
    assert task.x_train.shape == (240, 4) and task.y_train.shape == (240, 3)
    assert (task.kind, task.loss, task.input_shape) == ("regression", "mse", (4,))
    assert _same(task, make_task("teacher", model=model, seed=7, samples=300))
    assert not torch.equal(task.x_train, make_task("teacher", model=model, seed=8,
                                                   samples=300).x_train)


def test_teacher_inputs_are_standard_normal_from_the_seed() -> None:
    task = make_task("teacher", model=nn.Linear(5, 2), seed=3, samples=100)
    x, _ = _all(task)
    gen = torch.Generator().manual_seed(3)
    want = torch.randn((100, 5), generator=gen)
    key = lambda t: t[torch.argsort(t[:, 0])]  # noqa: E731
    assert torch.equal(key(x), key(want))


class _RawParams(nn.Module):
    """Parameters no reset_parameters() covers (like the seed texts' MyListDense)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w


def test_teacher_reinitialises_parameters_without_reset() -> None:
    model = _RawParams()
    task = make_task("teacher", model=model, input_shape=(4,), samples=50)
    with torch.no_grad():
        assert not torch.allclose(task.y_train, model(task.x_train))


class _InProjection(nn.Module):
    """Uses only MultiheadAttention's in_proj, which lives in _reset_parameters()."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.attn.in_proj_weight, self.attn.in_proj_bias)


def test_teacher_uses_multihead_attentions_own_initialisation() -> None:
    model = _InProjection()
    task = make_task("teacher", model=model, input_shape=(4,), samples=20, seed=5)
    with torch.random.fork_rng():
        teacher = copy.deepcopy(model)
        torch.manual_seed(6)
        for module in teacher.modules():
            if isinstance(module, nn.MultiheadAttention):
                module._reset_parameters()  # xavier_uniform_ in_proj, zero biases
            elif hasattr(module, "reset_parameters"):
                module.reset_parameters()
    with torch.no_grad():
        torch.testing.assert_close(task.y_train, teacher(task.x_train))


class _Scalar(nn.Module):
    """Like the seed's FixedHiddenMLP: data-dependent loop, one scalar per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.rand_weight = torch.rand((6, 6))
        self.linear = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        x = F.relu(x @ self.rand_weight + 1)
        x = self.linear(x)
        while x.abs().sum() > 1:
            x = x / 2
        return x.sum()


def test_teacher_scalar_output_is_computed_per_sample() -> None:
    model = _Scalar()
    task = make_task("teacher", model=model, input_shape=(6,), samples=40, seed=2)
    assert task.y_train.shape == (32,) and task.y_val.shape == (8,)
    assert "one scalar per batch" in task.description
    with torch.random.fork_rng():
        teacher = _hand_teacher(model, seed=2)
    with torch.no_grad():
        want = torch.stack([teacher(row[None]) for row in task.x_train])
    torch.testing.assert_close(task.y_train, want)


def test_teacher_token_model_takes_ids_and_tuple_output() -> None:
    model = nn.Sequential(nn.Embedding(50, 8), nn.GRU(8, 4, batch_first=True))
    task = make_task("teacher", model=model, samples=60)
    assert task.x_train.dtype == torch.int64 and task.x_train.shape == (48, 16)
    assert int(task.x_train.min()) >= 0 and int(task.x_train.max()) < 50
    with torch.random.fork_rng():
        teacher = _hand_teacher(model, seed=0)
    with torch.no_grad():
        torch.testing.assert_close(task.y_val, teacher(task.x_val)[0])


def test_teacher_caps_big_inputs_and_reports_errors() -> None:
    conv = nn.Sequential(nn.Conv2d(3, 2, 3, stride=8), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    task = make_task("teacher", model=conv, input_shape=(3, 224, 224))
    assert task.train_size + task.val_size < 1024
    assert "limited" in task.description
    with pytest.raises(ValueError, match="give input_shape"):
        make_task("teacher", model=conv)
    with pytest.raises(ValueError, match=r"fails on a batch of shape \(2, 5\)"):
        make_task("teacher", model=nn.Linear(4, 2), input_shape=(5,))
    with pytest.raises(ValueError, match="meta device"):
        make_task("teacher", model=nn.Linear(4, 2, device="meta"))
    with pytest.raises(ValueError, match="the first dimension must be the batch"):
        make_task("teacher", model=nn.Flatten(0), input_shape=(3,))


# ---------------------------------------------------------------------------------------
# user data


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_header_and_integer_target_is_classification(tmp_path: Path) -> None:
    rows = [f"{i * 0.5},{-i},{i % 3}" for i in range(30)]
    path = _write(tmp_path / "data.csv", "a,b,label\n" + "\n".join(rows) + "\n")
    task = load_user_data(path, seed=1)
    assert (task.kind, task.loss, task.num_classes) == ("classification", "cross_entropy", 3)
    assert task.name == "data.csv" and task.input_shape == (2,)
    assert (task.train_size, task.val_size) == (24, 6)
    x, y = _all(task)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    want = torch.tensor([[i * 0.5, -i] for i in range(30)], dtype=torch.float32)
    order = torch.argsort(x[:, 0])
    assert torch.equal(x[order], want)
    assert torch.equal(y[order], torch.arange(30) % 3)
    assert torch.bincount(task.y_val).tolist() == [2, 2, 2]  # stratified
    assert _same(task, load_user_data(path, seed=1))


def test_csv_without_header_and_float_target_is_regression(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "".join(f"{i},{i / 4}\n" for i in range(10)))
    task = load_user_data(path, val_fraction=0.3)
    assert (task.kind, task.loss, task.num_classes) == ("regression", "mse", None)
    x, y = _all(task)
    assert y.shape == (10, 1) and y.dtype == torch.float32
    torch.testing.assert_close(y[:, 0], x[:, 0] / 4)
    assert task.val_size == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n3,x\n", r"bad\.csv: row 3 column 2 \('b'\) is 'x', not a number"),
        ("1,2\n3,\n", r"row 2 column 2 is '', not a number"),
        ("1,2\n3,inf\n", r"row 2 column 2 is 'inf', not a finite number"),
        ("1,2\n3,4,5\n", r"row 2 has 3 columns, the rows before it have 2"),
        ("1\n2\n", r"needs at least two columns"),
        ("1;2\n3;4\n", r"comma-separated"),
        ("a,b\n1,2\n", r"has 1 data rows; at least 2"),
        ("", r"needs at least two columns"),
    ],
)
def test_csv_errors_name_file_row_and_column(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_user_data(_write(tmp_path / "bad.csv", text))


def test_npz_arrays(tmp_path: Path) -> None:
    x = np.arange(40, dtype=np.float64).reshape(20, 2)
    y = np.arange(20) % 4
    np.savez(tmp_path / "d.npz", x=x, y=y)
    task = load_user_data(tmp_path / "d.npz")
    assert (task.kind, task.num_classes, task.input_shape) == ("classification", 4, (2,))
    all_x, all_y = _all(task)
    assert all_x.dtype == torch.float32
    assert torch.equal(all_y, all_x[:, 0].long() // 2 % 4)

    np.savez(tmp_path / "t.npz", x=np.zeros((6, 5), np.int32), y=np.ones((6, 5), np.int32))
    tokens = load_user_data(tmp_path / "t.npz")
    assert (tokens.kind, tokens.num_classes, tokens.x_train.dtype) == ("tokens", 2, torch.int64)

    np.savez(tmp_path / "f.npz", x=np.linspace(0, 1, 8, dtype=np.float32), y=np.ones(8))
    reg = load_user_data(tmp_path / "f.npz")
    assert reg.kind == "regression" and reg.x_train.shape[1:] == (1,)
    assert reg.y_train.shape[1:] == (1,)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((3, 2))}, r"missing array 'y'; it has 'x'"),
        ({"x": np.zeros((3, 2)), "y": np.zeros(4)}, r"x has 3 samples but y has 4"),
        ({"x": np.array(["a", "b"]), "y": np.zeros(2)}, r"array 'x' has dtype <U1"),
        ({"x": np.full((3, 2), np.nan), "y": np.zeros(3)}, r"'x' contains NaN"),
        ({"x": np.zeros((3, 2)), "y": np.array([0, -1, 1])},
         r"class labels must be 0..K-1; found -1"),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "e.npz", **arrays)
    with pytest.raises(ValueError, match=r"e\.npz: " + message):
        load_user_data(tmp_path / "e.npz")


def test_npz_with_object_arrays_is_not_unpickled(tmp_path: Path) -> None:
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
    with pytest.raises(ValueError, match=r"o\.npz: array 'x' cannot be read"):
        load_user_data(tmp_path / "o.npz")


def test_pt_dict_and_tuple(tmp_path: Path) -> None:
    x, y = torch.randn(12, 3), torch.randn(12)
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    torch.save((x, y), tmp_path / "t.pt")
    for name in ("d.pt", "t.pt"):
        task = load_user_data(tmp_path / name)
        all_x, all_y = _all(task)
        order = torch.argsort(all_x[:, 0])
        assert torch.equal(all_x[order], x[torch.argsort(x[:, 0])])
        assert torch.equal(all_y[order, 0], y[torch.argsort(x[:, 0])])


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pt_errors_and_malicious_pickle(tmp_path: Path, monkeypatch) -> None:
    torch.save({"x": torch.zeros(3, 2)}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match=r"m\.pt: missing key 'y'; the dict has 'x'"):
        load_user_data(tmp_path / "m.pt")
    torch.save([1, 2, 3], tmp_path / "l.pt")
    with pytest.raises(ValueError, match=r"l\.pt: holds list"):
        load_user_data(tmp_path / "l.pt")
    torch.save({"x": [1.0, 2.0], "y": torch.zeros(2)}, tmp_path / "n.pt")
    with pytest.raises(ValueError, match=r"'x' is list, not a tensor"):
        load_user_data(tmp_path / "n.pt")

    marker = tmp_path / "pwned"
    torch.save({"x": _Evil(marker), "y": torch.zeros(2)}, tmp_path / "evil.pt")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(ValueError, match="refuses to run code"):
        load_user_data(tmp_path / "evil.pt")
    assert not marker.exists()


def test_user_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nothing\.csv: no such file"):
        load_user_data(tmp_path / "nothing.csv")
    with pytest.raises(ValueError, match=r"reads \.csv, \.npz or \.pt data files, not '\.json'"):
        load_user_data(_write(tmp_path / "d.json", "{}"))
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not UTF-8 text"):
        load_user_data(tmp_path / "bin.csv")
    (tmp_path / "junk.npz").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(ValueError, match=r"junk\.npz: not a readable \.npz file"):
        load_user_data(tmp_path / "junk.npz")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04truncated")
    with pytest.raises(ValueError, match=r"cut\.pt: not a readable \.pt file"):
        load_user_data(tmp_path / "cut.pt")
