"""A PyTorch build whose recurrent kernels refuse a dtype, made on demand.

On some CPU builds an LSTM in bfloat16 has no oneDNN kernel; this machine's torch has one. So
the tests that prove tuilab refuses such a model before a run make the refusal happen
deterministically: `torch.nn.modules.rnn._VF` (where nn.LSTM / nn.GRU / nn.RNN and the cells
find their kernels) is wrapped so that the chosen ops raise torch's real message for that
dtype — in the forward, or only in the backward — and pass everything else through.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

ONEDNN = ("could not create a primitive descriptor for the {} forward propagation primitive. "
          "Run workload with environment variable ONEDNN_VERBOSE=all to get additional "
          "diagnostic information.")
ONEDNN_LSTM = ONEDNN.format("LSTM")


def not_implemented(dtype: torch.dtype) -> str:
    name = {torch.bfloat16: "BFloat16", torch.float16: "Half"}.get(dtype, str(dtype))
    return f"\"mkldnn_rnn_layer_backward\" not implemented for '{name}'"


class _RaisesInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, message: str) -> torch.Tensor:  # type: ignore[override]
        ctx.message = message
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:  # type: ignore[override]
        raise RuntimeError(ctx.message)


class RefusingVF:
    """Stands in for `torch._VF` inside torch.nn.modules.rnn."""

    def __init__(self, real: Any, dtype: torch.dtype, stage: str, ops: tuple[str, ...]) -> None:
        self._real, self._dtype, self._stage, self._ops = real, dtype, stage, ops
        self.calls = 0

    def _hit(self, args: tuple[Any, ...]) -> bool:
        first = args[0] if args else None
        if isinstance(first, torch.Tensor) and first.dtype == self._dtype:
            return True
        device = first.device.type if isinstance(first, torch.Tensor) else "cpu"
        if device not in ("cpu", "cuda"):  # the shape summary runs on meta: no kernel there
            return False
        return (torch.is_autocast_enabled(device)
                and torch.get_autocast_dtype(device) == self._dtype)

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._real, name)
        if name not in self._ops:
            return real

        def op(*args: Any, **kwargs: Any) -> Any:
            if not self._hit(args):
                return real(*args, **kwargs)
            self.calls += 1
            if self._stage == "forward":
                raise RuntimeError(ONEDNN.format(name.split("_")[0].upper()))
            result = real(*args, **kwargs)
            message = not_implemented(self._dtype)
            if isinstance(result, tuple):
                return (_RaisesInBackward.apply(result[0], message), *result[1:])
            return _RaisesInBackward.apply(result, message)

        return op


@contextmanager
def refusing(dtype: torch.dtype = torch.bfloat16, *, stage: str = "forward",
             ops: tuple[str, ...] = ("lstm",)) -> Iterator[RefusingVF]:
    """While inside, `ops` raise for `dtype` (in `stage`); the dtype probe's verdicts made
    before and inside are forgotten, so neither leaks into the other."""
    import torch.nn.modules.rnn as rnn

    from tuilab.core.dtype_probe import clear_cache

    real = rnn._VF
    fake = RefusingVF(real, dtype, stage, ops)
    rnn._VF = fake
    clear_cache()
    try:
        yield fake
    finally:
        rnn._VF = real
        clear_cache()
