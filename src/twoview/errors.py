"""Exceptions raised on bad user input.

Bad input raises :class:`InputError` naming the argument or file at fault. A pose
estimate that merely fails (too few matches, no overlap) is *not* an exception: it is
returned as a :class:`~twoview.result.PoseResult` with ``success=False`` and a reason.
"""

from __future__ import annotations


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
