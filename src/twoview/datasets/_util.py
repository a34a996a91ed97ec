"""Small helpers shared by the readers."""

from __future__ import annotations

from pathlib import Path

from twoview.errors import InputError


def image_size(path: Path, where: str | None = None) -> tuple[int, int]:
    """(width, height) of an image file, reading only its header."""
    from PIL import Image

    if not path.is_file():
        raise InputError(where or str(path), f"image not found: {path}")
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:  # PIL raises many types for broken files
        raise InputError(where or str(path), f"cannot read image {path}: {e}") from None


class SizeCache:
    """Image sizes of a sequence (all frames of a camera usually share one)."""

    def __init__(self):
        self._by_dir: dict[Path, tuple[int, int]] = {}

    def __call__(self, path: Path, same_for_folder: bool = True) -> tuple[int, int]:
        key = path.parent if same_for_folder else path
        if key not in self._by_dir:
            self._by_dir[key] = image_size(path)
        return self._by_dir[key]
