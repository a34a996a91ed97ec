"""Argument helpers shared by subcommands."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from twoview.errors import ConfigError, InputError


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
    file with one or two lines of 3 (f, cx, cy), 4 or 9 numbers. Returns (K0, K1)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(name, f"file not found: {p}")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".json":
            d = json.loads(text)
            if not isinstance(d, dict):
                raise ValueError("expected an object with K0 and K1 (or K)")
            unknown = sorted(set(d) - {"K", "K0", "K1"})
            if unknown:
                raise ValueError(f"unknown key(s) {', '.join(unknown)}; valid keys: K, K0, K1")
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


def add_gmm_args(g) -> None:
    """Options of Gaussian-mixture refinement (``twoview refine``, ``estimate --refine gmm``)."""
    from twoview.gmm.config import PRESETS

    g.add_argument("--gmm-preset", default=None, choices=list(PRESETS),
                   help="named settings (default: monocular with --depth-model, else default)")
    g.add_argument("--gmm-config", metavar="FILE.json", help="partial GMMConfig as JSON, applied on the preset")
    g.add_argument("--num-gaussians", type=int, help="target Gaussians per view")
    g.add_argument("--features", choices=["xfeat", "dinov2", "none"], help="per-Gaussian descriptors")
    g.add_argument("--dinov2-model", metavar="ID|DIR", help="hub id or local folder of a DINOv2 model")
    g.add_argument("--optimizer", choices=["gn", "lbfgs"])
    g.add_argument("--estimate-scale", action="store_true", default=None,
                   help="also estimate a relative scale between the two depth maps")
    g.add_argument("--keep-worse", action="store_true", help="keep the refined pose even if the objective got worse")


#: the mixture-refinement options of :func:`add_gmm_args` (attribute -> flag)
GMM_FLAGS = {"gmm_preset": "--gmm-preset", "gmm_config": "--gmm-config", "num_gaussians": "--num-gaussians",
             "features": "--features", "dinov2_model": "--dinov2-model", "optimizer": "--optimizer",
             "estimate_scale": "--estimate-scale", "keep_worse": "--keep-worse"}


def refuse_unused(args, flags, reason: str) -> None:
    """One line naming the first of ``flags`` (attribute -> flag) the user gave although it
    has no effect (``reason`` says what it needs), instead of ignoring it."""
    for attr, flag in flags.items():
        if getattr(args, attr, None) not in (None, False):
            raise InputError(flag, f"only applies {reason}")


def gmm_config(args, default_preset: str = "default"):
    """The :class:`twoview.gmm.GMMConfig` the gmm arguments describe: preset, then the
    JSON file, then the individual flags that were given."""
    from twoview.errors import ConfigError
    from twoview.gmm.config import merge_dicts, preset_config

    over: dict = {}
    if args.gmm_config:
        p = Path(args.gmm_config)
        if not p.is_file():
            raise InputError("--gmm-config", f"file not found: {p}")
        try:
            over = json.loads(p.read_text())
        except ValueError as e:
            raise InputError("--gmm-config", f"{p} is not valid JSON: {e}") from None
        if not isinstance(over, dict):
            raise InputError("--gmm-config", f"{p}: expected a JSON object with 'build' and/or 'align'")
    flags = {"build": {k: v for k, v in (("num_gaussians", args.num_gaussians), ("features", args.features),
                                         ("dinov2_model", args.dinov2_model)) if v is not None},
             "align": {k: v for k, v in (("optimizer", args.optimizer), ("estimate_scale", args.estimate_scale),
                                         ("reject_worse", False if args.keep_worse else None)) if v is not None}}
    try:
        return preset_config(args.gmm_preset or default_preset, merge_dicts(over, flags))
    except ConfigError as e:
        raise InputError("--gmm-config" if args.gmm_config else "--gmm-preset", str(e)) from None


#: output flags whose file type is fixed (flag -> accepted suffixes): a wrong suffix is a slip
#: (``--view out.png``), refused rather than written in another format under that name
OUTPUT_SUFFIXES = {"--view": ("an HTML page", (".html", ".htm")), "--html": ("an HTML page", (".html", ".htm"))}


def check_output_files(args, flags: dict[str, str]) -> None:
    """Refuse, before any work is done, output files that cannot be written: an existing
    folder, a parent path that is a file, a folder without write permission, a suffix
    :data:`OUTPUT_SUFFIXES` does not allow. ``flags`` maps argument attributes to the
    flags the user typed. Missing parent folders are fine (they are created)."""
    for attr, flag in flags.items():
        value = getattr(args, attr, None)
        if not value:
            continue
        path = Path(value)
        if path.is_dir():
            raise InputError(flag, f"is a folder, not a file: {path}")
        existing = next((q for q in path.parents if q.exists()), None)
        if existing is not None and not existing.is_dir():
            raise InputError(flag, f"cannot create {path}: {existing} is a file, not a folder")
        if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(flag, f"cannot write {path}: no write permission in {existing}")
        kind, suffixes = OUTPUT_SUFFIXES.get(flag, (None, ()))
        if kind and path.suffix.lower() not in suffixes:
            raise InputError(flag, f"writes {kind}: give a file name ending in {' or '.join(suffixes)}, got {path.name}")


def as_flag_error(e: ConfigError, flags: dict[str, str]) -> Exception:
    """``e`` re-worded under the flag the user typed when its message starts with one of
    ``flags``' config keys (key -> flag); ``e`` itself otherwise. The config's own check
    stays the one rule; the CLI only renames it."""
    msg = str(e)
    for key, flag in flags.items():
        if msg.startswith(key + " "):
            return InputError(flag, msg[len(key) + 1:])
    return e


@contextmanager
def writing(flag: str, path):
    """Report an OS error while writing ``path`` as bad input naming ``flag``."""
    try:
        yield
    except OSError as e:
        raise InputError(flag, f"cannot write {path}: {e.strerror or e}") from None
