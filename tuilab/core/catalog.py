"""The palette: every block a user can put in a model, as data.

A block names its family, says in one line what it does, lists its typed arguments (default,
range or choices) and where its class lives. Classes are imported only when a block is built,
so the palette can be drawn before PyTorch has finished loading. Targets come from this table
alone: a workspace file names a block by its palette name and can never reach any other code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from tuilab.core.arguments import (
    Arg,
    bool_arg,
    choice_arg,
    float_arg,
    int_arg,
    ints_arg,
    size_arg,
    str_arg,
)
from tuilab.core.errors import ArgumentError

if TYPE_CHECKING:
    from torch import nn

FAMILIES = (
    "container",
    "linear",
    "conv",
    "pooling",
    "padding",
    "normalization",
    "dropout",
    "activation",
    "recurrent",
    "transformer",
    "embedding",
    "reshape",
    "seed",
    "composite",
)

# How a container's children are handed to its class, and the rule its forward follows.
CONTAINER_KINDS = ("sequential", "list", "dict", "mysequential")

Check = Callable[[Mapping[str, Any]], "str | None"]


@dataclass(frozen=True)
class BlockDef:
    """One palette entry.

    `target` is "module.path:ClassName"; `fixed` holds keyword arguments the user does not
    choose (batch_first=True keeps every sequence block in (batch, time, features) order);
    `positional` says how many leading arguments the code log writes without their names,
    as people write `nn.Linear(20, 256)`.
    """

    name: str
    family: str
    description: str
    target: str
    args: tuple[Arg, ...] = ()
    container: str | None = None
    fixed: Mapping[str, Any] = field(default_factory=dict)
    positional: int = 0
    takes_tokens: bool = False
    check: Check | None = None

    @property
    def is_container(self) -> bool:
        return self.container is not None

    @property
    def class_name(self) -> str:
        return self.target.rsplit(":", 1)[1]

    @property
    def code_name(self) -> str:
        """How source code names the class: `nn.Linear` for torch.nn, the bare name otherwise."""
        module, cls = self.target.rsplit(":", 1)
        return f"nn.{cls}" if module == "torch.nn" else cls

    def arg(self, name: str) -> Arg:
        for arg in self.args:
            if arg.name == name:
                return arg
        known = ", ".join(a.name for a in self.args) or "none"
        raise ArgumentError(
            f"{self.name} has no argument '{name}' (its arguments: {known})", where=self.name
        )

    def defaults(self) -> dict[str, Any]:
        return {a.name: a.default for a in self.args}

    def validate(self, args: Mapping[str, Any], *, where: str = "") -> dict[str, Any]:
        """Every argument checked and defaults filled in; unknown names are refused."""
        place = where or self.name
        for name in args:
            if not any(a.name == name for a in self.args):
                known = ", ".join(a.name for a in self.args) or "none"
                raise ArgumentError(
                    f"{self.name} has no argument '{name}' (its arguments: {known})",
                    where=place)
        values = {}
        for arg in self.args:
            raw = args.get(arg.name, arg.default)
            values[arg.name] = raw if raw is arg.default else arg.coerce(raw, where=place)
        if self.check is not None:
            problem = self.check(values)
            if problem:
                raise ArgumentError(problem, where=place)
        return values

    def factory(self) -> Callable[..., nn.Module]:
        return _import_target(self.target)

    def make(self, args: Mapping[str, Any], children: Any = ()) -> nn.Module:
        """Construct the module; containers receive their already-built children."""
        cls = self.factory()
        kwargs = {**dict(args), **dict(self.fixed)}
        if self.container in ("sequential", "list", "mysequential"):
            return cls(*children, **kwargs)
        if self.container == "dict":
            from collections import OrderedDict

            return cls(OrderedDict(children), **kwargs)
        return cls(**kwargs)

    def call_code(self, args: Mapping[str, Any]) -> str:
        """`nn.Linear(20, 256)`: the constructor call as a person would write it.

        A keyword is left out only where it equals the *class's* own default, so the line
        builds exactly this module even where the palette's default differs from PyTorch's.
        """
        # Before PyTorch has loaded (the app's first frame) the palette's defaults stand in;
        # the builder relabels once the model is built.
        class_defaults = (_class_defaults(self.target) if torch_loaded()
                          else self.defaults())
        parts = []
        for index, arg in enumerate(self.args):
            value = args.get(arg.name, arg.default)
            if index < self.positional:
                parts.append(arg.python(value))
            elif not _equals_default(value, class_defaults.get(arg.name, _MISSING)):
                parts.append(f"{arg.name}={arg.python(value)}")
        parts.extend(f"{key}={value!r}" for key, value in self.fixed.items())
        return f"{self.code_name}({', '.join(parts)})"


def torch_loaded() -> bool:
    """PyTorch is imported *and done importing*. While a loading thread is still inside
    `import torch`, the module is already in sys.modules; importing from it on another thread
    (a label drawn as the window resizes) then fails with "partially initialized module
    'torch.nn.parameter'" and the load fails with it."""
    module = sys.modules.get("torch")
    spec = getattr(module, "__spec__", None)
    return module is not None and not getattr(spec, "_initializing", False)


