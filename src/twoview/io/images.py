"""Image loading with errors that name the file.

Images are turned upright by their EXIF orientation (as OpenCV's ``imread`` and most
viewers do), by one rule that :func:`load_image` and :func:`image_size` share, so the
pixels, the size intrinsics are checked against and the keypoints all refer to the
upright image. Intrinsics must be given for that image.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from twoview.errors import InputError

#: Largest image read from a file, in pixels (width x height): a 100 MP photo decodes to 300
#: MB of RGB; a larger one is refused from its header, before decoding (a 1 MB PNG can claim
#: 30000x30000 pixels, 2.7 GB once decoded).
MAX_IMAGE_PIXELS = 100_000_000
#: Smallest image side, in pixels, that matching and the intrinsics checks work with.
MIN_IMAGE_SIDE = 16
#: Largest ratio of the long to the short image side (a 100000x1 strip is no photo: resized
#: for matching it would have no rows left).
MAX_ASPECT_RATIO = 20.0


def check_image_size(width: int, height: int, name: str, path=None) -> None:
    """Refuse an image size no estimate can use: more than :data:`MAX_IMAGE_PIXELS`, a side
    under :data:`MIN_IMAGE_SIDE`, or sides further apart than :data:`MAX_ASPECT_RATIO`.

    Raises:
        InputError: naming ``name`` (and ``path``, the file, when given).
    """
    of = f" ({path})" if path is not None else ""
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(name, f"image of {width}x{height} pixels{of} is larger than the limit of "
                               f"{MAX_IMAGE_PIXELS / 1e6:g} megapixels (twoview.io.images.MAX_IMAGE_PIXELS); scale it down")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InputError(name, f"image is too small ({width}x{height}){of}: each side needs at least {MIN_IMAGE_SIDE} pixels")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise InputError(name, f"image of {width}x{height} pixels{of} is too elongated: the long side may be at most "
                               f"{MAX_ASPECT_RATIO:g} times the short one")


def _read_header(path: Path, name: str) -> tuple[int, int, int]:
    """(width, height as stored, EXIF orientation) from the header (PIL reads no pixels).

    Raises:
        InputError: over PIL's decompression-bomb limit (twice its 89 MP, far over ours).
        Exception: whatever PIL raises for a file it cannot parse.
    """
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():  # PIL's own bomb warning (89 MP) is below our limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size[0], im.size[1], _orientation_of(im)
    except Image.DecompressionBombError as e:
        raise InputError(name, f"{path} is larger than the limit of {MAX_IMAGE_PIXELS / 1e6:g} megapixels "
                               f"(twoview.io.images.MAX_IMAGE_PIXELS): {e}") from None


def header_size(path: Path, name: str) -> tuple[int, int] | None:
    """(width, height) as stored, from the header of an image file, checked by
    :func:`check_image_size`; None when PIL cannot parse the file (the decoder decides then,
    and the decoded image is checked).

    Raises:
        InputError: the header claims a size :func:`check_image_size` refuses.
    """
    try:
        width, height, _ = _read_header(path, name)
    except InputError:
        raise
    except Exception:  # a format PIL does not parse, or a broken header
        return None
    check_image_size(width, height, name, path)
    return width, height


def load_image(path: str | Path, name: str = "image") -> np.ndarray:
    """Read an image as RGB uint8, (H, W, 3); 16-bit files are scaled by the bit depth
    their values use (see :func:`to_uint8`), so 12-bit data is not left nearly black.

    Raises:
        InputError: the file is missing, not a file, not a decodable image, or of a size
            :func:`check_image_size` refuses (checked from the header before decoding).
    """
    from twoview.io.text import existing_file

    path = existing_file(path, name)
    header_size(path, name)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise InputError(name, f"cannot read {path}: {e.strerror or e}") from None
    # OpenCV would apply the orientation for some formats only; it is applied here for all.
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        img = cv2.imdecode(data, flags) if data.size else None
    except cv2.error:  # OpenCV's own limits (e.g. a header over its pixel cap in a format PIL cannot read)
        img = None
    if img is None:
        raise InputError(name, f"cannot decode image (corrupt or unsupported format): {path}")
    check_image_size(img.shape[1], img.shape[0], name, path)
    img = upright(img, _exif_orientation(path))
    return cv2.cvtColor(to_uint8(img, name), cv2.COLOR_BGR2RGB)


def _exif_orientation(path: Path) -> int:
    """EXIF orientation tag (1-8) of an image file (header only); 1 when absent or unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return _orientation_of(im)
    except Exception:  # a format PIL does not parse: the stored grid is taken as upright
        return 1


def _orientation_of(im) -> int:
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # broken EXIF: the stored grid is taken as upright
        return 1
    return value if 1 <= value <= 8 else 1


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` (H, W[, C]) as displayed for EXIF ``orientation`` 1-8 (2-4 mirror or turn
    it half way, 5-8 swap width and height)."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: a.swapaxes(0, 1)[:, ::-1],  # stored turned 90 deg counter-clockwise
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: a.swapaxes(0, 1)[::-1],
    }
    return np.ascontiguousarray(ops.get(orientation, ops[1])(image))


def to_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Any numeric image -> uint8, same shape.

    Floats with maximum <= 1 are taken as [0, 1]; values up to 255 are kept; larger ones
    (10- to 16-bit sensors, 16-bit PNG) are scaled by the bit depth the maximum needs
    (4000 -> 12 bits -> x 255/4095), which two frames of one camera share.

    Raises:
        InputError: non-numeric dtype, or NaN / infinite values.
    """
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise InputError(name, f"image must be numeric, got dtype {image.dtype}")
    a = image.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise InputError(name, "image has NaN or infinite values")
    hi = float(a.max())
    if np.issubdtype(image.dtype, np.floating) and hi <= 1.0:
        scale = 255.0
    elif hi <= 255.0:
        scale = 1.0
    else:
        scale = 255.0 / (2.0 ** np.ceil(np.log2(hi + 1.0)) - 1.0)
    return np.clip(a * scale + 0.5, 0, 255).astype(np.uint8)


def image_size(path: str | Path, where: str | None = None) -> tuple[int, int]:
    """(width, height) of an image file as :func:`load_image` returns it (upright by its
    EXIF orientation), reading only its header, checked by :func:`check_image_size`."""
    from twoview.io.text import existing_file

    path = existing_file(path, where, "image")
    name = where or str(path)
    try:
        w, h, orientation = _read_header(path, name)
    except InputError:
        raise
    except Exception as e:  # PIL raises many types for broken files
        raise InputError(name, f"cannot read image {path}: {e}") from None
    check_image_size(w, h, name, path)
    return (h, w) if orientation >= 5 else (w, h)


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
    """Validate an in-memory image, (H, W), (H, W, 3) or (H, W, 4) (alpha dropped), of a size
    :func:`check_image_size` accepts, and return it as uint8 (:func:`to_uint8`)."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InputError(name, f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    check_image_size(image.shape[1], image.shape[0], name)
    image = to_uint8(image, name)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    return image
