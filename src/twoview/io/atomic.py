"""Atomic file writes: write to a temporary file in the same folder, then rename.

A reader never sees a half-written file, and an interrupted run leaves the old file.
The temporary name is short (``.tmp-XXXXXXXX.tmp``), so any name the file system accepts for
the result also works for the temporary file.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from twoview.errors import InputError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes the file private; results are meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, not beside other threads' writes
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_json_text(obj) -> str:
    # NaN/inf are not JSON: the caller maps them to null before writing.
    return json.dumps(obj, indent=2, default=_json_default, allow_nan=False) + "\n"


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, to_json_text(obj))


@contextmanager
def writing(what: str, path):
    """Report an OS error while writing ``path`` (a full disk, a read-only file system, a
    name too long, no permission) as bad input naming ``what`` (the flag or file), in one line."""
    try:
        yield
    except OSError as e:
        raise InputError(what, f"cannot write {path}: {e.strerror or e}") from None
