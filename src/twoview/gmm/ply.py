"""Mixtures as 3D Gaussian Splatting PLY files.

Layout (binary little-endian, one ``vertex`` element, float32 properties, as written by
the 3DGS reference implementation and read by splat viewers)::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  opacity  scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3

``f_dc`` is the degree-0 spherical-harmonic colour (``rgb = 0.5 + C0 * f_dc``), ``opacity``
a logit, ``scale`` the log standard deviations, ``rot`` a unit quaternion (w, x, y, z)
with ``cov = Rot diag(exp(scale))^2 Rot^T``. Extra properties written here and ignored by
viewers: ``weight`` (the exact mixture weight) and ``feat_0..feat_{C-1}`` (descriptors).
Reading accepts any such file (e.g. from Flash3D or Splatter Image); without a
``weight`` property the mixture weights are ``sigmoid(opacity)``, normalised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twoview.errors import InputError
from twoview.geometry.rotation import quaternion_to_rotation, rotation_to_quaternion
from twoview.gmm.mixture import GaussianMixture
from twoview.io.atomic import atomic_write_bytes

SH_C0 = 0.28209479177387814
_TYPES = {
    "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
    "uchar": "u1", "uint8": "u1", "char": "i1", "int8": "i1", "short": "<i2", "int16": "<i2",
    "ushort": "<u2", "uint16": "<u2", "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
}


def write_ply(path: str | Path, mix: GaussianMixture) -> Path:
    """Write ``mix`` (camera frame) as a 3DGS PLY, atomically."""
    n = len(mix)
    scales, rots = mix.scales_rotations()
    quats = np.array([rotation_to_quaternion(R, "wxyz") for R in rots]).reshape(n, 4)
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
    """Read a 3DGS PLY (binary little-endian or ASCII) into a mixture.

    Args:
        camera: the :class:`~twoview.geometry.Camera` whose frame the Gaussians are in,
            for the visibility test (optional).

    Raises:
        InputError: missing file, not a PLY, or missing 3DGS properties.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "PLY file not found")
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise InputError(str(path), "not a PLY file (no 'ply' magic or no end_header)")
    body_start = data.index(b"\n", end) + 1
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    fmt, count, props, in_vertex, before = None, 0, [], False, 0
    for ln in lines:
        parts = ln.split()
        if not parts:
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            in_vertex = parts[1] == "vertex"
            if in_vertex:
                count = int(parts[2])
            elif not props:
                before += 1  # an element before vertex: unsupported below
        elif parts[0] == "property" and in_vertex:
            if parts[1] == "list":
                raise InputError(str(path), "list properties in the vertex element are not supported")
            if parts[1] not in _TYPES:
                raise InputError(str(path), f"unknown PLY property type {parts[1]!r}")
            props.append((parts[2], _TYPES[parts[1]]))
    if before:
        raise InputError(str(path), "the vertex element must come first")
    names = [p for p, _ in props]
    need = ["x", "y", "z", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [k for k in need if k not in names]
    if missing:
        raise InputError(str(path), f"not a Gaussian-splat PLY: missing {', '.join(missing)}")
    if fmt == "binary_little_endian":
        dtype = np.dtype(props)
        if len(data) - body_start < dtype.itemsize * count:
            raise InputError(str(path), "file is truncated")
        rec = np.frombuffer(data, dtype=dtype, count=count, offset=body_start)
        col = {k: rec[k].astype(np.float64) for k in names}
    elif fmt == "ascii":
        arr = np.loadtxt(data[body_start:].decode("ascii").splitlines()[:count], ndmin=2)
        col = {k: arr[:, i] for i, k in enumerate(names)}
    else:
        raise InputError(str(path), f"unsupported PLY format {fmt!r} (binary_little_endian or ascii)")
    means = np.stack([col["x"], col["y"], col["z"]], 1)
    scales = np.exp(np.stack([col[f"scale_{k}"] for k in range(3)], 1))
    quats = np.stack([col[f"rot_{k}"] for k in range(4)], 1)
    rots = np.array([quaternion_to_rotation(q, "wxyz") for q in quats]).reshape(-1, 3, 3)
    covs = np.einsum("nij,nj,nkj->nik", rots, scales**2, rots)
    if "f_dc_0" in names:
        colors = np.clip(0.5 + SH_C0 * np.stack([col[f"f_dc_{k}"] for k in range(3)], 1), 0, 1)
    elif "red" in names:
        colors = np.stack([col["red"], col["green"], col["blue"]], 1) / 255.0
    else:
        colors = np.full((len(means), 3), 0.5)
    if "weight" in names:
        weights = col["weight"]
    elif "opacity" in names:
        weights = 1.0 / (1.0 + np.exp(-col["opacity"]))
    else:
        weights = np.ones(len(means))
    feat_names = sorted((k for k in names if k.startswith("feat_")), key=lambda k: int(k[5:]))
    features = np.stack([col[k] for k in feat_names], 1).astype(np.float32) if feat_names else None
    normals = np.stack([col["nx"], col["ny"], col["nz"]], 1) if "nx" in names else None
    return GaussianMixture(means, covs, weights, colors, features, normals, camera, info={"source": str(path)})
