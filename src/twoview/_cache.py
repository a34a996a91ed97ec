"""Where twoview keeps what it makes once and reuses (exported networks, predicted depth,
the bench's simulated colour images)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(name: str) -> Path:
    """``$TWOVIEW_CACHE/<name>``, or ``~/.cache/twoview/<name>`` when the variable is unset
    or empty (not created here)."""
    base = os.environ.get("TWOVIEW_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "twoview")
    return Path(base) / name