@cache
def _import_target(target: str) -> Callable[..., Any]:
    module_name, attr = target.rsplit(":", 1)
    return getattr(importlib.import_module(module_name), attr)


@cache
def _class_defaults(target: str) -> dict[str, Any]:
    import inspect

    if target.split(":")[1] in ("RNN", "LSTM", "GRU"):  # their signature is (*args, **kwargs)
        return _RECURRENT_DEFAULTS
    try:
        parameters = inspect.signature(_import_target(target)).parameters
    except (TypeError, ValueError):
        return {}
    return {name: p.default for name, p in parameters.items()
            if p.default is not inspect.Parameter.empty}


_MISSING = object()


def _equals_default(value: Any, default: Any) -> bool:
    """`"relu"` equals a default of `F.relu`: the palette names functions by name."""
    if default is _MISSING:
        return False
    if callable(default) and isinstance(value, str):
        return getattr(default, "__name__", None) == value
    return bool(value == default)


_RECURRENT_DEFAULTS: dict[str, Any] = {
    "num_layers": 1, "nonlinearity": "tanh", "bias": True, "batch_first": False,
    "dropout": 0.0, "bidirectional": False,
}


# --- cross-argument checks ----------------------------------------------------------------
def _divisible(numerator: str, denominator: str) -> Check:
    def check(values: Mapping[str, Any]) -> str | None:
        if values[numerator] % values[denominator]:
            return (
                f"{numerator} ({values[numerator]}) must be divisible by "
                f"{denominator} ({values[denominator]})"
            )
        return None

    return check


def _conv_groups(values: Mapping[str, Any]) -> str | None:
    groups = values["groups"]
    for name in ("in_channels", "out_channels"):
        if values[name] % groups:
            return f"{name} ({values[name]}) must be divisible by groups ({groups})"
    return None


def _padding_idx(values: Mapping[str, Any]) -> str | None:
    index, count = values["padding_idx"], values["num_embeddings"]
    if index is not None and not -count <= index < count:
        return (f"padding_idx ({index}) must be a token id of the vocabulary: from {-count} to "
                f"{count - 1} (num_embeddings is {count}), or none")
    return None


def _residual_skip(values: Mapping[str, Any]) -> str | None:
    if not values["use_1x1conv"] and (values["in_channels"] != values["out_channels"]
                                      or values["stride"] != 1):
        return ("the skip path adds the input unchanged, so it needs in_channels == "
                "out_channels and stride == 1; set use_1x1conv to true otherwise")
    return None


def _same_features(values: Mapping[str, Any]) -> str | None:
    if values["in1_features"] != values["in2_features"]:
        return (
            "in a chain both inputs are the same tensor, so in1_features and in2_features "
            "must be equal"
        )
    return None


def _choice_among_keys(values: Mapping[str, Any]) -> str | None:
    keys = [k.strip() for k in values["keys"].split(",") if k.strip()]
    if not keys or any(not k.isidentifier() for k in keys):
        return "keys must be comma-separated identifiers, e.g. 'a, b'"
    if values["choice"] not in keys:
        return f"choice {values['choice']!r} is not one of the keys {keys}"
    return None


