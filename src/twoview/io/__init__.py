"""Reading images, depth maps and intrinsics; writing results atomically (names imported on first use)."""

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "load_depth",
    "load_image",
    "load_image_gray",
    "prepare_depth",
]

_LAZY = {"atomic_write_bytes": "atomic", "atomic_write_json": "atomic", "atomic_write_text": "atomic",
         "load_depth": "depth", "prepare_depth": "depth", "load_image": "images", "load_image_gray": "images"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"twoview.io.{_LAZY[name]}"), name)
    raise AttributeError(name)
