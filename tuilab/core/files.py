"""Reading a file the user named, safely: regular files only, the size checked first.

`/dev/zero` reports a size of 0 and never ends; a FIFO blocks `open()` until a writer comes;
a folder or a socket is not a file at all. Every reader of a user-named file goes through
:func:`regular_file` (stat, refuse anything but a regular file, refuse one over the limit) and
reads with :func:`read_regular_file`, which opens without blocking, checks the opened file
again (it may have been swapped since the stat) and reads at most ``limit + 1`` bytes, so no
file can make tuilab read more than it allows.

A PyTorch ``.pt`` file is a zip archive whose members may be compressed (``torch.save`` never
compresses them; a hostile file can): :func:`check_torch_archive` adds up the *uncompressed*
sizes from the archive's directory before anything is decompressed.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

from tuilab.core.errors import SpecFileError
from tuilab.core.units import size_text

__all__ = ["check_torch_archive", "memory_budget", "read_regular_file", "regular_file"]


def memory_budget() -> int:
    """The most bytes a file may make tuilab hold: half the machine's memory (8 GiB when the
    system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse_special(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise SpecFileError(f"is {_kind(mode)}; tuilab reads regular files only",
                            where=str(path))


def _refuse_large(path: Path, size: int, limit: int) -> None:
    if size > limit:
        raise SpecFileError(
            f"is {size:,} bytes ({size_text(size, digits=2)}); tuilab reads files of this kind "
            f"up to {size_text(limit, digits=0)}", where=str(path))


def regular_file(path: str | Path, *, limit: int) -> int:
    """The size of ``path``, after checking it is a regular file of at most ``limit`` bytes.

    Raises :class:`SpecFileError` (with ``where`` = the path) for a missing file, a folder, a
    device, a FIFO or socket, or a file over the limit; nothing is opened.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SpecFileError("no such file", where=str(path)) from None
    except OSError as error:
        raise SpecFileError(f"cannot read it: {error.strerror or error}",
                            where=str(path)) from None
    _refuse_special(path, info.st_mode)
    _refuse_large(path, info.st_size, limit)
    return info.st_size


def read_regular_file(path: str | Path, *, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see :func:`regular_file`)."""
    path = Path(path)
    regular_file(path, limit=limit)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: a FIFO swapped in after the stat cannot block
    except OSError as error:
        raise SpecFileError(f"cannot read it: {error.strerror or error}",
                            where=str(path)) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        _refuse_special(path, info.st_mode)
        _refuse_large(path, info.st_size, limit)
        try:
            data = handle.read(limit + 1)
        except OSError as error:
            raise SpecFileError(f"cannot read it: {error.strerror or error}",
                                where=str(path)) from None
    _refuse_large(path, len(data), limit)  # grew while we read it
    return data


def check_torch_archive(path: str | Path, *, limit: int) -> bool:
    """Check a ``.pt`` file before ``torch.load`` decompresses anything; True for a zip archive.

    A regular file of at most ``limit`` bytes whose members are stored uncompressed (as
    ``torch.save`` writes them) and add up to at most ``limit`` bytes: the archive's directory
    says so without inflating anything, and the caller can then ``torch.load(mmap=True)`` to
    check keys and shapes before a single value is read. A
    legacy (non-zip) file is stored as it is, so its size on disk is what loading reads.
    """
    path = Path(path)
    regular_file(path, limit=limit)
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise SpecFileError(f"is a damaged archive: {error}", where=str(path)) from None
    packed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise SpecFileError(
            f"holds compressed members ({packed[0]}…), which torch.save never writes; tuilab "
            f"refuses them rather than inflate data of unknown size", where=str(path))
    unpacked = sum(member.file_size for member in members)
    if unpacked > limit:
        raise SpecFileError(
            f"holds {size_text(unpacked)} of data; tuilab reads files of this kind up to "
            f"{size_text(limit)}", where=str(path))
    return True
