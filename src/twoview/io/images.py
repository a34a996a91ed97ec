"""Image loading with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from twoview.errors import InputError


def load_image(path: str | Path, name: str = "image") -> np.ndarray:
    """Read an image as RGB uint8, (H, W, 3).

    Raises:
        InputError: the file is missing, not a file, or not a decodable image.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(name, f"file not found: {path}")
    if not path.is_file():
        raise InputError(name, f"not a file: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise InputError(name, f"cannot decode image (corrupt or unsupported format): {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_image_gray(path: str | Path, name: str = "image") -> np.ndarray:
    """Read an image as grey uint8, (H, W)."""
    return to_gray(load_image(path, name))


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) or grey (H, W) uint8 -> grey (H, W) uint8."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2GRAY)
    raise InputError("image", f"expected (H, W) or (H, W, 3) array, got shape {image.shape}")


def check_image_array(image: np.ndarray, name: str) -> np.ndarray:
    """Validate an in-memory image: uint8 (H, W) or (H, W, 3), at least 16x16 pixels."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InputError(name, f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    if image.shape[0] < 16 or image.shape[1] < 16:
        raise InputError(name, f"image is too small ({image.shape[1]}x{image.shape[0]})")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and np.nanmax(image) <= 1.0:
            image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    return image