# --- the table ----------------------------------------------------------------------------
NN = "torch.nn"
SEED = "tuilab.core.blocks.seed"
COMPOSITE = "tuilab.core.blocks.composite"
UTILITY = "tuilab.core.blocks.utility"
CONTAINERS = "tuilab.core.blocks.containers"
ADAPTERS = "tuilab.core.blocks.adapters"
BATCH_FIRST = {"batch_first": True}
SELECTABLE_OUTPUTS = ("output", "h_n", "c_n")


def _conv(dims: int, transposed: bool = False) -> BlockDef:
    name = f"ConvTranspose{dims}d" if transposed else f"Conv{dims}d"
    what = "transposed convolution (learned upsampling)" if transposed else "convolution"
    args = [
        int_arg("in_channels", 1, 1, "channels of the input"),
        int_arg("out_channels", 6, 1, "number of filters"),
        size_arg("kernel_size", 3, dims, 1, "filter size"),
        size_arg("stride", 1, dims, 1),
        size_arg("padding", 0, dims, 0, "zeros added on each side"),
    ]
    if transposed:
        args.append(size_arg("output_padding", 0, dims, 0))
    args += [size_arg("dilation", 1, dims, 1), int_arg("groups", 1, 1), bool_arg("bias", True)]
    return BlockDef(
        name, "conv", f"{dims}-D {what} over (N, C, ...) inputs", f"{NN}:{name}", tuple(args),
        positional=3, check=_conv_groups,
    )


def _pool(kind: str, dims: int) -> BlockDef:
    name = f"{kind}Pool{dims}d"
    what = "maximum" if kind == "Max" else "average"
    return BlockDef(
        name, "pooling", f"{dims}-D {what} pooling over windows", f"{NN}:{name}",
        (
            size_arg("kernel_size", 2, dims, 1, "window size"),
            size_arg("stride", None, dims, 1, "defaults to kernel_size", nullable=True),
            size_arg("padding", 0, dims, 0),
        ),
        positional=1,
    )


def _adaptive(kind: str, dims: int) -> BlockDef:
    name = f"Adaptive{kind}Pool{dims}d"
    what = "maximum" if kind == "Max" else "average"
    return BlockDef(
        name, "pooling", f"{what} pooling to a fixed output size, whatever the input size",
        f"{NN}:{name}", (size_arg("output_size", 1, dims, 1),), positional=1,
    )


_PAD_SIDES = {1: "(left, right)", 2: "(left, right, top, bottom)",
              3: "(left, right, top, bottom, front, back)"}


def _pad(kind: str, dims: int = 2) -> BlockDef:
    name = f"{kind}Pad{dims}d"
    what = {"Zero": "zeros", "Reflection": "the mirrored border", "Replication": "the edge value"}
    last = {1: "the last dim", 2: "the last two dims", 3: "the last three dims"}[dims]
    return BlockDef(
        name, "padding", f"pads {last} with {what[kind]}", f"{NN}:{name}",
        (size_arg("padding", 1, 2 * dims, 0, f"{_PAD_SIDES[dims]} or one int"),), positional=1,
    )


def _batch_norm(dims: int, features: int, what: str) -> BlockDef:
    """BatchNorm{1,2,3}d with PyTorch's defaults (eps 1e-5, momentum 0.1, affine, stats)."""
    name = f"BatchNorm{dims}d"
    return BlockDef(
        name, "normalization", f"normalises each {what}; keeps running mean/var buffers",
        f"{NN}:{name}",
        (int_arg("num_features", features, 1), float_arg("eps", 1e-5, 0.0),
         float_arg("momentum", 0.1, 0.0, maximum=1.0), bool_arg("affine", True),
         bool_arg("track_running_stats", True)), positional=1,
    )


def _instance_norm(dims: int, over: str) -> BlockDef:
    """InstanceNorm{1,2,3}d with PyTorch's defaults (no affine, no running statistics)."""
    name = f"InstanceNorm{dims}d"
    return BlockDef(
        name, "normalization", f"normalises each sample's channels over {over}",
        f"{NN}:{name}",
        (int_arg("num_features", 6, 1), float_arg("eps", 1e-5, 0.0),
         float_arg("momentum", 0.1, 0.0, maximum=1.0), bool_arg("affine", False),
         bool_arg("track_running_stats", False)), positional=1,
    )


