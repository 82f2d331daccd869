"""The input a user's module opens on: read from the model, tried on meta, asked for last.

Before core/input_guess.py every image model opened on (1, 3, 32, 32): a ResNet in train mode
failed BatchNorm on a batch of one, a ViT's position table refused 32 — the app opened on an
error the user did not cause. Each test below failed then.
"""

from __future__ import annotations

import pytest
import realish_models as R
import torch
from torch import nn

from tuilab.core.input_guess import candidates, guess_input
from tuilab.core.shapes import summarize_module
from tuilab.core.usercode import module_lab


def test_the_old_guess_fails_on_a_resnet_in_train_mode() -> None:
    """The reason for all this: batch 1 at 32x32 leaves BatchNorm one value per channel."""
    summary = summarize_module(R.ResNetish(), (1, 3, 32, 32))
    assert summary.error is not None and "more than 1 value per channel" in summary.error.message


@pytest.mark.parametrize(("name", "shape", "why"), [
    ("ResNetish", (2, 3, 224, 224), "adaptive pool"),
    ("ViTish", (1, 3, 64, 64), "image_size = 64"),
    ("ConfigViTish", (1, 3, 48, 48), "config.img_size = 48"),
    ("TinyLM", (1, 12), "n_positions 12"),
    ("DictNet", (1, 6), "in_features (6)"),
])
def test_the_guess_reads_the_model_and_runs(name: str, shape: tuple[int, ...], why: str) -> None:
    model = getattr(R, name)()
    guess = guess_input(model)
    assert guess.ok and guess.shape == shape and guess.tried == 1
    assert why in guess.candidate.reason
    summary = summarize_module(model, guess.shape, takes_tokens=guess.candidate.takes_tokens,
                               vocab_size=guess.candidate.vocab_size)
    assert summary.ok
    # the guess ran a copy: the model is as it was
    assert model.training and all(m.training for m in model.modules())


def test_tokens_are_integer_ids_below_the_vocabulary() -> None:
    guess = guess_input(R.TinyLM())
    assert guess.candidate.takes_tokens and guess.candidate.vocab_size == 50


def test_batchnorm_in_eval_keeps_a_batch_of_one() -> None:
    model = R.ResNetish().eval()
    assert guess_input(model).shape == (1, 3, 224, 224)


def test_a_failing_candidate_gives_way_to_the_next() -> None:
    """LeNet without padding: 32 (the first try without an adaptive pool) fails at fc; the
    guess goes on through the common sizes until 28 runs."""
    lenet = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    shapes = [c.shape for c in candidates(lenet)]
    assert shapes[0] == (1, 1, 32, 32) and (1, 1, 28, 28) in shapes
    guess = guess_input(lenet)
    assert guess.ok and guess.shape == (1, 1, 28, 28)
    assert guess.tried == shapes.index((1, 1, 28, 28)) + 1


def test_when_nothing_runs_the_guess_says_where_it_failed() -> None:
    guess = guess_input(R.Pickyish())
    assert not guess.ok
    assert "invalid for input of size" in guess.error_message
    assert guess.shape == candidates(R.Pickyish())[0].shape


def test_each_candidate_is_tried_with_the_summary_given() -> None:
    seen: list[tuple[int, ...]] = []

    def fails(candidate):  # every try fails: the first candidate comes back, with the error
        seen.append(candidate.shape)
        return summarize_module(R.Pickyish(), (1, 1))

    guess = guess_input(R.ResNetish(), fails)
    assert not guess.ok and len(seen) == guess.tried > 1
    assert seen[0] == guess.shape == (2, 3, 224, 224)


def test_module_lab_uses_the_guess_or_the_shape_given() -> None:
    lab = module_lab(R.ResNetish(), "resnet")
    assert lab.input_shape == (2, 3, 224, 224) and lab.input_guess is not None
    assert lab.summary().ok
    given = module_lab(R.TinyLM(), "lm", "2, 5")
    assert given.input_shape == (2, 5) and given.takes_tokens and given.vocab_size == 50
    assert given.input_guess is None


def test_three_d_convs_and_rnns_get_their_own_shapes() -> None:
    conv3d = nn.Sequential(nn.Conv3d(2, 4, 3), nn.AdaptiveAvgPool3d(1))
    assert guess_input(conv3d).shape[:2] == (1, 2) and len(guess_input(conv3d).shape) == 5
    lstm = nn.LSTM(7, 5, batch_first=True)
    assert guess_input(lstm).shape == (1, 8, 7)
    assert torch.is_tensor(lstm(torch.rand(guess_input(lstm).shape))[0])
