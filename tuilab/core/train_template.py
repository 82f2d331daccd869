"""A training script exported by tuilab: one file, PyTorch only, one process or many.

    python train.py --steps 200 --metrics m.jsonl
    torchrun --standalone --nproc_per_node=2 train.py --steps 200 --metrics m.jsonl

Under torchrun each process reads its rank from torchrun's environment, joins the process
group (gloo on the CPU, nccl on CUDA), wraps the model in DistributedDataParallel (or shards
it with fully_shard under --fsdp) and trains on its share of every global batch. The global
batch, the batch order and the logged loss are those of one process, so N processes draw the
same loss curve as one (up to float rounding; see "Same curve" below).
"""
# <tuilab:note>
# This file is the template behind `tuilab export SPEC --train`: the export replaces the
# regions between the `# <tuilab:NAME>` and `# </tuilab:NAME>` lines (the imports, the model,
# the data and the settings) with the lab's own, and keeps the rest. On its own it trains a
# small MLP on a noisy sine, so it can be run and tested as it is.
# </tuilab:note>

# Same curve: the global batch of step k is the same slice of the same permutation in every
# run; rank r takes the r-th of W near-equal parts of it. Each rank's loss is the mean over
# its part, scaled by W * part / batch before backward: DistributedDataParallel averages the
# gradients over the W ranks, so the average is exactly the gradient of the whole batch's
# mean loss, even when the parts differ by one sample. The loss that is logged is the
# part-weighted sum, all-reduced: the global batch's mean loss. What cannot match: Dropout
# draws its masks per rank, and BatchNorm normalises each rank's part (SyncBatchNorm does it
# over the global batch, on GPUs only: PyTorch refuses it on the CPU).

# <tuilab:imports>
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

# </tuilab:imports>

# <tuilab:settings>
TITLE = "template"
SETTINGS: dict[str, Any] = {
    "task": "sine",
    "optimizer": "adam",
    "lr": 0.01,
    "batch_size": 32,
    "steps": 50,
    "weight_decay": 0.0,
    "momentum": 0.9,
    "grad_clip": None,
    "loss": None,
    "seed": 0,
    "val_every": 0,
    "dtype": "float32",
    "device": "cpu",
    "data": None,
}
# </tuilab:settings>


# <tuilab:model>
def build_model() -> nn.Module:
    """The template's own model; the export puts the lab's model here."""
    return nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))


# </tuilab:model>


# <tuilab:data>
@dataclass(frozen=True, eq=False)
class TaskData:
    """What the loop reads from a task (the lab's TaskData has the same fields)."""

    name: str
    kind: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    loss: str


def load_data(args: argparse.Namespace, model: nn.Module) -> TaskData:
    """The template's own task, y = sin(x) + noise; the export puts the lab's task here."""
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.rand((256, 1), generator=gen) * 6 - 3
    y = torch.sin(x) + 0.1 * torch.randn((256, 1), generator=gen)
    return TaskData("sine", "regression", x[:200], y[:200], x[200:], y[200:], "mse")


