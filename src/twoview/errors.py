"""Exceptions raised on bad user input.

Bad input raises :class:`InputError` naming the argument or file at fault. A pose
estimate that merely fails (too few matches, no overlap) is *not* an exception: it is
returned as a :class:`~twoview.result.PoseResult` with ``success=False`` and a reason.
"""

from __future__ import annotations

import warnings


class TwoViewError(Exception):
    """Base class of every error twoview raises on purpose."""


class InputError(TwoViewError, ValueError):
    """An argument or input file is missing, unreadable or inconsistent.

    Args:
        what: the argument or file at fault, e.g. ``"--depth0"`` or a path.
        problem: one sentence saying what is wrong with it.
    """

    def __init__(self, what: str, problem: str):
        self.what = what
        self.problem = problem
        super().__init__(f"{what}: {problem}")

    def __reduce__(self):  # survives pickling (an error raised in a worker process reaches the caller)
        return type(self), (self.what, self.problem)


class ConfigError(TwoViewError, ValueError):
    """A configuration has an unknown key or a value of the wrong type or range."""


class BackendUnavailable(TwoViewError, ImportError):
    """An optional dependency (torch, a model's weights, ...) is not installed."""


class TwoViewWarning(UserWarning):
    """A warning twoview gives on purpose: an assumption made for the user (no intrinsics:
    a 65 deg field of view), an implausible input, a slower fallback. A ``UserWarning``, so
    ``warnings.filterwarnings("ignore", category=twoview.TwoViewWarning)`` silences
    twoview's own warnings and nobody else's."""


#: how Python formats a warning (:func:`format_warning` falls back on it)
_python_format_warning = warnings.formatwarning


def format_warning(message, category, filename, lineno, line=None) -> str:
    """A ``warnings.formatwarning`` for programs built on twoview (the ``twoview`` command
    and its worker processes): twoview's own warnings in one line (``twoview: warning:
    ...``), anyone else's as Python shows them (a library's warning is not labelled as
    twoview's)."""
    if issubclass(category, TwoViewWarning):
        return f"twoview: warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)
