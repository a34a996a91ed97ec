"""Input files for the command-line tests."""

from __future__ import annotations

from pathlib import Path


def write_motorcycle_images(folder: Path):
    """The Middlebury Motorcycle pair (scikit-image) written as left.png / right.png in
    ``folder``; returns the pair (images, depth, cameras) for the caller's own files."""
    import cv2

    from twoview.demo import motorcycle

    p = motorcycle()
    cv2.imwrite(str(folder / "left.png"), cv2.cvtColor(p.image0, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "right.png"), cv2.cvtColor(p.image1, cv2.COLOR_RGB2BGR))
    return p


def k_arg(camera) -> str:
    """A camera's intrinsics as the CLI's --K0 / --K1 value ``fx,fy,cx,cy``."""
    return f"{camera.fx},{camera.fy},{camera.cx},{camera.cy}"
