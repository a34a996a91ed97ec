"""Mixtures as 3D Gaussian Splatting PLY files.

Layout (binary little-endian, one ``vertex`` element, float32 properties, as written by
the 3DGS reference implementation and read by splat viewers)::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  opacity  scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3

``f_dc`` is the degree-0 spherical-harmonic colour (``rgb = 0.5 + C0 * f_dc``), ``opacity``
a logit, ``scale`` the log standard deviations, ``rot`` a unit quaternion (w, x, y, z)
with ``cov = Rot diag(exp(scale))^2 Rot^T``. Extra properties written here and ignored by
viewers: ``weight`` (the exact mixture weight) and ``feat_0..feat_{C-1}`` (descriptors).
Reading accepts any such file (e.g. from Flash3D or Splatter Image; binary little- or
big-endian, or ASCII); without a ``weight`` property the mixture weights are
``sigmoid(opacity)``, normalised. Reading is vectorised (a million Gaussians in well under a
second) and checks the file before it allocates: a header is parsed strictly (a malformed
count, property or format line is an error naming the line), its vertex count must fit in
the body, and the values must be finite (a zero quaternion, an infinite scale are errors
naming the vertex).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twoview.errors import InputError
from twoview.geometry.rotation import quaternions_to_rotations, rotations_to_quaternions
from twoview.gmm.mixture import GaussianMixture
from twoview.io.atomic import atomic_write_bytes

SH_C0 = 0.28209479177387814
_TYPES = {
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
    "uchar": "u1", "uint8": "u1", "char": "i1", "int8": "i1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
}
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": ""}
#: the properties every 3DGS PLY has and reading needs
REQUIRED_PROPERTIES = ("x", "y", "z", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
#: properties that come as a group: all or none
_GROUPS = (("f_dc_0", "f_dc_1", "f_dc_2"), ("red", "green", "blue"), ("nx", "ny", "nz"))
#: a header longer than this is not a PLY header
_MAX_HEADER_BYTES = 1 << 20


def write_ply(path: str | Path, mix: GaussianMixture) -> Path:
    """Write ``mix`` (camera frame) as a 3DGS PLY, atomically."""
    n = len(mix)
    scales, rots = mix.scales_rotations()
    quats = rotations_to_quaternions(rots, "wxyz").reshape(n, 4)
    normals = mix.normals if mix.normals is not None else rots[:, :, 0] if n else np.zeros((0, 3))
    w = mix.weights
    alpha = np.clip(w / w.max(), 1e-6, 1 - 1e-6) if n else w
    cols = {
        "x": mix.means[:, 0], "y": mix.means[:, 1], "z": mix.means[:, 2],
        "nx": normals[:, 0], "ny": normals[:, 1], "nz": normals[:, 2],
    }
    for k in range(3):
        cols[f"f_dc_{k}"] = (mix.colors[:, k] - 0.5) / SH_C0
    cols["opacity"] = np.log(alpha / (1 - alpha))
    for k in range(3):
        cols[f"scale_{k}"] = np.log(np.maximum(scales[:, k], 1e-12))
    for k in range(4):
        cols[f"rot_{k}"] = quats[:, k]
    cols["weight"] = w
    if mix.features is not None:
        for k in range(mix.features.shape[1]):
            cols[f"feat_{k}"] = mix.features[:, k]
    dtype = np.dtype([(name, "<f4") for name in cols])
    rec = np.empty(n, dtype=dtype)
    for name, v in cols.items():
        rec[name] = v
    header = "ply\nformat binary_little_endian 1.0\n" f"element vertex {n}\n"
    header += "".join(f"property float {name}\n" for name in cols) + "end_header\n"
    return atomic_write_bytes(path, header.encode("ascii") + rec.tobytes())


def read_ply(path: str | Path, camera=None) -> GaussianMixture:
    """Read a 3DGS PLY (binary little- or big-endian, or ASCII) into a mixture.

    Args:
        camera: the :class:`~twoview.geometry.Camera` whose frame the Gaussians are in,
            for the visibility test (optional).

    Raises:
        InputError: naming the file (and the header line or vertex at fault): missing
            file, not a PLY, a malformed header, missing 3DGS properties, a body shorter
            than the header's count (checked before anything is allocated), short ASCII
            rows, non-finite values, a zero rotation quaternion.
    """
    from twoview.io.text import existing_file

    path = existing_file(path, None, "PLY file")
    with open(path, "rb") as f:
        fmt, count, props = _read_header(f, path)
        offset = f.tell()
    if fmt == "ascii":
        col = _read_ascii(path, offset, count, props)
    else:
        col = _read_binary(path, offset, count, props, _FORMATS[fmt])
    return _mixture(col, path, camera)


def _read_header(f, path: Path) -> tuple[str, int, list[tuple[str, str]]]:
    """(format, vertex count, [(property, numpy type)]) from the header; ``f`` is left at the body."""
    def bad(lineno: int, problem: str):
        return InputError(f"{path}:{lineno}", problem)

    if f.readline(8).rstrip(b"\r\n") != b"ply":
        raise InputError(str(path), "not a PLY file (the first line is not 'ply')")
    fmt, count, props, element, seen_vertex, size = None, None, [], None, False, 4
    for lineno in range(2, 1 << 30):
        raw = f.readline(_MAX_HEADER_BYTES)
        size += len(raw)
        if not raw or size > _MAX_HEADER_BYTES:
            raise InputError(str(path), "not a PLY file (no end_header line)")
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            raise bad(lineno, "a header line that is not ASCII text") from None
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        key = parts[0]
        if key == "end_header":
            if not raw.endswith(b"\n") or len(parts) != 1:
                raise bad(lineno, "'end_header' must be a line of its own, ended by a newline")
            break
        if key == "format":
            if len(parts) != 3 or parts[1] not in _FORMATS:
                raise bad(lineno, f"expected 'format ascii|binary_little_endian|binary_big_endian 1.0', got {line.strip()[:80]!r}")
            fmt = parts[1]
        elif key == "element":
            if len(parts) != 3 or not parts[2].isdigit():
                raise bad(lineno, f"expected 'element NAME COUNT' with a whole-number count, got {line.strip()[:80]!r}")
            element = parts[1]
            if element == "vertex":
                if seen_vertex:
                    raise bad(lineno, "a second 'vertex' element")
                seen_vertex, count = True, int(parts[2])
            elif not seen_vertex:
                raise bad(lineno, "the vertex element must come first")
        elif key == "property":
            if element is None:
                raise bad(lineno, "a property before any element")
            if element != "vertex":
                continue  # properties of later elements: not read
            if len(parts) >= 2 and parts[1] == "list":
                raise bad(lineno, "list properties in the vertex element are not supported")
            if len(parts) != 3:
                raise bad(lineno, f"expected 'property TYPE NAME', got {line.strip()[:80]!r}")
            if parts[1] not in _TYPES:
                raise bad(lineno, f"unknown PLY property type {parts[1]!r}")
            if any(name == parts[2] for name, _ in props):
                raise bad(lineno, f"property {parts[2]!r} given twice")
            props.append((parts[2], _TYPES[parts[1]]))
        else:
            raise bad(lineno, f"unknown header keyword {key[:40]!r}")
    if fmt is None:
        raise InputError(str(path), "no 'format' line in the header")
    if not count:
        raise InputError(str(path), "no Gaussians: the header has no 'element vertex' or a count of 0")
    names = [n for n, _ in props]
    missing = [k for k in REQUIRED_PROPERTIES if k not in names]
    missing += [k for group in _GROUPS if any(g in names for g in group) for k in group if k not in names]
    if missing:
        raise InputError(str(path), f"not a Gaussian-splat PLY: missing {', '.join(missing)}")
    return fmt, count, props


def _read_binary(path: Path, offset: int, count: int, props, endian: str) -> dict[str, np.ndarray]:
    dtype = np.dtype([(name, endian + t) for name, t in props])
    available = path.stat().st_size - offset
    if dtype.itemsize * count > available:  # checked before allocating: a header may claim 10^9 Gaussians
        raise InputError(str(path), f"truncated: the header claims {count} Gaussians ({dtype.itemsize * count} bytes) "
                                    f"but the body has {available} bytes")
    rec = np.fromfile(path, dtype=dtype, count=count, offset=offset)
    return {name: rec[name].astype(np.float64) for name, _ in props}


def _read_ascii(path: Path, offset: int, count: int, props) -> dict[str, np.ndarray]:
    n_props = len(props)
    with open(path, "rb") as f:
        f.seek(offset)
        body = f.read()
    try:
        rows = body.decode("ascii").splitlines()
    except UnicodeDecodeError as e:
        raise InputError(str(path), f"the ASCII body has a non-ASCII byte at offset {offset + e.start}") from None
    rows = [r for r in rows if r.strip()][:count]  # nothing is sized by the header's count
    if len(rows) < count:
        raise InputError(str(path), f"truncated: the header claims {count} Gaussians, the body has {len(rows)} rows")
    lengths = np.array([len(r.split()) for r in rows])
    short = np.flatnonzero(lengths != n_props)
    if short.size:
        raise InputError(str(path), f"vertex {int(short[0])} has {int(lengths[short[0]])} values, the header "
                                    f"declares {n_props} properties")
    try:
        arr = np.array(" ".join(rows).split(), dtype=np.float64).reshape(count, n_props)
    except ValueError as e:
        raise InputError(str(path), f"the ASCII body has a value that is not a number ({e})") from None
    return {name: arr[:, i] for i, (name, _) in enumerate(props)}


def _mixture(col: dict[str, np.ndarray], path: Path, camera) -> GaussianMixture:
    """The mixture of a PLY's columns, each value checked."""
    names = list(col)
    feat_names = sorted((k for k in names if k.startswith("feat_") and k[5:].isdigit()), key=lambda k: int(k[5:]))
    used = [*REQUIRED_PROPERTIES, *(k for group in _GROUPS for k in group), "opacity", "weight", *feat_names]
    for k in used:
        if k in col:
            bad = np.flatnonzero(~np.isfinite(col[k]))
            if bad.size:
                raise InputError(str(path), f"vertex {int(bad[0])}: {k} is {col[k][bad[0]]} (values must be finite)")
    means = np.stack([col["x"], col["y"], col["z"]], 1)
    with np.errstate(over="ignore", under="ignore"):
        scales = np.exp(np.stack([col[f"scale_{k}"] for k in range(3)], 1))
        var = scales**2
    bad = np.flatnonzero(~np.all(np.isfinite(var) & (var > 0), axis=1))
    if bad.size:
        raise InputError(str(path), f"vertex {int(bad[0])}: log scales {np.log(scales[bad[0]]).tolist()} give a "
                                    "zero or infinite variance")
    try:
        rots = quaternions_to_rotations(np.stack([col[f"rot_{k}"] for k in range(4)], 1), "wxyz")
    except ValueError as e:  # a zero quaternion: no rotation
        raise InputError(str(path), f"vertex {str(e).replace('quaternion ', '', 1)} (rot_0..rot_3)") from None
    covs = (rots * var[:, None, :]) @ rots.transpose(0, 2, 1)
    if "f_dc_0" in col:
        colors = np.clip(0.5 + SH_C0 * np.stack([col[f"f_dc_{k}"] for k in range(3)], 1), 0, 1)
    elif "red" in col:
        colors = np.clip(np.stack([col["red"], col["green"], col["blue"]], 1) / 255.0, 0, 1)
    else:
        colors = np.full((len(means), 3), 0.5)
    if "weight" in col:
        weights = col["weight"]
        bad = np.flatnonzero(weights < 0)
        if bad.size:
            raise InputError(str(path), f"vertex {int(bad[0])}: weight {weights[bad[0]]} is negative")
    elif "opacity" in col:
        o = col["opacity"]
        with np.errstate(over="ignore"):
            weights = np.where(o >= 0, 1.0 / (1.0 + np.exp(-np.abs(o))), np.exp(-np.abs(o)) / (1.0 + np.exp(-np.abs(o))))
    else:
        weights = np.ones(len(means))
    if len(means) and not weights.sum() > 0:
        raise InputError(str(path), "every Gaussian has weight 0")
    features = np.stack([col[k] for k in feat_names], 1).astype(np.float32) if feat_names else None
    normals = np.stack([col["nx"], col["ny"], col["nz"]], 1) if "nx" in col else None
    return GaussianMixture(means, covs, weights, colors, features, normals, camera, info={"source": str(path)})
