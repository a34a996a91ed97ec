"""Argument helpers shared by subcommands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from twoview.errors import InputError


def parse_floats(text: str, name: str, count: tuple[int, ...]) -> list[float]:
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(name, f"expected comma-separated numbers, got {text!r}") from None
    if len(vals) not in count:
        raise InputError(name, f"expected {' or '.join(map(str, count))} numbers, got {len(vals)}: {text!r}")
    if not all(np.isfinite(vals)):
        raise InputError(name, f"numbers must be finite: {text!r}")
    return vals


def parse_intrinsics(text: str | None, name: str):
    """``fx,fy,cx,cy`` or ``f,cx,cy`` or 9 numbers (row-major K) -> params or 3x3 K."""
    if text is None:
        return None
    vals = parse_floats(text, name, (3, 4, 9))
    return np.array(vals).reshape(3, 3) if len(vals) == 9 else vals


def load_intrinsics_file(path: str, name: str = "--intrinsics"):
    """JSON ``{"K0": ..., "K1": ...}`` (each 3x3 nested list or [fx, fy, cx, cy]) or a text
    file with one or two lines of 4 or 9 numbers. Returns (K0, K1)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(name, f"file not found: {p}")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".json":
            d = json.loads(text)
            if not isinstance(d, dict):
                raise ValueError("expected an object with K0 and K1 (or K)")
            k0 = d.get("K0", d.get("K"))
            k1 = d.get("K1", k0)
            if k0 is None:
                raise ValueError("no 'K0' or 'K' key")
            return _as_k(k0), _as_k(k1)
        rows = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        Ks = [_as_k([float(v) for v in ln.replace(",", " ").split()]) for ln in rows]
        if len(Ks) not in (1, 2):
            raise ValueError(f"expected 1 or 2 non-empty lines, got {len(Ks)}")
        return Ks[0], Ks[-1]
    except (ValueError, TypeError) as e:
        raise InputError(name, f"cannot parse intrinsics in {p}: {e}") from None


def _as_k(v):
    a = np.asarray(v, dtype=np.float64)
    if a.shape == (3, 3) or a.shape in ((3,), (4,)):
        return a
    if a.shape == (9,):
        return a.reshape(3, 3)
    raise ValueError(f"K must be 3x3, 9 numbers or fx,fy,cx,cy; got shape {a.shape}")


def positive_float(name: str):
    def conv(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise InputError(name, f"expected a number, got {text!r}") from None
        if not (np.isfinite(v) and v > 0):
            raise InputError(name, f"must be a positive number, got {text!r}")
        return v

    return conv
