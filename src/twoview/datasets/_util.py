"""Small helpers shared by the readers."""

from __future__ import annotations

from pathlib import Path

from twoview.io.images import image_size  # noqa: F401  (the readers import it from here)


class SizeCache:
    """Image sizes of a sequence (all frames of a camera usually share one)."""

    def __init__(self):
        self._by_dir: dict[Path, tuple[int, int]] = {}

    def __call__(self, path: Path, same_for_folder: bool = True) -> tuple[int, int]:
        key = path.parent if same_for_folder else path
        if key not in self._by_dir:
            self._by_dir[key] = image_size(path)
        return self._by_dir[key]