def make_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss called ``name``."""
    return {"mse": F.mse_loss, "cross_entropy": F.cross_entropy}[name]


# </tuilab:data>


class RunError(Exception):
    """A run that cannot start or go on; main() prints it as one line and exits 1."""


DTYPES = {"float32": torch.float32, "float64": torch.float64,
          "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    s = SETTINGS
    parser = argparse.ArgumentParser(
        description=f"Train {TITLE} (exported by tuilab). Under torchrun, every option is "
        "the same for all processes: --batch-size is the global batch.")
    parser.add_argument("--steps", type=int, default=s["steps"],
                        help="train until this step (counted from the start, also on resume)")
    parser.add_argument("--batch-size", type=int, default=s["batch_size"],
                        help="global batch, split across the processes")
    parser.add_argument("--lr", type=float, default=s["lr"])
    parser.add_argument("--seed", type=int, default=s["seed"])
    parser.add_argument("--device", default=s["device"],
                        help="cpu, cuda (each process takes cuda:LOCAL_RANK) or auto")
    parser.add_argument("--dtype", default=s["dtype"], choices=sorted(DTYPES),
                        help="bfloat16/float16: autocast with float32 weights")
    parser.add_argument("--fsdp", action="store_true",
                        help="shard the model with torch.distributed.fsdp.fully_shard")
    parser.add_argument("--metrics", help="write one JSON line per step here (rank 0)")
    parser.add_argument("--save", help="save the weights (safetensors) here at the end, and "
                        "the training state beside them, for --resume")
    parser.add_argument("--save-every", type=int, default=0,
                        help="also save every N steps (needs --save)")
    parser.add_argument("--resume", help="continue the run saved in this file")
    parser.add_argument("--weights", help="start from these weights (safetensors)")
    parser.add_argument("--val-every", type=int, default=s["val_every"],
                        help="validate every N steps (0: a tenth of --steps)")
    parser.add_argument("--data", default=s["data"],
                        help="the data file (the digits: digits.npz beside this script)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds a process waits for the others before it gives up")
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        parser.error("--lr must be a positive number")
    if args.save_every and not args.save:
        parser.error("--save-every needs --save")
    return args


# --- processes ---------------------------------------------------------------------------
@dataclass(frozen=True)
class World:
    """This process's place among the others; rank 0 of 1 without torchrun."""

    rank: int
    size: int
    local_rank: int
    device: torch.device
    distributed: bool  # launched by torchrun: in a process group, even alone in it


def join_world(args: argparse.Namespace) -> World:
    """Join the process group torchrun describes in the environment (none: one process)."""
    launched = "WORLD_SIZE" in os.environ
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RunError("--device cuda: this machine has no CUDA GPU (try --device cpu)")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if launched:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=args.timeout),
                                **({"device_id": device} if device.type == "cuda" else {}))
    return World(rank, size, local_rank, device, launched)


def shard(count: int, world: World) -> slice:
    """This rank's part of a global batch of ``count``: W near-equal consecutive slices."""
    base, extra = divmod(count, world.size)
    start = world.rank * base + min(world.rank, extra)
    return slice(start, start + base + (1 if world.rank < extra else 0))


def wrap(model: nn.Module, world: World, fsdp: bool) -> nn.Module:
    """DDP (or fully_shard) over the processes; the model itself with one process."""
    if fsdp:
        if not world.distributed:
            return model  # fully_shard needs a process group; one process holds it all
        from torch.distributed.fsdp import fully_shard

        for child in model.children():
            if any(p.requires_grad for p in child.parameters()):
                fully_shard(child)
        fully_shard(model)
        return model
    if not world.distributed:
        return model
    if world.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[world.device])
    return DistributedDataParallel(model)


