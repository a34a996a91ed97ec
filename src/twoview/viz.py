"""Pictures: inlier matches side by side; pictures written in the format their name asks for."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twoview.errors import InputError
from twoview.io.atomic import atomic_write_bytes
from twoview.result import PoseResult

#: picture file extensions -> format (OpenCV's encoder extension and matplotlib's format name)
IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}
#: JPEG quality of written pictures
JPEG_QUALITY = 92


def image_format(path: str | Path, what: str | None = None) -> str:
    """"png" or "jpeg" from the extension of ``path``.

    Raises:
        InputError: another extension (naming ``what``, default the path).
    """
    fmt = IMAGE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(what or str(path), f"unsupported picture format {Path(path).suffix or '(no extension)'!r}: "
                                            f"use {', '.join(IMAGE_FORMATS)}")
    return fmt


def draw_matches(image0: np.ndarray, image1: np.ndarray, result: PoseResult, max_lines: int = 500) -> np.ndarray:
    """Side-by-side RGB picture (H, W0 + W1, 3) uint8: inliers green, outliers faint red."""
    import cv2

    im0 = image0 if image0.ndim == 3 else np.repeat(image0[..., None], 3, axis=2)
    im1 = image1 if image1.ndim == 3 else np.repeat(image1[..., None], 3, axis=2)
    h = max(im0.shape[0], im1.shape[0])
    canvas = np.zeros((h, im0.shape[1] + im1.shape[1], 3), np.uint8)
    canvas[: im0.shape[0], : im0.shape[1]] = im0
    canvas[: im1.shape[0], im0.shape[1] :] = im1
    canvas = (canvas * 0.7).astype(np.uint8)
    m = result.matches
    if m is not None and len(m):
        inl = result.inliers if result.inliers is not None else np.zeros(len(m), bool)
        rng = np.random.default_rng(0)
        order = rng.permutation(len(m))[:max_lines]
        off = np.array([im0.shape[1], 0])
        for i in order[np.argsort(inl[order])]:  # inliers drawn last, on top
            p0 = tuple(np.round(m.kpts0[i]).astype(int))
            p1 = tuple(np.round(m.kpts1[i] + off).astype(int))
            color = (40, 220, 40) if inl[i] else (200, 60, 60)
            cv2.line(canvas, p0, p1, color, 1, cv2.LINE_AA)
            cv2.circle(canvas, p0, 2, color, -1, cv2.LINE_AA)
            cv2.circle(canvas, p1, 2, color, -1, cv2.LINE_AA)
    text = (
        f"{result.solver}: {result.num_inliers}/{result.num_matches} inliers"
        if result.success
        else f"FAILED: {result.reason}"[:100]
    )
    cv2.putText(canvas, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return canvas


def save_image(path: str | Path, image_rgb: np.ndarray) -> Path:
    """Write an RGB picture (H, W, 3) uint8 atomically as PNG or JPEG, by the extension of ``path``."""
    import cv2

    fmt = image_format(path)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"cannot encode {fmt.upper()} for {path}")
    return atomic_write_bytes(path, buf.tobytes())