def _recurrent(name: str, what: str) -> BlockDef:
    args: list[Arg] = [
        int_arg("input_size", 1, 1, "features per time step"),
        int_arg("hidden_size", 32, 1),
        int_arg("num_layers", 1, 1),
    ]
    if name == "RNN":
        args.append(choice_arg("nonlinearity", "tanh", ("tanh", "relu")))
    args += [
        bool_arg("bias", True),
        float_arg("dropout", 0.0, 0.0, "between stacked layers", maximum=1.0),
        bool_arg("batch_first", False, "True: (N, L, features); False: (L, N, features)"),
        bool_arg("bidirectional", False),
    ]
    state = "(h_n, c_n)" if name == "LSTM" else "h_n"
    return BlockDef(
        name, "recurrent",
        f"{what}; returns (output, {state}): follow with SelectOutput to pick one",
        f"{NN}:{name}", tuple(args), positional=2,
    )


def _transformer_args(d_model: int = 64, nhead: int = 4, ff: int = 128) -> list[Arg]:
    return [
        int_arg("d_model", d_model, 1, "features per token"),
        int_arg("nhead", nhead, 1, "attention heads; must divide d_model"),
        int_arg("dim_feedforward", ff, 1),
        float_arg("dropout", 0.1, 0.0, maximum=1.0),
        choice_arg("activation", "relu", ("relu", "gelu")),
        bool_arg("norm_first", False, "pre-norm (GPT-style) instead of post-norm"),
    ]


def _activation(name: str, description: str, *args: Arg, positional: int = 0) -> BlockDef:
    return BlockDef(name, "activation", description, f"{NN}:{name}", args, positional=positional)