def inner(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


# --- checkpoints -----------------------------------------------------------------------------
def state_path(path: str) -> Path:
    """Where the training state lives beside the weights: w.safetensors -> w.state.safetensors."""
    weights = Path(path)
    return weights.with_name(weights.name.removesuffix(".safetensors") + ".state.safetensors")


def _write_atomic(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer
               ) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The whole model's and optimizer's state on the CPU (every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, optimizer,
                          options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save(path: str, model: nn.Module, optimizer: torch.optim.Optimizer, world: World,
         progress: dict[str, Any]) -> None:
    """Weights at ``path``, optimizer/RNG/batch order beside them; rank 0 writes, atomically."""
    weights, optim = full_state(model, optimizer)
    if world.rank == 0:
        tensors = {f"optim.{fqn}.{key}": value for fqn, entry in optim["state"].items()
                   for key, value in entry.items() if isinstance(value, Tensor)}
        others = {fqn: {k: v for k, v in entry.items() if not isinstance(v, Tensor)}
                  for fqn, entry in optim["state"].items()}
        tensors.update({f"rng.{k}": v for k, v in progress["rng"].items()})
        meta = {"step": str(progress["step"]), "pos": str(progress["pos"]),
                "batch": str(progress["batch"]),
                "seconds": repr(progress["seconds"]),
                "param_groups": json.dumps(optim["param_groups"]),
                "optim_other": json.dumps(others)}
        # The state first: weights newer than their state would resume a different run.
        _write_atomic(tensors, state_path(path), meta)
        _write_atomic(weights, Path(path), {"step": str(progress["step"])})
    if world.distributed:
        dist.barrier()


def load_weights(path: str) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (OSError, ValueError) as err:  # a missing or damaged file
        raise RunError(f"{path}: cannot read the weights: {err}") from err


def load_into(model: nn.Module, path: str) -> None:
    """Load a weights file whose names are the model's; a tied name may be absent."""
    state = load_weights(path)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a shape that does not fit
        raise RunError(f"{path}: does not fit the model: {err}") from err
    own = model.state_dict()
    loaded = {own[k].data_ptr() for k in state if k in own}
    missing = [k for k in result.missing_keys if own[k].data_ptr() not in loaded]
    if missing or result.unexpected_keys:
        raise RunError(f"{path}: does not fit the model: missing {missing}, "
                       f"unexpected {result.unexpected_keys}")


def resume(path: str, model: nn.Module, optimizer: torch.optim.Optimizer
           ) -> dict[str, Any]:
    """Put back what ``save`` wrote; returns the step, batch position, seconds and RNG."""
    from safetensors import safe_open
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    weights = load_weights(path)
    where = state_path(path)
    if not where.is_file():
        raise RunError(f"{path}: no training state beside it ({where.name}); "
                       "--resume needs a file written by --save")
    with safe_open(str(where), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    state: dict[str, dict[str, Any]] = json.loads(meta["optim_other"])
    for key, value in tensors.items():
        if key.startswith("optim."):
            fqn, name = key[len("optim."):].rsplit(".", 1)
            state.setdefault(fqn, {})[name] = value
    optim = {"state": state, "param_groups": json.loads(meta["param_groups"])}
    try:
        set_state_dict(model, optimizer, model_state_dict=weights, optim_state_dict=optim,
                       options=StateDictOptions(full_state_dict=True))
    except (RuntimeError, KeyError, ValueError) as err:
        raise RunError(f"{path}: does not fit this model and optimizer: {err}") from err
    rng = {k[len("rng."):]: v for k, v in tensors.items() if k.startswith("rng.")}
    return {"step": int(meta["step"]), "pos": int(meta["pos"]), "batch": int(meta["batch"]),
            "seconds": float(meta["seconds"]), "rng": rng}


# --- the run ---------------------------------------------------------------------------------
def make_optimizer(params: list[nn.Parameter], args: argparse.Namespace
                   ) -> torch.optim.Optimizer:
    s = SETTINGS
    if s["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=s["momentum"],
                               weight_decay=s["weight_decay"])
    if s["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=s["weight_decay"])
    return torch.optim.Adam(params, lr=args.lr, weight_decay=s["weight_decay"])


def first_tensor(value: Any) -> Tensor:
    """The model's output, or the first tensor in it (an LSTM returns ``(out, (h, c))``)."""
    if isinstance(value, Tensor):
        return value
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, (Tensor, tuple, list, dict)):
            return first_tensor(item)
    raise RunError(f"the model returned {type(value).__name__} without a tensor in it")


class Trainer:
    """The loop of one process; every rank runs the same steps on its part of each batch."""

    def __init__(self, args: argparse.Namespace, world: World) -> None:
        self.args, self.world = args, world
        device = world.device
        dtype = DTYPES[args.dtype]
        low = dtype in (torch.float16, torch.bfloat16)
        if dtype is torch.float16 and device.type == "cpu":
            raise RunError("float16 mixed precision needs a CUDA GPU; use --dtype bfloat16 "
                           "or float32 on the CPU")
        self.amp_dtype = dtype if low else None
        weights = torch.float64 if dtype is torch.float64 else torch.float32
        torch.manual_seed(args.seed)
        model = build_model()
        if args.weights:
            load_into(model, args.weights)
        data = load_data(args, model)
        self.model = model.to(device=device, dtype=weights)
        self.loss_fn = make_loss(SETTINGS["loss"] or data.loss)
        self.accuracy = (data.kind in ("classification", "tokens")
                         and (SETTINGS["loss"] or data.loss) == "cross_entropy")

        def move(t: Tensor, target: torch.dtype) -> Tensor:
            return t.to(device=device, dtype=target) if t.is_floating_point() else t.to(device)

        targets = torch.float32 if low else weights
        self.x, self.y = move(data.x_train, weights), move(data.y_train, targets)
        self.x_val, self.y_val = move(data.x_val, weights), move(data.y_val, targets)
        n = self.x.shape[0]
        self.batch = min(args.batch_size, n)
        if self.batch < world.size:
            raise RunError(f"a global batch of {self.batch} cannot be split across "
                           f"{world.size} processes; use --batch-size {world.size} or more")
        self.per_epoch = n // self.batch
        self.net = wrap(self.model, world, args.fsdp)
        params = [p for p in self.net.parameters() if p.requires_grad]
        if not params:
            raise RunError("nothing to train: every parameter is frozen")
        self.params = params
        self.optimizer = make_optimizer(params, args)
        self.scaler = (torch.amp.GradScaler(device.type)
                       if dtype is torch.float16 else None)
        self.order = torch.Generator().manual_seed(args.seed)
        torch.manual_seed(args.seed)  # Dropout's masks, as the lab seeds them
        self.step, self.pos, self.seconds = 0, self.per_epoch, 0.0
        self.perm = torch.empty(0, dtype=torch.long)
        if args.resume:
            done = resume(args.resume, self.net, self.optimizer)
            if done["batch"] != self.batch:  # the batch order would not be the saved run's
                raise RunError(f"{args.resume} was saved by a run with a global batch of "
                               f"{done['batch']}; resume it with --batch-size {done['batch']}")
            self.step, self.pos, self.seconds = done["step"], done["pos"], done["seconds"]
            self.order.set_state(done["rng"]["order"])
            self.perm = done["rng"]["perm"]
            torch.set_rng_state(done["rng"]["cpu"])

    def amp(self) -> AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.world.device.type, dtype=self.amp_dtype,
                              cache_enabled=False)

    def global_mean(self, value: Tensor, count: int) -> float:
        """The mean over the global batch of per-rank means of ``count`` samples each."""
        if not self.world.distributed:
            return value.item()
        total = value.detach().double() * count
        dist.all_reduce(total)
        return float(total) / self.batch

    def train_step(self) -> float:
        """One step on this rank's part of the global batch; returns the global loss."""
        if self.pos == self.per_epoch:
            self.perm = torch.randperm(self.x.shape[0], generator=self.order)
            self.pos = 0
        index = self.perm[self.pos * self.batch:(self.pos + 1) * self.batch]
        index = index[shard(self.batch, self.world)].to(self.world.device)
        self.pos += 1
        self.step += 1
        xb, yb = self.x[index], self.y[index]
        self.optimizer.zero_grad(set_to_none=True)
        with self.amp():
            out = first_tensor(self.net(xb))
            if self.amp_dtype is not None and out.dtype != torch.float32:
                out = out.float()
            loss = self.loss_fn(out, yb)
        value = self.global_mean(loss, xb.shape[0])
        if not math.isfinite(value):
            raise RunError(f"step {self.step}: the loss is {value}; lower the learning rate "
                           f"(--lr {self.args.lr:g}) or clip gradients")
        # Averaged over W ranks by DDP, the gradient of this is the global batch's gradient.
        scaled = loss * (xb.shape[0] * self.world.size / self.batch)
        if self.scaler is None:
            scaled.backward()
            self.clip()
            self.optimizer.step()
        else:
            self.scaler.scale(scaled).backward()
            self.scaler.unscale_(self.optimizer)
            self.clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return value

    def clip(self) -> None:
        if SETTINGS["grad_clip"] is not None:
            torch.nn.utils.clip_grad_norm_(self.params, SETTINGS["grad_clip"])

    def validate(self) -> tuple[float, float | None]:
        """Mean loss (and accuracy) on the whole validation set, the same on every rank."""
        net = inner(self.net)
        net.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.world.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.world.device)
        counted = 0
        with torch.no_grad(), self.amp():
            for lo in range(0, self.x_val.shape[0], self.batch):
                xb, yb = self.x_val[lo:lo + self.batch], self.y_val[lo:lo + self.batch]
                out = first_tensor(net(xb))
                if out.is_floating_point() and out.dtype not in (torch.float32, torch.float64):
                    out = out.float()
                total += self.loss_fn(out, yb).double() * xb.shape[0]
                if self.accuracy:
                    pred = out.argmax(dim=-1)
                    correct += (pred == yb.reshape(pred.shape)).double().sum()
                    counted += pred.numel()
        net.train()
        loss = float(total) / self.x_val.shape[0]
        return loss, (float(correct) / counted if counted else None)

    def progress(self) -> dict[str, Any]:
        rng = {"order": self.order.get_state(), "perm": self.perm, "cpu": torch.get_rng_state()}
        return {"step": self.step, "pos": self.pos, "batch": self.batch,
                "seconds": self.seconds, "rng": rng}

    def run(self) -> None:
        args, world = self.args, self.world
        total = args.steps
        val_every = args.val_every or max(1, total // 10)
        log = None
        if world.rank == 0 and args.metrics:
            log = open(args.metrics, "a" if args.resume else "w", encoding="utf-8")  # noqa: SIM115
        started, before = time.perf_counter(), self.seconds
        self.net.train()
        try:
            while self.step < total:
                loss = self.train_step()
                self.seconds = before + time.perf_counter() - started
                line: dict[str, Any] = {"step": self.step, "loss": loss,
                                        "seconds": round(self.seconds, 4)}
                if self.step % val_every == 0 or self.step == total:
                    line["val_loss"], accuracy = self.validate()
                    if accuracy is not None:
                        line["val_accuracy"] = accuracy
                if log is not None:
                    log.write(json.dumps(line) + "\n")
                    log.flush()
                if args.save and args.save_every and self.step % args.save_every == 0:
                    save(args.save, self.net, self.optimizer, world, self.progress())
            if args.save:
                save(args.save, self.net, self.optimizer, world, self.progress())
        finally:
            if log is not None:
                log.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    world: World | None = None
    try:
        world = join_world(args)
        trainer = Trainer(args, world)
        trainer.run()
        if world.rank == 0:
            print(f"{TITLE}: {trainer.step} steps on {world.size} process(es), "
                  f"{trainer.seconds:.1f}s", file=sys.stderr)
        if dist.is_initialized():
            # Every rank reaches the end before any tears gloo down: a rank that closed its
            # connections while a peer was still in its last collective aborted that peer
            # ("terminate called without an active exception", exit -6) once in a few runs.
            dist.barrier()
        return 0
    except Exception as err:  # one line per failed rank; torchrun then stops the others
        rank = f"rank {world.rank}: " if world is not None and world.distributed else ""
        what = "" if isinstance(err, RunError) else f"{type(err).__name__}: "
        print(f"error: {rank}{what}{err}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def leave(code: int) -> None:
    """End the process. A rank torchrun launched skips the interpreter's teardown: fully_shard's
    hooks keep the process group alive past destroy_process_group, so gloo's destructor ran
    during that teardown and aborted the rank now and then ("terminate called without an
    active exception", exit -6) after a run that had finished and saved."""
    if "WORLD_SIZE" not in os.environ:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # every file the run wrote is closed by now


if __name__ == "__main__":
    leave(main())
