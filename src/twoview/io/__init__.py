"""Reading images, depth maps and intrinsics; writing results atomically."""

from twoview.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from twoview.io.depth import load_depth, prepare_depth
from twoview.io.images import load_image, load_image_gray

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "load_depth",
    "load_image",
    "load_image_gray",
    "prepare_depth",
]
