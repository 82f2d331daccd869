"""The last finite weights of a training run, to put back when the run diverges.

A run that ends on a NaN or infinite loss leaves weights that give a non-finite loss again at
the first step of every later run: the model is lost until it is re-initialised. So while a
run goes, the lab keeps a copy of the weights (parameters and floating buffers, such as
BatchNorm's running statistics) at each batch of metrics, and after a non-finite end puts back
the newest copy known to be good.

"Known to be good" is one step stricter than "finite": the weights after step *s* are only
proven when step *s + 1* computed a finite loss with them. A copy taken just before the step
that diverged holds exactly the weights that diverged, so two copies are kept and the newest
one whose next step was finite is restored.

The copies live on the CPU, so a GPU run does not lose memory to them; a model larger than
MAX_COPY_BYTES is not copied (the message then says so and points to re-initialising).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch.nn.parameter import is_lazy

if TYPE_CHECKING:
    from tuilab.core.training import MetricsBatch

MAX_COPY_BYTES = 256 * 2**20
"""Above this (per copy; two are kept) the run is not guarded: the copy would cost more
memory and time than a re-initialisation costs the user."""


def _floating_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's floating-point parameters and buffers by name (uninitialised lazy ones
    left out: they hold no values yet)."""
    return {name: tensor for name, tensor in model.state_dict().items()
            if tensor.is_floating_point() and not is_lazy(tensor) and not tensor.is_meta}


def all_finite(model: torch.nn.Module) -> bool:
    """Do every parameter and floating buffer hold only finite values?"""
    with torch.no_grad():
        return all(bool(torch.isfinite(t).all()) for t in _floating_state(model).values())


@dataclass
class _Copy:
    step: int
    tensors: dict[str, torch.Tensor]


class FiniteWeights:
    """Copies of a model's weights taken during one run; see the module's docstring."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self._copies: list[_Copy] = []
        self.too_large = False
        """The model is over MAX_COPY_BYTES: nothing is kept."""

    def keep(self, step: int) -> None:
        """Copy the weights as they are after `step` finished steps (0: before the run), if
        they are all finite. The older of the two copies gives its memory to the new one."""
        if self.too_large:
            return
        state = _floating_state(self.model)
        if sum(t.numel() * t.element_size() for t in state.values()) > MAX_COPY_BYTES:
            self.too_large = True
            self._copies.clear()
            return
        with torch.no_grad():
            if not all(bool(torch.isfinite(t).all()) for t in state.values()):
                return
            reuse = self._copies.pop(0).tensors if len(self._copies) == 2 else {}
            tensors = {}
            for name, tensor in state.items():
                old = reuse.get(name)
                if old is not None and old.shape == tensor.shape and old.dtype == tensor.dtype:
                    tensors[name] = old.copy_(tensor)
                else:
                    tensors[name] = tensor.detach().to("cpu", copy=True)
        self._copies.append(_Copy(step, tensors))

    def restore(self, finished: int) -> int | None:
        """Put back the newest copy whose next step computed a finite loss (its step is below
        `finished`, the run's count of finished steps); the step it was taken at, or None
        when no copy is proven good or the model's tensors no longer match it."""
        good = [c for c in self._copies if c.step < finished]
        if not good:
            return None
        chosen = good[-1]
        state = _floating_state(self.model)
        if state.keys() != chosen.tensors.keys() or any(
                state[n].shape != t.shape for n, t in chosen.tensors.items()):
            return None
        with torch.no_grad():
            for name, saved in chosen.tensors.items():
                state[name].copy_(saved)
        return chosen.step

    def after(self, batch: MetricsBatch) -> MetricsBatch:
        """Follow a run batch by batch: keep the weights after each good batch; after a
        failure that left non-finite weights or a non-finite loss, put the last good ones
        back and say so at the end of the batch's error."""
        if not batch.error:
            if not batch.done:
                self.keep(batch.step)
            return batch
        if not batch.nonfinite_loss and all_finite(self.model):
            return batch  # another fault: the weights are as good as they were
        restored = self.restore(batch.step)
        if restored is not None:
            when = "before this run" if restored == 0 else f"after step {restored}"
            note = f"; the weights are back to the last finite ones ({when})"
        elif all_finite(self.model):
            return batch  # diverged at once: the run changed no weight
        elif self.too_large:
            note = ("; the weights now hold NaN or inf (the model is too large to keep a "
                    "copy): re-initialise them (I) before the next run")
        else:
            note = "; the weights now hold NaN or inf: re-initialise them (I) before the next run"
        return replace(batch, error=(batch.error or "") + note)