def _build_catalog() -> dict[str, BlockDef]:
    blocks: list[BlockDef] = [
        # containers
        BlockDef("Sequential", "container", "runs its children in order, each on the last output",
                 f"{NN}:Sequential", container="sequential"),
        BlockDef("ModuleList", "container",
                 "a list of modules; tuilab's forward applies them in order (PyTorch's has none)",
                 f"{CONTAINERS}:ModuleList", container="list"),
        BlockDef("ModuleDict", "container",
                 "modules by key; tuilab's forward applies them in insertion order",
                 f"{CONTAINERS}:ModuleDict", container="dict"),
        BlockDef("ParameterList", "container",
                 "a ParameterList of matrices; forward multiplies x by each in order",
                 f"{CONTAINERS}:ParamListChain",
                 (int_arg("count", 3, 1), int_arg("in_features", 4, 1),
                  int_arg("out_features", 4, 1))),
        BlockDef("ParameterDict", "container",
                 "a ParameterDict of matrices by key; forward multiplies x by the chosen one",
                 f"{CONTAINERS}:ParamDictSelect",
                 (str_arg("keys", "a, b", "comma-separated keys"), int_arg("in_features", 4, 1),
                  int_arg("out_features", 4, 1), str_arg("choice", "a", "the key forward uses")),
                 check=_choice_among_keys),
        # linear
        BlockDef("Linear", "linear", "fully connected: y = x Wᵀ + b over the last dim",
                 f"{NN}:Linear",
                 (int_arg("in_features", 20, 1), int_arg("out_features", 256, 1),
                  bool_arg("bias", True)), positional=2),
        BlockDef("Bilinear", "linear", "y = x₁ᵀ A x₂ + b; in a chain x₂ is x₁",
                 f"{ADAPTERS}:Bilinear",
                 (int_arg("in1_features", 20, 1), int_arg("in2_features", 20, 1),
                  int_arg("out_features", 10, 1), bool_arg("bias", True)),
                 positional=3, check=_same_features),
        BlockDef("Identity", "linear", "returns its input unchanged (a placeholder)",
                 f"{NN}:Identity"),
        BlockDef("LazyLinear", "linear",
                 "a Linear whose in_features is inferred from the first input it sees",
                 f"{NN}:LazyLinear", (int_arg("out_features", 10, 1), bool_arg("bias", True)),
                 positional=1),
        # convolution
        _conv(1), _conv(2), _conv(3), _conv(2, transposed=True),
        BlockDef("DepthwiseSeparableConv2d", "conv",
                 "per-channel (depthwise) conv then a 1×1 (pointwise) conv: fewer parameters",
                 f"{COMPOSITE}:DepthwiseSeparableConv2d",
                 (int_arg("in_channels", 3, 1), int_arg("out_channels", 16, 1),
                  int_arg("kernel_size", 3, 1), int_arg("padding", 1, 0),
                  int_arg("stride", 1, 1)), positional=2),
        # pooling
        *(_pool(kind, dims) for kind in ("Max", "Avg") for dims in (1, 2, 3)),
        *(_adaptive(kind, dims) for kind in ("Avg", "Max") for dims in (1, 2, 3)),
        # padding
        *(_pad(kind, dims) for kind in ("Zero", "Reflection", "Replication")
          for dims in (1, 2, 3)),
        # normalization
        _batch_norm(1, 256, "feature over the batch"),
        _batch_norm(2, 6, "channel over batch and space"),
        _batch_norm(3, 6, "channel over batch and volume"),
        _instance_norm(1, "time (sequences)"),
        _instance_norm(2, "space (style transfer)"),
        _instance_norm(3, "volume"),
        BlockDef("LayerNorm", "normalization",
                 "normalises over the last dims of each sample (transformers)",
                 f"{NN}:LayerNorm",
                 (ints_arg("normalized_shape", (64,)), float_arg("eps", 1e-5, 0.0),
                  bool_arg("elementwise_affine", True)), positional=1),
        BlockDef("GroupNorm", "normalization",
                 "normalises groups of channels per sample; independent of batch size",
                 f"{NN}:GroupNorm",
                 (int_arg("num_groups", 2, 1), int_arg("num_channels", 6, 1),
                  float_arg("eps", 1e-5, 0.0), bool_arg("affine", True)),
                 positional=2, check=_divisible("num_channels", "num_groups")),
        # dropout
        BlockDef("Dropout", "dropout", "zeroes elements with probability p in train mode",
                 f"{NN}:Dropout", (float_arg("p", 0.5, 0.0, maximum=1.0),), positional=1),
        BlockDef("Dropout2d", "dropout", "zeroes whole channels with probability p in train mode",
                 f"{NN}:Dropout2d", (float_arg("p", 0.5, 0.0, maximum=1.0),), positional=1),
        BlockDef("Dropout3d", "dropout",
                 "zeroes whole 3-D channels (N, C, D, H, W) with probability p in train mode",
                 f"{NN}:Dropout3d", (float_arg("p", 0.5, 0.0, maximum=1.0),), positional=1),
        BlockDef("AlphaDropout", "dropout",
                 "dropout that keeps SELU's self-normalising mean and variance",
                 f"{NN}:AlphaDropout", (float_arg("p", 0.5, 0.0, maximum=1.0),), positional=1),
        # activations
        _activation("ReLU", "max(0, x)"),
        _activation("LeakyReLU", "x if x > 0 else slope·x",
                    float_arg("negative_slope", 0.01, 0.0), positional=1),
        _activation("PReLU", "LeakyReLU with a learned slope (a parameter)",
                    int_arg("num_parameters", 1, 1), float_arg("init", 0.25)),
        _activation("ELU", "x if x > 0 else α(eˣ − 1)", float_arg("alpha", 1.0, 0.0)),
        _activation("SELU", "scaled ELU that self-normalises"),
        _activation("GELU", "x·Φ(x), the transformers' activation",
                    choice_arg("approximate", "none", ("none", "tanh"))),
        _activation("SiLU", "x·sigmoid(x) (swish)"),
        _activation("Sigmoid", "1 / (1 + e⁻ˣ), squashes to (0, 1)"),
        _activation("Tanh", "squashes to (−1, 1)"),
        _activation("Softmax", "exp / sum over a dim: probabilities",
                    int_arg("dim", -1, doc="dimension that sums to 1"), positional=1),
        _activation("LogSoftmax", "log of softmax (pairs with NLLLoss)",
                    int_arg("dim", -1), positional=1),
        _activation("Softplus", "log(1 + eˣ), a smooth ReLU", float_arg("beta", 1.0, 0.0)),
        # recurrent
        _recurrent("RNN", "Elman recurrent layer"),
        _recurrent("LSTM", "long short-term memory"),
        _recurrent("GRU", "gated recurrent unit"),
        BlockDef("SelectOutput", "recurrent",
                 "picks output, h_n or (LSTM) c_n from a recurrent layer's (output, state)",
                 f"{UTILITY}:SelectOutput",
                 (choice_arg("which", "output", SELECTABLE_OUTPUTS,
                             "output: every step; h_n / c_n: the last hidden / cell state"),),
                 positional=1),
        BlockDef("LastTimeStep", "recurrent", "(N, L, H) → (N, H): keeps the last time step",
                 f"{UTILITY}:LastTimeStep"),
        BlockDef("TCNBlock", "composite",
                 "temporal conv block: causal dilated Conv1d ×2 with a residual connection",
                 f"{COMPOSITE}:TCNBlock",
                 (int_arg("in_channels", 1, 1), int_arg("out_channels", 16, 1),
                  int_arg("kernel_size", 3, 1), int_arg("dilation", 1, 1),
                  float_arg("dropout", 0.0, 0.0, maximum=1.0)), positional=2),
        # transformer
        BlockDef("TransformerEncoderLayer", "transformer",
                 "self-attention + feed-forward, each with residual and LayerNorm",
                 f"{NN}:TransformerEncoderLayer", tuple(_transformer_args()),
                 fixed=BATCH_FIRST, positional=2, check=_divisible("d_model", "nhead")),
        BlockDef("TransformerEncoder", "transformer",
                 "num_layers encoder layers (optionally causal, GPT-style)",
                 f"{UTILITY}:CausalTransformerEncoder",
                 (*_transformer_args(ff=256), int_arg("num_layers", 2, 1),
                  bool_arg("causal", False, "mask future tokens")),
                 check=_divisible("d_model", "nhead")),
        BlockDef("TransformerDecoderLayer", "transformer",
                 "self-attention, cross-attention (to its own input in a chain), feed-forward",
                 f"{ADAPTERS}:TransformerDecoderLayer", tuple(_transformer_args()),
                 fixed=BATCH_FIRST, positional=2, check=_divisible("d_model", "nhead")),
        BlockDef("MultiheadAttention", "transformer",
                 "scaled dot-product self-attention over (N, L, embed_dim)",
                 f"{ADAPTERS}:MultiheadAttention",
                 (int_arg("embed_dim", 64, 1), int_arg("num_heads", 4, 1),
                  float_arg("dropout", 0.0, 0.0, maximum=1.0), bool_arg("bias", True)),
                 fixed=BATCH_FIRST, positional=2, check=_divisible("embed_dim", "num_heads")),
        BlockDef("TransformerEncoderBlock", "composite",
                 "an encoder block written out (attention, AddNorm, FFN, AddNorm), d2l-style",
                 f"{COMPOSITE}:TransformerEncoderBlock",
                 (int_arg("d_model", 64, 1), int_arg("nhead", 4, 1),
                  int_arg("dim_feedforward", 128, 1),
                  float_arg("dropout", 0.0, 0.0, maximum=1.0)),
                 positional=2, check=_divisible("d_model", "nhead")),
        BlockDef("PositionalEmbedding", "embedding",
                 "adds a learned embedding of each position to (N, L, d_model)",
                 f"{UTILITY}:PositionalEmbedding",
                 (int_arg("max_len", 512, 1), int_arg("d_model", 64, 1)), positional=2),
        # embedding
        BlockDef("Embedding", "embedding", "token ids (N, L) → vectors (N, L, embedding_dim)",
                 f"{NN}:Embedding",
                 (int_arg("num_embeddings", 16, 1, "vocabulary size"),
                  int_arg("embedding_dim", 64, 1), int_arg("padding_idx", None, nullable=True)),
                 positional=2, takes_tokens=True, check=_padding_idx),
        # reshape
        BlockDef("Flatten", "reshape", "merges dims start_dim..end_dim, e.g. (N,C,H,W) → (N,CHW)",
                 f"{NN}:Flatten", (int_arg("start_dim", 1), int_arg("end_dim", -1))),
        BlockDef("Unflatten", "reshape", "splits one dim into a shape, e.g. (N,400) → (N,16,5,5)",
                 f"{NN}:Unflatten", (int_arg("dim", 1), ints_arg("unflattened_size", (16, 5, 5))),
                 positional=2),
        BlockDef("Transpose", "reshape", "swaps two dims, e.g. (N, L, C) ↔ (N, C, L) for Conv1d",
                 f"{UTILITY}:Transpose", (int_arg("dim0", 1), int_arg("dim1", 2)), positional=2),
        # the seed texts' own modules
        BlockDef("MLP", "seed", "seed 000's block: hidden Linear, F.relu, output Linear",
                 f"{SEED}:MLP",
                 (int_arg("in_features", 20, 1), int_arg("hidden", 256, 1),
                  int_arg("out_features", 10, 1))),
        BlockDef("MySequential", "seed",
                 "seed 000's hand-written Sequential: fills self._modules['0'], ['1'], …",
                 f"{SEED}:MySequential", container="mysequential"),
        BlockDef("FixedHiddenMLP", "seed",
                 "seed 000: a constant weight, one Linear used twice, a while loop in forward",
                 f"{SEED}:FixedHiddenMLP"),
        BlockDef("MyLayer", "seed", "seed 001: a layer without parameters, x − mean(x)",
                 f"{SEED}:MyLayer"),
        BlockDef("MyListDense", "seed", "seed 001: a dense chain kept in a ParameterList",
                 f"{SEED}:MyListDense",
                 (int_arg("in_features", 4, 1), int_arg("hidden", 4, 1), int_arg("depth", 3, 1),
                  int_arg("out_features", 1, 1))),
        BlockDef("MyDictDense", "seed", "seed 001: dense weights in a ParameterDict, one chosen",
                 f"{SEED}:MyDictDense",
                 (choice_arg("choice", "linear1", ("linear1", "linear2", "linear3")),)),
        BlockDef("Conv2D", "seed", "seed 001: a conv layer on the hand-written corr2d",
                 f"{SEED}:Conv2D", (int_arg("kernel_h", 1, 1), int_arg("kernel_w", 2, 1))),
        BlockDef("Pool2D", "seed", "seed 001: hand-written max/avg pooling (stride 1)",
                 f"{SEED}:Pool2D",
                 (int_arg("pool_h", 2, 1), int_arg("pool_w", 2, 1),
                  choice_arg("mode", "max", ("max", "avg")))),
        # composite blocks
        BlockDef("Residual", "composite",
                 "ResNet block: two 3×3 convs with BatchNorm, plus the input (1×1 conv if needed)",
                 f"{COMPOSITE}:Residual",
                 (int_arg("in_channels", 3, 1), int_arg("out_channels", 3, 1),
                  bool_arg("use_1x1conv", False), int_arg("stride", 1, 1)), positional=2,
                 check=_residual_skip),
        BlockDef("Inception", "composite",
                 "GoogLeNet block: 1×1, 3×3, 5×5 and pooling branches, concatenated",
                 f"{COMPOSITE}:Inception",
                 (int_arg("in_channels", 192, 1), int_arg("c1", 64, 1),
                  int_arg("c2_reduce", 96, 1), int_arg("c2", 128, 1),
                  int_arg("c3_reduce", 16, 1), int_arg("c3", 32, 1), int_arg("c4", 32, 1))),
    ]
    catalog = {block.name: block for block in blocks}
    assert len(catalog) == len(blocks), "duplicate palette names"
    return catalog


CATALOG: dict[str, BlockDef] = _build_catalog()


def get_block(name: str) -> BlockDef:
    """The palette entry for `name`, or an error that lists close names."""
    try:
        return CATALOG[name]
    except (KeyError, TypeError):
        close = similar_blocks(name)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ArgumentError(f"unknown block '{name}'{hint}; `tuilab blocks` lists the palette",
                            where=str(name)) from None


def similar_blocks(name: object, n: int = 3) -> list[str]:
    """Palette names close to `name`, a different case first ('Relu' -> ReLU)."""
    import difflib

    if not isinstance(name, str):
        return []
    by_lower = {block.lower(): block for block in CATALOG}
    same = [by_lower[name.lower()]] if name.lower() in by_lower else []
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=n)
    return list(dict.fromkeys(same + [by_lower[c] for c in close]))[:n]


def blocks_by_family() -> dict[str, list[BlockDef]]:
    grouped: dict[str, list[BlockDef]] = {family: [] for family in FAMILIES}
    for block in CATALOG.values():
        grouped[block.family].append(block)
    return grouped
