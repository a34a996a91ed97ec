"""Depth maps: reading, validity masking and size reconciliation.

A depth map here is z-depth in metres along the optical axis, (H, W) float64, with
invalid pixels set to NaN. Invalid means 0, 65535 (7-Scenes' "no data"), negative, NaN
or infinite values in the file.

Size rule: a depth map whose size differs from its image is resized with
nearest-neighbour sampling (never averaging across depth edges) when the aspect ratios
agree to 1%; otherwise it is rejected.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np

from twoview.errors import InputError, TwoViewWarning

_UINT16_INVALID = 65535


#: Median depth (metres) outside which a depth map is probably in other units: a warning, not an error.
PLAUSIBLE_MEDIAN_DEPTH_M = (0.02, 500.0)


def load_depth(path: str | Path, scale: float | None = None, name: str = "depth") -> np.ndarray:
    """Read a depth map in metres, (H, W) float64, NaN where invalid.

    Args:
        path: ``.png`` (16-bit), ``.npy``, ``.pfm`` or ``.exr``.
        scale: file units per metre for integer PNGs (1000 for millimetres, 5000 for TUM).
            Required for PNG; floating-point formats are taken as metres unless given.
        name: argument name used in error messages.
    """
    from twoview.io.text import existing_file

    path = existing_file(path, name)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            raw = _read_npy(path, name)
        elif suffix == ".pfm":
            raw = _read_pfm(path, name)
        elif suffix == ".exr":
            raw = _read_exr(path, name)
        elif suffix in (".png", ".tif", ".tiff"):
            from twoview.io.images import header_size

            header_size(path, name)  # a header claiming a huge map is refused before decoding
            raw = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise ValueError("cannot decode")
            if raw.ndim == 3:
                raw = raw[..., 0]
        else:
            raise InputError(name, f"unsupported depth format {suffix!r} (use .png, .npy, .pfm, .exr): {path}")
    except InputError:
        raise
    except Exception as e:
        raise InputError(name, f"cannot read depth map {path}: {e}") from None
    if raw.ndim != 2:
        raise InputError(name, f"depth map must be 2-D, got shape {raw.shape} in {path}")
    return depth_in_metres(raw, scale, name, str(path))


def depth_in_metres(raw: np.ndarray, scale: float | None, name: str = "depth", source: str = "the array") -> np.ndarray:
    """Depth values (H, W) in file units -> metres, float64, NaN where invalid: the one rule
    for files and in-memory arrays. Integers (16-bit PNG units; 65535 = no measurement) need
    ``scale`` (units per metre); floats are metres unless ``scale`` is given."""
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise InputError("depth scale", f"must be a positive number, got {scale}")
    if np.issubdtype(raw.dtype, np.integer):
        if scale is None:
            raise InputError(
                "depth scale", f"{source} stores integers: give the units per metre (e.g. 1000 for mm, 5000 for TUM)"
            )
        depth = raw.astype(np.float64)
        depth[raw == _UINT16_INVALID] = np.nan
        depth /= scale
    elif np.issubdtype(raw.dtype, np.floating):
        depth = raw.astype(np.float64) / (scale or 1.0)
    else:
        raise InputError(name, f"depth must be numeric, got dtype {raw.dtype} in {source}")
    return _mask_invalid(depth, copy=False)


def as_depth_map(depth, image_size: tuple[int, int], scale: float | None = None, name: str = "depth") -> np.ndarray:
    """A depth file path or an in-memory (H, W) map -> metres at ``image_size`` = (width,
    height), float64, NaN where invalid. Files and arrays follow one rule
    (:func:`depth_in_metres`): integers are units that need ``scale``."""
    if isinstance(depth, (str, Path)):
        d = load_depth(depth, scale, name)
    else:
        d = np.asarray(depth)
        if d.ndim == 3 and d.shape[2] == 1:
            d = d[..., 0]
        if d.ndim == 2:  # other shapes: prepare_depth names the problem
            d = depth_in_metres(d, scale, name, source=name)
    return prepare_depth(d, image_size, name)


def prepare_depth(depth, image_size: tuple[int, int], name: str = "depth") -> np.ndarray:
    """Validate an in-memory depth map and bring it to ``image_size`` = (width, height).

    Returns (H, W) float64 metres with NaN for invalid pixels.

    Raises:
        InputError: wrong shape, aspect ratio mismatch, or no valid pixel.
    """
    d = np.asarray(depth)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[..., 0]
    if d.ndim != 2:
        raise InputError(name, f"depth must be an (H, W) array, got shape {d.shape}")
    if not np.issubdtype(d.dtype, np.number):
        raise InputError(name, f"depth must be numeric, got dtype {d.dtype}")
    if d.size == 0:
        raise InputError(name, f"depth map is empty ({d.shape[1]}x{d.shape[0]} pixels)")
    d = _mask_invalid(d.astype(np.float64), copy=False)  # astype already copied
    w, h = image_size
    if d.shape != (h, w):
        dh, dw = d.shape
        if abs(dw / dh - w / h) > 0.01 * (w / h):
            raise InputError(
                name, f"depth is {dw}x{dh} but the image is {w}x{h}; aspect ratios differ, cannot resize"
            )
        d = cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST)
    if not np.any(np.isfinite(d)):
        raise InputError(name, "depth map has no valid pixel (all zero, NaN or invalid)")
    # A 1-in-16 grid is plenty for a units check and 15x cheaper than the full map.
    grid = d[::4, ::4]
    median = float(np.nanmedian(grid if np.any(np.isfinite(grid)) else d))
    if not PLAUSIBLE_MEDIAN_DEPTH_M[0] <= median <= PLAUSIBLE_MEDIAN_DEPTH_M[1]:
        # Millimetres read as metres make every metric translation 1000x too large, silently.
        warnings.warn(
            f"{name}: median depth {median:.4g} m is implausible for a camera; is it in metres? "
            "(a depth scale converts file units: 1000 for mm)",
            category=TwoViewWarning, stacklevel=2,
        )
    return d


def _mask_invalid(d: np.ndarray, copy: bool = True) -> np.ndarray:
    if copy:
        d = d.copy()
    with np.errstate(invalid="ignore"):
        d[~(d > 0) | np.isinf(d)] = np.nan  # NaN > 0 is False
    return d


#: EXR channel names tried in order for the depth (then the first channel).
_EXR_DEPTH_CHANNELS = ("Z", "depth", "Depth", "D", "Y", "R", "RGB", "RGBA")


def _read_exr(path: Path, name: str) -> np.ndarray:
    """First depth-like channel of an OpenEXR file (needs the ``openexr`` package:
    the OpenCV wheels are built without OpenEXR)."""
    try:
        import OpenEXR
    except ImportError:
        raise InputError(
            name, f"reading .exr needs the openexr package (`pip install 'twoview[exr]'`): {path}"
        ) from None
    with OpenEXR.File(str(path), header_only=True) as f:
        lo, hi = (np.asarray(v).reshape(-1) for v in f.header()["dataWindow"])
    _check_map_size(int(hi[0] - lo[0] + 1), int(hi[1] - lo[1] + 1), name, path)
    with OpenEXR.File(str(path)) as f:
        channels = f.channels()
        if not channels:
            raise ValueError("no channels")
        key = next((k for k in _EXR_DEPTH_CHANNELS if k in channels), next(iter(channels)))
        pix = np.asarray(channels[key].pixels)
    return pix[..., 0] if pix.ndim == 3 else pix


def write_exr(path: str | Path, depth: np.ndarray) -> None:
    """Write a depth map (H, W) as a float32 single-channel ("Z") OpenEXR file."""
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"Z": np.ascontiguousarray(depth, dtype=np.float32)}) as f:
        f.write(str(path))


def _check_map_size(width: int, height: int, name: str, path: Path) -> None:
    """A depth map's size from its header: not empty, within the images' pixel limit."""
    from twoview.io.images import MAX_IMAGE_PIXELS

    if width < 1 or height < 1:
        raise InputError(name, f"depth map is empty ({width}x{height} pixels): {path}")
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(name, f"depth map of {width}x{height} pixels is larger than the limit of "
                               f"{MAX_IMAGE_PIXELS / 1e6:g} megapixels (twoview.io.images.MAX_IMAGE_PIXELS): {path}")


def _read_npy(path: Path, name: str) -> np.ndarray:
    # memory-mapped first: the header's shape is checked against the file's size and the
    # limit before anything is allocated (a tiny file may claim a huge array)
    mm = np.load(path, mmap_mode="r", allow_pickle=False)
    if mm.ndim != 2:
        raise InputError(name, f"depth map must be 2-D, got shape {mm.shape} in {path}")
    _check_map_size(mm.shape[1], mm.shape[0], name, path)
    return np.array(mm)


def _read_pfm(path: Path, name: str) -> np.ndarray:
    with open(path, "rb") as f:
        header = f.readline(16).decode("ascii").strip()
        if header not in ("Pf", "PF"):
            raise ValueError("not a PFM file")
        size = f.readline(64).decode("ascii").split()
        if len(size) != 2:
            raise ValueError(f"expected 'width height' on the second line, got {' '.join(size)!r}")
        w, h = (int(v) for v in size)
        _check_map_size(w, h, name, path)
        scale = float(f.readline(64).decode("ascii").strip())
        if not (np.isfinite(scale) and scale != 0):
            raise ValueError(f"the scale line must be a non-zero number, got {scale}")
        dtype = "<f4" if scale < 0 else ">f4"
        channels = 3 if header == "PF" else 1
        count = w * h * channels
        body = f.read(4 * count)
    data = np.frombuffer(body[: len(body) // 4 * 4], dtype=dtype)
    if data.size < count:
        raise ValueError(f"truncated: {w}x{h}x{channels} floats expected, {data.size} found")
    data = data[:count].reshape(h, w, channels)[..., 0]
    return np.flipud(data).astype(np.float64)  # PFM stores rows bottom to top


def write_pfm(path: str | Path, depth: np.ndarray) -> None:
    d = np.flipud(np.asarray(depth, dtype="<f4"))
    with open(path, "wb") as f:
        f.write(b"Pf\n" + f"{d.shape[1]} {d.shape[0]}\n-1.0\n".encode("ascii"))
        f.write(d.tobytes())
