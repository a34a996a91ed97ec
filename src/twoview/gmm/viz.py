"""Pictures of two mixtures overlaid before and after alignment.

PNG (matplotlib, Agg): top (x-z) and side (z-y) views of both mixtures' means in camera 1's
frame, view 0 in orange and view 1 in blue, for the initial and the refined pose. HTML: the
interactive 3D view of :mod:`twoview.view3d` (cameras and both mixtures in camera 0's frame).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from twoview.geometry.pose import Pose
from twoview.gmm.mixture import GaussianMixture
from twoview.io.atomic import atomic_write_bytes


def overlay_png(path: str | Path, mix0: GaussianMixture, mix1: GaussianMixture, poses: dict[str, Pose],
                max_points: int = 4000) -> Path:
    """Write a picture with one row per pose in ``poses`` (e.g. {"initial": T0, "refined": T1}),
    PNG or JPEG by the extension of ``path`` (:func:`twoview.viz.image_format`)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from twoview.viz import image_format

    fmt = image_format(path)
    rng = np.random.default_rng(0)
    i0 = rng.permutation(len(mix0))[:max_points]
    i1 = rng.permutation(len(mix1))[:max_points]
    b = mix1.means[i1]
    fig, axes = plt.subplots(len(poses), 2, figsize=(10, 4.6 * len(poses)), squeeze=False)
    for row, (name, T) in enumerate(poses.items()):
        a = T.apply(mix0.means[i0])
        for col, (u, v, lu, lv) in enumerate(((0, 2, "x (m)", "z (m)"), (2, 1, "z (m)", "y (m)"))):
            ax = axes[row, col]
            ax.scatter(b[:, u], b[:, v], s=1.5, c="tab:blue", alpha=0.5, label="view 1", linewidths=0)
            ax.scatter(a[:, u], a[:, v], s=1.5, c="tab:orange", alpha=0.5, label="view 0 (moved)", linewidths=0)
            ax.set_xlabel(lu)
            ax.set_ylabel(lv)
            ax.set_aspect("equal", adjustable="datalim")
            if v == 1:
                ax.invert_yaxis()
            ax.set_title(f"{name}: {'top' if col == 0 else 'side'} view (camera 1 frame)")
            if row == 0 and col == 0:
                ax.legend(loc="upper right", markerscale=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=90)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def overlay_html(path: str | Path, mix0: GaussianMixture, mix1: GaussianMixture, pose: Pose,
                 title: str = "refined", max_points: int = 20000) -> Path:
    """Write the interactive 3D view (:mod:`twoview.view3d`, one offline HTML file) of
    both mixtures in camera 0's frame, view 1's moved by ``pose`` (``cam1_from_cam0``),
    with the two cameras; at most ``max_points`` Gaussians per mixture."""
    from twoview.geometry.camera import Camera
    from twoview.result import PoseResult
    from twoview.view3d import build_scene, write_html

    # a mixture read from a PLY has no camera: a generic frustum stands in
    cams = [m.camera if m.camera is not None else Camera.from_fov(60.0, 640, 480) for m in (mix0, mix1)]
    result = PoseResult(success=True, cam1_from_cam0=pose, metric=True, solver=f"gmm ({title})")
    scene = build_scene(None, None, cams[0], cams[1], None, None, result, mixtures=(mix0, mix1),
                        title=f"twoview gmm: {title}", max_gaussians=max_points)
    scene.color_by_view = True  # as the PNG: orange view 0, blue view 1
    return write_html(path, scene)
