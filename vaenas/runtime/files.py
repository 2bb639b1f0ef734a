"""Files a killed process cannot leave half-written: atomic writes and checkpoints.

Every output of a long job goes through `atomic_file`: the bytes go to a temporary file in the
destination's folder, are fsynced, then `os.replace`d over the destination. A reader, a resumed
run or a crash at any instant sees the old file or the new one, never a mix (os.replace is
atomic within one file system, hence the temporary file in the same folder).

Checkpoints are `torch.save` archives read back with `weights_only=True` (no arbitrary pickles):
plain containers (dict, list, tuple), numbers, strings and tensors. A file that cannot be read
raises CheckpointError naming the path and the problem.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded: missing, empty, truncated, corrupt or holding refused types."""


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (its entry lives in the folder). Not every platform can."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary file handle whose content replaces `path` atomically when the block exits normally.

    The parent folder is created if needed. If the block raises, `path` is untouched and the
    temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid + random suffix: two processes (ranks) writing the same name never share a temporary;
    # os.open with 0o666 gives the permissions of an ordinary new file (umask applies), which
    # tempfile.mkstemp's 0o600 would not
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(path.parent)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write `data` (str as UTF-8) to `path` atomically: readers never see half a file."""
    with atomic_file(path) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def save_checkpoint(path: str | os.PathLike, state: Any) -> None:
    """torch.save `state` (a state_dict-like tree of containers, numbers, strings, tensors) to
    `path` atomically. Keep it loadable with weights_only=True: no custom classes."""
    with atomic_file(path) as handle:
        torch.save(state, handle)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """The object saved by save_checkpoint at `path`, loaded with torch.load(weights_only=True).

    Raises CheckpointError (message: the path, the size, the problem) when the file is missing,
    empty, truncated or corrupt, or holds types that weights_only loading refuses.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path}: empty file (0 bytes; was its write interrupted?)")
    # torch.save writes a zip archive whose end record comes last: a cut or garbled file lacks it
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} ({size} bytes): truncated or corrupt (not a complete "
                              "torch.save archive: its zip end record is missing)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # zip, pickle and storage errors all mean one thing here
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        refused = [line for line in lines if "Unsupported global" in line]
        if refused:
            problem = f"holds objects that weights_only loading refuses ({refused[0]})"
        else:
            # torch's weights_only errors open with advice about trusting the file; the cause is
            # the "Unsupported operand ..." line after it
            detail = next((line for line in lines if line.startswith("Unsupported")), lines[0] if lines else "")
            problem = f"truncated or corrupt ({type(error).__name__}: {detail or 'no message'})"
        raise CheckpointError(f"checkpoint {path} ({size} bytes): {problem}") from error
