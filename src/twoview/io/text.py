"""Reading text and JSON files with errors that name the file.

Every text reader of the library goes through :func:`read_text` (and JSON through
:func:`read_json` / :func:`parse_json`), so a missing file, a folder, an unreadable file,
a byte that is not UTF-8 or JSON nested past Python's recursion limit is one
:class:`~twoview.errors.InputError`, never a ``UnicodeDecodeError`` or ``RecursionError``.
"""

from __future__ import annotations

import json
from pathlib import Path

from twoview.errors import InputError


def existing_file(path: str | Path, what: str | None = None, kind: str = "file") -> Path:
    """``path`` as a Path, checked to be an existing regular file (or one a device gives,
    e.g. ``/dev/stdin``), without an OSError escaping (a name longer than the file system
    allows is an ``OSError`` of ``Path.exists``).

    Raises:
        InputError: naming ``what`` (default: the path): missing, a folder, a name too long,
            a path through something that is not a folder, no permission.
    """
    path = Path(path)
    what = what or str(path)
    try:
        if not path.exists():
            raise InputError(what, f"{kind} not found: {path}")
        if path.is_dir():
            raise InputError(what, f"not a file but a folder: {path}")
    except OSError as e:
        raise InputError(what, f"cannot open {path}: {e.strerror or e}") from None
    return path


def read_text(path: str | Path, what: str | None = None) -> str:
    """The UTF-8 text of ``path``.

    Args:
        what: the argument the file was given as (``"--intrinsics"``); the path otherwise.

    Raises:
        InputError: missing, a folder, unreadable, or not UTF-8 text (the message gives
            the byte offset of the first bad byte).
    """
    path = existing_file(path, what)
    what = what or str(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(what, f"cannot read {path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(what, f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def parse_json(text: str, what: str, source: str | None = None):
    """``json.loads`` with malformed or too deeply nested JSON as :class:`InputError`
    (``source``: the file or value the text came from, for the message)."""
    where = f"{source} " if source else ""
    try:
        return json.loads(text)
    except RecursionError:
        raise InputError(what, f"{where}is nested too deeply to be a valid file of this kind") from None
    except ValueError as e:
        raise InputError(what, f"{where}is not valid JSON: {e}") from None


def read_json(path: str | Path, what: str | None = None):
    """The JSON value of a UTF-8 file (see :func:`read_text` and :func:`parse_json`)."""
    return parse_json(read_text(path, what), what or str(path), str(path))
