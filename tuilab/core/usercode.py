"""Opening a user's own module: `tuilab path/to/file.py:NAME`.

Importing a Python file runs its code, so tuilab does it only for a path the user named on the
command line, and the app first shows that path and the file's SHA-256 (:func:`describe`) in a
confirmation dialog. Nothing here is reachable from a workspace file.

NAME is a class whose constructor needs no arguments, or a function that needs none and returns
an ``nn.Module``. Every failure is one :class:`~tuilab.core.errors.SpecFileError` naming the
file (and the line, for an import error): the app shows it and carries on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuilab.core.errors import SpecFileError
from tuilab.core.files import read_regular_file

if TYPE_CHECKING:
    from torch import nn

    from tuilab.core.lab import Lab

#: A Python file larger than this is not a model definition tuilab will hash and import.
MAX_SOURCE_BYTES = 16 * 2**20

__all__ = ["describe", "guess_input", "is_user_code_arg", "load_user_module", "module_lab",
           "split_arg"]


def is_user_code_arg(text: str) -> bool:
    """True for `file.py:NAME` (or a bare `file.py`, which then lacks its NAME)."""
    path, _, _ = text.rpartition(":") if ":" in text else (text, "", "")
    return path.endswith(".py") or text.endswith(".py")


def split_arg(text: str) -> tuple[Path, str]:
    """`path/to/file.py:NAME` -> (path, NAME); a missing NAME is a clear error."""
    path_text, sep, name = text.rpartition(":")
    if not sep or not path_text.endswith(".py"):
        raise SpecFileError(
            "name the module to open after a colon, e.g. my_model.py:Net (a class with no "
            "required arguments, or a function returning an nn.Module)", where=text)
    if not name.isidentifier():
        raise SpecFileError(f"{name!r} is not a Python name", where=text)
    return Path(path_text), name


def describe(path: str | Path) -> tuple[Path, str]:
    """The absolute path and SHA-256 of the file, shown to the user before it is imported."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise SpecFileError("is a folder, not a Python file", where=str(path))
    digest = hashlib.sha256(read_regular_file(target, limit=MAX_SOURCE_BYTES)).hexdigest()
    return target.resolve(), digest


def _import_file(path: Path) -> Any:
    module_name = f"tuilab_user_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpecFileError("cannot be imported as a Python module", where=str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up here
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        sys.modules.pop(module_name, None)
        raise SpecFileError(f"syntax error: {error.msg}",
                            where=f"{path}:{error.lineno}") from None
    except BaseException as error:  # the user's code may raise anything, even SystemExit
        sys.modules.pop(module_name, None)
        line = _user_line(error, path)
        raise SpecFileError(f"importing it raised {type(error).__name__}: {error}",
                            where=f"{path}:{line}" if line else str(path)) from None
    return module


def _user_line(error: BaseException, path: Path) -> int | None:
    """The deepest line of the user's file in the traceback (where their code failed)."""
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if Path(frame.filename).resolve() == path:
            line = frame.lineno
    return line


def load_user_module(spec_text: str) -> tuple[nn.Module, str]:
    """Import `file.py`, call NAME, and return the module and its display name."""
    path_part, name = split_arg(spec_text)
    path, _ = describe(path_part)
    module = _import_file(path)
    try:
        return _take(module, name, path)
    except SpecFileError:
        sys.modules.pop(module.__name__, None)  # a refused file leaves nothing imported
        raise


def _take(module: Any, name: str, path: Path) -> tuple[nn.Module, str]:
    """NAME from the imported file: the module itself, or what calling it returns."""
    from torch import nn

    if not hasattr(module, name):
        found = sorted(n for n, v in vars(module).items()
                       if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
                       and getattr(v, "__module__", None) == module.__name__)
        hint = f" (it defines: {', '.join(found)})" if found else ""
        raise SpecFileError(f"the file has no {name!r}{hint}", where=str(path))
    target = getattr(module, name)
    if isinstance(target, nn.Module):
        return target, name
    if not callable(target):
        raise SpecFileError(f"{name} is a {type(target).__name__}, not a class or function",
                            where=f"{path}:{name}")
    _check_no_required_args(target, f"{path}:{name}")
    try:
        result = target()
    except BaseException as error:
        line = _user_line(error, path)
        raise SpecFileError(f"{name}() raised {type(error).__name__}: {error}",
                            where=f"{path}:{line}" if line else f"{path}:{name}") from None
    if not isinstance(result, nn.Module):
        raise SpecFileError(f"{name}() returned a {type(result).__name__}, not an nn.Module",
                            where=f"{path}:{name}")
    return result, name


def _check_no_required_args(target: Any, where: str) -> None:
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return  # a builtin or C callable: just try it
    required = [
        p.name for p in signature.parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if required:
        raise SpecFileError(
            f"needs arguments ({', '.join(required)}); give them defaults, or write a function "
            "with no arguments that returns the module", where=where)


def guess_input(module: nn.Module) -> tuple[tuple[int, ...], bool, int | None]:
    """(shape, takes_tokens, vocab_size) of the first input that runs (see core/input_guess:
    what the model says about itself, each candidate tried on meta). For the CLI's summary."""
    from tuilab.core.input_guess import guess_input as first_that_runs

    guess = first_that_runs(module)
    return guess.shape, guess.candidate.takes_tokens, guess.candidate.vocab_size


def module_lab(module: nn.Module, name: str, input_shape: Any = None) -> Lab:
    """A lab on the user's module, on the input given or else the first guess that runs.

    ``lab.input_guess`` keeps the guess (None when the input was given): when no candidate
    ran, the app asks for a shape and shows the failing node, instead of opening on an error.
    A given shape still takes token ids when the model starts with an Embedding.
    """
    from tuilab.core.edits import check_input_shape
    from tuilab.core.input_guess import candidates, guess_input
    from tuilab.core.lab import Lab

    guess = None
    if input_shape is not None:
        first = candidates(module)[0]  # reads the model only: nothing runs
        shape, tokens, vocab = check_input_shape(input_shape), first.takes_tokens, \
            first.vocab_size
    else:
        guess = guess_input(module)
        shape, tokens, vocab = (guess.shape, guess.candidate.takes_tokens,
                                guess.candidate.vocab_size)
    lab = Lab(module=module, input_shape=shape, name=name, takes_tokens=tokens,
              vocab_size=vocab)
    lab.input_guess = guess
    return lab
