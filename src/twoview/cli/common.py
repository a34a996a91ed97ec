"""Argument helpers shared by subcommands."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import numpy as np

from twoview.errors import ConfigError, InputError
from twoview.io.atomic import writing
from twoview.io.text import parse_json, read_text


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
    """Intrinsics of both views from a file. Returns (K0, K1), each a 3x3 K or the
    numbers ``[fx, fy, cx, cy]`` / ``[f, cx, cy]``.

    Forms: JSON ``{"K0": ..., "K1": ...}`` (or ``{"K": ...}`` for both; each 3x3 nested
    list, 9 numbers or [fx, fy, cx, cy]); or a text file with one or two lines of 3 (f, cx,
    cy), 4 or 9 numbers (one line: both views), or a 3x3 K as three lines of three numbers
    (as 7-Scenes and most datasets ship it; six such lines: K0 then K1). ``#`` starts a
    comment line; commas count as spaces."""
    p = Path(path)
    text = read_text(p, name)
    if p.suffix.lower() == ".json":
        d = parse_json(text, name, str(p))
    try:
        if p.suffix.lower() == ".json":
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
        rows = [[float(v) for v in ln.replace(",", " ").split()]
                for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if len(rows) in (3, 6) and all(len(r) == 3 for r in rows):  # one or two 3x3 matrices
            Ks = [_as_k(rows[i:i + 3]) for i in range(0, len(rows), 3)]
        elif len(rows) in (1, 2):
            Ks = [_as_k(r) for r in rows]
        else:
            raise ValueError(f"expected 1 or 2 lines of 3, 4 or 9 numbers, or 3 or 6 lines of 3 numbers "
                             f"(one 3x3 K per view), got {len(rows)} lines")
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


def gmm_config(args, default_preset: str = "default", base=None):
    """The :class:`twoview.gmm.GMMConfig` the gmm arguments describe: ``--gmm-preset``
    (else ``base``, else ``default_preset``), then the JSON file, then the individual flags
    that were given."""
    from twoview.errors import ConfigError
    from twoview.gmm.config import GMMConfig, merge_dicts, preset_config

    over: dict = {}
    if args.gmm_config:
        from twoview.io.text import read_json

        over = read_json(args.gmm_config, "--gmm-config")
        if not isinstance(over, dict):
            raise InputError("--gmm-config", f"{args.gmm_config}: expected a JSON object with 'build' and/or 'align'")
    flags = {"build": {k: v for k, v in (("num_gaussians", args.num_gaussians), ("features", args.features),
                                         ("dinov2_model", args.dinov2_model)) if v is not None},
             "align": {k: v for k, v in (("optimizer", args.optimizer), ("estimate_scale", args.estimate_scale),
                                         ("reject_worse", False if args.keep_worse else None)) if v is not None}}
    try:
        if args.gmm_preset or base is None:
            return preset_config(args.gmm_preset or default_preset, merge_dicts(over, flags))
        return GMMConfig.from_dict(merge_dicts(merge_dicts(base.to_dict(), over), flags))
    except ConfigError as e:
        raise InputError("--gmm-config" if args.gmm_config else "--gmm-preset", str(e)) from None


#: output flags whose file type is fixed (flag -> accepted suffixes): a wrong suffix is a slip
#: (``--view out.png``), refused rather than written in another format under that name
OUTPUT_SUFFIXES = {"--view": ("an HTML page", (".html", ".htm")), "--html": ("an HTML page", (".html", ".htm"))}
#: the value of an output flag that means standard output (only for the flags in STDOUT_FLAGS)
STDOUT = "-"
#: output flags that may write to standard output
STDOUT_FLAGS = ("--json",)
#: output flags that write a picture; its format follows the extension (see twoview.viz.IMAGE_FORMATS)
PICTURE_FLAGS = ("--viz",)
#: argument attributes that name input files (attribute -> flag), which no output may overwrite
INPUT_FLAGS = {"image0": "image0", "image1": "image1", "depth0": "--depth0", "depth1": "--depth1",
               "intrinsics": "--intrinsics", "init": "--init", "gmm_config": "--gmm-config", "config": "--config",
               "checkpoint": "--checkpoint", "pairs": "--pairs"}


def check_output_files(args, flags: dict[str, str]) -> None:
    """Refuse, before any work is done, output files that cannot or must not be written:
    a folder, something that is not a regular file (``/dev/null`` would be replaced), a
    name longer than the file system allows, a parent path that is a file, a folder
    without write permission, one of the command's input files (``INPUT_FLAGS``), the
    same file for two outputs, a picture extension other than .png/.jpg/.jpeg, a suffix
    :data:`OUTPUT_SUFFIXES` does not allow. ``flags`` maps argument attributes to the
    flags the user typed. Missing parent folders are fine (they are created); ``-`` is
    standard output for ``STDOUT_FLAGS``."""
    from twoview.viz import image_format

    inputs = [(flag, Path(v)) for attr, flag in INPUT_FLAGS.items()
              if isinstance(v := getattr(args, attr, None), str) and v and v != "identity"]
    seen: list[tuple[str, Path]] = []
    for attr, flag in flags.items():
        value = getattr(args, attr, None)
        if not value:
            continue
        if value == STDOUT:
            if flag not in STDOUT_FLAGS:
                raise InputError(flag, f"'-' (standard output) is only supported for {', '.join(STDOUT_FLAGS)}")
            continue
        path = Path(value)
        if flag in PICTURE_FLAGS:
            image_format(path, flag)
        existing = next((q for q in path.parents if _exists(q)), None)
        _check_name_lengths(flag, path, existing or Path("."))  # first: a stat of a long name fails
        try:
            if path.is_dir():
                raise InputError(flag, f"is a folder, not a file: {path}")
            if path.exists() and not path.is_file():
                raise InputError(flag, f"is not a regular file (a device, a pipe, a socket): {path}")
        except OSError as e:  # no permission to look into a folder on the way
            raise InputError(flag, f"cannot write {path}: {e.strerror or e}") from None
        if existing is not None and not existing.is_dir():
            raise InputError(flag, f"cannot create {path}: {existing} is a file, not a folder")
        if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(flag, f"cannot write {path}: no write permission in {existing}")
        kind, suffixes = OUTPUT_SUFFIXES.get(flag, (None, ()))
        if kind and path.suffix.lower() not in suffixes:
            raise InputError(flag, f"writes {kind}: give a file name ending in {' or '.join(suffixes)}, got {path.name}")
        for other_flag, other in inputs + seen:
            if _same_file(path, other):
                what = f"the input {other_flag} of this command" if (other_flag, other) in inputs else \
                    f"also the output of {other_flag}"
                raise InputError(flag, f"{path} is {what}: choose another output file")
        seen.append((flag, path))


def _check_name_lengths(flag: str, path: Path, existing: Path) -> None:
    """Each name of ``path`` within the file system's NAME_MAX and the whole within PATH_MAX
    (asked of the folder that exists; 255 and 4096 where it cannot tell)."""
    def limit(key: str, default: int) -> int:
        try:
            return int(os.pathconf(existing, key))
        except (OSError, ValueError, AttributeError):
            return default

    name_max, path_max = limit("PC_NAME_MAX", 255), limit("PC_PATH_MAX", 4096)
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise InputError(flag, f"the name {part[:40]}... is {len(os.fsencode(part))} bytes long; "
                                   f"the file system allows {name_max}")
    if len(os.fsencode(str(path.absolute()))) >= path_max:
        raise InputError(flag, f"the path is longer than the file system allows ({path_max} bytes)")


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long: reported by the length check
        return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


@contextmanager
def json_to_stdout(args):
    """While a command runs with ``--json -``, its human-readable lines go to standard
    error and standard output carries the JSON alone (``twoview estimate ... --json - | jq``)."""
    if getattr(args, "json", None) != STDOUT:
        yield
        return
    args.json_stream = sys.stdout
    with redirect_stdout(sys.stderr):
        yield


def write_json_output(args, flag: str, obj, path=None) -> None:
    """Write ``obj`` as JSON to the file of ``flag`` (``path``, default ``args.json``),
    atomically, or to standard output for ``-``; OS errors are one line naming ``flag``."""
    from twoview.io.atomic import atomic_write_json, to_json_text

    path = args.json if path is None else path
    if path == STDOUT:
        stream = getattr(args, "json_stream", None) or sys.stdout
        stream.write(to_json_text(obj))
        stream.flush()
        return
    write_output(flag, path, lambda p: atomic_write_json(p, obj))


def write_picture_output(flag: str, path, image_rgb) -> None:
    """Write an RGB picture (H, W, 3) uint8 in the format of the extension of ``path``."""
    from twoview.viz import save_image

    write_output(flag, path, lambda p: save_image(p, image_rgb))


def write_output(flag: str, path, write) -> None:
    """``write(path)``, an OS error there reported as bad input naming ``flag``; then says so."""
    with writing(flag, path):
        write(path)
    print(f"wrote {path}")

def as_flag_error(e: ConfigError, flags: dict[str, str]) -> Exception:
    """``e`` re-worded under the flag the user typed when its message starts with one of
    ``flags``' config keys (key -> flag); ``e`` itself otherwise. The config's own check
    stays the one rule; the CLI only renames it."""
    msg = str(e)
    for key, flag in flags.items():
        if msg.startswith(key + " "):
            return InputError(flag, msg[len(key) + 1:])
    return e
